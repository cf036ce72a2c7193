//! [`FsStorage`]: a directory of the real file system.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Storage, StorageFile};

/// A [`Storage`] backed by one directory of the real file system.
///
/// File names are single path components: a name that is empty, `.`, `..` or contains `/`, `\` or a NUL byte
/// is rejected with [`io::ErrorKind::InvalidInput`]. Errors name the path they are about.
///
/// The directory is locked while any clone of the storage lives (an exclusive lock on its file [`LOCK_FILE`]),
/// so two processes never write one log. The operating system drops the lock when the process dies, `kill -9`
/// included.
#[derive(Clone, Debug)]
pub struct FsStorage {
    dir: PathBuf,
    _lock: Arc<File>,
}

/// The file in the data directory that [`FsStorage`] holds locked.
pub const LOCK_FILE: &str = "LOCK";

impl FsStorage {
    /// Use directory `dir`, creating it (and its missing parents) if needed. A directory this call creates is
    /// made durable by syncing its parent.
    ///
    /// # Errors
    ///
    /// Any I/O error creating the directory or syncing its parent, or if `dir` exists but is not a directory;
    /// [`io::ErrorKind::WouldBlock`] if another storage (in this process or another) has the directory locked.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<FsStorage> {
        let dir = dir.into();
        // The ancestors this call creates, deepest first.
        let missing: Vec<PathBuf> = dir
            .ancestors()
            .filter(|p| !p.as_os_str().is_empty())
            .take_while(|p| fs::symlink_metadata(p).is_err())
            .map(Path::to_path_buf)
            .collect();
        fs::create_dir_all(&dir).map_err(|e| with_path(e, &dir))?;
        if !fs::metadata(&dir).map_err(|e| with_path(e, &dir))?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{}: not a directory", dir.display()),
            ));
        }
        // Parents first, so each new entry is recorded in an already durable directory.
        for created in missing.iter().rev() {
            let parent = match created.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            sync_dir_path(parent)?;
        }
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| with_path(e, &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "{}: the data directory is in use by another server (it holds the lock on {LOCK_FILE})",
                        dir.display()
                    ),
                ));
            }
            Err(TryLockError::Error(e)) => return Err(with_path(e, &lock_path)),
        }
        Ok(FsStorage {
            dir,
            _lock: Arc::new(lock),
        })
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of file `name`, after checking that `name` is a plain file name.
    fn path(&self, name: &str) -> io::Result<PathBuf> {
        check_name(name)?;
        Ok(self.dir.join(name))
    }
}

impl Storage for FsStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| with_path(e, &self.dir))? {
            let entry = entry.map_err(|e| with_path(e, &self.dir))?;
            if entry
                .file_type()
                .map_err(|e| with_path(e, &entry.path()))?
                .is_dir()
            {
                continue;
            }
            // Not a name this storage could have created, or its lock file.
            if let Ok(name) = entry.file_name().into_string()
                && name != LOCK_FILE
            {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        let path = self.path(name)?;
        fs::read(&path).map_err(|e| with_path(e, &path))
    }

    fn create(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        let path = self.path(name)?;
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| with_path(e, &path))?;
        Ok(Box::new(FsFile { file, len: 0, path }))
    }

    fn open_append(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        let path = self.path(name)?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| with_path(e, &path))?;
        let len = file.metadata().map_err(|e| with_path(e, &path))?.len();
        Ok(Box::new(FsFile { file, len, path }))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let from = self.path(from)?;
        let to = self.path(to)?;
        fs::rename(&from, &to).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("rename {} to {}: {e}", from.display(), to.display()),
            )
        })
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let path = self.path(name)?;
        fs::remove_file(&path).map_err(|e| with_path(e, &path))
    }

    fn sync_dir(&self) -> io::Result<()> {
        sync_dir_path(&self.dir)
    }
}

/// A file of an [`FsStorage`], opened for appending.
#[derive(Debug)]
struct FsFile {
    /// Opened in append mode, so every write goes to the end, also after [`StorageFile::truncate`].
    file: File,
    /// The file's length as far as this handle knows.
    len: u64,
    /// For error messages.
    path: PathBuf,
}

impl StorageFile for FsFile {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        match self.file.write_all(buf) {
            Ok(()) => {
                self.len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Some prefix of `buf` may have been written.
                if let Ok(meta) = self.file.metadata() {
                    self.len = meta.len();
                }
                Err(with_path(e, &self.path))
            }
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data().map_err(|e| with_path(e, &self.path))
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        if len > self.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: cannot truncate to {len} bytes, the file has {}",
                    self.path.display(),
                    self.len
                ),
            ));
        }
        self.file
            .set_len(len)
            .map_err(|e| with_path(e, &self.path))?;
        self.len = len;
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }
}

/// Reject names that are not a single, ordinary path component.
fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid file name {name:?}: must be a single path component"),
        ));
    }
    if name == LOCK_FILE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{LOCK_FILE} is the storage's lock file"),
        ));
    }
    Ok(())
}

/// `fsync` directory `dir`, making the creations, renames and removals of its entries durable.
#[cfg(unix)]
fn sync_dir_path(dir: &Path) -> io::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| with_path(e, dir))
}

