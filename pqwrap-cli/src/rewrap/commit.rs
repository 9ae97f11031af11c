//! The crash-safe replace of files whose new contents differ in length from the old ones.
//!
//! One file goes through three steps:
//!
//! 1. [`open_source`]: open it without following symlinks, take a non-blocking exclusive
//!    `flock` (so two concurrent runs never work on the same inode: the second one skips it and
//!    reports it as locked), and record a [`Snapshot`] of its identity (dev, inode, size,
//!    mtime, ctime) before reading a byte.
//! 2. [`stage`]: write the new contents into a temporary in the same directory
//!    (`.<name>.pqwrap-tmp-<16 hex>`, created with `O_EXCL`, mode 0600, locked), either a new
//!    prefix followed by the original's bytes from an offset, copied by the kernel with
//!    `copy_file_range` (which may reflink), or any stream; then carry over owner and group
//!    (where permitted), mode, extended attributes (ACLs included), atime and mtime.
//! 3. [`commit_batch`]: the group commit, for many staged files at once; see there for why it
//!    is crash-safe.
//!
//! A temporary that is dropped without being committed is unlinked, so an error at any step
//! leaves the original alone and no litter; a SIGKILL leaves at most temporaries, which the
//! next run removes (`walk::remove_leftover`).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

use super::walk;

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
}

impl Snapshot {
    /// The snapshot of `meta` (from `fstat`).
    pub fn of(meta: &std::fs::Metadata) -> Snapshot {
        Snapshot {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            atime: (meta.atime(), meta.atime_nsec()),
            nlink: meta.nlink(),
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
        }
    }

