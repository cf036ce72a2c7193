//! Building a web app (a bevy client, or the SDK's browser tests) for the browser: cargo for
//! [`WASM_TARGET`], then `wasm-bindgen` for the JavaScript that loads it.
//!
//! `wasm-bindgen`'s command-line tools must be exactly the version of the `wasm-bindgen` crate in the workspace's
//! `Cargo.lock` (the generated glue and the crate's macros speak one private format). No toolchain carries them,
//! so [`ensure_wasm_bindgen`] installs them with `cargo install` from source (crates.io), once, into a directory
//! of the caller's (the workspace's `target/tools` by convention), and checks the version of what is there on
//! every later call. Nothing is downloaded but crates.
//!
//! Like [`crate::build`], every cargo run here has its own `--target-dir`: under an outer cargo (a test, `locus
//! serve` run by `cargo run`) the outer one holds the lock on `target/`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

use crate::build::{BuildError, WASM_TARGET, ensure_wasm_target};

/// Why a web app could not be built.
#[derive(Debug, Error)]
pub enum WebBuildError {
    /// The wasm target is missing, or cargo could not build the app.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The workspace's `Cargo.lock` cannot be read or locks no `wasm-bindgen`.
    #[error("cannot tell the locked wasm-bindgen version from `{path}`: {why}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A program could not be run.
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// A program ran and failed.
    #[error("`{command}` failed ({status}):\n{stderr}")]
    Failed {
        /// What was run.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The end of its error output.
        stderr: String,
    },
    /// A file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The version of crate `package` in the lock file at `lock` (the first one, if it is locked twice).
///
/// # Errors
///
/// [`WebBuildError::Lock`].
pub fn locked_version(lock: &Path, package: &str) -> Result<String, WebBuildError> {
    let fail = |why: String| WebBuildError::Lock {
        path: lock.to_owned(),
        why,
    };
    let text = std::fs::read_to_string(lock).map_err(|e| fail(e.to_string()))?;
    let wanted = format!("name = \"{package}\"");
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == wanted {
            let version = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = \""))
                .and_then(|v| v.strip_suffix('"'))
                .ok_or_else(|| fail(format!("no version after `{wanted}`")))?;
            return Ok(version.to_owned());
        }
    }
    Err(fail(format!("`{package}` is not locked")))
}

/// The tail of a program's error output, for an error message.
fn tail(stderr: &[u8]) -> String {
    let stderr = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = stderr.lines().rev().take(40).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// Run `command`; its stdout, or [`WebBuildError::Failed`].
fn run(command: &mut Command, what: &str) -> Result<Vec<u8>, WebBuildError> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command.output().map_err(|source| WebBuildError::Spawn {
        program: program.clone(),
        source,
    })?;
    if !output.status.success() {
        return Err(WebBuildError::Failed {
            command: what.to_owned(),
            status: output.status,
            stderr: tail(&output.stderr),
        });
    }
    Ok(output.stdout)
}

/// The `wasm-bindgen` tools of the version `workspace`'s `Cargo.lock` locks: the directory holding
/// `wasm-bindgen` and `wasm-bindgen-test-runner`, under `tools` (`tools/bin`). Installed with `cargo install
/// wasm-bindgen-cli --version =VERSION --root TOOLS` when missing or of another version (one line on stderr says
/// so: the first install compiles for a few minutes); its build directory is `tools/build`, kept for the next
/// install.
///
/// # Errors
///
/// A [`WebBuildError`]: no lock, cargo missing, or the install failed (with cargo's output).
pub fn ensure_wasm_bindgen(workspace: &Path, tools: &Path) -> Result<PathBuf, WebBuildError> {
    let version = locked_version(&workspace.join("Cargo.lock"), "wasm-bindgen")?;
    let bin = tools.join("bin");
    let installed = Command::new(bin.join("wasm-bindgen"))
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    // `wasm-bindgen 0.2.130`
    if installed.is_some_and(|v| v.split_whitespace().nth(1) == Some(version.as_str()))
        && bin.join("wasm-bindgen-test-runner").exists()
    {
        return Ok(bin);
    }
    // Straight to stderr (a test harness captures print macros): the person waiting should know why.
    let _ = writeln!(
        std::io::stderr(),
        "locus: installing wasm-bindgen-cli {version} into {} (once; it compiles for a few minutes)",
        tools.display()
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    run(
        Command::new(&cargo)
            .current_dir(workspace)
            .args(["install", "wasm-bindgen-cli", "--version"])
            .arg(format!("={version}"))
            .arg("--root")
            .arg(tools)
            // Not `--locked`: the tool's own lock file names a release of one of its dependencies that has since
            // been yanked from crates.io, so a locked install cannot resolve. cargo picks the newest versions that
            // build with this toolchain instead.
            .arg("--target-dir")
            .arg(tools.join("build"))
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("CARGO_TARGET_DIR"),
        &format!("cargo install wasm-bindgen-cli --version ={version}"),
    )?;
    Ok(bin)
}

/// Debian's headless browser and its WebDriver, for tests that run a web app (packages `chromium` and
/// `chromium-driver`).
#[derive(Clone, Debug)]
pub struct Browser {
    /// `chromium`.
    pub chromium: PathBuf,
    /// `chromedriver`.
    pub chromedriver: PathBuf,
}

impl Browser {
    /// `chromium` and `chromedriver` from `PATH`. Without them: `None` after a loud message on stderr that `test`
    /// was skipped, or a panic if the environment variable `LOCUS_REQUIRE_BROWSER` is set (not empty or `0`), as
    /// CI sets it, so that a skip cannot pass unnoticed there.
    ///
    /// # Panics
    ///
    /// As said, when required and missing.
    #[must_use]
    pub fn find_or_skip(test: &str) -> Option<Browser> {
        let required =
            std::env::var_os("LOCUS_REQUIRE_BROWSER").is_some_and(|v| !v.is_empty() && v != "0");
        let find = |program: &str| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path)
                .map(|dir| dir.join(program))
                .find(|p| p.is_file())
        };
        if let (Some(chromium), Some(chromedriver)) = (find("chromium"), find("chromedriver")) {
            return Some(Browser {
                chromium,
                chromedriver,
            });
        }
        assert!(
            !required,
            "LOCUS_REQUIRE_BROWSER is set but `chromium` and `chromedriver` are not installed \
             (apt-get install chromium chromium-driver)"
        );
        let _ = writeln!(
            std::io::stderr(),
            "\n\n*** SKIPPED {test}: `chromium` and `chromedriver` are not installed. ***\n\
             *** Install chromium and chromium-driver, or set LOCUS_REQUIRE_BROWSER=1 to make this a failure. ***\n\n"
        );
        None
    }
}

