//! [`MemStorage`]: an in-memory directory that models crashes and injects faults.
//!
//! Files are modelled as inodes. Each inode holds the bytes reads see now (`data`) and the bytes a crash keeps
//! (`durable`); [`StorageFile::sync`] copies the first into the second. The directory is two maps from names
//! to inodes: the current one, which creations, renames and removals change, and the durable one, which
//! [`Storage::sync_dir`] copies the current one into. [`MemStorage::crash`] builds what a crash leaves from the
//! durable halves.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{Storage, StorageFile};

/// A fault [`MemStorage::inject`] makes the storage show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// After `after` more bytes have been appended (across all files), appends fail with an I/O error
    /// ([`io::ErrorKind::Other`], "injected I/O error"). The append that crosses the limit first writes the
    /// part that fits (a short write). Every later append fails too.
    Io {
        /// How many more bytes appends may write.
        after: u64,
    },
    /// The disk holds `capacity` bytes in all: an append that would grow the total size of the live files
    /// (named in the directory, or still open) beyond it writes what fits and fails with
    /// [`io::ErrorKind::StorageFull`]. Removing or truncating files frees space again.
    Full {
        /// The total size the live files may reach.
        capacity: u64,
    },
    /// [`StorageFile::sync`] fails ([`io::ErrorKind::Other`], "injected fsync error") after `after` more
    /// successful syncs, every time from then on. A failed sync makes nothing durable.
    Sync {
        /// How many more syncs succeed.
        after: u64,
    },
    /// [`Storage::sync_dir`] fails ([`io::ErrorKind::Other`], "injected directory fsync error") after `after`
    /// more successful calls, every time from then on. A failed call makes nothing durable.
    SyncDir {
        /// How many more directory syncs succeed.
        after: u64,
    },
}

/// An in-memory [`Storage`] that models what a crash keeps and can inject [faults](Fault).
///
/// Clones share the same directory. What survives a crash follows the
/// [durability contract](super#durability-contract) and nothing more: appended bytes only once their file was
/// synced, creations, renames and removals only once the directory was synced. [`MemStorage::crash`] returns
/// the state a crash at this moment leaves; with [torn writes](MemStorage::set_torn_writes) on, it also keeps a
/// random prefix of each file's unsynced appends, as a disk may.
///
/// Open files keep referring to the same file when it is renamed or removed, as on POSIX.
///
/// File names follow the rules of [`FsStorage`](super::FsStorage): a name that is empty, `.`, `..` or contains
/// `/`, `\` or a NUL byte is rejected with [`io::ErrorKind::InvalidInput`].
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    inner: Arc<Mutex<Inner>>,
}

/// Index of an inode in [`Inner::inodes`].
type InodeId = usize;

#[derive(Default)]
struct Inner {
    /// Every inode ever made; unreachable ones have their bytes freed but keep their slot.
    inodes: Vec<Inode>,
    /// The directory now.
    dir: BTreeMap<String, InodeId>,
    /// The directory as of the last successful `sync_dir`: what a crash keeps.
    durable_dir: BTreeMap<String, InodeId>,
    fault: Option<FaultState>,
    /// The state of the generator choosing torn-write lengths; `None` when torn writes are off.
    torn: Option<u64>,
}

#[derive(Debug, Default)]
struct Inode {
    /// What reads see now.
    data: Vec<u8>,
    /// What survives a crash.
    durable: Vec<u8>,
    /// The lowest offset of `data` changed since the last sync (`data.len()` if none). Below it, `data` and
    /// `durable` agree, so a sync only has to copy from here on. Never above `data.len()`: only a truncate
    /// lowers that, and it lowers `dirty_from` with it.
    dirty_from: usize,
    /// How many [`MemFile`]s refer to this inode.
    handles: usize,
}

