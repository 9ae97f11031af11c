//! The daemon on a real FUSE mount: what the kernel sends it for each durability call, and
//! that the trace it records gives back the tree the application saw.
// A failed unwrap in a test is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Mutex;

use crashfs::model::{Attrs, Op, Time};
use crashfs::{Choice, CrashState, Disk, Image};

/// Counts fuser's per-request debug lines, so that a request it could not parse (an opcode
/// it does not know, such as FUSE_SYNCFS) is still seen.
struct RequestLog(Mutex<Vec<String>>);

impl log::Log for RequestLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.target().starts_with("fuser")
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            let line = r.args().to_string();
            if line.starts_with("FUSE(") {
                self.0.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        }
    }
    fn flush(&self) {}
}

static LOG: RequestLog = RequestLog(Mutex::new(Vec::new()));

/// The log is process-wide: the tests of this file run one at a time, so that the requests
/// logged during a call are that call's.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn logged() -> Vec<String> {
    LOG.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

fn attrs(mode: u32) -> Attrs {
    Attrs::new(
        mode,
        0,
        0,
        Time {
            sec: 1_000,
            nsec: 0,
        },
    )
}

/// Mounts `tree`, or prints the SKIPPED banner and returns `None`.
fn mount_or_skip(test: &str, tree: Image, dir: &Path, disk: Disk) -> Option<crashfs::Mounted> {
    match crashfs::mount(tree, dir, disk) {
        Ok(m) => Some(m),
        Err(e) => {
            crashfs::skipped(test, &format!("cannot mount a FUSE filesystem: {e}"));
            None
        }
    }
}

#[test]
fn syncfs_and_sync_reach_the_daemon_only_as_what_it_receives() {
    let _serial = serial();
    let _ = log::set_logger(&LOG);
    log::set_max_level(log::LevelFilter::Debug);
    let d = tempfile::tempdir().unwrap();
    let Some(fs) = mount_or_skip(
        "syncfs measurement",
        Image::default(),
        d.path(),
        Disk::Honest,
    ) else {
        return;
    };
    let mut f = std::fs::File::create(d.path().join("f")).unwrap();
    f.write_all(b"data").unwrap();
    let (before, lines_before) = (fs.requests(), logged().len());
    rustix::fs::syncfs(&f).unwrap();
    let (after_syncfs, lines_syncfs) = (fs.requests(), logged().len());
    rustix::fs::sync();
    let (after_sync, lines_sync) = (fs.requests(), logged().len());
    f.sync_all().unwrap();
    let after_fsync = fs.requests();
    drop(f);
    let delta = |a: &std::collections::BTreeMap<&str, u64>,
                 b: &std::collections::BTreeMap<&str, u64>| {
        b.iter()
            .filter_map(|(k, v)| {
                let n = v - a.get(k).copied().unwrap_or(0);
                (n > 0).then(|| format!("{k} x{n}"))
            })
            .collect::<Vec<_>>()
    };
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    eprintln!(
        "kernel {release}: syncfs(2) sent the daemon {:?} ({} requests logged); sync(2) sent \
         {:?} ({} logged); fsync(2) sent {:?}",
        delta(&before, &after_syncfs),
        lines_syncfs - lines_before,
        delta(&after_syncfs, &after_sync),
        lines_sync - lines_syncfs,
        delta(&after_sync, &after_fsync),
    );
    let trace = fs.finish().unwrap();
    // Whatever the kernel sent for syncfs and sync, only a received fsync is a barrier: the
    // last operation is the fsync, and before it the write is not durable.
    let fsync_at = trace
        .ops
        .iter()
        .position(|op| matches!(op, Op::Fsync { .. }))
        .expect("the fsync reached the daemon");
    assert_eq!(fsync_at, trace.ops.len() - 1, "{:?}", trace.ops);
    let before_fsync = trace.image(CrashState {
        cut: fsync_at,
        choice: Choice::SyncedOnly,
    });
    assert_eq!(
        before_fsync.read(Path::new("f")),
        None,
        "nothing was made durable"
    );
    assert_eq!(
        (delta(&before, &after_syncfs), lines_syncfs - lines_before),
        (Vec::<String>::new(), 0),
        "this kernel now sends a FUSE daemon something for syncfs: model it"
    );
}