    /// How `now` differs from `self` in the fields that reveal a change of contents, or `None`.
    fn changes(&self, now: &Snapshot) -> Option<String> {
        let mut what = Vec::new();
        if (self.dev, self.ino) != (now.dev, now.ino) {
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

/// Why a file could not be opened as a source.
#[derive(Debug)]
pub enum OpenError {
    /// The name is (now) a symbolic link.
    Symlink,
    /// Not a regular file (it may have been swapped for a FIFO or device since the walk).
    Special,
    /// Another process holds the lock: another pqwrap run is working on it.
    Locked,
    /// Anything else (permission denied, vanished, ...).
    Io(io::Error),
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
pub struct Locks(Mutex<HashMap<(u64, u64), usize>>);

impl Locks {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(u64, u64), usize>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An original file, open for reading, locked, with its snapshot. Dropping it releases the
/// lock.
#[derive(Debug)]
pub struct Source {
    /// The path as walked (for messages and reports).
    pub path: PathBuf,
    dir: Arc<OwnedFd>,
    name: OsString,
    /// The open file (read-only). Read it with `read_at`/`pread` or `(&file).read`.
    pub file: File,
    /// Its identity when opened, before anything was read.
    pub snap: Snapshot,
    locks: Arc<Locks>,
    key: (u64, u64),
}

impl Drop for Source {
    fn drop(&mut self) {
        // Unlock and forget under the registry's mutex, so that another source of this
        // process never sees the lock busy without the inode registered.
        let mut m = self.locks.map();
        let _ = rustix::fs::flock(&self.file, FlockOperation::Unlock);
        release(&mut m, self.key);
    }
}

fn release(m: &mut HashMap<(u64, u64), usize>, key: (u64, u64)) {
    if let Some(n) = m.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            m.remove(&key);
        }
    }
}

/// The directory the last source was opened in, kept open for the `*at` calls of the next
/// ones: the walk goes through a directory's files in a row, so one cached descriptor saves
/// an `open` (a path resolution) and a `close` per file. The descriptor stays on the
/// directory it was opened on even if its path is renamed meanwhile, so the files of one
/// directory are read, staged and renamed in that one directory.
#[derive(Debug, Default)]
pub struct DirCache(Mutex<Option<(PathBuf, Arc<OwnedFd>)>>);

impl DirCache {
    /// The open parent directory of `path`.
    fn parent_of(&self, path: &Path) -> io::Result<Arc<OwnedFd>> {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((p, fd)) = last.as_ref()
            && p == parent
        {
            return Ok(Arc::clone(fd));
        }
        let fd = Arc::new(walk::open_dir(parent)?);
        *last = Some((parent.to_path_buf(), Arc::clone(&fd)));
        Ok(fd)
    }
}

/// Opens `path` as a source: no symlinks followed, no FIFO opened (O_NONBLOCK), regular files
/// only, exclusive `flock` taken without waiting on other processes (see [`Locks`]).
pub fn open_source(path: &Path, locks: &Arc<Locks>, dirs: &DirCache) -> Result<Source, OpenError> {
    let name = path
        .file_name()
        .ok_or_else(|| OpenError::Io(io::Error::other("path has no file name")))?
        .to_os_string();
    let dir = dirs.parent_of(path).map_err(OpenError::Io)?;
    let fd = match rustix::fs::openat(
        &*dir,
        &name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::LOOP) => return Err(OpenError::Symlink),
        Err(e) => return Err(OpenError::Io(e.into())),
    };
    let file = File::from(fd);
    // Lock first, then stat: in the usual case (the lock is free) one `fstat` after the lock
    // is both the type check and the snapshot.
    let (meta, wait) = {
        let mut m = locks.map();
        let (meta, wait) = match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive)
        {
            Ok(()) => (file.metadata().map_err(OpenError::Io)?, false),
            Err(Errno::WOULDBLOCK) => {
                let meta = file.metadata().map_err(OpenError::Io)?;
                if !m.contains_key(&(meta.dev(), meta.ino())) {
                    return Err(OpenError::Locked);
                }
                (meta, true)
            }
            Err(e) => return Err(OpenError::Io(e.into())),
        };
        // Registered as holder, or as waiter, before the mutex is released.
        *m.entry((meta.dev(), meta.ino())).or_default() += 1;
        (meta, wait)
    };
    let key = (meta.dev(), meta.ino());
    let give_up = |e: OpenError| {
        let mut m = locks.map();
        let _ = rustix::fs::flock(&file, FlockOperation::Unlock);
        release(&mut m, key);
        Err(e)
    };
    if !meta.file_type().is_file() {
        return give_up(OpenError::Special);
    }
    let snap = if wait {
        // Another of our own sources holds it: wait for it (see `Locks`), then snapshot after
        // the lock: that source may have renamed a new file over this name, and the check in
        // `check_unchanged` then sees the new inode.
        if let Err(e) = rustix::fs::flock(&file, FlockOperation::LockExclusive) {
            return give_up(OpenError::Io(e.into()));
        }
        match file.metadata() {
            Ok(m) => Snapshot::of(&m),
            Err(e) => return give_up(OpenError::Io(e)),
        }
    } else {
        Snapshot::of(&meta)
    };
    Ok(Source {
        path: path.to_path_buf(),
        dir,
        name,
        file,
        snap,
        locks: Arc::clone(locks),
        key,
    })
}

impl Source {
    /// Checks that the file was not changed since it was opened and that its name still
    /// refers to it. Returns what changed, as a message, if anything did.
    pub fn check_unchanged(&self) -> Result<(), String> {
        let now = self
            .file
            .metadata()
            .map_err(|e| format!("cannot stat the original: {e}"))?;
        if let Some(what) = self.snap.changes(&Snapshot::of(&now)) {
            return Err(format!("changed while being re-wrapped ({what})"));
        }
        match rustix::fs::statat(&*self.dir, &self.name, AtFlags::SYMLINK_NOFOLLOW) {
            #[allow(clippy::unnecessary_cast)]
            Ok(st) if (st.st_dev as u64, st.st_ino as u64) == (self.snap.dev, self.snap.ino) => {
                Ok(())
            }
            Ok(_) => Err("the name now refers to another file".into()),
            Err(Errno::NOENT) => Err("the file was removed".into()),
            Err(e) => Err(format!("cannot stat the original's name: {e}")),
        }
    }

    /// Opens the same inode again for reading and writing, for a re-write in place (the
    /// native format's header slots). Fails if the name no longer refers to the inode we
    /// locked, or if we may not write to it.
    pub fn reopen_rw(&self) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &*self.dir,
            &self.name,
            OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let file = File::from(fd);
        let meta = file.metadata()?;
        if (meta.dev(), meta.ino()) != (self.snap.dev, self.snap.ino) {
            return Err(io::Error::other("the name now refers to another file"));
        }
        Ok(file)
    }
}

