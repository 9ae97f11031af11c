//! An original file: opened relative to its directory's descriptor without following
//! symlinks, snapshotted before a byte is read, and locked against other runs.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags, StatxAttributes, StatxFlags};
use rustix::io::Errno;

use super::walk::{FsEntry, Inode};
use crate::blob::{Blob, FileBlob};
use crate::error::{Change, FileError, Skip};
use crate::store::{OpenError, Purpose};

/// What identifies one version of a file: if any of these moved, someone wrote to it (or
/// replaced it) after we read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Device of the inode.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, i64),
    /// Status-change time: moves on every write, chmod, chown, xattr change, link or rename.
    pub ctime: (i64, i64),
    /// Access time, carried over to the new file.
    pub atime: (i64, i64),
    /// Number of hard links.
    pub nlink: u64,
    /// Permission bits and file type.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Whether it is the root of a mount (a file bind-mounted over a name).
    pub mount_root: bool,
}

/// The snapshot fields `statx` must fill.
const WANTED: StatxFlags = StatxFlags::BASIC_STATS;

impl Snapshot {
    /// The snapshot of an open file, in one `statx`.
    pub fn of(file: &File) -> io::Result<Snapshot> {
        let st = rustix::fs::statx(file, "", AtFlags::EMPTY_PATH, WANTED)?;
        let ts = |t: rustix::fs::StatxTimestamp| (t.tv_sec, i64::from(t.tv_nsec));
        Ok(Snapshot {
            dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
            ino: st.stx_ino,
            size: st.stx_size,
            mtime: ts(st.stx_mtime),
            ctime: ts(st.stx_ctime),
            atime: ts(st.stx_atime),
            nlink: u64::from(st.stx_nlink),
            mode: u32::from(st.stx_mode),
            uid: st.stx_uid,
            gid: st.stx_gid,
            mount_root: st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT)
                && st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT),
        })
    }

    /// The inode.
    pub fn inode(&self) -> Inode {
        (self.dev, self.ino)
    }

    fn is_file(&self) -> bool {
        self.mode & 0o170000 == 0o100000
    }

    /// How `now` differs from `self` in the fields that reveal a change of contents.
    fn changes(&self, now: &Snapshot) -> Option<String> {
        let mut what = Vec::new();
        if self.inode() != now.inode() {
            what.push("inode".to_string());
        }
        if self.size != now.size {
            what.push(format!("size {} -> {}", self.size, now.size));
        }
        if self.mtime != now.mtime {
            what.push("mtime".into());
        }
        if self.ctime != now.ctime {
            what.push("ctime".into());
        }
        (!what.is_empty()).then(|| what.join(", "))
    }
}

/// The inodes this process holds (or waits for) the `flock` of, with how many of its
/// sources hold or wait for each.
///
/// `flock` locks belong to open file descriptions, so a second open of the same inode in the
/// same process (another hard link to it, walked in parallel) conflicts with our own lock.
/// That must not be reported as "locked by another run": when the lock is busy and the inode
/// is ours, the source waits for it instead (the holder is one of our workers or the
/// committer, which releases it within one batch). Bounded by the number of files in flight.
#[derive(Debug, Default)]
pub struct Locks(Mutex<HashMap<Inode, usize>>);

impl Locks {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Inode, usize>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn release(m: &mut HashMap<Inode, usize>, key: Inode) {
    if let Some(n) = m.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            m.remove(&key);
        }
    }
}

/// An original file, open for reading, with its snapshot; locked when opened to re-wrap.
/// Dropping it releases the lock.
#[derive(Debug)]
pub struct FsSource {
    /// Where it was listed.
    pub entry: FsEntry,
    /// The open file (read-only).
    pub file: File,
    /// Its identity when opened, before anything was read.
    pub snap: Snapshot,
    lock: Option<Arc<Locks>>,
}

impl Drop for FsSource {
    fn drop(&mut self) {
        if let Some(locks) = &self.lock {
            // Unlock and forget under the registry's mutex, so that another source of this
            // process never sees the lock busy without the inode registered.
            let mut m = locks.map();
            let _ = rustix::fs::flock(&self.file, FlockOperation::Unlock);
            release(&mut m, self.snap.inode());
        }
    }
}

/// What a store refuses to open as a candidate, beyond symlinks and special files.
pub struct Exclusions<'a> {
    /// The run's own outputs (report, audit log).
    pub outputs: &'a std::collections::HashSet<Inode>,
    /// Files given as roots: met again through a directory, they are passed over there.
    pub root_files: &'a std::collections::HashSet<Inode>,
    /// Hard-linked inodes this run re-wrote in place: their other names are done.
    pub rewritten: &'a Mutex<std::collections::HashSet<Inode>>,
}

