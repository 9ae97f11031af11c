//! The local filesystem: trees walked by directory descriptors, files locked with `flock`,
//! replacements staged as temporaries beside their originals and committed in groups, native
//! headers re-written in place.

mod commit;
mod source;
mod stage;
pub mod temp;
mod walk;

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pqwrap_core::envelope::FileSlotIo;
use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

pub use source::{FsSource, Snapshot};
pub use stage::FsStaged;
pub use walk::{FsEntry, Inode};

use crate::error::{FileError, Step};
use crate::format::{Body, InPlace};
use crate::store::{Batching, CommitOutcome, Leftover, Listed, OpenError, Purpose, Store};

/// How temporaries (and then the renames) are made durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// One `syncfs` per filesystem per batch for the temporaries, and one for the renames: one
    /// journal commit and one cache flush each, for the whole batch. Only when a sync reports
    /// an error (or on a kernel before 5.8, whose `syncfs` reports none) is each file
    /// `fsync`ed, to find out which ones failed.
    #[default]
    Group,
    /// `fsync` each temporary and each directory (for filesystems where `syncfs` may not
    /// reach the backing store, such as FUSE mounts).
    PerFile,
}

/// The filesystem store over a list of roots (directories, walked recursively, or files).
///
/// ```no_run
/// use pqwrap_rewrap::store::fs::{Durability, FsStore};
/// let store = FsStore::new(vec!["/archive".into()], Durability::Group);
/// ```
pub struct FsStore {
    roots: Vec<PathBuf>,
    durability: Durability,
    root_files: HashSet<Inode>,
    outputs: HashSet<Inode>,
    locks: Arc<source::Locks>,
    rewritten: std::sync::Mutex<HashSet<Inode>>,
}

impl FsStore {
    /// A store over `roots`.
    pub fn new(roots: Vec<PathBuf>, durability: Durability) -> Self {
        let root_files = walk::root_files(&roots);
        FsStore {
            roots,
            durability,
            root_files,
            outputs: HashSet::new(),
            locks: Arc::new(source::Locks::default()),
            rewritten: std::sync::Mutex::new(HashSet::new()),
        }
    }

    /// Files the run writes itself (its report, its audit log): never candidates, whatever
    /// name the walk meets them under.
    pub fn exclude(mut self, file: &File) -> io::Result<Self> {
        #[allow(clippy::unnecessary_cast)]
        let st = rustix::fs::fstat(file)?;
        #[allow(clippy::unnecessary_cast)]
        self.outputs.insert((st.st_dev as u64, st.st_ino as u64));
        Ok(self)
    }

    /// The roots.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }
}

impl Store for FsStore {
    type Entry = FsEntry;
    type Source = FsSource;
    type Staged = FsStaged;

