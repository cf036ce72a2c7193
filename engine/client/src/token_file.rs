//! The token file: a client's secret token kept on disk as 64 hex digits, so its identity outlives the process.
//!
//! Written atomically (a temporary file in the same directory, synced, then renamed over the old one; parent
//! directories are created), readable only by its owner on Unix: [`write_atomic`], which the server uses for its
//! other files too.

use std::io::Write;
use std::path::{Path, PathBuf};

use locus_protocol::Token;
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
    let mut text = token.to_hex();
    text.push('\n');
    write_atomic(path, text.as_bytes(), true).map_err(|source| TokenFileError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Write `bytes` to `path` so that a crash at any moment leaves either the old file or the new one whole, never a
/// part: parent directories are created, the bytes go to a temporary file in the same directory
/// (`.<name>.tmp-<pid>`), which is synced and renamed over `path`, and then the directory is synced. With
/// `owner_only` the file is readable and writable by its owner only (mode 0600 on Unix). On an error the temporary
/// file is removed; one left behind by a crash is never read and does not stop a later write. The server writes
/// its certificate, private key and stored module with it too.
///
/// # Errors
///
/// The first I/O error.
pub fn write_atomic(path: &Path, bytes: &[u8], owner_only: bool) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if owner_only {
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        }
        #[cfg(not(unix))]
        let _ = owner_only;
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    // The rename is durable once the directory is.
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
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

    #[test]
    fn an_atomic_write_ignores_a_temporary_file_left_by_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.der");
        // What a crash mid-write leaves: a partial temporary file (another process's, or this one's), no target.
        let leftover = dir.path().join(".key.der.tmp-1");
        std::fs::write(&leftover, b"par").unwrap();
        let ours = dir
            .path()
            .join(format!(".key.der.tmp-{}", std::process::id()));
        std::fs::write(&ours, b"partial").unwrap();
        write_atomic(&path, b"whole", true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"whole");
        assert!(
            !ours.exists(),
            "this process's temporary file became the file"
        );
        write_atomic(&path, b"again", false).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"again");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let token = dir.path().join("token");
            write_atomic(&token, b"t", true).unwrap();
            let mode = std::fs::metadata(&token).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
