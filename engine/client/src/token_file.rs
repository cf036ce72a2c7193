//! The token file: a client's secret token kept on disk as 64 hex digits, so its identity outlives the process.
//!
//! Written atomically (a temporary file in the same directory, synced, then renamed over the old one; parent
//! directories are created), readable only by its owner on Unix.

use std::io::Write;
use std::path::{Path, PathBuf};

use locus_types::protocol::Token;
use thiserror::Error;

/// Why a token file cannot be read or written.
#[derive(Debug, Error)]
pub enum TokenFileError {
    /// Reading, creating or renaming failed.
    #[error("token file {}: {source}", path.display())]
    Io {
        /// The token file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file does not hold 64 hex digits.
    #[error("token file {} does not hold a token (64 hex digits)", path.display())]
    Malformed {
        /// The token file.
        path: PathBuf,
    },
}

/// The token in `path`, or `None` if there is no such file.
///
/// # Errors
///
/// [`TokenFileError`] if it cannot be read or does not hold a token.
pub fn load(path: &Path) -> Result<Option<Token>, TokenFileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Token::from_hex(&text)
            .map(Some)
            .ok_or_else(|| TokenFileError::Malformed {
                path: path.to_owned(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TokenFileError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Write `token` to `path` atomically (see the [module docs](self)).
///
/// # Errors
///
/// [`TokenFileError::Io`].
pub fn save(path: &Path, token: &Token) -> Result<(), TokenFileError> {
    let io = |source| TokenFileError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let name = path.file_name().ok_or_else(|| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a file path",
        ))
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(token.to_hex().as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_through_a_file_in_new_directories() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/token");
        assert!(load(&path).unwrap().is_none());
        save(&path, &Token([0x5a; 32])).unwrap();
        assert_eq!(load(&path).unwrap(), Some(Token([0x5a; 32])));
        save(&path, &Token([0x01; 32])).unwrap();
        assert_eq!(load(&path).unwrap(), Some(Token([0x01; 32])));
        // No temporary file is left behind.
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
        std::fs::write(&path, "not hex").unwrap();
        assert!(matches!(load(&path), Err(TokenFileError::Malformed { .. })));
    }
}
