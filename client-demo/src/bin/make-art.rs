//! `make-art`: generate the demo client's art into `assets/art/` (see `client_demo::art`).
//!
//! `cargo run -p client-demo --bin make-art [-- OUT_DIR]` (default: the workspace's `assets/art`).

use std::path::PathBuf;

use anyhow::Context;

// The generator is compiled in directly (not through the `client_demo` library, which compiles the generated PNGs
// in), so that it builds before any art exists.
#[allow(
    dead_code,
    unreachable_pub,
    reason = "shared with the library, which uses all of it"
)]
#[path = "../art.rs"]
mod art;
#[allow(
    dead_code,
    unreachable_pub,
    reason = "shared with the library, which uses all of it"
)]
#[path = "../palette.rs"]
mod palette;

#[expect(
    clippy::print_stderr,
    reason = "a command-line tool says what it wrote"
)]
fn main() -> anyhow::Result<()> {
    let out = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/art"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let files = art::all();
    for file in &files {
        let path = out.join(&file.name);
        file.image
            .save_with_format(&path, image::ImageFormat::Png)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    std::fs::write(out.join("LICENSE"), art::LICENSE).context("writing the licence")?;
    eprintln!(
        "make-art: wrote {} images to {}",
        files.len(),
        out.display()
    );
    Ok(())
}
