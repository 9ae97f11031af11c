//! Writing a replacement beside the original: a temporary in the same directory
//! (`.<name>.pqwrap-tmp-<16 hex>`, created with `O_EXCL`, mode 0600, locked), holding either a
//! new prefix followed by the original's bytes from an offset, copied by the kernel with
//! `copy_file_range` (which may reflink), or any stream; then owner and group (where
//! permitted), mode, inode flags, extended attributes (ACLs included) are carried over. Times
//! are set at commit, after the verification read.
//!
//! A temporary dropped without being committed is unlinked, so an error at any step leaves
//! the original alone and no litter; a SIGKILL leaves at most temporaries, which the next
//! run removes.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use rustix::fs::{AtFlags, FlockOperation, IFlags, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

use super::source::{FsSource, Snapshot};
use super::temp::{random_temp_name_for, temp_name_for};
use super::walk::DirFd;
use crate::blob::{Blob, read_file_at};
use crate::error::{Change, FileError, Step};
use crate::format::Body;

/// A temporary file being prepared. Dropping it before it was renamed unlinks it.
#[derive(Debug)]
pub struct Temp {
    pub(super) dir: Arc<DirFd>,
    pub(super) name: OsString,
    /// The temporary, open read-write (so that it can be verified by reading it back).
    pub file: File,
    pub(super) dev: u64,
    ino: u64,
    /// Owner and group it was created with (what the metadata copy may have to change).
    owner: (u32, u32),
    /// Creation order within the process (the group commit syncs through the first-created
    /// temporary of a batch, whose descriptor sees every write-back error since).
    pub(super) created: u64,
    pub(super) renamed: bool,
}

static CREATED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Drop for Temp {
    fn drop(&mut self) {
        if !self.renamed {
            // Best effort: on failure the next run's cleanup removes it.
            let _ = rustix::fs::unlinkat(&self.dir.fd, &self.name, AtFlags::empty());
        }
    }
}

/// A replacement ready to be committed: the locked original and its written temporary.
#[derive(Debug)]
pub struct FsStaged {
    /// The original.
    pub src: FsSource,
    /// The new contents.
    pub temp: Temp,
    /// Bytes written to the temporary.
    pub bytes: u64,
    /// Things that were not carried over but did not stop the re-wrap.
    pub warnings: Vec<String>,
}

impl Blob for FsStaged {
    fn len(&self) -> u64 {
        self.bytes
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        read_file_at(&self.temp.file, self.bytes, buf, offset)
    }
}

impl crate::store::Staged for FsStaged {
    fn blob(&self) -> &dyn Blob {
        self
    }

    fn source(&self) -> &dyn crate::store::Source {
        &self.src
    }
}

/// Creates a locked temporary beside `src`. Another run's cleanup may remove a fresh
/// temporary in the instant between its creation and our lock (it looks abandoned then):
/// that is retried with a new name a few times rather than failing the file.
fn create_temp(src: &FsSource) -> io::Result<Temp> {
    let mut tries = 0;
    loop {
        match create_temp_once(src) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 3 => tries += 1,
            r => return r,
        }
    }
}

fn create_temp_once(src: &FsSource) -> io::Result<Temp> {
    let dir = src.dir();
    let create = |name: &OsString| {
        rustix::fs::openat(
            &dir.fd,
            name,
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
    };
    let original = &src.entry.name;
    let mut name = temp_name_for(original)?;
    let mut attempts = 0;
    let fd = loop {
        match create(&name) {
            // Someone made that name (a planted file, or a name from another process's
            // sequence): take a fully random one.
            Err(Errno::EXIST) if attempts < 8 => {
                attempts += 1;
                name = random_temp_name_for(original)?;
            }
            r => break r?,
        }
    };
    let file = File::from(fd);
    #[allow(clippy::unnecessary_cast)]
    let st = rustix::fs::fstat(&file)?;
    #[allow(clippy::unnecessary_cast)]
    let mut temp = Temp {
        dir: Arc::clone(dir),
        name,
        file,
        dev: st.st_dev as u64,
        ino: st.st_ino as u64,
        owner: (st.st_uid, st.st_gid),
        created: CREATED.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        renamed: false,
    };
    // Locked for as long as it lives: this is what tells another run's cleanup that the
    // temporary belongs to a live process.
    rustix::fs::flock(&temp.file, FlockOperation::NonBlockingLockExclusive)?;
    // A cleanup may have opened and removed it between our create and our lock; make sure the
    // name is still ours, or the rename would later fail.
    let st = rustix::fs::statat(&temp.dir.fd, &temp.name, AtFlags::SYMLINK_NOFOLLOW);
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
/// Nothing is synced here: that is the commit's job.
pub fn stage(src: FsSource, body: Body<'_>) -> Result<FsStaged, FileError> {
    let mut warnings = Vec::new();
    let temp = create_temp(&src).map_err(|e| FileError::io(Step::Create, e))?;
    // Before any data: some flags (no copy-on-write) only take on an empty file.
    copy_flags(&src, &temp, &mut warnings);
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
            f(&src, &mut counter)
                .and_then(|()| counter.flush())
                .map_err(|e| {
                    // The original was checked whole before: running out of it now means it was
                    // truncated under us.
                    if e.kind() == io::ErrorKind::UnexpectedEof {
                        FileError::Changed(Change::Shrank)
                    } else {
                        FileError::io(Step::Write, e)
                    }
                })?;
            counter.count
        }
    };
    copy_metadata(&src, &temp, &mut warnings).map_err(|e| FileError::io(Step::Metadata, e))?;
    Ok(FsStaged {
        src,
        temp,
        bytes,
        warnings,
    })
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
) -> Result<u64, FileError> {
    let write = |e: io::Error| FileError::io(Step::Write, e);
    if tail_offset > size {
        return Err(FileError::Changed(Change::Shrank));
    }
    let mut out = dst;
    out.write_all(prefix).map_err(write)?;
    let mut off = tail_offset;
    let mut kernel_copy = true;
    let mut buf = Vec::new();
    while off < size {
        let want = (size - off).min(1 << 30);
        if kernel_copy {
            // Output offset: the file position (after the prefix), advanced by the kernel.
            match rustix::fs::copy_file_range(src, Some(&mut off), dst, None, want as usize) {
                Ok(0) => return Err(FileError::Changed(Change::Shrank)),
                Ok(_) | Err(Errno::INTR) => {}
                // Filesystems or kernels that cannot do it: copy through user space instead.
                Err(Errno::XDEV | Errno::NOSYS | Errno::OPNOTSUPP | Errno::INVAL | Errno::PERM) => {
                    kernel_copy = false;
                    buf.resize(256 * 1024, 0);
                }
                Err(e) => return Err(write(e.into())),
            }
        } else {
            let n = want.min(buf.len() as u64) as usize;
            let chunk = buf.get_mut(..n).unwrap_or_default();
            let got = src.read_at(chunk, off).map_err(write)?;
            if got == 0 {
                return Err(FileError::Changed(Change::Shrank));
            }
            out.write_all(chunk.get(..got).unwrap_or_default())
                .map_err(write)?;
            off += got as u64;
        }
    }
    Ok(prefix.len() as u64 + (size - tail_offset))
}