/// Directories cannot be opened (so not synced) through `std` here; the file system's metadata journal has to do.
#[cfg(not(unix))]
fn sync_dir_path(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// `err` with `path` in front of its message, keeping its kind.
fn with_path(err: io::Error, path: &Path) -> io::Error {
    io::Error::new(err.kind(), format!("{}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind<T: std::fmt::Debug>(r: io::Result<T>) -> io::ErrorKind {
        r.expect_err("expected an error").kind()
    }

    fn sorted(mut names: Vec<String>) -> Vec<String> {
        names.sort();
        names
    }

    #[test]
    fn a_locked_directory_refuses_a_second_storage_until_released() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let first = FsStorage::open(tmp.path()).expect("open");
        let clone = first.clone();
        let err = FsStorage::open(tmp.path()).expect_err("locked");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(err.to_string().contains("in use"), "{err}");
        drop(first);
        // A clone still holds it.
        assert!(FsStorage::open(tmp.path()).is_err());
        drop(clone);
        FsStorage::open(tmp.path()).expect("released");
    }

    #[test]
    fn round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = FsStorage::open(tmp.path().join("a").join("b")).unwrap();
        assert!(storage.dir().is_dir());
        assert_eq!(storage.list().unwrap(), Vec::<String>::new());

        let mut f = storage.create("seg-1").unwrap();
        assert!(f.is_empty());
        f.append(b"hello ").unwrap();
        f.append(b"world").unwrap();
        assert_eq!(f.len(), 11);
        f.sync().unwrap();
        storage.sync_dir().unwrap();
        assert_eq!(storage.read("seg-1").unwrap(), b"hello world");

        // Truncate, then appends continue at the new end.
        f.truncate(5).unwrap();
        assert_eq!(f.len(), 5);
        f.append(b"!").unwrap();
        f.sync().unwrap();
        assert_eq!(storage.read("seg-1").unwrap(), b"hello!");
        assert_eq!(f.len(), 6);
        assert_eq!(kind(f.truncate(7)), io::ErrorKind::InvalidInput);
        drop(f);

        assert_eq!(kind(storage.create("seg-1")), io::ErrorKind::AlreadyExists);

        // Reopen: appends at the end, length known.
        let mut f = storage.open_append("seg-1").unwrap();
        assert_eq!(f.len(), 6);
        f.append(b"?").unwrap();
        drop(f);
        assert_eq!(storage.read("seg-1").unwrap(), b"hello!?");

        // Rename replaces the target.
        let mut g = storage.create("tmp").unwrap();
        g.append(b"new").unwrap();
        g.sync().unwrap();
        drop(g);
        storage.create("snap").unwrap().append(b"old").unwrap();
        storage.rename("tmp", "snap").unwrap();
        storage.sync_dir().unwrap();
        assert_eq!(storage.read("snap").unwrap(), b"new");
        assert_eq!(kind(storage.read("tmp")), io::ErrorKind::NotFound);

        // Directories are not listed.
        fs::create_dir(storage.dir().join("subdir")).unwrap();
        assert_eq!(sorted(storage.list().unwrap()), ["seg-1", "snap"]);

        storage.remove("seg-1").unwrap();
        storage.sync_dir().unwrap();
        assert_eq!(storage.list().unwrap(), ["snap"]);

        assert_eq!(kind(storage.read("seg-1")), io::ErrorKind::NotFound);
        assert_eq!(kind(storage.remove("seg-1")), io::ErrorKind::NotFound);
        assert_eq!(kind(storage.open_append("seg-1")), io::ErrorKind::NotFound);
        assert_eq!(kind(storage.rename("seg-1", "x")), io::ErrorKind::NotFound);
        // Errors name the file.
        let err = storage.read("seg-1").unwrap_err();
        assert!(err.to_string().contains("seg-1"), "{err}");
    }

    #[test]
    fn open_existing_directory_keeps_files() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = FsStorage::open(tmp.path()).unwrap();
        storage.create("f").unwrap().append(b"x").unwrap();
        drop(storage);
        let again = FsStorage::open(tmp.path()).unwrap();
        assert_eq!(again.read("f").unwrap(), b"x");
        assert_eq!(again.dir(), tmp.path());
    }

    #[test]
    fn open_rejects_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("file");
        fs::write(&path, b"x").unwrap();
        assert!(FsStorage::open(&path).is_err());
    }

    #[test]
    fn invalid_names_are_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = FsStorage::open(tmp.path().join("d")).unwrap();
        for bad in ["", ".", "..", "a/b", "../x", "a\\b", "a\0b"] {
            assert_eq!(
                kind(storage.create(bad)),
                io::ErrorKind::InvalidInput,
                "{bad:?}"
            );
            assert_eq!(
                kind(storage.read(bad)),
                io::ErrorKind::InvalidInput,
                "{bad:?}"
            );
            assert_eq!(
                kind(storage.rename("ok", bad)),
                io::ErrorKind::InvalidInput,
                "{bad:?}"
            );
        }
        // Nothing escaped the directory.
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
        assert_eq!(storage.list().unwrap(), Vec::<String>::new());
    }
}
