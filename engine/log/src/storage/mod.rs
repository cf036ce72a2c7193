//! The seam between the log and the disk: a flat directory of named files.
//!
//! Everything `locus-log` reads or writes goes through [`Storage`] and [`StorageFile`], so the same code runs on
//! the real file system ([`FsStorage`]) and on [`MemStorage`], an in-memory directory that models what a crash
//! keeps (only what was synced) and can inject faults (a failing or full disk).
//!
//! # Durability contract
//!
//! The log relies on exactly these guarantees, which POSIX file systems give with `fsync`:
//!
//! - bytes appended to a file are durable once [`StorageFile::sync`] returns `Ok`;
//! - a file's existence, a rename and a removal are durable once [`Storage::sync_dir`] returns `Ok`;
//! - [`Storage::rename`] is atomic: after a crash the target name holds the old file or the new one, never a mix;
//! - after a failed append an unknown prefix of the buffer may be in the file; after a failed sync nothing
//!   unsynced may be assumed durable, and a later sync that succeeds does not make it so (so the log stops
//!   writing at the first failure rather than retrying).

use std::fmt;
use std::io;

mod fs;
mod mem;

pub use fs::{FsStorage, LOCK_FILE};
pub use mem::{Fault, MemStorage};

/// A flat directory of named files. See the [module docs](self) for the durability contract.
pub trait Storage: Send + Sync + fmt::Debug {
    /// The names of all files, in no particular order.
    ///
    /// # Errors
    ///
    /// Any I/O error.
    fn list(&self) -> io::Result<Vec<String>>;

    /// The whole contents of file `name`.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotFound`] if there is no such file; any other I/O error.
    fn read(&self, name: &str) -> io::Result<Vec<u8>>;

    /// Create file `name`, empty, and open it for appending.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::AlreadyExists`] if the name is taken; any other I/O error.
    fn create(&self, name: &str) -> io::Result<Box<dyn StorageFile>>;

    /// Open the existing file `name` for appending at its end.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotFound`] if there is no such file; any other I/O error.
    fn open_append(&self, name: &str) -> io::Result<Box<dyn StorageFile>>;

    /// Rename file `from` to `to`, atomically replacing `to` if it exists.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotFound`] if `from` does not exist; any other I/O error.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;

    /// Remove file `name`.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotFound`] if there is no such file; any other I/O error.
    fn remove(&self, name: &str) -> io::Result<()>;

    /// Make every creation, rename and removal done so far durable (`fsync` of the directory).
    ///
    /// # Errors
    ///
    /// Any I/O error.
    fn sync_dir(&self) -> io::Result<()>;
}

/// A file opened for appending by [`Storage::create`] or [`Storage::open_append`].
pub trait StorageFile: Send + fmt::Debug {
    /// Append all of `buf` at the end of the file.
    ///
    /// # Errors
    ///
    /// Any I/O error ([`io::ErrorKind::StorageFull`] for a full disk). An unknown prefix of `buf` may then have
    /// been written.
    fn append(&mut self, buf: &[u8]) -> io::Result<()>;

    /// Make everything appended so far durable (`fdatasync`).
    ///
    /// # Errors
    ///
    /// Any I/O error. Nothing unsynced may then be assumed durable.
    fn sync(&mut self) -> io::Result<()>;

    /// Cut the file to its first `len` bytes (`len` at most its length); appends continue from there.
    ///
    /// # Errors
    ///
    /// Any I/O error.
    fn truncate(&mut self, len: u64) -> io::Result<()>;

    /// The file's length in bytes.
    fn len(&self) -> u64;

    /// Whether the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