/// How the new contents are produced.
pub enum Body<'a> {
    /// `prefix`, then the original's bytes from `tail_offset` to the snapshot's size, copied
    /// unchanged by `copy_file_range` (falling back to `pread`/`write`).
    PrefixCopy {
        /// The new leading bytes (for age: the new header).
        prefix: Vec<u8>,
        /// Where in the original the bytes to keep start.
        tail_offset: u64,
    },
    /// Anything else (armored files, re-encryption): called with the original and a buffered
    /// writer on the temporary.
    Stream(StreamFn<'a>),
}

/// Writes new contents: called with the original and a buffered writer on the temporary.
pub type StreamFn<'a> = Box<dyn FnOnce(&File, &mut dyn Write) -> io::Result<()> + Send + 'a>;

/// A temporary file being prepared. Dropping it before [`commit_batch`] renamed it unlinks it.
#[derive(Debug)]
pub struct Temp {
    dir: Arc<OwnedFd>,
    name: OsString,
    /// The temporary, open read-write (so that it can be verified by reading it back).
    pub file: File,
    dev: u64,
    ino: u64,
    /// Owner and group it was created with (what `copy_metadata` may have to change).
    owner: (u32, u32),
    /// Creation order within the process (see [`commit_batch`]: the first-created temporary's
    /// descriptor sees every write-back error of the batch through `syncfs`).
    created: u64,
    renamed: bool,
}

static CREATED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Drop for Temp {
    fn drop(&mut self) {
        if !self.renamed {
            // Best effort: on failure the next run's cleanup removes it.
            let _ = rustix::fs::unlinkat(&*self.dir, &self.name, AtFlags::empty());
        }
    }
}

/// A file ready to be committed: the locked original and its written temporary.
pub struct Staged<T> {
    /// The original.
    pub src: Source,
    /// The new contents.
    pub temp: Temp,
    /// Bytes written to the temporary.
    pub bytes: u64,
    /// Things that were not carried over but did not stop the re-wrap (e.g. an owner we may
    /// not set).
    pub warnings: Vec<String>,
    /// Whatever the caller needs back after the commit (the report record).
    pub payload: T,
}

/// Creates a locked temporary beside `src`. Another run's cleanup may remove a fresh
/// temporary in the instant between its creation and our lock (it looks abandoned then):
/// that is retried with a new name a few times rather than failing the file.
fn create_temp(src: &Source) -> io::Result<Temp> {
    let mut tries = 0;
    loop {
        match create_temp_once(src) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 3 => tries += 1,
            r => return r,
        }
    }
}

fn create_temp_once(src: &Source) -> io::Result<Temp> {
    let create = |name: &OsString| {
        rustix::fs::openat(
            &*src.dir,
            name,
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
    };
    let mut name = walk::temp_name_for(&src.name)?;
    let mut attempts = 0;
    let fd = loop {
        match create(&name) {
            // Someone made that name (a planted file, or a name from another process's
            // sequence): take a fully random one.
            Err(Errno::EXIST) if attempts < 8 => {
                attempts += 1;
                name = walk::random_temp_name_for(&src.name)?;
            }
            r => break r?,
        }
    };
    let file = File::from(fd);
    let meta = file.metadata()?;
    let temp = Temp {
        dir: Arc::clone(&src.dir),
        name,
        file,
        dev: meta.dev(),
        ino: meta.ino(),
        owner: (meta.uid(), meta.gid()),
        created: CREATED.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        renamed: false,
    };
    // Locked for as long as it lives: this is what tells another run's cleanup that the
    // temporary belongs to a live process.
    rustix::fs::flock(&temp.file, FlockOperation::NonBlockingLockExclusive)?;
    // A cleanup may have opened and removed it between our create and our lock; make sure the
    // name is still ours, or the rename would later fail.
    let mut temp = temp;
    let st = rustix::fs::statat(&*temp.dir, &temp.name, AtFlags::SYMLINK_NOFOLLOW);
    #[allow(clippy::unnecessary_cast)]
    if !st.is_ok_and(|st| (st.st_dev as u64, st.st_ino as u64) == (temp.dev, temp.ino)) {
        // The name is no longer ours: whatever it refers to now must not be unlinked.
        temp.renamed = true;
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "temporary removed under us",
        ));
    }
    Ok(temp)
}