/// A [`Fault`] and how far it has progressed.
#[derive(Debug)]
enum FaultState {
    Io { remaining: u64, tripped: bool },
    Full { capacity: u64 },
    Sync { remaining: u64 },
    SyncDir { remaining: u64 },
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files: BTreeMap<&str, usize> = self
            .dir
            .iter()
            .map(|(name, &id)| (name.as_str(), self.inodes[id].data.len()))
            .collect();
        let durable: BTreeMap<&str, usize> = self
            .durable_dir
            .iter()
            .map(|(name, &id)| (name.as_str(), self.inodes[id].durable.len()))
            .collect();
        f.debug_struct("Inner")
            .field("files", &files)
            .field("durable_files", &durable)
            .field("fault", &self.fault)
            .field("torn_writes", &self.torn.is_some())
            .finish()
    }
}

impl MemStorage {
    /// An empty storage, without faults or torn writes.
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// What a crash at this moment leaves, as a new, independent storage: the files named in the directory as
    /// of the last successful [`sync_dir`](Storage::sync_dir), each holding what its last successful
    /// [`sync`](StorageFile::sync) made durable, all of it durable in the new storage.
    ///
    /// With [torn writes](MemStorage::set_torn_writes) on, a file whose changes since its last sync are pure
    /// appends also keeps a pseudo-random prefix (possibly empty, possibly all) of those appends. The new
    /// storage has no fault and continues the torn-write sequence of this one.
    pub fn crash(&self) -> MemStorage {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let mut after = Inner {
            torn: inner.torn,
            ..Inner::default()
        };
        let mut new_ids: BTreeMap<InodeId, InodeId> = BTreeMap::new();
        for (name, &id) in &inner.durable_dir {
            let new_id = match new_ids.get(&id) {
                Some(&new_id) => new_id,
                None => {
                    let inode = &inner.inodes[id];
                    let mut bytes = inode.durable.clone();
                    // Pure appends since the last sync: a prefix of them may have reached the disk.
                    if let Some(state) = &mut after.torn
                        && inode.dirty_from >= inode.durable.len()
                    {
                        let tail = &inode.data[inode.durable.len()..];
                        bytes.extend_from_slice(&tail[..torn_len(state, tail.len())]);
                    }
                    let new_id = after.inodes.len();
                    after.inodes.push(Inode::durable(bytes));
                    new_ids.insert(id, new_id);
                    new_id
                }
            };
            after.dir.insert(name.clone(), new_id);
        }
        after.durable_dir = after.dir.clone();
        // Continue the sequence here too, so the next crash of either storage is as random as this one.
        inner.torn = after.torn;
        MemStorage {
            inner: Arc::new(Mutex::new(after)),
        }
    }

    /// Turn torn writes on (`Some(seed)`, the seed of the generator choosing how much of each file's unsynced
    /// appends a [`crash`](MemStorage::crash) keeps) or off (`None`, the default: a crash keeps nothing
    /// unsynced). The same seed and operations give the same crashes.
    pub fn set_torn_writes(&self, seed: Option<u64>) {
        self.lock().torn = seed;
    }

    /// Make the storage show `fault` from now on, replacing any previous fault. Its counters start now.
    pub fn inject(&self, fault: Fault) {
        self.lock().fault = Some(match fault {
            Fault::Io { after } => FaultState::Io {
                remaining: after,
                tripped: false,
            },
            Fault::Full { capacity } => FaultState::Full { capacity },
            Fault::Sync { after } => FaultState::Sync { remaining: after },
            Fault::SyncDir { after } => FaultState::SyncDir { remaining: after },
        });
    }

    /// Remove the injected fault, if any.
    pub fn clear_fault(&self) {
        self.lock().fault = None;
    }

    /// The current contents of file `name` (synced or not), or `None` if there is no such file.
    pub fn file(&self, name: &str) -> Option<Vec<u8>> {
        let inner = self.lock();
        inner.dir.get(name).map(|&id| inner.inodes[id].data.clone())
    }