    fn list(&self) -> Box<dyn Iterator<Item = Listed<FsEntry>> + Send + '_> {
        Box::new(walk::Walk::new(&self.roots))
    }

    fn name_of<'e>(&self, entry: &'e FsEntry) -> &'e Path {
        &entry.path
    }

    fn size_hint(&self, entry: &FsEntry) -> Option<u64> {
        rustix::fs::statat(&entry.dir.fd, &entry.name, AtFlags::SYMLINK_NOFOLLOW)
            .ok()
            .map(|st| st.st_size as u64)
    }

    fn open(&self, entry: FsEntry, purpose: Purpose) -> Result<FsSource, OpenError> {
        let exclude = source::Exclusions {
            outputs: &self.outputs,
            root_files: &self.root_files,
            rewritten: &self.rewritten,
        };
        source::open(entry, purpose, &self.locks, &exclude)
    }

    fn check_replaceable(&self, src: &FsSource) -> Result<(), FileError> {
        if src.snap.nlink > 1 {
            return Err(FileError::HardLinked {
                links: src.snap.nlink,
            });
        }
        Ok(())
    }

    fn stage(&self, src: FsSource, body: Body<'_>) -> Result<FsStaged, FileError> {
        stage::stage(src, body)
    }

    fn batching(&self) -> Batching {
        Batching::Group
    }

    fn commit<T: Send>(&self, batch: Vec<(FsStaged, T)>) -> Vec<(T, CommitOutcome)> {
        commit::commit_batch(batch, self.durability)
    }

    fn in_place(&self) -> InPlace {
        InPlace::Supported
    }

    fn write_in_place(
        &self,
        src: &FsSource,
        apply: &mut crate::store::ApplyInPlace<'_>,
    ) -> Result<Option<String>, FileError> {
        src.unchanged()?;
        let rw = src
            .reopen_rw()
            .map_err(|e| FileError::io(Step::OpenForWrite, e))?;
        let hash = apply(&mut FileSlotIo::new(&rw))?;
        if src.snap.nlink > 1 {
            // Its other names are this same file, now done: they are not met as unverified.
            self.rewritten
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(src.snap.inode());
        }
        // Writing the slots moved mtime; the contents did not change, so give it back (ctime
        // cannot be; without ownership neither can the times, which is not an error), and
        // make that durable: a restore left unsynced can be lost in a power cut after the
        // file was reported done. One fsync after the slots' own data syncs: on ext4 it
        // costs 1.27x the two fdatasyncs alone, where an fsync per slot cost 2.1x.
        let _ = stage::set_times(&src.snap, &rw);
        rw.sync_all().map_err(|e| FileError::io(Step::Sync, e))?;
        Ok(hash)
    }

    fn remove_leftover(
        &self,
        entry: FsEntry,
        is_own_output: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Leftover, FileError> {
        remove_leftover(&entry, is_own_output).map_err(|e| FileError::io(Step::Cleanup, e))
    }

    fn fit(&self, jobs: usize, batch_files: usize) -> (usize, usize) {
        // Descriptors: a worker holds up to five at once (the original, a temporary, the
        // original re-opened for writing, and the two of a directory it walks); a staged file
        // two (original, temporary), in the batch being committed and in the channel; and a
        // reserve serves the standard streams, the report, the audit log and the walk's open
        // directories. Workers and batches are cut to fit the limit, so a large `-j` under a
        // low limit runs slower instead of failing files with EMFILE.
        const RESERVE: u64 = 64;
        const PER_WORKER: u64 = 5;
        const PER_STAGED: u64 = 3;
        let usable = raise_fd_limit().saturating_sub(RESERVE);
        let jobs = (jobs.max(1) as u64).min((usable / (PER_WORKER + 2 * PER_STAGED)).max(1));
        let fit = usable.saturating_sub(jobs * PER_WORKER) / (2 * PER_STAGED);
        (
            usize::try_from(jobs).unwrap_or(1),
            batch_files
                .min(usize::try_from(fit).unwrap_or(usize::MAX))
                .max(1),
        )
    }
}

/// Batches hold descriptors open; take the hard limit, as most tools that walk trees do.
/// Returns the soft limit in force.
fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        let before = lim.current;
        lim.current = lim.maximum;
        if setrlimit(Resource::Nofile, lim).is_err() {
            lim.current = before;
        }
    }
    lim.current.unwrap_or(u64::MAX)
}

