//! `locus new`: a module project of one's own.
//!
//! [`new_module`] writes a standalone module crate: one table, one client reducer, a lifecycle and a tick reducer,
//! tests with `locus-testing`, a README, the engine's `rust-toolchain.toml`, and the engine's `Cargo.lock` (so the
//! project builds with the very dependency versions the engine was tested with, from cargo's cache when it has
//! them; cargo adds the project's own package to it on the first build).
//!
//! The project depends on `locus-module` and `locus-testing` by path, in the engine checkout given (by default the
//! one this binary was built from): Locus is not on crates.io, and a path keeps the project on exactly the engine
//! its server runs.
//!
//! Invariants: nothing is written unless every check passed (a valid crate name, an engine checkout that has the
//! two crates, a destination that does not exist or is an empty directory); the files written are exactly
//! [`FILES`] plus `rust-toolchain.toml` and `Cargo.lock`.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// The template's files: their path in the project and their text, with `{{name}}` (the package name),
/// `{{crate}}` (its Rust name: `-` as `_`) and `{{engine}}` (the engine checkout) to fill in.
pub const FILES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../templates/module/Cargo.toml.template"),
    ),
    (
        ".gitignore",
        include_str!("../templates/module/gitignore.template"),
    ),
    ("README.md", include_str!("../templates/module/README.md")),
    ("src/lib.rs", include_str!("../templates/module/src/lib.rs")),
    (
        "tests/module.rs",
        include_str!("../templates/module/tests/module.rs"),
    ),
];

/// Why `locus new` wrote nothing.
#[derive(Debug, Error)]
pub enum NewError {
    /// Not a usable package name.
    #[error(
        "`{0}` cannot name a module crate: use lowercase ASCII letters, digits, `-` and `_`, starting with a letter \
         (e.g. `my-world`)"
    )]
    BadName(String),
    /// The destination exists and is not an empty directory.
    #[error("`{0}` already exists and is not an empty directory")]
    Exists(PathBuf),
    /// The engine checkout lacks what the project depends on.
    #[error(
        "`{}` is not a Locus engine checkout (no {missing}); pass the engine's directory with --engine",
        engine.display()
    )]
    NoEngine {
        /// The directory given or assumed.
        engine: PathBuf,
        /// The first file missing.
        missing: &'static str,
    },
    /// Writing failed (the files written so far are left).
    #[error("cannot write `{path}`: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Whether `name` can name a package and its library: `[a-z][a-z0-9_-]*`, at most 64 characters, and not a name
/// the build would collide with.
#[must_use]
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 64
        && ![
            "test",
            "core",
            "std",
            "alloc",
            "proc_macro",
            "locus_module",
            "locus_testing",
        ]
        .contains(&name.replace('-', "_").as_str())
}

/// The template's `text` for package `name` on the engine at `engine`.
#[must_use]
pub fn render(text: &str, name: &str, engine: &Path) -> String {
    text.replace("{{name}}", name)
        .replace("{{crate}}", &name.replace('-', "_"))
        .replace("{{engine}}", &engine.display().to_string())
}

/// Write a new module project named `name` into `dest`, depending on the engine checkout at `engine`. Returns
/// the files written, relative to `dest`.
///
/// # Errors
///
/// A [`NewError`]; nothing is written unless all checks pass.
pub fn new_module(name: &str, dest: &Path, engine: &Path) -> Result<Vec<PathBuf>, NewError> {
    if !valid_name(name) {
        return Err(NewError::BadName(name.to_owned()));
    }
    let engine = engine.canonicalize().map_err(|_| NewError::NoEngine {
        engine: engine.to_owned(),
        missing: "such directory",
    })?;
    for missing in [
        "engine/module/Cargo.toml",
        "engine/testing/Cargo.toml",
        "rust-toolchain.toml",
        "Cargo.lock",
    ] {
        if !engine.join(missing).is_file() {
            return Err(NewError::NoEngine { engine, missing });
        }
    }
    if dest.exists() && std::fs::read_dir(dest).map_or(true, |mut d| d.next().is_some()) {
        return Err(NewError::Exists(dest.to_owned()));
    }
    let mut files: Vec<(PathBuf, Vec<u8>)> = FILES
        .iter()
        .map(|(path, text)| {
            (
                PathBuf::from(path),
                render(text, name, &engine).into_bytes(),
            )
        })
        .collect();
    for copied in ["rust-toolchain.toml", "Cargo.lock"] {
        let path = engine.join(copied);
        let bytes = std::fs::read(&path).map_err(|source| NewError::Write { path, source })?;
        files.push((PathBuf::from(copied), bytes));
    }
    for (path, bytes) in &files {
        let full = dest.join(path);
        let write = |source| NewError::Write {
            path: full.clone(),
            source,
        };
        if let Some(dir) = full.parent() {
            std::fs::create_dir_all(dir).map_err(write)?;
        }
        std::fs::write(&full, bytes).map_err(write)?;
    }
    Ok(files.into_iter().map(|(path, _)| path).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn names_are_checked() {
        for good in ["my-world", "w", "world_2", "a-b_c9"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "",
            "My-World",
            "9lives",
            "-x",
            "a b",
            "é",
            "test",
            "std",
            "locus-module",
            &"x".repeat(65),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn every_placeholder_is_filled() {
        for (path, text) in FILES {
            let out = render(text, "my-world", Path::new("/engine"));
            assert!(!out.contains("{{"), "{path}: {out}");
        }
        let tests = render(FILES[4].1, "my-world", Path::new("/engine"));
        assert!(
            tests.contains("use my_world::"),
            "the Rust name in use paths"
        );
        let manifest = render(FILES[0].1, "my-world", Path::new("/engine"));
        assert!(manifest.contains("name = \"my-world\""));
        assert!(manifest.contains("path = \"/engine/engine/module\""));
    }

    #[test]
    fn nothing_is_written_on_a_refusal_and_everything_on_success() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("w");
        assert!(matches!(
            new_module("Bad Name", &dest, &engine()),
            Err(NewError::BadName(_))
        ));
        assert!(matches!(
            new_module("w", &dest, dir.path()),
            Err(NewError::NoEngine {
                missing: "engine/module/Cargo.toml",
                ..
            })
        ));
        assert!(!dest.exists(), "nothing written");
        let written = new_module("w", &dest, &engine()).unwrap();
        assert_eq!(written.len(), FILES.len() + 2);
        for path in &written {
            assert!(dest.join(path).is_file(), "{}", path.display());
        }
        assert!(matches!(
            new_module("w", &dest, &engine()),
            Err(NewError::Exists(_))
        ));
    }
}
