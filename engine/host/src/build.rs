//! Building a module crate to `wasm32-unknown-unknown` with cargo.
//!
//! Used by tests (which build their test module from source on every clean checkout) and by `locus serve` (which
//! builds the demo world). The build runs with its own `--target-dir`: when it runs under an outer cargo (a test),
//! the outer one holds the lock on the workspace's `target/debug`.
//!
//! Before the first build in a process, [`ensure_wasm_target`] checks that the toolchain cargo will use has the
//! standard library for [`WASM_TARGET`]. rustup installs the `targets` of `rust-toolchain.toml` only when it
//! installs the toolchain itself, so on a machine where the pinned toolchain was already there the target is
//! often missing: with `rustup` on `PATH` it is installed (one line on stderr says so); without it the error
//! names the command to run.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

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
    /// The toolchain has no standard library for [`WASM_TARGET`] and it could not be installed.
    #[error(
        "the Rust standard library for {WASM_TARGET} is not installed for the toolchain at `{}`, and {why}; \
         install it with `rustup target add {WASM_TARGET}` (run in the workspace, so that it applies to the \
         toolchain pinned by rust-toolchain.toml)",
        sysroot.display()
    )]
    MissingTarget {
        /// The toolchain's sysroot (`rustc --print sysroot`).
        sysroot: PathBuf,
        /// Why it was not installed here (no rustup on `PATH`, or what rustup said).
        why: String,
    },
    /// `rustc --print sysroot` failed, so the toolchain cargo will use is unknown.
    #[error("cannot ask `{rustc}` for its sysroot: {message}")]
    Sysroot {
        /// The rustc executable tried.
        rustc: String,
        /// What went wrong.
        message: String,
    },
    /// cargo could not say which workspace a crate belongs to.
    #[error("cannot find the workspace of `{}`: {message}", dir.display())]
    Locate {
        /// The crate's directory.
        dir: PathBuf,
        /// What cargo said.
        message: String,
    },
    /// The module file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Whether the toolchain whose sysroot is `sysroot` has the standard library for [`WASM_TARGET`] (a
/// `libstd-*.rlib` in `lib/rustlib/wasm32-unknown-unknown/lib`).
#[must_use]
pub fn has_wasm_target(sysroot: &Path) -> bool {
    let dir = sysroot.join("lib/rustlib").join(WASM_TARGET).join("lib");
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("libstd-") && name.ends_with(".rlib")
        })
    })
}

/// The sysroot of the rustc that cargo uses in `workspace`: `$RUSTC` or `rustc` from `PATH`, run there (so a
/// rustup proxy picks the toolchain of `rust-toolchain.toml`, or of `RUSTUP_TOOLCHAIN` under an outer cargo).
fn sysroot(workspace: &Path, rustc: &str) -> Result<PathBuf, BuildError> {
    let output = Command::new(rustc)
        .current_dir(workspace)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| BuildError::Sysroot {
            rustc: rustc.to_owned(),
            message: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(BuildError::Sysroot {
            rustc: rustc.to_owned(),
            message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&output.stdout).trim(),
    ))
}