/// Removes a temporary left behind by a killed run.
///
/// A running job holds an exclusive `flock` on each of its temporaries from creation until
/// rename, and the kernel drops that lock when the process dies, even by SIGKILL. So a
/// temporary whose lock we can take belongs to no living run. Its first bytes must be what a
/// format writes, and the name must still refer to the inode we locked before it is unlinked,
/// so a file that merely has the name, or that replaced it meanwhile, is never removed.
fn remove_leftover(entry: &FsEntry, is_own_output: &dyn Fn(&[u8]) -> bool) -> io::Result<Leftover> {
    // This run's own, met while listing a directory it is working in.
    if temp::is_own_temp_name(&entry.name) {
        return Ok(Leftover::Gone);
    }
    let dir = &entry.dir.fd;
    let fd = match rustix::fs::openat(
        dir,
        &entry.name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(Leftover::Gone),
        Err(e) => return Err(e.into()),
    };
    let file = File::from(fd);
    #[allow(clippy::unnecessary_cast)]
    let st = rustix::fs::fstat(&file)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(Errno::WOULDBLOCK) => return Ok(Leftover::InUse),
        Err(e) => return Err(e.into()),
    }
    let mut head = [0u8; 64];
    let n = std::os::unix::fs::FileExt::read_at(&file, &mut head, 0)?;
    if !is_own_output(head.get(..n).unwrap_or_default()) {
        return Ok(Leftover::NotOurs);
    }
    let now = match rustix::fs::statat(dir, &entry.name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(Leftover::Gone),
        Err(e) => return Err(e.into()),
    };
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
        return Ok(Leftover::InUse);
    }
    match rustix::fs::unlinkat(dir, &entry.name, AtFlags::empty()) {
        Ok(()) => Ok(Leftover::Removed),
        Err(Errno::NOENT) => Ok(Leftover::Gone),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn entry_for(path: &Path) -> FsEntry {
        FsEntry {
            dir: Arc::new(walk::DirFd {
                fd: walk::open_dir_path(path.parent().unwrap()).unwrap(),
                path: path.parent().unwrap().to_path_buf(),
            }),
            name: path.file_name().unwrap().to_os_string(),
            path: path.to_path_buf(),
            is_root: false,
        }
    }

    fn ours(head: &[u8]) -> bool {
        crate::format::is_own_output(head)
    }

    #[test]
    fn leftover_removed_only_when_unlocked() {
        let d = tempfile::tempdir().unwrap();
        // Another process's name: not from this process's sequence.
        let p = d.path().join(".f.pqwrap-tmp-0123456789abcdef");
        std::fs::write(&p, b"age-encryption.org/v1\n-> X25519 ").unwrap();
        // Held by a "live run": left alone.
        let holder = File::open(&p).unwrap();
        rustix::fs::flock(&holder, FlockOperation::LockExclusive).unwrap();
        assert_eq!(
            remove_leftover(&entry_for(&p), &ours).unwrap(),
            Leftover::InUse
        );
        assert!(p.exists());
        drop(holder);
        assert_eq!(
            remove_leftover(&entry_for(&p), &ours).unwrap(),
            Leftover::Removed
        );
        assert!(!p.exists());
    }

    #[test]
    fn a_file_named_like_a_temporary_without_a_pqwrap_start_is_kept() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(".notes.pqwrap-tmp-0123456789abcdef");
        std::fs::write(&p, b"precious").unwrap();
        assert_eq!(
            remove_leftover(&entry_for(&p), &ours).unwrap(),
            Leftover::NotOurs
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"precious");
        // Empty, or any part of a header's first line: what a killed run leaves.
        for start in [
            &b""[..],
            b"age-enc",
            b"-----BEGIN AGE ENCRYPTED FILE-----\nYWdl",
            &pqwrap_core::envelope::MAGIC[..3],
        ] {
            std::fs::write(&p, start).unwrap();
            assert_eq!(
                remove_leftover(&entry_for(&p), &ours).unwrap(),
                Leftover::Removed,
                "{start:?}"
            );
        }
        // Already gone (a live run renamed it): nothing to report.
        assert_eq!(
            remove_leftover(&entry_for(&p), &ours).unwrap(),
            Leftover::Gone
        );
        // This process's own temporaries are never touched.
        let mine = d.path().join(temp::temp_name_for(OsStr::new("g")).unwrap());
        std::fs::write(&mine, b"").unwrap();
        assert_eq!(
            remove_leftover(&entry_for(&mine), &ours).unwrap(),
            Leftover::Gone
        );
        assert!(mine.exists());
    }
}