/// What [`build_web_app`] made.
#[derive(Clone, Debug)]
pub struct WebApp {
    /// The directory holding the app: `NAME.js` (the loader: `import init from './NAME.js'; await init();`) and
    /// `NAME_bg.wasm`.
    pub dir: PathBuf,
    /// The loader's file name.
    pub js: String,
    /// The wasm file.
    pub wasm: PathBuf,
}

/// Build binary `bin` of `package` in release mode for [`WASM_TARGET`] into `target_dir` and generate its
/// JavaScript loader into `out_dir` (`wasm-bindgen --target web`: an ES module whose default export fetches and
/// starts the wasm, which runs `main`), then copy the files of `static_dir` (the page) beside them. The wasm
/// target and the `wasm-bindgen` tools are installed first if they are missing ([`ensure_wasm_target`],
/// [`ensure_wasm_bindgen`] under `tools`).
///
/// # Errors
///
/// A [`WebBuildError`], with the tail of cargo's or wasm-bindgen's output when one fails.
pub fn build_web_app(
    workspace: &Path,
    package: &str,
    bin: &str,
    target_dir: &Path,
    tools: &Path,
    static_dir: &Path,
    out_dir: &Path,
) -> Result<WebApp, WebBuildError> {
    ensure_wasm_target(workspace)?;
    let tools = ensure_wasm_bindgen(workspace, tools)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    run(
        Command::new(&cargo)
            .current_dir(workspace)
            .args(["build", "--release", "--locked", "--target", WASM_TARGET])
            .args(["-p", package, "--bin", bin])
            .arg("--target-dir")
            .arg(target_dir)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("CARGO_TARGET_DIR"),
        &format!("cargo build -p {package} --bin {bin} --target {WASM_TARGET}"),
    )?;
    let built = target_dir
        .join(WASM_TARGET)
        .join("release")
        .join(format!("{bin}.wasm"));
    std::fs::create_dir_all(out_dir).map_err(|source| WebBuildError::Io {
        path: out_dir.to_owned(),
        source,
    })?;
    run(
        Command::new(tools.join("wasm-bindgen"))
            .args(["--target", "web", "--no-typescript", "--out-dir"])
            .arg(out_dir)
            .arg(&built),
        &format!("wasm-bindgen {}", built.display()),
    )?;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| WebBuildError::Io { path, source }
    };
    for entry in std::fs::read_dir(static_dir).map_err(io(static_dir))? {
        let entry = entry.map_err(io(static_dir))?;
        if entry.file_type().map_err(io(&entry.path()))?.is_file() {
            std::fs::copy(entry.path(), out_dir.join(entry.file_name()))
                .map_err(io(&entry.path()))?;
        }
    }
    let name = bin;
    let wasm = out_dir.join(format!("{name}_bg.wasm"));
    if !wasm.exists() {
        return Err(WebBuildError::Io {
            path: wasm,
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    Ok(WebApp {
        dir: out_dir.to_owned(),
        js: format!("{name}.js"),
        wasm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_locked_version_is_read_from_the_lock_file() {
        let dir = std::env::temp_dir().join(format!("locus-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lock = dir.join("Cargo.lock");
        std::fs::write(
            &lock,
            "[[package]]\nname = \"wasm-bindgen-futures\"\nversion = \"0.4.80\"\n\n\
             [[package]]\nname = \"wasm-bindgen\"\nversion = \"0.2.130\"\n",
        )
        .unwrap();
        assert_eq!(locked_version(&lock, "wasm-bindgen").unwrap(), "0.2.130");
        let err = locked_version(&lock, "bevy").unwrap_err().to_string();
        assert!(err.contains("`bevy` is not locked"), "{err}");
        // The workspace's own lock file locks the wasm-bindgen the SDK and the demo client build with.
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let ours = locked_version(&workspace.join("Cargo.lock"), "wasm-bindgen").unwrap();
        assert!(ours.starts_with("0.2."), "{ours}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
