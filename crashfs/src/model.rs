//! The durability model, without FUSE: a tree of inodes ([`Image`]), the operations that
//! change it in the order the filesystem received them ([`Op`], [`Trace`]), and the images a
//! power cut after any prefix of the trace can leave on the disk ([`Trace::image`]).
//!
//! # The model
//!
//! An operation reaches the disk only when a barrier the filesystem actually received covers
//! it, or by chance:
//!
//! - `fsync` of a file covers that file's earlier writes and truncations, and its earlier
//!   metadata changes (mode, owner, times, extended attributes); `fdatasync` covers the writes
//!   and truncations (the size is needed to read the data back) but not the times or mode.
//! - `fsync` of a directory covers that directory's earlier entry changes (create, link,
//!   unlink, rename into or out of it). A rename is atomic: it reaches the disk whole or not
//!   at all, and the sync of either directory it touches covers it.
//! - Nothing else is a barrier. In particular an `fsync` of a file does not make its name
//!   durable (ext4 and XFS happen to do that for new files; POSIX does not promise it), and a
//!   `syncfs` counts only if the filesystem received one ([`Op`] has no variant for it:
//!   measured on Linux 6.18, a FUSE daemon is sent nothing by `syncfs(2)` or `sync(2)`).
//!
//! Everything not covered may or may not have reached the disk, independently:
//!
//! - file contents in 512-byte sectors: any subset of the unsynced sectors of any write, so a
//!   write can be torn at any sector and a later write can land while an earlier one is lost;
//!   a file whose size grew by a lost write reads zeros there;
//! - metadata changes (including the mtime a write sets): any subset;
//! - directory entry changes: for each directory, a prefix of its unsynced changes in the
//!   order they were made, each directory cut at its own point (a rename between two
//!   directories cuts both before it, or neither).
//!
//! This admits every state ext4 with `data=ordered` and XFS can leave, and more: both journal
//! metadata in one ordered log (a state of ours where each directory is cut at its own point
//! includes every cut of one global log), ext4 additionally writes a file's new blocks before
//! committing the metadata that exposes them (we do not: a renamed file may be empty or
//! torn, as on XFS), and neither gives fewer guarantees for `fsync` than listed above.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

/// An inode number.
pub type Ino = u64;

/// The root directory's inode number.
pub const ROOT: Ino = 1;

/// The unit in which unsynced file contents reach the disk or not.
pub const SECTOR: u64 = 512;

/// A timestamp, seconds and nanoseconds since the epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time {
    /// Seconds since the epoch.
    pub sec: i64,
    /// Nanoseconds.
    pub nsec: u32,
}

impl Time {
    /// The current time.
    pub fn now() -> Time {
        Time::from(std::time::SystemTime::now())
    }
}

impl From<std::time::SystemTime> for Time {
    fn from(t: std::time::SystemTime) -> Time {
        match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Time {
                sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                nsec: d.subsec_nanos(),
            },
            Err(_) => Time::default(),
        }
    }
}

impl From<Time> for std::time::SystemTime {
    fn from(t: Time) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::new(u64::try_from(t.sec).unwrap_or(0), t.nsec)
    }
}

/// An inode's metadata.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Attrs {
    /// Permission bits (and set-id and sticky bits), without the file type.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Access time.
    pub atime: Time,
    /// Modification time.
    pub mtime: Time,
    /// Status change time.
    pub ctime: Time,
    /// Extended attributes, name to value.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Attrs {
    /// Attributes for a new inode with `mode`, owned by `uid`:`gid`, all times `now`.
    pub fn new(mode: u32, uid: u32, gid: u32, now: Time) -> Attrs {
        Attrs {
            mode: mode & 0o7777,
            uid,
            gid,
            atime: now,
            mtime: now,
            ctime: now,
            xattrs: BTreeMap::new(),
        }
    }
}

/// What an inode holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Node {
    /// A regular file's contents.
    File(Vec<u8>),
    /// A directory's entries, name to inode.
    Dir(BTreeMap<Vec<u8>, Ino>),
}

/// One inode.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Inode {
    /// Contents or entries.
    pub node: Node,
    /// Metadata.
    pub attrs: Attrs,
}

/// Why an operation cannot be applied to an image (the daemon's answer to the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// No such inode or name.
    #[error("no such file or directory")]
    NotFound,
    /// The name exists.
    #[error("file exists")]
    Exists,
    /// A directory was expected.
    #[error("not a directory")]
    NotDir,
    /// A file was expected.
    #[error("is a directory")]
    IsDir,
    /// A directory to be removed or replaced has entries.
    #[error("directory not empty")]
    NotEmpty,
    /// An operation the model does not support.
    #[error("not supported")]
    Unsupported,
}