/// Writes the new contents of `src` into a fresh temporary and carries its metadata over.
/// Nothing is synced here: that is [`commit_batch`]'s job.
pub fn stage<T>(src: Source, body: Body<'_>, payload: T) -> Result<Staged<T>, (T, io::Error)> {
    let mut warnings = Vec::new();
    let result = create_temp(&src).and_then(|temp| {
        let bytes = match body {
            Body::PrefixCopy {
                prefix,
                tail_offset,
            } => write_prefix_copy(&src.file, &temp.file, &prefix, tail_offset, src.snap.size)?,
            Body::Stream(f) => {
                let mut counter = CountingWriter {
                    inner: io::BufWriter::with_capacity(256 * 1024, &temp.file),
                    count: 0,
                };
                f(&src.file, &mut counter)?;
                counter.flush()?;
                counter.count
            }
        };
        copy_metadata(&src, &temp, &mut warnings)?;
        Ok((temp, bytes))
    });
    match result {
        Ok((temp, bytes)) => Ok(Staged {
            src,
            temp,
            bytes,
            warnings,
            payload,
        }),
        // Dropping `src` releases its lock; the temporary, if any, was already removed.
        Err(e) => Err((payload, e)),
    }
}

struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `prefix`, then `src[tail_offset..size]` appended by the kernel. Returns bytes written.
fn write_prefix_copy(
    src: &File,
    dst: &File,
    prefix: &[u8],
    tail_offset: u64,
    size: u64,
) -> io::Result<u64> {
    if tail_offset > size {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "payload offset beyond the end of the file",
        ));
    }
    let mut out = dst;
    out.write_all(prefix)?;
    let mut off = tail_offset;
    let mut kernel_copy = true;
    let mut buf = Vec::new();
    while off < size {
        let want = (size - off).min(1 << 30);
        if kernel_copy {
            // Output offset: the file position (after the prefix), advanced by the kernel.
            match rustix::fs::copy_file_range(src, Some(&mut off), dst, None, want as usize) {
                Ok(0) => return Err(shrank()),
                Ok(_) | Err(Errno::INTR) => {}
                // Filesystems or kernels that cannot do it: copy through user space instead.
                Err(Errno::XDEV | Errno::NOSYS | Errno::OPNOTSUPP | Errno::INVAL | Errno::PERM) => {
                    kernel_copy = false;
                    buf.resize(256 * 1024, 0);
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            let n = want.min(buf.len() as u64) as usize;
            let chunk = buf.get_mut(..n).unwrap_or_default();
            let got = src.read_at(chunk, off)?;
            if got == 0 {
                return Err(shrank());
            }
            out.write_all(chunk.get(..got).unwrap_or_default())?;
            off += got as u64;
        }
    }
    Ok(prefix.len() as u64 + (size - tail_offset))
}

fn shrank() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the original shrank while being copied",
    )
}

/// Owner and group (where permitted), mode and extended attributes of `src` onto `dst`
/// (times: [`copy_times`]). Failing to copy an extended attribute is an error (it may be an ACL: dropping
/// it could widen access), failing to keep the owner is a warning (only root may give a file
/// away; the new file then belongs to us, which the report says).
fn copy_metadata(src: &Source, temp: &Temp, warnings: &mut Vec<String>) -> io::Result<()> {
    let s = &src.snap;
    let dst = &temp.file;
    let uid = rustix::fs::Uid::from_raw(s.uid);
    let gid = rustix::fs::Gid::from_raw(s.gid);
    // Already ours (the usual case): no chown needed.
    let chown = if temp.owner == (s.uid, s.gid) {
        Ok(())
    } else {
        rustix::fs::fchown(dst, Some(uid), Some(gid))
    };
    match chown {
        Ok(()) => {}
        Err(Errno::PERM) => {
            let group_kept = rustix::fs::fchown(dst, None, Some(gid)).is_ok();
            let now = dst.metadata()?;
            if now.uid() != s.uid {
                warnings.push(format!("owner {} not kept (not permitted)", s.uid));
            }
            if !group_kept && now.gid() != s.gid {
                warnings.push(format!("group {} not kept (not permitted)", s.gid));
            }
        }
        Err(e) => return Err(e.into()),
    }
    // After chown, which clears set-user-ID and set-group-ID bits.
    rustix::fs::fchmod(dst, Mode::from_raw_mode(s.mode & 0o7777))?;
    pqwrap_core::xattr::copy_all(&src.file, dst)?;
    Ok(())
}