    /// Make file `name` hold exactly `bytes`, durably, as if written to the disk directly: it is created if
    /// missing and its name made durable. Open files of that name see the new contents. Faults do not apply.
    /// Meant for tests that corrupt files.
    ///
    /// # Panics
    ///
    /// If `name` is not a valid file name.
    pub fn set_file(&self, name: &str, bytes: Vec<u8>) {
        if let Err(e) = check_name(name) {
            panic!("MemStorage::set_file: {e}");
        }
        let mut inner = self.lock();
        let id = match inner.dir.get(name) {
            Some(&id) => id,
            None => {
                let id = inner.new_inode();
                inner.dir.insert(name.to_owned(), id);
                id
            }
        };
        let inode = &mut inner.inodes[id];
        inode.durable.clone_from(&bytes);
        inode.dirty_from = bytes.len();
        inode.data = bytes;
        if let Some(old) = inner.durable_dir.insert(name.to_owned(), id)
            && old != id
        {
            inner.free_if_unreachable(old);
        }
    }

    /// The total size of the live files: those named in the directory and those still open. This is what
    /// [`Fault::Full`] limits.
    pub fn total_bytes(&self) -> u64 {
        self.lock().total_bytes()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    fn open(&self, id: InodeId) -> Box<dyn StorageFile> {
        Box::new(MemFile {
            storage: Arc::clone(&self.inner),
            inode: id,
        })
    }
}

impl Storage for MemStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.lock().dir.keys().cloned().collect())
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        check_name(name)?;
        let inner = self.lock();
        let id = inner.lookup(name)?;
        Ok(inner.inodes[id].data.clone())
    }

    fn create(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        check_name(name)?;
        let id = {
            let mut inner = self.lock();
            if inner.dir.contains_key(name) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("file `{name}` already exists"),
                ));
            }
            let id = inner.new_inode();
            inner.inodes[id].handles += 1;
            inner.dir.insert(name.to_owned(), id);
            id
        };
        Ok(self.open(id))
    }

    fn open_append(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        check_name(name)?;
        let id = {
            let mut inner = self.lock();
            let id = inner.lookup(name)?;
            inner.inodes[id].handles += 1;
            id
        };
        Ok(self.open(id))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        check_name(from)?;
        check_name(to)?;
        let mut inner = self.lock();
        let id = inner.lookup(from)?;
        if from == to {
            return Ok(());
        }
        inner.dir.remove(from);
        if let Some(old) = inner.dir.insert(to.to_owned(), id) {
            inner.free_if_unreachable(old);
        }
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        check_name(name)?;
        let mut inner = self.lock();
        let id = inner.lookup(name)?;
        inner.dir.remove(name);
        inner.free_if_unreachable(id);
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        let mut inner = self.lock();
        if let Some(FaultState::SyncDir { remaining }) = &mut inner.fault {
            if *remaining == 0 {
                return Err(io::Error::other("injected directory fsync error"));
            }
            *remaining -= 1;
        }
        let now = inner.dir.clone();
        let old = std::mem::replace(&mut inner.durable_dir, now);
        for id in old.into_values() {
            inner.free_if_unreachable(id);
        }
        Ok(())
    }
}

impl Inner {
    fn new_inode(&mut self) -> InodeId {
        self.inodes.push(Inode::default());
        self.inodes.len() - 1
    }

    fn lookup(&self, name: &str) -> io::Result<InodeId> {
        self.dir
            .get(name)
            .copied()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no file `{name}`")))
    }

    /// Free the bytes of inode `id` if nothing can reach it any more: no name now, no name a crash would
    /// bring back, no open file.
    fn free_if_unreachable(&mut self, id: InodeId) {
        if self.inodes[id].handles == 0
            && !self.dir.values().any(|&i| i == id)
            && !self.durable_dir.values().any(|&i| i == id)
        {
            self.inodes[id] = Inode::default();
        }
    }

    /// The total size of the inodes named in the directory or open.
    fn total_bytes(&self) -> u64 {
        let named: BTreeSet<InodeId> = self.dir.values().copied().collect();
        self.inodes
            .iter()
            .enumerate()
            .filter(|(id, inode)| inode.handles > 0 || named.contains(id))
            .map(|(_, inode)| inode.data.len() as u64)
            .sum()
    }