#[test]
fn the_trace_replays_to_what_the_application_saw() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let mut tree = Image::default();
    tree.add_file(Path::new("dir/old"), b"old contents", attrs(0o640));
    let Some(fs) = mount_or_skip("trace replay", tree, d.path(), Disk::Honest) else {
        return;
    };
    let m = d.path();
    // The replace-by-rename dance, with metadata.
    let tmp = m.join("dir/.tmp");
    let mut f = std::fs::File::create_new(&tmp).unwrap();
    f.write_all(&vec![5u8; 10_000]).unwrap();
    f.set_permissions(std::fs::Permissions::from_mode(0o640))
        .unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000))
        .unwrap();
    f.sync_all().unwrap();
    std::fs::rename(&tmp, m.join("dir/old")).unwrap();
    std::fs::File::open(m.join("dir"))
        .unwrap()
        .sync_all()
        .unwrap();
    std::fs::create_dir(m.join("sub")).unwrap();
    std::fs::write(m.join("sub/x"), b"x").unwrap();
    std::fs::hard_link(m.join("sub/x"), m.join("sub/y")).unwrap();
    assert_eq!(std::fs::metadata(m.join("sub/y")).unwrap().nlink(), 2);
    std::fs::remove_file(m.join("sub/x")).unwrap();
    let seen = std::fs::read(m.join("dir/old")).unwrap();
    assert_eq!(seen, vec![5u8; 10_000]);
    drop(f);
    let trace = fs.finish().unwrap();
    let end = trace.ops.len();
    let visible = trace.visible(end);
    assert_eq!(visible.read(Path::new("dir/old")), Some(&seen[..]));
    assert_eq!(visible.read(Path::new("sub/y")), Some(&b"x"[..]));
    assert_eq!(visible.read(Path::new("sub/x")), None);
    // Synced: the renamed file, its mode and mtime; not the unsynced directory `sub`.
    let synced = trace.image(CrashState {
        cut: end,
        choice: Choice::SyncedOnly,
    });
    assert_eq!(synced.read(Path::new("dir/old")), Some(&seen[..]));
    let ino = synced.resolve(Path::new("dir/old")).unwrap();
    let a = &synced.inode(ino).unwrap().attrs;
    assert_eq!((a.mode, a.mtime.sec), (0o640, 1_000));
    assert_eq!(synced.resolve(Path::new("sub")), None);
    assert_eq!(
        trace
            .image(CrashState {
                cut: end,
                choice: Choice::Everything,
            })
            .fingerprint(),
        visible.fingerprint()
    );
}

#[test]
fn a_lying_disk_records_no_barrier_and_a_failing_one_fails_directory_syncs() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let Some(fs) = mount_or_skip("lying disk", Image::default(), d.path(), Disk::Lying) else {
        return;
    };
    let f = std::fs::File::create(d.path().join("f")).unwrap();
    f.sync_all().unwrap();
    std::fs::File::open(d.path()).unwrap().sync_all().unwrap();
    drop(f);
    let trace = fs.finish().unwrap();
    assert!(
        !trace
            .ops
            .iter()
            .any(|op| matches!(op, Op::Fsync { .. } | Op::FsyncDir { .. })),
        "{:?}",
        trace.ops
    );

    let d = tempfile::tempdir().unwrap();
    let Some(fs) = mount_or_skip(
        "failing dir sync",
        Image::default(),
        d.path(),
        Disk::FailingDirSync,
    ) else {
        return;
    };
    let f = std::fs::File::create(d.path().join("f")).unwrap();
    f.sync_all().unwrap();
    let e = std::fs::File::open(d.path())
        .unwrap()
        .sync_all()
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(5), "EIO");
    drop(f);
    fs.finish().unwrap();
}