/// A filesystem tree: what the application sees, or what a disk holds after a power cut.
/// Inodes that no name reaches (an unlinked file still open) stay in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    inodes: BTreeMap<Ino, Inode>,
    next_ino: Ino,
}

impl Default for Image {
    fn default() -> Image {
        Image::new(Attrs::new(0o755, 0, 0, Time::now()))
    }
}

/// An entry met by [`Image::walk`].
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// Its path from the root, relative.
    pub path: PathBuf,
    /// Its inode number.
    pub ino: Ino,
    /// The inode.
    pub inode: &'a Inode,
}

fn name_bytes(name: &std::ffi::OsStr) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    name.as_bytes().to_vec()
}

impl Image {
    /// An empty tree whose root directory has `root`.
    pub fn new(root: Attrs) -> Image {
        let mut inodes = BTreeMap::new();
        inodes.insert(
            ROOT,
            Inode {
                node: Node::Dir(BTreeMap::new()),
                attrs: root,
            },
        );
        Image {
            inodes,
            next_ino: ROOT + 1,
        }
    }

    /// The inode numbered `ino`.
    pub fn inode(&self, ino: Ino) -> Option<&Inode> {
        self.inodes.get(&ino)
    }

    /// The number the next new inode gets.
    pub fn next_ino(&self) -> Ino {
        self.next_ino
    }

