//! Building a module crate to `wasm32-unknown-unknown` with cargo.
//!
//! Used by tests (which build their test module from source on every clean checkout) and by `locus serve` (which
//! builds the demo world). The build runs with its own `--target-dir`: when it runs under an outer cargo (a test),
//! the outer one holds the lock on the workspace's `target/debug`.

use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

/// The wasm target modules are built for.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Why a module could not be built.
#[derive(Debug, Error)]
pub enum BuildError {
    /// cargo could not be started.
    #[error("cannot run `{cargo}`: {source}")]
    Spawn {
        /// The cargo executable tried.
        cargo: String,
        /// Why it could not start.
        source: std::io::Error,
    },
    /// cargo ran and failed.
    #[error("building `{package}` for {WASM_TARGET} failed ({status}):\n{stderr}")]
    Failed {
        /// The package.
        package: String,
        /// cargo's exit status.
        status: std::process::ExitStatus,
        /// The end of cargo's error output.
        stderr: String,
    },
    /// cargo succeeded but the expected `.wasm` file is not there.
    #[error("cargo succeeded but `{0}` does not exist (is the crate a cdylib?)")]
    NoOutput(PathBuf),
    /// The module file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Build `package` of the workspace at `workspace` in release mode for [`WASM_TARGET`] into `target_dir`, and
/// return the module's bytes.
///
/// Uses the `CARGO` environment variable (set when running under cargo) or `cargo` from `PATH`, so the toolchain
/// pinned by `rust-toolchain.toml` is used. A build that is up to date takes well under a second.
///
/// # Errors
///
/// A [`BuildError`], with the tail of cargo's output when the build fails.
pub fn build_module(
    workspace: &Path,
    package: &str,
    target_dir: &Path,
) -> Result<Vec<u8>, BuildError> {
    build_module_with_features(workspace, package, &[], target_dir)
}

/// [`build_module`] with cargo features of `package` enabled (give each feature set its own `target_dir`: the
/// output file's name does not depend on the features).
///
/// # Errors
///
/// A [`BuildError`], with the tail of cargo's output when the build fails.
pub fn build_module_with_features(
    workspace: &Path,
    package: &str,
    features: &[&str],
    target_dir: &Path,
) -> Result<Vec<u8>, BuildError> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(&cargo);
    command.current_dir(workspace).args([
        "build",
        "--release",
        "--locked",
        "--target",
        WASM_TARGET,
        "-p",
        package,
    ]);
    if !features.is_empty() {
        command.arg("--features").arg(features.join(","));
    }
    let output = command
        .arg("--target-dir")
        .arg(target_dir)
        // Flags meant for the outer (native) build must not leak into the wasm build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .map_err(|source| BuildError::Spawn {
            cargo: cargo.clone(),
            source,
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        return Err(BuildError::Failed {
            package: package.to_owned(),
            status: output.status,
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    let path = target_dir
        .join(WASM_TARGET)
        .join("release")
        .join(format!("{}.wasm", package.replace('-', "_")));
    if !path.exists() {
        return Err(BuildError::NoOutput(path));
    }
    std::fs::read(&path).map_err(|source| BuildError::Read { path, source })
}
