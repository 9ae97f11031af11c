//! The group commit: makes every temporary of a batch durable, renames each over its original
//! (after checking the original was not changed), then makes the renames durable.
//!
//! Why this is crash-safe, whatever the moment of the crash:
//! - Until its rename, an original is untouched: the new contents live in a different inode
//!   under a different name. A crash leaves the original plus a temporary, which the next run
//!   removes.
//! - A rename is issued only after the temporary's data and metadata are durable (the syncs of
//!   step 1 have returned without error). `rename` atomically switches the name from the old
//!   inode to the new one, so after a crash the name refers either to the old file or to the
//!   new one, and the new one is complete on disk: never to a partial file, never to nothing.
//! - The sync of step 3 (the filesystem's, or each directory's) makes the renames themselves
//!   durable. Until it returns, a crash may bring back the old names (old files intact, still
//!   openable with the old identity); so a file is reported re-wrapped only after that sync,
//!   and the old identity must not be retired before a run has ended with every file done.
//! - A sync that reports an error is never taken as durability: the files it covered are
//!   synced one by one, and each one whose sync fails is reported failed.
//!
//! So the per-file cost of durability is shared: two filesystem syncs per batch instead of
//! two fsyncs per file (each of which, on a journaling filesystem, flushes the disk cache).

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;

use super::Durability;
use super::stage::{FsStaged, set_times};
use crate::error::{FileError, Step};
use crate::store::CommitOutcome;

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

/// `statfs` type of FUSE filesystems.
const FUSE_SUPER_MAGIC: u64 = 0x6573_5546;

/// Whether `syncfs` on `file`'s filesystem reaches its store. On FUSE it does not: Linux
/// (measured on 6.18) sends the daemon nothing for `syncfs(2)`; only `fsync` of each file and
/// directory reaches it.
fn syncfs_reaches_the_store(file: &File) -> bool {
    #[allow(clippy::unnecessary_cast)]
    rustix::fs::fstatfs(file).is_ok_and(|st| st.f_type as u64 != FUSE_SUPER_MAGIC)
}

/// Whether to skip making temporaries durable before their rename: the bug the power-loss
/// tests must catch, switched on by `PQWRAP_TEST_SKIP_TEMP_SYNC` in debug builds only.
#[cfg(debug_assertions)]
fn skip_temp_sync_for_tests() -> bool {
    std::env::var_os("PQWRAP_TEST_SKIP_TEMP_SYNC").is_some()
}

#[cfg(not(debug_assertions))]
fn skip_temp_sync_for_tests() -> bool {
    false
}

/// `syncfs` once per filesystem, on the descriptor with the lowest order key among those of
/// `items` on that filesystem. True if every call succeeded and that success means no
/// write-back error: since Linux 5.8 `syncfs` reports every write-back error on the
/// filesystem since the descriptor it is called on was opened, and the first-created
/// temporary's descriptor is the oldest of the batch. False at once where `syncfs` does not
/// reach the store (FUSE): the caller then syncs each file and directory.
fn sync_filesystems<'a, I>(items: I) -> bool
where
    I: Iterator<Item = (u64, u64, &'a File)>,
{
    let mut first: HashMap<u64, (u64, &File)> = HashMap::new();
    for (dev, order, file) in items {
        let e = first.entry(dev).or_insert((order, file));
        if order < e.0 {
            *e = (order, file);
        }
    }
    if !first.values().all(|(_, f)| syncfs_reaches_the_store(f)) {
        return false;
    }
    let mut clean = syncfs_reports_errors();
    for (_, file) in first.values() {
        if rustix::fs::syncfs(file).is_err() {
            clean = false;
        }
    }
    clean
}

/// Commits `batch` (see the module documentation).
pub fn commit_batch<T>(
    batch: Vec<(FsStaged, T)>,
    durability: Durability,
) -> Vec<(T, CommitOutcome)> {
    let mut batch = batch;
    // Step 1: the temporaries get their times (after any verification read, which may move
    // atime), then their contents and metadata reach the disk.
    let mut errors: Vec<Option<FileError>> = batch
        .iter()
        .map(|(s, _)| {
            set_times(&s.src.snap, &s.temp.file)
                .err()
                .map(|e| FileError::io(Step::Times, e))
        })
        .collect();
    let synced = skip_temp_sync_for_tests()
        || durability == Durability::Group
            && sync_filesystems(
                batch
                    .iter()
                    .map(|(s, _)| (s.temp.dev, s.temp.created, &s.temp.file)),
            );
    if !synced {
        // Per file: durability, or (after a failed syncfs) which temporaries failed.
        for ((s, _), err) in batch.iter().zip(errors.iter_mut()) {
            if err.is_none()
                && let Err(e) = s.temp.file.sync_all()
            {
                *err = Some(FileError::io(Step::Sync, e));
            }
        }
    }

    // Step 2: for each original still as we read it, switch its name to the new file.
    for ((s, _), err) in batch.iter_mut().zip(errors.iter_mut()) {
        if err.is_some() {
            continue;
        }
        if let Err(change) = s.src.unchanged() {
            *err = Some(FileError::Changed(change));
            continue;
        }
        let dir = &s.src.dir().fd;
        match rustix::fs::renameat(&s.temp.dir.fd, &s.temp.name, dir, &s.src.entry.name) {
            Ok(()) => s.temp.renamed = true,
            Err(e) => *err = Some(FileError::io(Step::Rename, e)),
        }
    }

    // Step 3: the renames reach the disk: one syncfs per filesystem, or else one fsync per
    // directory that received a rename.
    let synced = durability == Durability::Group
        && sync_filesystems(
            batch
                .iter()
                .filter(|(s, _)| s.temp.renamed)
                .map(|(s, _)| (s.temp.dev, 0, &s.temp.file)),
        );
    if !synced {
        // Directories are shared between the files listed in them: most share a descriptor.
        let mut by_fd: HashMap<*const super::walk::DirFd, Option<String>> = HashMap::new();
        let mut by_inode: HashMap<(u64, u64), Option<String>> = HashMap::new();
        for ((s, _), err) in batch.iter().zip(errors.iter_mut()) {
            if !s.temp.renamed {
                continue;
            }
            let dir = s.src.dir();
            let dir_result = by_fd
                .entry(Arc::as_ptr(dir))
                .or_insert_with(|| match rustix::fs::fstat(&dir.fd) {
                    #[allow(clippy::unnecessary_cast)]
                    Ok(st) => by_inode
                        .entry((st.st_dev as u64, st.st_ino as u64))
                        .or_insert_with(|| rustix::fs::fsync(&dir.fd).err().map(|e| e.to_string()))
                        .clone(),
                    Err(e) => Some(e.to_string()),
                })
                .clone();
            if let Some(e) = dir_result {
                *err = Some(FileError::io(Step::DirSync, std::io::Error::other(e)));
            }
        }
    }
    batch
        .into_iter()
        .zip(errors)
        .map(|((s, payload), err)| {
            let outcome = CommitOutcome {
                result: err.map_or(Ok(()), Err),
                bytes: s.bytes,
                transferred: None,
                warnings: s.warnings,
                read_back: None,
                after_check: None,
                kept_version: None,
            };
            (payload, outcome)
        })
        .collect()
}