    fn dir(&self, ino: Ino) -> Result<&BTreeMap<Vec<u8>, Ino>, FsError> {
        match self.inodes.get(&ino).map(|i| &i.node) {
            Some(Node::Dir(d)) => Ok(d),
            Some(Node::File(_)) => Err(FsError::NotDir),
            None => Err(FsError::NotFound),
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> Result<&mut BTreeMap<Vec<u8>, Ino>, FsError> {
        match self.inodes.get_mut(&ino).map(|i| &mut i.node) {
            Some(Node::Dir(d)) => Ok(d),
            Some(Node::File(_)) => Err(FsError::NotDir),
            None => Err(FsError::NotFound),
        }
    }

    /// The inode `name` in directory `dir` refers to.
    pub fn lookup(&self, dir: Ino, name: &[u8]) -> Option<Ino> {
        self.dir(dir).ok()?.get(name).copied()
    }

    /// The entries of directory `dir`, in name order.
    pub fn entries(&self, dir: Ino) -> Result<Vec<(Vec<u8>, Ino)>, FsError> {
        Ok(self
            .dir(dir)?
            .iter()
            .map(|(n, i)| (n.clone(), *i))
            .collect())
    }

    /// The inode a relative path names (`""` is the root).
    pub fn resolve(&self, path: &Path) -> Option<Ino> {
        let mut ino = ROOT;
        for c in path.components() {
            match c {
                std::path::Component::Normal(n) => ino = self.lookup(ino, &name_bytes(n))?,
                std::path::Component::CurDir => {}
                _ => return None,
            }
        }
        Some(ino)
    }

    /// The contents of the regular file at `path`.
    pub fn read(&self, path: &Path) -> Option<&[u8]> {
        match &self.inodes.get(&self.resolve(path)?)?.node {
            Node::File(d) => Some(d),
            Node::Dir(_) => None,
        }
    }

    /// The number of names that refer to `ino` (for a directory: 2 plus its subdirectories).
    pub fn nlink(&self, ino: Ino) -> u32 {
        let mut n = 0u32;
        for inode in self.inodes.values() {
            if let Node::Dir(d) = &inode.node {
                n += d.values().filter(|&&i| i == ino).count() as u32;
            }
        }
        match self.inodes.get(&ino).map(|i| &i.node) {
            Some(Node::Dir(d)) => {
                let subdirs = d
                    .values()
                    .filter(|i| matches!(self.inodes.get(i).map(|x| &x.node), Some(Node::Dir(_))))
                    .count() as u32;
                2 + subdirs
            }
            _ => n,
        }
    }

    /// Every entry reachable from the root, depth first, in name order.
    pub fn walk(&self) -> Vec<Entry<'_>> {
        let mut out = Vec::new();
        let mut stack = vec![(PathBuf::new(), ROOT)];
        let mut seen = BTreeSet::new();
        while let Some((path, dir)) = stack.pop() {
            if !seen.insert(dir) {
                continue;
            }
            let Ok(d) = self.dir(dir) else { continue };
            for (name, &ino) in d.iter().rev() {
                let Some(inode) = self.inodes.get(&ino) else {
                    continue;
                };
                use std::os::unix::ffi::OsStrExt;
                let p = path.join(std::ffi::OsStr::from_bytes(name));
                if matches!(inode.node, Node::Dir(_)) {
                    stack.push((p.clone(), ino));
                }
                out.push(Entry {
                    path: p,
                    ino,
                    inode,
                });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    /// A hash of what a reader of the tree can see (names, contents, mode, owner, mtime,
    /// extended attributes; not inode numbers, atime or ctime), to check equal images once.
    pub fn fingerprint(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for e in self.walk() {
            e.path.hash(&mut h);
            match &e.inode.node {
                Node::File(d) => (0u8, d).hash(&mut h),
                Node::Dir(_) => 1u8.hash(&mut h),
            }
            let a = &e.inode.attrs;
            (a.mode, a.uid, a.gid, a.mtime, &a.xattrs).hash(&mut h);
        }
        h.finish()
    }

    /// Adds a directory (and its missing parents) with `attrs`, durable from the start: for
    /// building the tree a test starts from.
    pub fn mkdir_p(&mut self, path: &Path, attrs: &Attrs) -> Ino {
        let mut ino = ROOT;
        for c in path.components() {
            let std::path::Component::Normal(n) = c else {
                continue;
            };
            let name = name_bytes(n);
            ino = match self.lookup(ino, &name) {
                Some(i) => i,
                None => {
                    let new = self.alloc(true, attrs.clone());
                    if let Ok(d) = self.dir_mut(ino) {
                        d.insert(name, new);
                    }
                    new
                }
            };
        }
        ino
    }

    /// Adds a regular file holding `data` with `attrs` (and its missing parent directories,
    /// mode 0755), durable from the start.
    pub fn add_file(&mut self, path: &Path, data: &[u8], attrs: Attrs) -> Ino {
        let parent = path.parent().unwrap_or(Path::new(""));
        let mut dir_attrs = attrs.clone();
        dir_attrs.mode = 0o755;
        dir_attrs.xattrs.clear();
        let dir = self.mkdir_p(parent, &dir_attrs);
        let ino = self.alloc(false, attrs);
        if let Some(Inode {
            node: Node::File(d),
            ..
        }) = self.inodes.get_mut(&ino)
        {
            d.extend_from_slice(data);
        }
        if let (Some(n), Ok(d)) = (path.file_name(), self.dir_mut(dir)) {
            d.insert(name_bytes(n), ino);
        }
        ino
    }

    fn alloc(&mut self, dir: bool, attrs: Attrs) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.insert_inode(ino, dir, attrs);
        ino
    }

    fn insert_inode(&mut self, ino: Ino, dir: bool, attrs: Attrs) {
        let node = if dir {
            Node::Dir(BTreeMap::new())
        } else {
            Node::File(Vec::new())
        };
        self.inodes.insert(ino, Inode { node, attrs });
        self.next_ino = self.next_ino.max(ino + 1);
    }

    /// Checks that `op` can be applied (what the daemon answers before recording it).
    pub fn check(&self, op: &Op) -> Result<(), FsError> {
        let file = |ino: Ino| match self.inodes.get(&ino).map(|i| &i.node) {
            Some(Node::File(_)) => Ok(()),
            Some(Node::Dir(_)) => Err(FsError::IsDir),
            None => Err(FsError::NotFound),
        };
        match op {
            Op::NewInode { ino, .. } => {
                if self.inodes.contains_key(ino) {
                    return Err(FsError::Exists);
                }
            }
            Op::Write { ino, .. } | Op::Truncate { ino, .. } => file(*ino)?,
            Op::SetAttr { ino, .. } | Op::Fsync { ino, .. } => {
                if !self.inodes.contains_key(ino) {
                    return Err(FsError::NotFound);
                }
            }
            Op::FsyncDir { ino } => {
                self.dir(*ino)?;
            }
            Op::Link { dir, name, ino } => {
                if self.dir(*dir)?.contains_key(name) {
                    return Err(FsError::Exists);
                }
                if !self.inodes.contains_key(ino) {
                    return Err(FsError::NotFound);
                }
            }
            Op::Unlink { dir, name } => {
                let ino = *self.dir(*dir)?.get(name).ok_or(FsError::NotFound)?;
                if let Ok(d) = self.dir(ino)
                    && !d.is_empty()
                {
                    return Err(FsError::NotEmpty);
                }
            }
            Op::Rename {
                from_dir,
                from,
                to_dir,
                to,
                mode,
            } => {
                let src = *self.dir(*from_dir)?.get(from).ok_or(FsError::NotFound)?;
                let dst = self.dir(*to_dir)?.get(to).copied();
                match (mode, dst) {
                    (RenameMode::Exchange, None) => return Err(FsError::NotFound),
                    (RenameMode::NoReplace, Some(_)) => return Err(FsError::Exists),
                    (RenameMode::Replace, Some(d)) if d != src => {
                        let src_dir = self.dir(src).is_ok();
                        match self.dir(d) {
                            Ok(entries) if !entries.is_empty() => return Err(FsError::NotEmpty),
                            Ok(_) if !src_dir => return Err(FsError::IsDir),
                            Err(_) if src_dir => return Err(FsError::NotDir),
                            _ => {}
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Applies `op` whole.
    pub fn apply(&mut self, op: &Op) {
        self.apply_part(op, &|_| true, true);
    }

    /// Applies what of `op` reached the disk: the sectors of a write for which `sector`
    /// says so, its metadata part if `meta`. Directory and inode operations are applied
    /// whole (the caller decides whether to apply them at all). Anything that no longer fits
    /// the tree (its inode is not there) is ignored: a disk image need not be consistent
    /// with the application's view.
    pub fn apply_part(&mut self, op: &Op, sector: &dyn Fn(u64) -> bool, meta: bool) {
        match op {
            Op::NewInode { ino, dir, attrs } => {
                if !self.inodes.contains_key(ino) {
                    self.insert_inode(*ino, *dir, attrs.clone());
                }
            }
            Op::Write {
                ino,
                offset,
                data,
                time,
            } => {
                let Some(inode) = self.inodes.get_mut(ino) else {
                    return;
                };
                if let Node::File(contents) = &mut inode.node {
                    let end = offset + data.len() as u64;
                    let mut s = offset / SECTOR;
                    while s * SECTOR < end {
                        let from = (s * SECTOR).max(*offset);
                        let to = ((s + 1) * SECTOR).min(end);
                        if sector(s) {
                            let (from_u, to_u) = (from as usize, to as usize);
                            if contents.len() < to_u {
                                contents.resize(to_u, 0);
                            }
                            let src = &data[(from - offset) as usize..(to - offset) as usize];
                            contents[from_u..to_u].copy_from_slice(src);
                        }
                        s += 1;
                    }
                }
                if meta {
                    inode.attrs.mtime = *time;
                    inode.attrs.ctime = *time;
                }
            }
            Op::Truncate { ino, size, time } => {
                let Some(inode) = self.inodes.get_mut(ino) else {
                    return;
                };
                if let Node::File(contents) = &mut inode.node
                    && sector(0)
                {
                    contents.resize(*size as usize, 0);
                }
                if meta {
                    inode.attrs.mtime = *time;
                    inode.attrs.ctime = *time;
                }
            }
            Op::SetAttr { ino, change, time } => {
                let Some(inode) = self.inodes.get_mut(ino).filter(|_| meta) else {
                    return;
                };
                let a = &mut inode.attrs;
                match change {
                    AttrChange::Mode(m) => a.mode = m & 0o7777,
                    AttrChange::Owner { uid, gid } => {
                        if let Some(u) = uid {
                            a.uid = *u;
                        }
                        if let Some(g) = gid {
                            a.gid = *g;
                        }
                    }
                    AttrChange::Times { atime, mtime } => {
                        if let Some(t) = atime {
                            a.atime = *t;
                        }
                        if let Some(t) = mtime {
                            a.mtime = *t;
                        }
                    }
                    AttrChange::SetXattr { name, value } => {
                        a.xattrs.insert(name.clone(), value.clone());
                    }
                    AttrChange::RemoveXattr { name } => {
                        a.xattrs.remove(name);
                    }
                }
                a.ctime = *time;
            }
            Op::Link { dir, name, ino } => {
                if self.inodes.contains_key(ino)
                    && let Ok(d) = self.dir_mut(*dir)
                {
                    d.insert(name.clone(), *ino);
                }
            }
            Op::Unlink { dir, name } => {
                if let Ok(d) = self.dir_mut(*dir) {
                    d.remove(name);
                }
            }
            Op::Rename {
                from_dir,
                from,
                to_dir,
                to,
                mode,
            } => {
                let Some(src) = self.lookup(*from_dir, from) else {
                    return;
                };
                let dst = self.lookup(*to_dir, to);
                if *mode == RenameMode::Exchange {
                    let Some(dst) = dst else { return };
                    if let Ok(d) = self.dir_mut(*from_dir) {
                        d.insert(from.clone(), dst);
                    }
                    if let Ok(d) = self.dir_mut(*to_dir) {
                        d.insert(to.clone(), src);
                    }
                    return;
                }
                if dst == Some(src) {
                    return;
                }
                if let Ok(d) = self.dir_mut(*from_dir) {
                    d.remove(from);
                }
                if let Ok(d) = self.dir_mut(*to_dir) {
                    d.insert(to.clone(), src);
                }
            }
            Op::Fsync { .. } | Op::FsyncDir { .. } => {}
        }
    }

    /// Writes the tree into the existing, empty directory `root` of a real filesystem:
    /// directories, regular files with their contents, mode and mtime (not owner, not
    /// extended attributes).
    pub fn materialize(&self, root: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let entries = self.walk();
        for e in &entries {
            let p = root.join(&e.path);
            match &e.inode.node {
                Node::Dir(_) => std::fs::create_dir_all(&p)?,
                Node::File(d) => {
                    std::fs::write(&p, d)?;
                    std::fs::set_permissions(
                        &p,
                        std::fs::Permissions::from_mode(e.inode.attrs.mode & 0o7777),
                    )?;
                    let f = std::fs::File::options().write(true).open(&p)?;
                    f.set_times(
                        std::fs::FileTimes::new()
                            .set_accessed(e.inode.attrs.atime.into())
                            .set_modified(e.inode.attrs.mtime.into()),
                    )?;
                }
            }
        }
        // Directory modes last, so that read-only directories can still be filled.
        for e in entries.iter().rev() {
            if matches!(e.inode.node, Node::Dir(_)) {
                std::fs::set_permissions(
                    root.join(&e.path),
                    std::fs::Permissions::from_mode(e.inode.attrs.mode & 0o7777),
                )?;
            }
        }
        Ok(())
    }
}

/// How a rename treats an existing target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RenameMode {
    /// Replace it (plain `rename`).
    Replace,
    /// Fail if it exists (`RENAME_NOREPLACE`).
    NoReplace,
    /// Swap the two (`RENAME_EXCHANGE`).
    Exchange,
}

/// A metadata change.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AttrChange {
    /// `chmod`.
    Mode(u32),
    /// `chown`: the ids given.
    Owner {
        /// New owner, if changed.
        uid: Option<u32>,
        /// New group, if changed.
        gid: Option<u32>,
    },
    /// `utimensat`: the times given.
    Times {
        /// New access time, if changed.
        atime: Option<Time>,
        /// New modification time, if changed.
        mtime: Option<Time>,
    },
    /// `setxattr`.
    SetXattr {
        /// Attribute name.
        name: Vec<u8>,
        /// Its value.
        value: Vec<u8>,
    },
    /// `removexattr`.
    RemoveXattr {
        /// Attribute name.
        name: Vec<u8>,
    },
}

/// One operation as the filesystem received it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// A new inode exists (not yet named). Always on the disk: an inode no name reaches is
    /// invisible whatever it holds.
    NewInode {
        /// Its number.
        ino: Ino,
        /// A directory, or a regular file.
        dir: bool,
        /// Its first metadata.
        attrs: Attrs,
    },
    /// `data` written at `offset`, which also set mtime and ctime to `time`.
    Write {
        /// The file.
        ino: Ino,
        /// Where.
        offset: u64,
        /// What.
        data: Vec<u8>,
        /// When.
        time: Time,
    },
    /// The size set to `size` (zeros when it grows).
    Truncate {
        /// The file.
        ino: Ino,
        /// The new size.
        size: u64,
        /// When (mtime and ctime).
        time: Time,
    },
    /// A metadata change.
    SetAttr {
        /// The inode.
        ino: Ino,
        /// What changed.
        change: AttrChange,
        /// When (ctime).
        time: Time,
    },
    /// `name` in `dir` made to refer to `ino` (create, mkdir, link).
    Link {
        /// The directory.
        dir: Ino,
        /// The new name.
        name: Vec<u8>,
        /// The inode it names.
        ino: Ino,
    },
    /// `name` removed from `dir` (unlink, rmdir).
    Unlink {
        /// The directory.
        dir: Ino,
        /// The name.
        name: Vec<u8>,
    },
    /// `rename`.
    Rename {
        /// Source directory.
        from_dir: Ino,
        /// Source name.
        from: Vec<u8>,
        /// Target directory.
        to_dir: Ino,
        /// Target name.
        to: Vec<u8>,
        /// Replace, no-replace or exchange.
        mode: RenameMode,
    },
    /// `fsync` (or `fdatasync` when `data_only`) of a file, acknowledged.
    Fsync {
        /// The inode.
        ino: Ino,
        /// `fdatasync`.
        data_only: bool,
    },
    /// `fsync` of a directory, acknowledged.
    FsyncDir {
        /// The directory.
        ino: Ino,
    },
}

/// Which of the operations that no barrier covers reached the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Choice {
    /// None of them: only what was synced survives.
    SyncedOnly,
    /// All of them: the disk caught up with the application just before the cut.
    Everything,
    /// A pseudo-random selection the model allows, drawn from `seed`.
    Random(u64),
    /// The unsynced operations before this index, whole and in order (what a disk that
    /// writes back in issue order leaves).
    InOrderBefore(usize),
    /// Every unsynced operation but this one (for an entry change: but this one and the later
    /// changes of its directories, which depend on it).
    AllBut(usize),
}

/// A crash state: the power is cut after the first `cut` operations, and `choice` says
/// which of the unsynced ones made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CrashState {
    /// How many operations of the trace had been received.
    pub cut: usize,
    /// Which unsynced ones reached the disk.
    pub choice: Choice,
}

/// The durable starting tree and every operation received after it, in order.
#[derive(Clone, Debug)]
pub struct Trace {
    /// The tree when the filesystem was mounted (all durable).
    pub initial: Image,
    /// The operations, in the order the filesystem received them.
    pub ops: Vec<Op>,
}

fn mix(mut x: u64) -> u64 {
    // splitmix64's finaliser: a cheap, well-spread hash for the per-unit coin flips.
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn coin(seed: u64, a: u64, b: u64) -> bool {
    mix(seed ^ mix(a ^ mix(b))) & 1 == 1
}

/// What barriers after an operation cover of it.
#[derive(Clone, Copy, Debug, Default)]
struct Covered {
    data: bool,
    meta: bool,
    entry: bool,
}

impl Trace {
    /// For each of the first `cut` operations, what a later barrier among them covers.
    fn covered(&self, cut: usize) -> Vec<Covered> {
        let mut out = vec![Covered::default(); cut];
        let mut data = HashSet::new();
        let mut meta = HashSet::new();
        let mut dirs = HashSet::new();
        for i in (0..cut).rev() {
            let c = &mut out[i];
            match &self.ops[i] {
                Op::Fsync { ino, data_only } => {
                    data.insert(*ino);
                    if !data_only {
                        meta.insert(*ino);
                    }
                }
                Op::FsyncDir { ino } => {
                    dirs.insert(*ino);
                }
                Op::NewInode { .. } => {
                    *c = Covered {
                        data: true,
                        meta: true,
                        entry: true,
                    }
                }
                Op::Write { ino, .. } | Op::Truncate { ino, .. } => {
                    c.data = data.contains(ino);
                    c.meta = meta.contains(ino);
                }
                Op::SetAttr { ino, .. } => c.meta = meta.contains(ino),
                Op::Link { dir, .. } | Op::Unlink { dir, .. } => c.entry = dirs.contains(dir),
                Op::Rename {
                    from_dir, to_dir, ..
                } => c.entry = dirs.contains(from_dir) || dirs.contains(to_dir),
            }
        }
        out
    }

    /// The directories an entry operation changes.
    fn dirs_of(op: &Op) -> Option<(Ino, Ino)> {
        match op {
            Op::Link { dir, .. } | Op::Unlink { dir, .. } => Some((*dir, *dir)),
            Op::Rename {
                from_dir, to_dir, ..
            } => Some((*from_dir, *to_dir)),
            _ => None,
        }
    }

    /// Which entry operations among the first `cut` reached the disk under `choice`.
    fn entries_applied(&self, cut: usize, covered: &[Covered], choice: Choice) -> Vec<bool> {
        let mut applied: Vec<bool> = covered.iter().map(|c| c.entry).collect();
        let seed = match choice {
            Choice::SyncedOnly => return applied,
            Choice::Everything => return vec![true; cut],
            Choice::InOrderBefore(p) => {
                for (i, a) in applied.iter_mut().enumerate() {
                    *a |= i < p;
                }
                return applied;
            }
            Choice::AllBut(j) => {
                let lost = self.ops.get(j).and_then(Self::dirs_of);
                for (i, a) in applied.iter_mut().enumerate() {
                    let depends = match (lost, Self::dirs_of(&self.ops[i])) {
                        (Some((a1, b1)), Some((a2, b2))) => {
                            i >= j && (a1 == a2 || a1 == b2 || b1 == a2 || b1 == b2)
                        }
                        _ => i == j,
                    };
                    *a |= !depends;
                }
                return applied;
            }
            Choice::Random(seed) => seed,
        };
        // Per directory: its unsynced entry operations, in order; keep a random prefix.
        let mut pending: BTreeMap<Ino, Vec<usize>> = BTreeMap::new();
        for (i, op) in self.ops[..cut].iter().enumerate() {
            if covered[i].entry {
                continue;
            }
            if let Some((a, b)) = Self::dirs_of(op) {
                pending.entry(a).or_default().push(i);
                if b != a {
                    pending.entry(b).or_default().push(i);
                }
            }
        }
        let mut keep: BTreeMap<Ino, usize> = pending
            .iter()
            .map(|(&dir, ops)| {
                let n = ops.len() as u64 + 1;
                (dir, (mix(seed ^ mix(dir)) % n) as usize)
            })
            .collect();
        // A rename between two directories is kept only if both keep it: cut the other
        // one before it, until nothing changes.
        loop {
            let mut changed = false;
            for (dir, ops) in &pending {
                let k = keep[dir];
                for &i in &ops[..k] {
                    if let Some((a, b)) = Self::dirs_of(&self.ops[i])
                        && a != b
                    {
                        let other = if a == *dir { b } else { a };
                        let pos = pending[&other].iter().position(|&j| j == i).unwrap_or(0);
                        if keep[&other] <= pos {
                            let here = ops.iter().position(|&j| j == i).unwrap_or(0);
                            keep.insert(*dir, here);
                            changed = true;
                            break;
                        }
                    }
                }
                if changed {
                    break;
                }
            }
            if !changed {
                break;
            }
        }
        for (dir, ops) in &pending {
            for &i in &ops[..keep[dir]] {
                applied[i] = true;
            }
        }
        applied
    }

    /// The disk image `state` leaves.
    pub fn image(&self, state: CrashState) -> Image {
        let cut = state.cut.min(self.ops.len());
        let covered = self.covered(cut);
        let entries = self.entries_applied(cut, &covered, state.choice);
        let mut img = self.initial.clone();
        for (i, op) in self.ops[..cut].iter().enumerate() {
            let c = covered[i];
            let taken = |s: u64| match state.choice {
                Choice::SyncedOnly => false,
                Choice::Everything => true,
                Choice::Random(seed) => coin(seed, i as u64, s),
                Choice::InOrderBefore(p) => i < p,
                Choice::AllBut(j) => i != j,
            };
            match op {
                Op::Link { .. } | Op::Unlink { .. } | Op::Rename { .. } => {
                    if entries[i] {
                        img.apply(op);
                    }
                }
                _ => {
                    let sector = |s: u64| c.data || taken(s);
                    img.apply_part(op, &sector, c.meta || taken(u64::MAX));
                }
            }
        }
        img
    }

    /// The crash states after each operation: for every cut from 0 to the end, the image
    /// with only the synced operations and the one with all of them, plus `random` drawn
    /// ones (seeded by `seed`, the cut and their index).
    pub fn states(&self, random: usize, seed: u64) -> Vec<CrashState> {
        let mut out = Vec::new();
        for cut in 0..=self.ops.len() {
            out.push(CrashState {
                cut,
                choice: Choice::SyncedOnly,
            });
            out.push(CrashState {
                cut,
                choice: Choice::Everything,
            });
            for r in 0..random {
                out.push(CrashState {
                    cut,
                    choice: Choice::Random(mix(seed ^ mix(cut as u64 ^ mix(r as u64)))),
                });
            }
        }
        out
    }

    /// More states than [`Trace::states`]: for every cut, also every in-order prefix of the
    /// unsynced operations and every selection that loses just one of them.
    pub fn every_state(&self, random: usize, seed: u64) -> Vec<CrashState> {
        let mut out = self.states(random, seed);
        for cut in 0..=self.ops.len() {
            let covered = self.covered(cut);
            for (j, c) in covered.iter().enumerate() {
                let unsynced = match &self.ops[j] {
                    Op::Write { .. } | Op::Truncate { .. } => !(c.data && c.meta),
                    Op::SetAttr { .. } => !c.meta,
                    Op::Link { .. } | Op::Unlink { .. } | Op::Rename { .. } => !c.entry,
                    Op::NewInode { .. } | Op::Fsync { .. } | Op::FsyncDir { .. } => false,
                };
                if unsynced {
                    out.push(CrashState {
                        cut,
                        choice: Choice::InOrderBefore(j),
                    });
                    out.push(CrashState {
                        cut,
                        choice: Choice::AllBut(j),
                    });
                }
            }
        }
        out
    }

    /// The tree the application saw after the first `cut` operations.
    pub fn visible(&self, cut: usize) -> Image {
        let mut img = self.initial.clone();
        for op in &self.ops[..cut.min(self.ops.len())] {
            img.apply(op);
        }
        img
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs() -> Attrs {
        Attrs::new(0o644, 0, 0, Time { sec: 1, nsec: 0 })
    }

    /// The replace-by-rename sequence: new inode, write, fsync, rename, fsync of the dir.
    fn replace_trace(sync_file: bool, sync_dir: bool) -> Trace {
        let mut initial = Image::default();
        initial.add_file(Path::new("a"), b"old", attrs());
        let ino = initial.next_ino();
        let t = Time { sec: 2, nsec: 0 };
        let mut ops = vec![
            Op::NewInode {
                ino,
                dir: false,
                attrs: attrs(),
            },
            Op::Link {
                dir: ROOT,
                name: b".tmp".to_vec(),
                ino,
            },
            Op::Write {
                ino,
                offset: 0,
                data: vec![7u8; 1500],
                time: t,
            },
        ];
        if sync_file {
            ops.push(Op::Fsync {
                ino,
                data_only: false,
            });
        }
        ops.push(Op::Rename {
            from_dir: ROOT,
            from: b".tmp".to_vec(),
            to_dir: ROOT,
            to: b"a".to_vec(),
            mode: RenameMode::Replace,
        });
        if sync_dir {
            ops.push(Op::FsyncDir { ino: ROOT });
        }
        Trace { initial, ops }
    }

    fn outcomes(t: &Trace) -> BTreeSet<Vec<u8>> {
        t.states(64, 1)
            .into_iter()
            .filter_map(|s| t.image(s).read(Path::new("a")).map(<[u8]>::to_vec))
            .collect()
    }

    #[test]
    fn synced_replace_leaves_old_or_new() {
        let t = replace_trace(true, true);
        let seen = outcomes(&t);
        assert_eq!(seen, BTreeSet::from([b"old".to_vec(), vec![7u8; 1500]]));
        // After the directory sync, only the new file.
        let end = CrashState {
            cut: t.ops.len(),
            choice: Choice::SyncedOnly,
        };
        assert_eq!(t.image(end).read(Path::new("a")), Some(&[7u8; 1500][..]));
    }

    #[test]
    fn unsynced_file_can_be_empty_or_torn_after_rename() {
        let t = replace_trace(false, true);
        let seen = outcomes(&t);
        assert!(seen.contains(&Vec::new()), "empty after rename");
        assert!(
            seen.iter().any(|s| s.len() == 1500 && s.contains(&0)),
            "torn: some sectors lost"
        );
    }

    #[test]
    fn unsynced_rename_can_be_undone_and_never_half_done() {
        let t = replace_trace(true, false);
        let end = CrashState {
            cut: t.ops.len(),
            choice: Choice::SyncedOnly,
        };
        assert_eq!(t.image(end).read(Path::new("a")), Some(&b"old"[..]));
        for s in t.states(32, 2) {
            let img = t.image(s);
            // Exactly one of the two names, never both gone, never both there.
            let names = usize::from(img.read(Path::new("a")).is_some())
                + usize::from(img.read(Path::new(".tmp")).is_some());
            assert!(names >= 1, "{s:?}");
        }
    }

    #[test]
    fn every_state_holds_each_in_order_prefix_and_each_single_loss() {
        let t = replace_trace(false, false);
        let states = t.every_state(0, 0);
        let end = t.ops.len();
        // Lose only the write: the renamed file is empty.
        let write = t
            .ops
            .iter()
            .position(|o| matches!(o, Op::Write { .. }))
            .unwrap();
        let img = t.image(CrashState {
            cut: end,
            choice: Choice::AllBut(write),
        });
        assert_eq!(img.read(Path::new("a")), Some(&[][..]));
        // Lose only the link of the temporary: the rename after it in that directory goes too.
        let img = t.image(CrashState {
            cut: end,
            choice: Choice::AllBut(1),
        });
        assert_eq!(img.read(Path::new("a")), Some(&b"old"[..]));
        assert!(states.contains(&CrashState {
            cut: end,
            choice: Choice::InOrderBefore(write)
        }));
    }

    #[test]
    fn fdatasync_does_not_cover_times() {
        let mut initial = Image::default();
        let ino = initial.add_file(Path::new("f"), &[1u8; 10], attrs());
        let t = Trace {
            initial,
            ops: vec![
                Op::Write {
                    ino,
                    offset: 0,
                    data: vec![2u8; 10],
                    time: Time { sec: 9, nsec: 0 },
                },
                Op::Fsync {
                    ino,
                    data_only: true,
                },
            ],
        };
        let img = t.image(CrashState {
            cut: 2,
            choice: Choice::SyncedOnly,
        });
        let f = img.inode(ino).unwrap();
        assert_eq!(f.node, Node::File(vec![2u8; 10]));
        assert_eq!(f.attrs.mtime, Time { sec: 1, nsec: 0 });
    }

    #[test]
    fn an_unsynced_time_change_can_be_lost_while_the_write_before_it_stays() {
        let mut initial = Image::default();
        let ino = initial.add_file(Path::new("f"), &[1u8; 10], attrs());
        let t = Trace {
            initial,
            ops: vec![
                Op::Write {
                    ino,
                    offset: 0,
                    data: vec![2u8; 10],
                    time: Time { sec: 9, nsec: 0 },
                },
                Op::Fsync {
                    ino,
                    data_only: true,
                },
                Op::SetAttr {
                    ino,
                    change: AttrChange::Times {
                        atime: None,
                        mtime: Some(Time { sec: 1, nsec: 0 }),
                    },
                    time: Time { sec: 10, nsec: 0 },
                },
            ],
        };
        let seen: BTreeSet<i64> = t
            .states(16, 3)
            .into_iter()
            .filter(|s| s.cut == 3)
            .map(|s| t.image(s).inode(ino).unwrap().attrs.mtime.sec)
            .collect();
        assert_eq!(seen, BTreeSet::from([1, 9]));
    }

    #[test]
    fn everything_equals_what_the_application_saw() {
        let t = replace_trace(false, false);
        for cut in 0..=t.ops.len() {
            let all = t.image(CrashState {
                cut,
                choice: Choice::Everything,
            });
            assert_eq!(all.fingerprint(), t.visible(cut).fingerprint());
        }
    }
}