/// Gives `file` the atime and mtime of `snap` (after an in-place re-write, which moved them).
pub fn restore_times(file: &File, snap: &Snapshot) -> io::Result<()> {
    copy_times(snap, file)
}

/// Sets atime and mtime of the original on the temporary. Done by [`commit_batch`] just before
/// the sync, after any verification read the temporary back (a read may move atime).
fn copy_times(snap: &Snapshot, dst: &File) -> io::Result<()> {
    let ts = |(sec, nsec): (i64, i64)| Timespec {
        tv_sec: sec,
        tv_nsec: nsec as _,
    };
    rustix::fs::futimens(
        dst,
        &Timestamps {
            last_access: ts(snap.atime),
            last_modification: ts(snap.mtime),
        },
    )?;
    Ok(())
}

/// How temporaries (and then the renames) are made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// One `syncfs` per filesystem per batch for the temporaries, and one for the renames: one
    /// journal commit and one cache flush each, for the whole batch. Since Linux 5.8 `syncfs`
    /// reports every write-back error on the filesystem since the descriptor it is called on
    /// was opened; it is called on the batch's first-created temporary, so it sees an error in
    /// any of them. Only when it reports one (or on an older kernel) is each file `fsync`ed,
    /// to find out which ones failed.
    Group,
    /// `fsync` each temporary and each directory (for filesystems where other writers make
    /// `syncfs` costly).
    PerFile,
}

/// Whether `syncfs` returns write-back errors (Linux 5.8 and later); before that it always
/// succeeded, and only `fsync` could tell.
fn syncfs_reports_errors() -> bool {
    static ANSWER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ANSWER.get_or_init(|| {
        let uname = rustix::system::uname();
        let release = uname.release().to_string_lossy();
        let mut parts = release.split(|c: char| !c.is_ascii_digit());
        let major = parts.next().and_then(|p| p.parse::<u32>().ok());
        let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
        matches!((major, minor), (Some(ma), Some(mi)) if (ma, mi) >= (5, 8))
    })
}