    /// How many of `len` bytes an append may write under the injected fault, and the error it then fails
    /// with, if any. Updates the fault's counter.
    fn admit_append(&mut self, len: usize) -> (usize, Option<io::Error>) {
        let total = match self.fault {
            Some(FaultState::Full { .. }) => self.total_bytes(),
            _ => 0,
        };
        match &mut self.fault {
            Some(FaultState::Io { tripped: true, .. }) => (0, Some(injected_io_error())),
            Some(FaultState::Io { remaining, tripped }) => {
                if len as u64 <= *remaining {
                    *remaining -= len as u64;
                    (len, None)
                } else {
                    let fits = usize::try_from(*remaining).unwrap_or(len).min(len);
                    *remaining = 0;
                    *tripped = true;
                    (fits, Some(injected_io_error()))
                }
            }
            Some(FaultState::Full { capacity }) => {
                let free = capacity.saturating_sub(total);
                if len as u64 <= free {
                    (len, None)
                } else {
                    let fits = usize::try_from(free).unwrap_or(len).min(len);
                    let err = io::Error::new(io::ErrorKind::StorageFull, "no space left on device");
                    (fits, Some(err))
                }
            }
            Some(FaultState::Sync { .. } | FaultState::SyncDir { .. }) | None => (len, None),
        }
    }
}

impl Inode {
    /// An inode holding `bytes`, all durable.
    fn durable(bytes: Vec<u8>) -> Inode {
        Inode {
            data: bytes.clone(),
            dirty_from: bytes.len(),
            durable: bytes,
            handles: 0,
        }
    }

    fn append(&mut self, buf: &[u8]) {
        // Bytes below the old length are unchanged, and `dirty_from` is at most that already.
        self.data.extend_from_slice(buf);
    }

    fn truncate(&mut self, len: usize) {
        self.data.truncate(len);
        self.dirty_from = self.dirty_from.min(len);
    }

    /// Make `durable` equal `data`, copying only what changed since the last sync.
    fn sync(&mut self) {
        let keep = self.dirty_from.min(self.durable.len());
        self.durable.truncate(keep);
        self.durable.extend_from_slice(&self.data[keep..]);
        self.durable.truncate(self.data.len());
        self.dirty_from = self.data.len();
    }
}

/// A file of a [`MemStorage`], opened for appending. Refers to the inode, not the name.
struct MemFile {
    storage: Arc<Mutex<Inner>>,
    inode: InodeId,
}

impl fmt::Debug for MemFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemFile")
            .field("inode", &self.inode)
            .finish_non_exhaustive()
    }
}

impl StorageFile for MemFile {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut inner = lock(&self.storage);
        let (fits, err) = inner.admit_append(buf.len());
        inner.inodes[self.inode].append(&buf[..fits]);
        match err {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut inner = lock(&self.storage);
        if let Some(FaultState::Sync { remaining }) = &mut inner.fault {
            if *remaining == 0 {
                return Err(io::Error::other("injected fsync error"));
            }
            *remaining -= 1;
        }
        inner.inodes[self.inode].sync();
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let mut inner = lock(&self.storage);
        let inode = &mut inner.inodes[self.inode];
        match usize::try_from(len) {
            Ok(len) if len <= inode.data.len() => {
                inode.truncate(len);
                Ok(())
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "cannot truncate to {len} bytes, the file has {}",
                    inode.data.len()
                ),
            )),
        }
    }

    fn len(&self) -> u64 {
        lock(&self.storage).inodes[self.inode].data.len() as u64
    }
}

impl Drop for MemFile {
    fn drop(&mut self) {
        let mut inner = lock(&self.storage);
        inner.inodes[self.inode].handles -= 1;
        inner.free_if_unreachable(self.inode);
    }
}

/// Lock `inner`, ignoring poisoning: every operation leaves the state consistent before it can panic.
fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(PoisonError::into_inner)
}

fn injected_io_error() -> io::Error {
    io::Error::other("injected I/O error")
}

/// Reject names that are not a single, ordinary path component, like [`FsStorage`](super::FsStorage).
fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid file name {name:?}: must be a single path component"),
        ));
    }
    Ok(())
}

