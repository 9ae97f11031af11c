//! The FUSE daemon: serves an in-memory [`Image`] and records every change it receives,
//! in order, as a [`Trace`]. It never makes anything durable itself: what survives a power
//! cut is computed from the trace afterwards ([`Trace::image`]).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use fuser::{
    AccessFlags, BsdFileFlags, Config, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType,
    Filesystem, FopenFlags, Generation, INodeNo, LockOwner, MountOption, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::model::{
    AttrChange, Attrs, FsError, Image, Ino, Inode, Node, Op, RenameMode, Time, Trace,
};

/// How the simulated disk answers syncs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disk {
    /// A barrier is recorded for every `fsync`/`fdatasync` and directory `fsync` received.
    Honest,
    /// Every sync is acknowledged and none is recorded: a disk whose cache ignores flushes.
    Lying,
    /// File syncs are honest; every directory `fsync` fails with `EIO`.
    FailingDirSync,
}

/// What the daemon shares with the test: the tree as the application sees it, the trace,
/// and a count of the requests of each kind received.
#[derive(Debug)]
struct Live {
    initial: Image,
    image: Image,
    ops: Vec<Op>,
    disk: Disk,
    requests: BTreeMap<&'static str, u64>,
    /// Open directory handles: the entries as they were at `opendir`, so that a listing
    /// interrupted by changes neither repeats nor skips a name that stayed.
    listings: BTreeMap<u64, Vec<(Ino, FileType, Vec<u8>)>>,
    next_fh: u64,
}

/// The filesystem served over FUSE.
#[derive(Debug, Clone)]
struct CrashFs {
    live: Arc<Mutex<Live>>,
}

const TTL: Duration = Duration::ZERO;

fn errno(e: FsError) -> Errno {
    match e {
        FsError::NotFound => Errno::ENOENT,
        FsError::Exists => Errno::EEXIST,
        FsError::NotDir => Errno::ENOTDIR,
        FsError::IsDir => Errno::EISDIR,
        FsError::NotEmpty => Errno::ENOTEMPTY,
        FsError::Unsupported => Errno::EOPNOTSUPP,
    }
}

impl Live {
    fn count(&mut self, what: &'static str) {
        *self.requests.entry(what).or_default() += 1;
    }

    /// Checks, applies and records `op`.
    fn record(&mut self, op: Op) -> Result<(), Errno> {
        self.image.check(&op).map_err(errno)?;
        self.image.apply(&op);
        self.ops.push(op);
        Ok(())
    }

    fn attr(&self, ino: Ino) -> Result<FileAttr, Errno> {
        let inode = self.image.inode(ino).ok_or(Errno::ENOENT)?;
        Ok(file_attr(ino, inode, self.image.nlink(ino)))
    }

    /// A new file or directory `name` in `parent`, created by `req` with `mode` less `umask`.
    fn make(
        &mut self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        (mode, umask): (u32, u32),
        dir: bool,
    ) -> Result<FileAttr, Errno> {
        let attrs = Attrs::new(mode & !umask, req.uid(), req.gid(), Time::now());
        let ino = self.new_inode(parent.0, name, dir, attrs)?;
        self.attr(ino)
    }

    fn new_inode(
        &mut self,
        parent: Ino,
        name: &OsStr,
        dir: bool,
        attrs: Attrs,
    ) -> Result<Ino, Errno> {
        let name = name.as_bytes().to_vec();
        if self.image.lookup(parent, &name).is_some() {
            return Err(Errno::EEXIST);
        }
        let ino = self.image.next_ino();
        self.record(Op::NewInode { ino, dir, attrs })?;
        self.record(Op::Link {
            dir: parent,
            name,
            ino,
        })?;
        Ok(ino)
    }
}