/// Make sure the toolchain cargo uses in `workspace` can build for [`WASM_TARGET`], installing the target with
/// rustup when it is missing (saying so in one line on stderr). Checked once per process; concurrent callers in
/// one process wait for the first. A concurrent install by another process is tolerated: if rustup fails, the
/// target is looked for again before giving up.
///
/// # Errors
///
/// [`BuildError::MissingTarget`] when the target is missing and rustup is not on `PATH` or fails (the message
/// names the command to run), [`BuildError::Sysroot`] when rustc cannot be asked.
pub fn ensure_wasm_target(workspace: &Path) -> Result<(), BuildError> {
    static CHECKED: Mutex<bool> = Mutex::new(false);
    let mut checked = CHECKED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if *checked {
        return Ok(());
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    check_or_install(workspace, &rustc, "rustup")?;
    *checked = true;
    Ok(())
}

/// [`ensure_wasm_target`] with the rustc and rustup executables given (tests use stand-ins).
fn check_or_install(workspace: &Path, rustc: &str, rustup: &str) -> Result<(), BuildError> {
    let sysroot = sysroot(workspace, rustc)?;
    if has_wasm_target(&sysroot) {
        return Ok(());
    }
    install_wasm_target(workspace, &sysroot, rustup)
}

fn install_wasm_target(workspace: &Path, sysroot: &Path, rustup: &str) -> Result<(), BuildError> {
    let missing = |why: String| BuildError::MissingTarget {
        sysroot: sysroot.to_owned(),
        why,
    };
    let child = Command::new(rustup)
        .current_dir(workspace)
        .args(["target", "add", WASM_TARGET])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => missing("`rustup` is not on PATH".to_owned()),
            _ => missing(format!("`rustup` could not be started ({e})")),
        })?;
    // Once rustup runs (so only then): straight to stderr, not through print macros, which a test harness
    // captures; this line is for the person waiting on a build that is now downloading something.
    let _ = writeln!(
        std::io::stderr(),
        "locus: the toolchain at {} has no {WASM_TARGET} target; installing it: rustup target add {WASM_TARGET}",
        sysroot.display()
    );
    let out = child
        .wait_with_output()
        .map_err(|e| missing(format!("waiting for `rustup` failed ({e})")))?;
    if has_wasm_target(sysroot) {
        return Ok(());
    }
    Err(missing(format!(
        "`rustup target add {WASM_TARGET}` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// Where module builds from `workspace` put their output: `$CARGO_TARGET_DIR/<name>` when `CARGO_TARGET_DIR` is
/// set (a relative one is taken from `workspace`, as cargo does), `<workspace>/target/<name>` otherwise. Give each
/// feature set its own `name` (the output file's name does not depend on the features). Module builds need a
/// directory of their own: under an outer cargo (a test), the outer one holds the lock on its target directory.
#[must_use]
pub fn module_target_dir(workspace: &Path, name: &str) -> PathBuf {
    target_dir_in(workspace, std::env::var_os("CARGO_TARGET_DIR"), name)
}

/// [`module_target_dir`] with `CARGO_TARGET_DIR`'s value given.
fn target_dir_in(
    workspace: &Path,
    cargo_target_dir: Option<std::ffi::OsString>,
    name: &str,
) -> PathBuf {
    match cargo_target_dir {
        Some(dir) if !dir.is_empty() => workspace.join(dir).join(name),
        _ => workspace.join("target").join(name),
    }
}

/// Build `package` of the workspace at `workspace` in release mode for [`WASM_TARGET`] into `target_dir`, and
/// return the module's bytes.
///
/// Uses the `CARGO` environment variable (set when running under cargo) or `cargo` from `PATH`, so the toolchain
/// pinned by `rust-toolchain.toml` is used. A build that is up to date takes well under a second; one that is not
/// done after [`NOTICE_AFTER`] says so once on stderr ([`build_notice`]). The wasm target is installed first if
/// it is missing ([`ensure_wasm_target`]).
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
    ensure_wasm_target(workspace)?;
    let mut args: Vec<std::ffi::OsString> = vec!["--locked".into(), "-p".into(), package.into()];
    if !features.is_empty() {
        args.push("--features".into());
        args.push(features.join(",").into());
    }
    cargo_build(workspace, package, &args, target_dir)?;
    let path = target_dir
        .join(WASM_TARGET)
        .join("release")
        .join(format!("{}.wasm", package.replace('-', "_")));
    if !path.exists() {
        return Err(BuildError::NoOutput(path));
    }
    std::fs::read(&path).map_err(|source| BuildError::Read { path, source })
}

/// The root of the workspace the crate in `crate_dir` belongs to (the crate's own directory when it is a project of
/// its own), as `cargo locate-project --workspace` says: where its target directory is.
///
/// # Errors
///
/// [`BuildError::Locate`] when cargo cannot say (no `Cargo.toml` there, a broken manifest).
pub fn workspace_root(crate_dir: &Path) -> Result<PathBuf, BuildError> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let locate = |message: String| BuildError::Locate {
        dir: crate_dir.to_owned(),
        message,
    };
    let out = Command::new(cargo)
        .current_dir(crate_dir)
        .args(["locate-project", "--workspace", "--message-format", "plain"])
        .output()
        .map_err(|e| locate(e.to_string()))?;
    if !out.status.success() {
        return Err(locate(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    let manifest = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    manifest
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| locate(format!("no directory above {}", manifest.display())))
}

/// Build the module crate in `crate_dir` (the directory of its `Cargo.toml`: a project of its own, as `locus new`
/// writes, or a member of a workspace) in release mode for [`WASM_TARGET`] into `target_dir`, and return the
/// module's bytes. The `.wasm` file is the one cargo reports for that crate, whatever its library is named.
/// Otherwise as [`build_module`]; the crate's `Cargo.lock` is updated if it needs to be (not `--locked`: a new
/// project's lock file gains its own package on the first build).
///
/// # Errors
///
/// A [`BuildError`]: [`BuildError::NoOutput`] when the crate builds no `cdylib`.
pub fn build_crate(crate_dir: &Path, target_dir: &Path) -> Result<Vec<u8>, BuildError> {
    build_crate_file(crate_dir, target_dir).map(|(_, wasm)| wasm)
}

/// [`build_crate`], with the path of the `.wasm` file cargo wrote (beside it, its dep-info file:
/// [`sources_of`]).
///
/// # Errors
///
/// As [`build_crate`].
pub fn build_crate_file(
    crate_dir: &Path,
    target_dir: &Path,
) -> Result<(PathBuf, Vec<u8>), BuildError> {
    // Absolute: cargo runs in the crate's directory, and `--manifest-path` must not be taken from there again.
    let crate_dir = &std::path::absolute(crate_dir).unwrap_or_else(|_| crate_dir.to_owned());
    ensure_wasm_target(crate_dir)?;
    let manifest = crate_dir.join("Cargo.toml");
    let label = crate_dir.file_name().map_or_else(
        || crate_dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let args: Vec<std::ffi::OsString> = vec![
        "--manifest-path".into(),
        manifest.clone().into(),
        "--message-format=json-render-diagnostics".into(),
    ];
    let stdout = cargo_build(crate_dir, &label, &args, target_dir)?;
    let manifest = manifest.canonicalize().unwrap_or(manifest);
    let path = wasm_artifact(&stdout, &manifest)
        .ok_or_else(|| BuildError::NoOutput(target_dir.join(WASM_TARGET).join("release")))?;
    let wasm = std::fs::read(&path).map_err(|source| BuildError::Read {
        path: path.clone(),
        source,
    })?;
    Ok((path, wasm))
}

/// Every source file the module at `wasm` (a file [`build_crate_file`] returned) was built from, as cargo's
/// dep-info file beside it (`<name>.d`) lists them: the crate's sources, every file it `include_str!`s, and its
/// path dependencies' sources. Empty if there is no such file.
#[must_use]
pub fn sources_of(wasm: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(wasm.with_extension("d")) else {
        return Vec::new();
    };
    // Makefile syntax: `target: dep dep …`, spaces in paths escaped as `\ `, lines continued with `\`.
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((_, deps)) = line.split_once(": ") else {
            continue;
        };
        let mut current = String::new();
        let mut chars = deps.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&' ') => {
                    current.push(' ');
                    chars.next();
                }
                ' ' => {
                    if !current.is_empty() {
                        out.push(PathBuf::from(std::mem::take(&mut current)));
                    }
                }
                c => current.push(c),
            }
        }
        if !current.is_empty() {
            out.push(PathBuf::from(current));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The `.wasm` file of the crate whose manifest is `manifest` among cargo's JSON messages (`compiler-artifact`).
fn wasm_artifact(messages: &[u8], manifest: &Path) -> Option<PathBuf> {
    #[derive(serde::Deserialize)]
    struct Artifact {
        reason: String,
        #[serde(default)]
        manifest_path: Option<PathBuf>,
        #[serde(default)]
        filenames: Vec<PathBuf>,
    }
    String::from_utf8_lossy(messages)
        .lines()
        .filter_map(|line| serde_json::from_str::<Artifact>(line).ok())
        .filter(|a| a.reason == "compiler-artifact")
        .filter(|a| {
            a.manifest_path
                .as_deref()
                .is_some_and(|m| m == manifest || m.canonicalize().is_ok_and(|m| m == manifest))
        })
        .flat_map(|a| a.filenames)
        .rfind(|f| f.extension().is_some_and(|e| e == "wasm"))
}

/// How long a module build may run before [`build_notice`] says so.
pub const NOTICE_AFTER: std::time::Duration = std::time::Duration::from_millis(1500);

/// The line printed once per process and module when a build is not done after [`NOTICE_AFTER`] (a first build,
/// which compiles the module's dependencies for wasm).
#[must_use]
pub fn build_notice(module: &str, target_dir: &Path) -> String {
    format!(
        "locus: building the module `{module}` for {WASM_TARGET} into {} (the first build of a module compiles \
         its dependencies for wasm and takes a minute or so; later ones, a few seconds)",
        target_dir.display()
    )
}

/// Run `cargo build --release --target wasm32-unknown-unknown --target-dir target_dir ARGS` in `dir`; its stdout
/// on success. Says [`build_notice`] once for `module` if it runs past [`NOTICE_AFTER`].
fn cargo_build(
    dir: &Path,
    module: &str,
    args: &[std::ffi::OsString],
    target_dir: &Path,
) -> Result<Vec<u8>, BuildError> {
    static NOTIFIED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(&cargo);
    command
        .current_dir(dir)
        .args(["build", "--release", "--target", WASM_TARGET])
        .args(args)
        .arg("--target-dir")
        .arg(target_dir)
        // Flags meant for the outer (native) build must not leak into the wasm build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR");
    // The notice: a thread that speaks unless the build ends first (dropping the sender wakes it at once).
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let notice = {
        let line = build_notice(module, target_dir);
        let module = module.to_owned();
        std::thread::spawn(move || {
            if wait.recv_timeout(NOTICE_AFTER) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                let mut notified = NOTIFIED
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if !notified.contains(&module) {
                    notified.push(module);
                    // Straight to stderr, not through print macros, which a test harness captures.
                    let _ = writeln!(std::io::stderr(), "{line}");
                }
            }
        })
    };
    let output = command.output();
    drop(done);
    let _ = notice.join();
    let output = output.map_err(|source| BuildError::Spawn {
        cargo: cargo.clone(),
        source,
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        return Err(BuildError::Failed {
            package: module.to_owned(),
            status: output.status,
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(output.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    /// A scratch directory with a fake sysroot and executables.
    /// The tests that write scripts and run them take turns: a script still open for writing when another test's
    /// thread forks stays open in that child until it execs, and running the script meanwhile fails with "Text
    /// file busy" (ETXTBSY). Each [`Scratch`] holds its turn until dropped.
    static TURNS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    struct Scratch(
        PathBuf,
        #[expect(dead_code, reason = "held for its drop")] std::sync::MutexGuard<'static, ()>,
    );

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let turn = TURNS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let dir =
                std::env::temp_dir().join(format!("locus-build-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("sysroot/lib/rustlib")).expect("scratch");
            Scratch(dir, turn)
        }

        fn sysroot(&self) -> PathBuf {
            self.0.join("sysroot")
        }

        /// An executable shell script; returns its path.
        fn script(&self, name: &str, body: &str) -> String {
            let path = self.0.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("script");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            path.to_string_lossy().into_owned()
        }

        /// A rustc that reports the fake sysroot.
        fn rustc(&self) -> String {
            self.script("rustc", &format!("echo '{}'", self.sysroot().display()))
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn std_dir(sysroot: &Path) -> PathBuf {
        sysroot.join("lib/rustlib").join(WASM_TARGET).join("lib")
    }

    #[test]
    fn module_builds_go_where_cargo_target_dir_says() {
        let ws = Path::new("/ws");
        assert_eq!(target_dir_in(ws, None, "m"), Path::new("/ws/target/m"));
        assert_eq!(
            target_dir_in(ws, Some("".into()), "m"),
            Path::new("/ws/target/m")
        );
        assert_eq!(target_dir_in(ws, Some("/t".into()), "m"), Path::new("/t/m"));
        assert_eq!(
            target_dir_in(ws, Some("out".into()), "m"),
            Path::new("/ws/out/m"),
            "relative to the workspace"
        );
    }

    #[test]
    fn dep_info_lists_every_source() {
        let s = Scratch::new("depinfo");
        let wasm = s.0.join("m.wasm");
        std::fs::write(
            s.0.join("m.d"),
            "/t/m.wasm: /p/src/lib.rs /p/src/a\\ b.rs /assets/items.json\n\n/p/src/lib.rs:\n",
        )
        .unwrap();
        assert_eq!(
            sources_of(&wasm),
            ["/assets/items.json", "/p/src/a b.rs", "/p/src/lib.rs"].map(PathBuf::from)
        );
        assert!(sources_of(&s.0.join("none.wasm")).is_empty());
    }

    #[test]
    fn a_target_counts_only_with_its_std() {
        let s = Scratch::new("has");
        assert!(!has_wasm_target(&s.sysroot()));
        std::fs::create_dir_all(std_dir(&s.sysroot())).unwrap();
        assert!(!has_wasm_target(&s.sysroot()), "an empty target directory");
        std::fs::write(std_dir(&s.sysroot()).join("libcore-0123.rlib"), b"").unwrap();
        assert!(!has_wasm_target(&s.sysroot()), "core without std");
        std::fs::write(std_dir(&s.sysroot()).join("libstd-0123.rlib"), b"").unwrap();
        assert!(has_wasm_target(&s.sysroot()));
    }

    #[test]
    fn without_rustup_the_error_names_the_command() {
        let s = Scratch::new("norustup");
        let rustc = s.rustc();
        let missing = s.0.join("no-such-rustup");
        let err = check_or_install(&s.0, &rustc, &missing.to_string_lossy()).unwrap_err();
        assert!(matches!(err, BuildError::MissingTarget { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("rustup target add wasm32-unknown-unknown"),
            "{text}"
        );
        assert!(text.contains("not on PATH"), "{text}");
        assert!(text.contains(&s.sysroot().display().to_string()), "{text}");
    }

    #[test]
    fn rustup_installs_a_missing_target_once() {
        let s = Scratch::new("install");
        let rustc = s.rustc();
        let log = s.0.join("rustup.log");
        // A rustup that records its arguments and "installs" the target's std.
        let rustup = s.script(
            "rustup",
            &format!(
                "echo \"$@\" >> '{log}'\nmkdir -p '{dir}' && touch '{dir}/libstd-42.rlib'",
                log = log.display(),
                dir = std_dir(&s.sysroot()).display()
            ),
        );
        check_or_install(&s.0, &rustc, &rustup).expect("installed");
        assert!(has_wasm_target(&s.sysroot()));
        check_or_install(&s.0, &rustc, &rustup).expect("present");
        let calls = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            calls.trim(),
            format!("target add {WASM_TARGET}"),
            "one install, nothing else"
        );
    }

    #[test]
    fn a_failing_rustup_is_reported_with_what_it_said() {
        let s = Scratch::new("fails");
        let rustc = s.rustc();
        let rustup = s.script("rustup", "echo 'error: could not download' >&2; exit 1");
        let err = check_or_install(&s.0, &rustc, &rustup).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("could not download"), "{text}");
        assert!(
            text.contains("rustup target add wasm32-unknown-unknown"),
            "{text}"
        );
    }

    #[test]
    fn a_broken_rustc_is_a_sysroot_error() {
        let s = Scratch::new("rustc");
        let rustc = s.script("rustc", "echo 'no toolchain' >&2; exit 1");
        let err = check_or_install(&s.0, &rustc, "rustup").unwrap_err();
        assert!(
            matches!(&err, BuildError::Sysroot { message, .. } if message.contains("no toolchain")),
            "{err:?}"
        );
    }
}