/// Opens a listed file: no symlink followed, no FIFO opened (O_NONBLOCK), regular files only;
/// to re-wrap, an exclusive `flock` taken without waiting on other processes (see [`Locks`]).
pub fn open(
    entry: FsEntry,
    purpose: Purpose,
    locks: &Arc<Locks>,
    exclude: &Exclusions<'_>,
) -> Result<FsSource, OpenError> {
    let fd = match rustix::fs::openat(
        &entry.dir.fd,
        &entry.name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::LOOP) => return Err(OpenError::Skip(Skip::Symlink)),
        Err(e) => return Err(OpenError::Fail(FileError::Unreadable(e.into()))),
    };
    let file = File::from(fd);
    // Snapshot before the lock and before any read: a write after it is seen by the checks.
    let snap = Snapshot::of(&file).map_err(|e| OpenError::Fail(FileError::Unreadable(e)))?;
    if !snap.is_file() {
        return Err(OpenError::Skip(Skip::SpecialFile));
    }
    if snap.mount_root {
        return Err(OpenError::Skip(Skip::MountPoint));
    }
    if exclude.outputs.contains(&snap.inode())
        || (!entry.is_root && exclude.root_files.contains(&snap.inode()))
    {
        return Err(OpenError::Gone);
    }
    if purpose == Purpose::Inspect {
        return Ok(FsSource {
            entry,
            file,
            snap,
            lock: None,
        });
    }
    let key = snap.inode();
    let wait = {
        let mut m = locks.map();
        let wait = match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => false,
            Err(Errno::WOULDBLOCK) if m.contains_key(&key) => true,
            Err(Errno::WOULDBLOCK) => return Err(OpenError::Fail(FileError::Locked)),
            Err(e) => return Err(OpenError::Fail(FileError::Unreadable(e.into()))),
        };
        // Registered as holder, or as waiter, before the mutex is released.
        *m.entry(key).or_default() += 1;
        wait
    };
    let mut src = FsSource {
        entry,
        file,
        snap,
        lock: Some(Arc::clone(locks)),
    };
    if wait {
        // Another of our own sources holds it: wait for it (see `Locks`), then snapshot
        // again: that source may have renamed a new file over this name, and the check in
        // `check_unchanged` then sees the new inode.
        rustix::fs::flock(&src.file, FlockOperation::LockExclusive)
            .map_err(|e| OpenError::Fail(FileError::Unreadable(e.into())))?;
        src.snap =
            Snapshot::of(&src.file).map_err(|e| OpenError::Fail(FileError::Unreadable(e)))?;
    }
    if src.snap.nlink > 1
        && exclude
            .rewritten
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key)
    {
        return Err(OpenError::DoneThisRun);
    }
    Ok(src)
}

impl FsSource {
    /// The descriptor of the directory it was listed in.
    pub fn dir(&self) -> &Arc<super::walk::DirFd> {
        &self.entry.dir
    }

    /// Checks that the file was not changed since it was opened and that its name still
    /// refers to it.
    pub fn unchanged(&self) -> Result<(), Change> {
        let now = Snapshot::of(&self.file).map_err(Change::Stat)?;
        if let Some(what) = self.snap.changes(&now) {
            return Err(Change::Fields(what));
        }
        match rustix::fs::statat(
            &self.entry.dir.fd,
            &self.entry.name,
            AtFlags::SYMLINK_NOFOLLOW,
        ) {
            #[allow(clippy::unnecessary_cast)]
            Ok(st) if (st.st_dev as u64, st.st_ino as u64) == self.snap.inode() => Ok(()),
            Ok(_) => Err(Change::Replaced),
            Err(Errno::NOENT) => Err(Change::Removed),
            Err(e) => Err(Change::Stat(e.into())),
        }
    }

    /// Opens the same inode again for reading and writing, for a re-write in place. Fails if
    /// the name no longer refers to the inode we locked, or if we may not write to it.
    pub fn reopen_rw(&self) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.entry.dir.fd,
            &self.entry.name,
            OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let file = File::from(fd);
        #[allow(clippy::unnecessary_cast)]
        let st = rustix::fs::fstat(&file)?;
        #[allow(clippy::unnecessary_cast)]
        if (st.st_dev as u64, st.st_ino as u64) != self.snap.inode() {
            return Err(io::Error::other("the name now refers to another file"));
        }
        Ok(file)
    }

    /// Its path as walked.
    pub fn path(&self) -> &Path {
        &self.entry.path
    }

    /// Its bytes, of the snapshot's length.
    pub fn file_blob(&self) -> FileBlob<'_> {
        FileBlob {
            file: &self.file,
            len: self.snap.size,
        }
    }
}

impl crate::store::Source for FsSource {
    fn name(&self) -> &Path {
        &self.entry.path
    }

    fn blob(&self) -> &dyn Blob {
        self
    }

    fn check_unchanged(&self) -> Result<(), Change> {
        self.unchanged()
    }
}

impl Blob for FsSource {
    fn len(&self) -> u64 {
        self.snap.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        crate::blob::read_file_at(&self.file, self.snap.size, buf, offset)
    }
}