/// The next number of the splitmix64 sequence at `state`.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How many of `tail` unsynced bytes a torn write keeps: none or all a quarter of the time each (the cases
/// recovery most often gets wrong), otherwise uniform in `0..=tail`.
fn torn_len(state: &mut u64, tail: usize) -> usize {
    match splitmix64(state) % 4 {
        0 => 0,
        1 => tail,
        // The result is at most `tail`, so it fits.
        _ => usize::try_from(splitmix64(state) % (tail as u64 + 1)).unwrap_or(tail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind<T: fmt::Debug>(r: io::Result<T>) -> io::ErrorKind {
        r.expect_err("expected an error").kind()
    }

    /// A storage with file `name` created and its name durable.
    fn with_file(name: &str) -> (MemStorage, Box<dyn StorageFile>) {
        let s = MemStorage::new();
        let f = s.create(name).unwrap();
        s.sync_dir().unwrap();
        (s, f)
    }

    #[test]
    fn unsynced_appends_are_lost_by_crash() {
        let (s, mut f) = with_file("a");
        f.append(b"abc").unwrap();
        assert_eq!(s.file("a").unwrap(), b"abc");
        assert_eq!(s.read("a").unwrap(), b"abc");
        let c = s.crash();
        assert_eq!(c.list().unwrap(), ["a"]);
        assert_eq!(c.file("a").unwrap(), b"");
    }

    #[test]
    fn synced_appends_survive_crash() {
        let (s, mut f) = with_file("a");
        f.append(b"abc").unwrap();
        f.sync().unwrap();
        f.append(b"def").unwrap();
        assert_eq!(s.crash().file("a").unwrap(), b"abc");
        f.sync().unwrap();
        let c = s.crash();
        assert_eq!(c.file("a").unwrap(), b"abcdef");
        // What the crash left is durable in the new storage.
        assert_eq!(c.crash().file("a").unwrap(), b"abcdef");
    }

    #[test]
    fn file_created_without_dir_sync_vanishes() {
        let s = MemStorage::new();
        let mut f = s.create("a").unwrap();
        f.append(b"abc").unwrap();
        f.sync().unwrap();
        assert_eq!(s.list().unwrap(), ["a"]);
        assert_eq!(s.crash().list().unwrap(), Vec::<String>::new());
        s.sync_dir().unwrap();
        assert_eq!(s.crash().file("a").unwrap(), b"abc");
    }

    #[test]
    fn removal_without_dir_sync_is_undone() {
        let (s, mut f) = with_file("a");
        f.append(b"abc").unwrap();
        f.sync().unwrap();
        drop(f);
        s.remove("a").unwrap();
        assert_eq!(s.file("a"), None);
        assert_eq!(s.crash().file("a").unwrap(), b"abc");
        s.sync_dir().unwrap();
        assert_eq!(s.crash().file("a"), None);
    }

    #[test]
    fn rename_without_dir_sync_reverts() {
        let (s, mut f) = with_file("snap");
        f.append(b"old").unwrap();
        f.sync().unwrap();
        let mut t = s.create("tmp").unwrap();
        t.append(b"new").unwrap();
        t.sync().unwrap();
        s.sync_dir().unwrap();
        s.rename("tmp", "snap").unwrap();
        assert_eq!(s.file("snap").unwrap(), b"new");
        assert_eq!(s.file("tmp"), None);

        let c = s.crash();
        assert_eq!(c.file("snap").unwrap(), b"old");
        assert_eq!(c.file("tmp").unwrap(), b"new");

        s.sync_dir().unwrap();
        let c = s.crash();
        assert_eq!(c.file("snap").unwrap(), b"new");
        assert_eq!(c.list().unwrap(), ["snap"]);
    }

    #[test]
    fn rename_of_never_dir_synced_file_vanishes() {
        let s = MemStorage::new();
        let mut t = s.create("tmp").unwrap();
        t.append(b"x").unwrap();
        t.sync().unwrap();
        s.rename("tmp", "final").unwrap();
        assert_eq!(s.crash().list().unwrap(), Vec::<String>::new());
    }

    #[test]
    fn open_files_follow_renames_and_removals() {
        let (s, mut f) = with_file("a");
        s.rename("a", "b").unwrap();
        f.append(b"xyz").unwrap();
        assert_eq!(s.file("b").unwrap(), b"xyz");
        assert_eq!(s.file("a"), None);
        s.remove("b").unwrap();
        // Unlinked but open: writes still work, the name is gone.
        f.append(b"!").unwrap();
        assert_eq!(f.len(), 4);
        assert_eq!(s.list().unwrap(), Vec::<String>::new());
    }

    #[test]
    fn truncate_below_durable_then_reappend() {
        let (s, mut f) = with_file("a");
        f.append(b"hello world").unwrap();
        f.sync().unwrap();
        f.truncate(5).unwrap();
        f.append(b"XY").unwrap();
        assert_eq!(s.file("a").unwrap(), b"helloXY");
        // Not synced: the crash keeps the old bytes.
        assert_eq!(s.crash().file("a").unwrap(), b"hello world");
        f.sync().unwrap();
        assert_eq!(s.crash().file("a").unwrap(), b"helloXY");

        // Truncate alone, then sync.
        f.truncate(2).unwrap();
        assert_eq!(s.crash().file("a").unwrap(), b"helloXY");
        f.sync().unwrap();
        assert_eq!(s.crash().file("a").unwrap(), b"he");

        // Truncate, re-append more than was cut, sync.
        f.truncate(1).unwrap();
        f.append(b"ELLO").unwrap();
        f.sync().unwrap();
        assert_eq!(s.crash().file("a").unwrap(), b"hELLO");
        assert_eq!(kind(f.truncate(6)), io::ErrorKind::InvalidInput);
    }

    /// Random appends, truncates and syncs: after each sync the durable bytes are exactly the current ones.
    #[test]
    fn sync_makes_exactly_the_current_bytes_durable() {
        let mut rng = 7_u64;
        for _ in 0..50 {
            let (s, mut f) = with_file("a");
            let mut synced: Vec<u8> = Vec::new();
            for step in 0..40_u8 {
                match splitmix64(&mut rng) % 3 {
                    0 => {
                        let n = splitmix64(&mut rng) % 8;
                        let bytes: Vec<u8> =
                            (0..n).map(|i| step.wrapping_mul(31) ^ i as u8).collect();
                        f.append(&bytes).unwrap();
                    }
                    1 => {
                        let len = splitmix64(&mut rng) % (f.len() + 1);
                        f.truncate(len).unwrap();
                    }
                    _ => {
                        f.sync().unwrap();
                        synced = s.file("a").unwrap();
                    }
                }
                assert_eq!(s.crash().file("a").unwrap(), synced);
            }
        }
    }

    #[test]
    fn torn_writes_keep_a_prefix_of_the_unsynced_tail() {
        fn scenario(seed: Option<u64>) -> (Vec<u8>, Vec<u8>) {
            let (s, mut f) = with_file("a");
            f.append(b"durable").unwrap();
            f.sync().unwrap();
            let tail: Vec<u8> = (0..100).collect();
            f.append(&tail).unwrap();
            s.set_torn_writes(seed);
            let first = s.crash().file("a").unwrap();
            let second = s.crash().file("a").unwrap();
            (first, second)
        }
        let full: Vec<u8> = b"durable".iter().copied().chain(0..100).collect();
        assert_eq!(scenario(None), (b"durable".to_vec(), b"durable".to_vec()));

        let mut lengths = BTreeSet::new();
        for seed in 0..64 {
            let (first, second) = scenario(Some(seed));
            assert!(
                full.starts_with(&first) && first.len() >= 7,
                "seed {seed}: {first:?}"
            );
            assert!(
                full.starts_with(&second) && second.len() >= 7,
                "seed {seed}: {second:?}"
            );
            lengths.insert(first.len());
            lengths.insert(second.len());
            // Deterministic: the same seed and operations give the same crashes.
            assert_eq!(scenario(Some(seed)), (first, second));
        }
        assert!(lengths.contains(&7), "{lengths:?}");
        assert!(lengths.contains(&full.len()), "{lengths:?}");
        assert!(
            lengths.iter().any(|&l| l > 7 && l < full.len()),
            "{lengths:?}"
        );
    }

    #[test]
    fn torn_writes_only_after_pure_appends() {
        for seed in 0..32 {
            let (s, mut f) = with_file("a");
            f.append(b"hello world").unwrap();
            f.sync().unwrap();
            f.truncate(5).unwrap();
            f.append(b"XYZXYZXYZXYZ").unwrap();
            s.set_torn_writes(Some(seed));
            assert_eq!(s.crash().file("a").unwrap(), b"hello world");
        }
    }

    #[test]
    fn io_fault_short_write_then_fails_forever() {
        let s = MemStorage::new();
        let mut a = s.create("a").unwrap();
        let mut b = s.create("b").unwrap();
        a.append(b"before").unwrap();
        s.inject(Fault::Io { after: 5 });
        a.append(b"abc").unwrap();
        let err = b.append(b"defgh").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Other);
        assert_eq!(err.to_string(), "injected I/O error");
        // The part that fit was written.
        assert_eq!(s.file("a").unwrap(), b"beforeabc");
        assert_eq!(s.file("b").unwrap(), b"de");
        assert_eq!(kind(a.append(b"x")), io::ErrorKind::Other);
        assert_eq!(kind(b.append(b"")), io::ErrorKind::Other);
        assert_eq!(s.file("a").unwrap(), b"beforeabc");
        // Syncs still work.
        a.sync().unwrap();
        s.clear_fault();
        a.append(b"!").unwrap();
        assert_eq!(s.file("a").unwrap(), b"beforeabc!");
    }

    #[test]
    fn io_fault_exact_fit_succeeds() {
        let (s, mut f) = with_file("a");
        s.inject(Fault::Io { after: 3 });
        f.append(b"abc").unwrap();
        assert_eq!(kind(f.append(b"d")), io::ErrorKind::Other);
        assert_eq!(s.file("a").unwrap(), b"abc");
    }

    #[test]
    fn full_disk_fails_and_frees_space() {
        let s = MemStorage::new();
        s.inject(Fault::Full { capacity: 10 });
        let mut a = s.create("a").unwrap();
        let mut b = s.create("b").unwrap();
        a.append(b"123456").unwrap();
        let err = b.append(b"abcdef").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert_eq!(s.file("b").unwrap(), b"abcd");
        assert_eq!(s.total_bytes(), 10);
        assert_eq!(kind(b.append(b"x")), io::ErrorKind::StorageFull);

        // Truncating frees space.
        a.truncate(4).unwrap();
        b.append(b"xy").unwrap();
        assert_eq!(kind(b.append(b"z")), io::ErrorKind::StorageFull);

        // A removed file still open still takes space; closing it frees it.
        s.remove("a").unwrap();
        assert_eq!(s.total_bytes(), 10);
        assert_eq!(kind(b.append(b"z")), io::ErrorKind::StorageFull);
        drop(a);
        assert_eq!(s.total_bytes(), 6);
        b.append(b"1234").unwrap();
        assert_eq!(s.total_bytes(), 10);

        // Removing a closed file frees its space at once.
        drop(b);
        let mut c = s.create("c").unwrap();
        assert_eq!(kind(c.append(b"q")), io::ErrorKind::StorageFull);
        s.remove("b").unwrap();
        c.append(b"0123456789").unwrap();
        s.clear_fault();
        c.append(b"more").unwrap();
    }

    #[test]
    fn sync_fault_makes_nothing_durable() {
        let (s, mut f) = with_file("a");
        s.inject(Fault::Sync { after: 1 });
        f.append(b"a").unwrap();
        f.sync().unwrap();
        f.append(b"b").unwrap();
        let err = f.sync().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Other);
        assert_eq!(err.to_string(), "injected fsync error");
        assert_eq!(s.crash().file("a").unwrap(), b"a");
        // Every later sync fails too; directory syncs are unaffected.
        assert_eq!(kind(f.sync()), io::ErrorKind::Other);
        s.sync_dir().unwrap();
        assert_eq!(s.crash().file("a").unwrap(), b"a");
    }

    #[test]
    fn sync_dir_fault_makes_nothing_durable() {
        let s = MemStorage::new();
        s.inject(Fault::SyncDir { after: 1 });
        s.create("a").unwrap();
        s.sync_dir().unwrap();
        s.create("b").unwrap();
        assert_eq!(kind(s.sync_dir()), io::ErrorKind::Other);
        assert_eq!(kind(s.sync_dir()), io::ErrorKind::Other);
        assert_eq!(s.crash().list().unwrap(), ["a"]);
        // Re-injecting restarts the counter.
        s.inject(Fault::SyncDir { after: 1 });
        s.sync_dir().unwrap();
        assert_eq!(s.crash().list().unwrap(), ["a", "b"]);
    }

    #[test]
    fn errors_have_the_right_kinds() {
        let s = MemStorage::new();
        drop(s.create("a").unwrap());
        let err = s.create("a").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(err.to_string().contains("`a`"), "{err}");
        let err = s.read("nope").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("`nope`"), "{err}");
        assert_eq!(kind(s.open_append("nope")), io::ErrorKind::NotFound);
        assert_eq!(kind(s.remove("nope")), io::ErrorKind::NotFound);
        assert_eq!(kind(s.rename("nope", "a")), io::ErrorKind::NotFound);
        assert_eq!(s.list().unwrap(), ["a"]);
        for bad in ["", ".", "..", "a/b", "a\\b", "a\0b"] {
            assert_eq!(kind(s.create(bad)), io::ErrorKind::InvalidInput, "{bad:?}");
            assert_eq!(kind(s.read(bad)), io::ErrorKind::InvalidInput, "{bad:?}");
            assert_eq!(
                kind(s.rename("a", bad)),
                io::ErrorKind::InvalidInput,
                "{bad:?}"
            );
        }
        // Renaming a file onto itself changes nothing.
        s.rename("a", "a").unwrap();
        assert_eq!(s.list().unwrap(), ["a"]);
    }

    #[test]
    fn open_append_continues_at_the_end() {
        let (s, mut f) = with_file("a");
        f.append(b"abc").unwrap();
        drop(f);
        let mut g = s.open_append("a").unwrap();
        assert_eq!(g.len(), 3);
        g.append(b"de").unwrap();
        assert_eq!(s.read("a").unwrap(), b"abcde");
    }

    #[test]
    fn clones_share_and_crashes_are_independent() {
        let (s, mut f) = with_file("a");
        let clone = s.clone();
        f.append(b"x").unwrap();
        f.sync().unwrap();
        assert_eq!(clone.file("a").unwrap(), b"x");
        let c = s.crash();
        let mut g = c.open_append("a").unwrap();
        g.append(b"after crash").unwrap();
        assert_eq!(s.file("a").unwrap(), b"x");
        f.append(b"y").unwrap();
        assert_eq!(c.file("a").unwrap(), b"xafter crash");
    }

    #[test]
    fn set_file_is_durable_at_once() {
        let (s, mut f) = with_file("a");
        f.append(b"abc").unwrap();
        f.sync().unwrap();
        s.set_file("a", b"zzz!".to_vec());
        // The open file sees the new bytes.
        assert_eq!(f.len(), 4);
        assert_eq!(s.crash().file("a").unwrap(), b"zzz!");
        s.set_file("new", b"n".to_vec());
        let c = s.crash();
        assert_eq!(c.list().unwrap(), ["a", "new"]);
        assert_eq!(c.file("new").unwrap(), b"n");
        // Appends after set_file are unsynced again.
        f.append(b"q").unwrap();
        assert_eq!(s.crash().file("a").unwrap(), b"zzz!");
    }

    #[test]
    fn unreachable_files_are_freed() {
        let (s, mut f) = with_file("a");
        f.append(&[1; 1000]).unwrap();
        f.sync().unwrap();
        drop(f);
        s.remove("a").unwrap();
        // Still reachable: a crash would bring it back.
        assert_eq!(s.lock().inodes[0].durable.len(), 1000);
        s.sync_dir().unwrap();
        let inner = s.lock();
        assert!(inner.inodes[0].data.is_empty() && inner.inodes[0].durable.is_empty());
    }
}