/// `syncfs` once per filesystem, on the descriptor `pick` chooses among those of `items`
/// on that filesystem. True if every call succeeded and that success means no write-back
/// error (see [`Durability::Group`]).
fn sync_filesystems<'a, I>(items: I) -> bool
where
    I: Iterator<Item = (u64, u64, &'a File)>,
{
    // Per device: the lowest order key and its file.
    let mut first: HashMap<u64, (u64, &File)> = HashMap::new();
    for (dev, order, file) in items {
        let e = first.entry(dev).or_insert((order, file));
        if order < e.0 {
            *e = (order, file);
        }
    }
    let mut clean = syncfs_reports_errors();
    for (_, file) in first.values() {
        if rustix::fs::syncfs(file).is_err() {
            clean = false;
        }
    }
    clean
}

/// Why a staged file was not committed.
#[derive(Debug)]
pub enum CommitError {
    /// The original was written to, replaced or removed after we read it: left alone.
    Changed(String),
    /// An I/O error; the message says at which step, and whether the new file is in place.
    Io(String),
}

/// The outcome of one staged file.
pub struct Committed<T> {
    /// The original's path.
    pub path: PathBuf,
    /// Bytes of the new file.
    pub bytes: u64,
    /// Carried over from [`Staged::warnings`].
    pub warnings: Vec<String>,
    /// The caller's payload.
    pub payload: T,
    /// Whether the new file replaced the original durably.
    pub result: Result<(), CommitError>,
}

/// The group commit: makes every temporary of `batch` durable, renames each over its original
/// (after checking the original was not changed), then syncs each directory once.
///
/// Why this is crash-safe, whatever the moment of the crash:
/// - Until its rename, an original is untouched: the new contents live in a different inode
///   under a different name. A crash leaves the original plus a temporary, which the next run
///   removes.
/// - A rename is issued only after the temporary's data and metadata are durable (the syncs of
///   step 1 have returned without error). `rename` atomically switches the name from the old
///   inode to the new one, so after a crash the name refers either to the old file or to the
///   new one, and the new one is complete on disk: never to a partial file, never to nothing.
/// - The sync of step 3 (the filesystem's, or each directory's) makes the renames themselves
///   durable. Until it returns, a crash may bring back the old names (old files intact, still
///   openable with the old identity); so a file is reported re-wrapped only after that sync,
///   and the old identity must not be retired before a run has ended with every file done.
/// - A sync that reports an error is never taken as durability: the files it covered are
///   synced one by one, and each one whose sync fails is reported failed.
///
/// So the per-file cost of durability is shared: two filesystem syncs per batch instead of
/// two fsyncs per file (each of which, on a journaling filesystem, flushes the disk cache).
pub fn commit_batch<T>(batch: Vec<Staged<T>>, durability: Durability) -> Vec<Committed<T>> {
    // Step 1: the temporaries get their times, then their contents and metadata reach the disk.
    let mut batch = batch;
    let mut errors: Vec<Option<CommitError>> = batch
        .iter()
        .map(|s| {
            copy_times(&s.src.snap, &s.temp.file)
                .err()
                .map(|e| CommitError::Io(format!("cannot set the new file's times: {e}")))
        })
        .collect();
    let synced = durability == Durability::Group
        && sync_filesystems(
            batch
                .iter()
                .map(|s| (s.temp.dev, s.temp.created, &s.temp.file)),
        );
    if !synced {
        // Per file: durability, or (after a failed syncfs) which temporaries failed.
        for (s, err) in batch.iter().zip(errors.iter_mut()) {
            if err.is_none()
                && let Err(e) = s.temp.file.sync_all()
            {
                *err = Some(CommitError::Io(format!("cannot sync the new file: {e}")));
            }
        }
    }

    // Step 2: for each original still as we read it, switch its name to the new file.
    for (s, err) in batch.iter_mut().zip(errors.iter_mut()) {
        if err.is_some() {
            continue;
        }
        if let Err(msg) = s.src.check_unchanged() {
            *err = Some(CommitError::Changed(msg));
            continue;
        }
        match rustix::fs::renameat(&*s.temp.dir, &s.temp.name, &*s.src.dir, &s.src.name) {
            Ok(()) => s.temp.renamed = true,
            Err(e) => *err = Some(CommitError::Io(format!("cannot rename the new file: {e}"))),
        }
    }

    // Step 3: the renames reach the disk: one syncfs per filesystem, or else one fsync per
    // directory that received a rename.
    let synced = durability == Durability::Group
        && sync_filesystems(
            batch
                .iter()
                .filter(|s| s.temp.renamed)
                .map(|s| (s.temp.dev, 0, &s.temp.file)),
        );
    if !synced {
        // Directories are shared between sources through the cache: most share a descriptor.
        let mut by_fd: HashMap<*const OwnedFd, Option<String>> = HashMap::new();
        let mut by_inode: HashMap<(u64, u64), Option<String>> = HashMap::new();
        for (s, err) in batch.iter().zip(errors.iter_mut()) {
            if !s.temp.renamed {
                continue;
            }
            let dir = &s.src.dir;
            let dir_result = by_fd
                .entry(Arc::as_ptr(dir))
                .or_insert_with(|| match rustix::fs::fstat(&**dir) {
                    #[allow(clippy::unnecessary_cast)]
                    Ok(st) => by_inode
                        .entry((st.st_dev as u64, st.st_ino as u64))
                        .or_insert_with(|| rustix::fs::fsync(&**dir).err().map(|e| e.to_string()))
                        .clone(),
                    Err(e) => Some(e.to_string()),
                })
                .clone();
            if let Some(e) = dir_result {
                *err = Some(CommitError::Io(format!(
                    "the new file is in place but syncing its directory failed ({e}): it may \
                     not survive a crash"
                )));
            }
        }
    }
    batch
        .into_iter()
        .zip(errors)
        .map(|(s, err)| Committed {
            path: s.src.path.clone(),
            bytes: s.bytes,
            warnings: s.warnings,
            payload: s.payload,
            result: err.map_or(Ok(()), Err),
        })
        .collect()
}