/// The inode flags carried to a new file: those a user sets to change how the file is
/// treated (`chattr +d` keeps it out of dump backups, `+A` `+S` `+c` `+C` ...). Immutable and
/// append-only are not among them: such an original cannot be replaced at all.
const CARRIED_FLAGS: IFlags = IFlags::NODUMP
    .union(IFlags::NOATIME)
    .union(IFlags::SYNC)
    .union(IFlags::COMPRESSED)
    .union(IFlags::NOCOW)
    .union(IFlags::NOTAIL)
    .union(IFlags::JOURNALING)
    .union(IFlags::SECURE_REMOVAL)
    .union(IFlags::UNRM)
    .union(IFlags::PROJECT_INHERIT);

/// Short `chattr` names of flags, for warnings.
fn flag_names(flags: IFlags) -> String {
    let names = [
        (IFlags::NODUMP, "d"),
        (IFlags::NOATIME, "A"),
        (IFlags::SYNC, "S"),
        (IFlags::COMPRESSED, "c"),
        (IFlags::NOCOW, "C"),
        (IFlags::NOTAIL, "t"),
        (IFlags::JOURNALING, "j"),
        (IFlags::SECURE_REMOVAL, "s"),
        (IFlags::UNRM, "u"),
        (IFlags::PROJECT_INHERIT, "P"),
    ];
    names
        .iter()
        .filter(|(f, _)| flags.contains(*f))
        .map(|(_, n)| *n)
        .collect()
}

/// Carries the original's inode flags over, where the filesystem lets us; a flag that cannot
/// be set is a warning (the file is still re-wrapped), never silently dropped.
fn copy_flags(src: &FsSource, temp: &Temp, warnings: &mut Vec<String>) {
    // Filesystems without inode flags (ENOTTY, EOPNOTSUPP) have none to carry.
    let Ok(flags) = rustix::fs::ioctl_getflags(&src.file) else {
        return;
    };
    let wanted = flags & CARRIED_FLAGS;
    if wanted.is_empty() {
        return;
    }
    let current = rustix::fs::ioctl_getflags(&temp.file).unwrap_or(IFlags::empty());
    let set = rustix::fs::ioctl_setflags(&temp.file, current | wanted);
    let now = rustix::fs::ioctl_getflags(&temp.file).unwrap_or(IFlags::empty());
    let missing = wanted - now;
    if !missing.is_empty() {
        let why = match set {
            Err(e) => e.to_string(),
            Ok(()) => "not kept by the filesystem".into(),
        };
        warnings.push(format!(
            "inode flags +{} not kept ({why})",
            flag_names(missing)
        ));
    }
}

/// Owner and group (where permitted), mode and extended attributes of `src` onto `temp`.
/// Failing to copy an extended attribute is an error (it may be an ACL: dropping it could
/// widen access); failing to keep the owner is a warning (only root may give a file away; the
/// new file then belongs to us, which the report says).
fn copy_metadata(src: &FsSource, temp: &Temp, warnings: &mut Vec<String>) -> io::Result<()> {
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
            let now = rustix::fs::fstat(dst)?;
            if now.st_uid != s.uid {
                warnings.push(format!("owner {} not kept (not permitted)", s.uid));
            }
            if !group_kept && now.st_gid != s.gid {
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

/// Sets the atime and mtime of `snap` on `file` (a temporary before its sync, or an original
/// after an in-place re-write moved them).
pub fn set_times(snap: &Snapshot, file: &File) -> io::Result<()> {
    let ts = |(sec, nsec): (i64, i64)| Timespec {
        tv_sec: sec,
        tv_nsec: nsec as _,
    };
    rustix::fs::futimens(
        file,
        &Timestamps {
            last_access: ts(snap.atime),
            last_modification: ts(snap.mtime),
        },
    )?;
    Ok(())
}