fn file_attr(ino: Ino, inode: &Inode, nlink: u32) -> FileAttr {
    let (kind, size) = match &inode.node {
        Node::File(d) => (FileType::RegularFile, d.len() as u64),
        Node::Dir(d) => (FileType::Directory, d.len() as u64),
    };
    let a = &inode.attrs;
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: a.atime.into(),
        mtime: a.mtime.into(),
        ctime: a.ctime.into(),
        crtime: a.ctime.into(),
        kind,
        perm: (a.mode & 0o7777) as u16,
        nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn time_of(t: TimeOrNow) -> Time {
    match t {
        TimeOrNow::SpecificTime(t) => Time::from(t),
        TimeOrNow::Now => Time::now(),
    }
}

impl CrashFs {
    fn lock(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Filesystem for CrashFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut l = self.lock();
        l.count("lookup");
        match l
            .image
            .lookup(parent.0, name.as_bytes())
            .ok_or(Errno::ENOENT)
            .and_then(|ino| l.attr(ino))
        {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let mut l = self.lock();
        l.count("getattr");
        match l.attr(ino.0) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut l = self.lock();
        l.count("setattr");
        let ino = ino.0;
        let now = Time::now();
        let mut result = Ok(());
        if let Some(size) = size {
            result = result.and_then(|()| {
                l.record(Op::Truncate {
                    ino,
                    size,
                    time: now,
                })
            });
        }
        if let Some(m) = mode {
            result = result.and_then(|()| {
                l.record(Op::SetAttr {
                    ino,
                    change: AttrChange::Mode(m),
                    time: now,
                })
            });
        }
        if uid.is_some() || gid.is_some() {
            result = result.and_then(|()| {
                l.record(Op::SetAttr {
                    ino,
                    change: AttrChange::Owner { uid, gid },
                    time: now,
                })
            });
        }
        if atime.is_some() || mtime.is_some() {
            result = result.and_then(|()| {
                l.record(Op::SetAttr {
                    ino,
                    change: AttrChange::Times {
                        atime: atime.map(time_of),
                        mtime: mtime.map(time_of),
                    },
                    time: now,
                })
            });
        }
        match result.and_then(|()| l.attr(ino)) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let mut l = self.lock();
        l.count("mknod");
        if mode & S_IFMT != S_IFREG {
            reply.error(Errno::EPERM);
            return;
        }
        match l.make(req, parent, name, (mode, umask), false) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut l = self.lock();
        l.count("mkdir");
        match l.make(req, parent, name, (mode, umask), true) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut l = self.lock();
        l.count("unlink");
        let dir = parent.0;
        let name = name.as_bytes().to_vec();
        let r = match l.image.lookup(dir, &name).and_then(|i| l.image.inode(i)) {
            Some(Inode {
                node: Node::Dir(_), ..
            }) => Err(Errno::EISDIR),
            Some(_) => l.record(Op::Unlink { dir, name }),
            None => Err(Errno::ENOENT),
        };
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut l = self.lock();
        l.count("rmdir");
        let dir = parent.0;
        let name = name.as_bytes().to_vec();
        let r = match l.image.lookup(dir, &name).and_then(|i| l.image.inode(i)) {
            Some(Inode {
                node: Node::File(_),
                ..
            }) => Err(Errno::ENOTDIR),
            Some(_) => l.record(Op::Unlink { dir, name }),
            None => Err(Errno::ENOENT),
        };
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut l = self.lock();
        l.count("rename");
        let mode = if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            RenameMode::Exchange
        } else if flags.contains(RenameFlags::RENAME_NOREPLACE) {
            RenameMode::NoReplace
        } else if flags.is_empty() {
            RenameMode::Replace
        } else {
            reply.error(Errno::EINVAL);
            return;
        };
        match l.record(Op::Rename {
            from_dir: parent.0,
            from: name.as_bytes().to_vec(),
            to_dir: newparent.0,
            to: newname.as_bytes().to_vec(),
            mode,
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let mut l = self.lock();
        l.count("link");
        if matches!(l.image.inode(ino.0).map(|i| &i.node), Some(Node::Dir(_))) {
            reply.error(Errno::EPERM);
            return;
        }
        match l
            .record(Op::Link {
                dir: newparent.0,
                name: newname.as_bytes().to_vec(),
                ino: ino.0,
            })
            .and_then(|()| l.attr(ino.0))
        {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut l = self.lock();
        l.count("open");
        match l.image.inode(ino.0).map(|i| &i.node) {
            Some(Node::File(_)) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Some(Node::Dir(_)) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut l = self.lock();
        l.count("read");
        match l.image.inode(ino.0).map(|i| &i.node) {
            Some(Node::File(d)) => {
                let from = (offset as usize).min(d.len());
                let to = from.saturating_add(size as usize).min(d.len());
                reply.data(&d[from..to]);
            }
            Some(Node::Dir(_)) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut l = self.lock();
        l.count("write");
        match l.record(Op::Write {
            ino: ino.0,
            offset,
            data: data.to_vec(),
            time: Time::now(),
        }) {
            Ok(()) => reply.written(u32::try_from(data.len()).unwrap_or(u32::MAX)),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.lock().count("flush");
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut l = self.lock();
        l.count(if datasync { "fdatasync" } else { "fsync" });
        let r = match l.disk {
            Disk::Lying => Ok(()),
            Disk::Honest | Disk::FailingDirSync => l.record(Op::Fsync {
                ino: ino.0,
                data_only: datasync,
            }),
        };
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut l = self.lock();
        l.count("opendir");
        let entries = match l.image.entries(ino.0) {
            Ok(e) => e,
            Err(e) => {
                reply.error(errno(e));
                return;
            }
        };
        let mut all: Vec<(Ino, FileType, Vec<u8>)> = vec![
            (ino.0, FileType::Directory, b".".to_vec()),
            (ino.0, FileType::Directory, b"..".to_vec()),
        ];
        for (name, i) in entries {
            let kind = match l.image.inode(i).map(|x| &x.node) {
                Some(Node::Dir(_)) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            all.push((i, kind, name));
        }
        l.next_fh += 1;
        let fh = l.next_fh;
        l.listings.insert(fh, all);
        reply.opened(FileHandle(fh), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut l = self.lock();
        l.count("readdir");
        let Some(all) = l.listings.get(&fh.0) else {
            reply.error(Errno::EBADF);
            return;
        };
        for (n, (i, kind, name)) in all.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*i), (n + 1) as u64, *kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let mut l = self.lock();
        l.count("releasedir");
        l.listings.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut l = self.lock();
        l.count("fsyncdir");
        let r = match l.disk {
            Disk::Lying => Ok(()),
            Disk::FailingDirSync => Err(Errno::EIO),
            Disk::Honest => l.record(Op::FsyncDir { ino: ino.0 }),
        };
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.lock().count("statfs");
        reply.statfs(1 << 20, 1 << 19, 1 << 19, 1 << 20, 1 << 19, 4096, 255, 4096);
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let mut l = self.lock();
        l.count("setxattr");
        match l.record(Op::SetAttr {
            ino: ino.0,
            change: AttrChange::SetXattr {
                name: name.as_bytes().to_vec(),
                value: value.to_vec(),
            },
            time: Time::now(),
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let mut l = self.lock();
        l.count("getxattr");
        let Some(inode) = l.image.inode(ino.0) else {
            reply.error(Errno::ENOENT);
            return;
        };
        match inode.attrs.xattrs.get(name.as_bytes()) {
            None => reply.error(Errno::ENODATA),
            Some(v) if size == 0 => reply.size(u32::try_from(v.len()).unwrap_or(u32::MAX)),
            Some(v) if (size as usize) < v.len() => reply.error(Errno::ERANGE),
            Some(v) => reply.data(v),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let mut l = self.lock();
        l.count("listxattr");
        let Some(inode) = l.image.inode(ino.0) else {
            reply.error(Errno::ENOENT);
            return;
        };
        let mut list = Vec::new();
        for name in inode.attrs.xattrs.keys() {
            list.extend_from_slice(name);
            list.push(0);
        }
        if size == 0 {
            reply.size(u32::try_from(list.len()).unwrap_or(u32::MAX));
        } else if (size as usize) < list.len() {
            reply.error(Errno::ERANGE);
        } else {
            reply.data(&list);
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut l = self.lock();
        l.count("removexattr");
        let present = l
            .image
            .inode(ino.0)
            .is_some_and(|i| i.attrs.xattrs.contains_key(name.as_bytes()));
        if !present {
            reply.error(Errno::ENODATA);
            return;
        }
        match l.record(Op::SetAttr {
            ino: ino.0,
            change: AttrChange::RemoveXattr {
                name: name.as_bytes().to_vec(),
            },
            time: Time::now(),
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        let mut l = self.lock();
        l.count("access");
        if l.image.inode(ino.0).is_some() {
            reply.ok();
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut l = self.lock();
        l.count("create");
        match l.make(req, parent, name, (mode, umask), false) {
            Ok(a) => reply.created(&TTL, &a, Generation(0), FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        ino_in: INodeNo,
        _fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        _fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        let mut l = self.lock();
        l.count("copy_file_range");
        // At most 1 MiB per request (the caller loops), as a real filesystem may return less.
        let data = match l.image.inode(ino_in.0).map(|i| &i.node) {
            Some(Node::File(d)) => {
                let from = (offset_in as usize).min(d.len());
                let to = from.saturating_add(len.min(1 << 20) as usize).min(d.len());
                d[from..to].to_vec()
            }
            Some(Node::Dir(_)) => {
                reply.error(Errno::EISDIR);
                return;
            }
            None => {
                reply.error(Errno::ENOENT);
                return;
            }
        };
        if data.is_empty() {
            reply.written(0);
            return;
        }
        let n = data.len();
        match l.record(Op::Write {
            ino: ino_out.0,
            offset: offset_out,
            data,
            time: Time::now(),
        }) {
            Ok(()) => reply.written(u32::try_from(n).unwrap_or(u32::MAX)),
            Err(e) => reply.error(e),
        }
    }
}

/// The file-type bits of a mode, and those of a regular file.
const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;

/// A mounted crash filesystem. Dropping it unmounts it.
pub struct Mounted {
    session: Option<fuser::BackgroundSession>,
    live: Arc<Mutex<Live>>,
    path: PathBuf,
}

impl std::fmt::Debug for Mounted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mounted").field("path", &self.path).finish()
    }
}

/// Mounts a crash filesystem holding `initial` (taken as durable) on the existing, empty
/// directory `at`. Needs `/dev/fuse` and the right to mount (root, or `fusermount3`).
pub fn mount(initial: Image, at: &Path, disk: Disk) -> std::io::Result<Mounted> {
    let live = Arc::new(Mutex::new(Live {
        initial: initial.clone(),
        image: initial,
        ops: Vec::new(),
        disk,
        requests: BTreeMap::new(),
        listings: BTreeMap::new(),
        next_fh: 0,
    }));
    let fs = CrashFs {
        live: Arc::clone(&live),
    };
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("crashfs".into()),
        MountOption::Subtype("crashfs".into()),
    ];
    // One thread: requests are applied, and recorded, in the order they are received.
    config.n_threads = Some(1);
    let session = fuser::spawn_mount(fs, at, &config)?;
    Ok(Mounted {
        session: Some(session),
        live,
        path: at.to_path_buf(),
    })
}

impl Mounted {
    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many requests of each kind the daemon has received so far.
    pub fn requests(&self) -> BTreeMap<&'static str, u64> {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .requests
            .clone()
    }

    /// How many operations have been recorded so far.
    pub fn ops_len(&self) -> usize {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .ops
            .len()
    }

    /// Unmounts and returns the trace of everything received.
    pub fn finish(mut self) -> std::io::Result<Trace> {
        if let Some(s) = self.session.take() {
            s.umount_and_join()?;
        }
        let l = self.live.lock().unwrap_or_else(|p| p.into_inner());
        Ok(Trace {
            initial: l.initial.clone(),
            ops: l.ops.clone(),
        })
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let _ = s.umount_and_join();
        }
    }
}
