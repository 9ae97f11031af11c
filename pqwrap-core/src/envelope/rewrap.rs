//! Re-wrapping: in place through two slots (FORMAT.md §8), or an atomic rewrite with a
//! larger header area when the new header does not fit.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::header::{BLOCK, BODY_FIXED, MAGIC, Preamble, STANZA_FIXED, XWING_STANZA_BODY};
use super::payload::{CT_CHUNK_SIZE, PayloadCipher};
use super::slots::SLOT_FIXED;
use super::{
    EnvelopeError, Header, HeaderBody, StanzaSummary, UnlockedHeader, build_body,
    encode_fresh_area, grown_slot_size, seal_slot, summarize,
};
use crate::kem::ESEED_LEN;
use crate::keys::{Identity, Recipient};

/// The few operations an in-place re-wrap needs. Implemented for files by [`FileSlotIo`];
/// tests implement it in memory to cut the writes at every byte.
pub trait SlotIo {
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Makes everything written so far durable.
    fn sync(&mut self) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&mut self) -> io::Result<u64>;
    /// Whether the length is zero.
    fn is_empty(&mut self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// [`SlotIo`] over an open file: positional reads and writes (the file cursor does not move
/// on Unix); `sync` is `sync_data`, which covers the data written — the file size never
/// changes in place.
#[derive(Debug)]
pub struct FileSlotIo<'a> {
    file: &'a File,
}

impl<'a> FileSlotIo<'a> {
    /// Wraps a file opened for reading (and writing, to re-wrap).
    pub fn new(file: &'a File) -> Self {
        FileSlotIo { file }
    }
}

impl SlotIo for FileSlotIo<'_> {
    #[cfg(unix)]
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        // Positional I/O: the file's cursor (which the caller may be using) does not move.
        std::os::unix::fs::FileExt::read_exact_at(self.file, buf, offset)
    }
    #[cfg(unix)]
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self.file, buf, offset)
    }
    #[cfg(not(unix))]
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut f = self.file;
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(buf)
    }
    #[cfg(not(unix))]
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let mut f = self.file;
        f.seek(SeekFrom::Start(offset))?;
        f.write_all(buf)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn len(&mut self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}

/// What a re-wrap did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RewrapAction {
    /// The new header was written to the inactive slot and the old one wiped.
    InPlace,
    /// The new header did not fit: the file was rewritten atomically with a larger area.
    Rewritten,
    /// The header was already wrapped to exactly these recipients; nothing was written.
    AlreadyWrapped,
    /// The header was already wrapped to exactly these recipients, but the inactive slot
    /// still held an older header (a re-wrap interrupted before its wipe): that slot was
    /// wiped, so the old wrapping no longer survives in the file.
    WipedOldSlot,
}

/// The result of a re-wrap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RewrapOutcome {
    /// What was done.
    pub action: RewrapAction,
    /// Stanzas before.
    pub old_stanzas: Vec<StanzaSummary>,
    /// Stanzas after (same as before for `AlreadyWrapped`).
    pub new_stanzas: Vec<StanzaSummary>,
    /// Slot in use before.
    pub old_slot: u8,
    /// Sequence before.
    pub old_sequence: u64,
    /// Slot in use after.
    pub slot: u8,
    /// Sequence after.
    pub sequence: u64,
    /// Bytes written (both slots in place; the whole file when rewritten; 0 if unchanged).
    pub bytes_written: u64,
    /// Whether it fell back to an atomic rewrite.
    pub fell_back: bool,
    /// Header area size after (the payload offset).
    pub header_area_len: u64,
}

/// Reads and parses the header area through a [`SlotIo`].
pub(crate) fn read_header<S: SlotIo + ?Sized>(io: &mut S) -> Result<Header, EnvelopeError> {
    let len = io.len()?;
    if len < MAGIC.len() as u64 {
        return Err(EnvelopeError::NotNative);
    }
    let mut block = vec![0u8; BLOCK];
    if len < BLOCK as u64 {
        io.read_at(0, &mut block[..MAGIC.len()])?;
        return Err(if super::is_native(&block) {
            EnvelopeError::TruncatedHeader
        } else {
            EnvelopeError::NotNative
        });
    }
    io.read_at(0, &mut block)?;
    let preamble = Preamble::parse(&block)?;
    if len < preamble.header_area_len() {
        return Err(EnvelopeError::TruncatedHeader);
    }
    let s = preamble.slot_size() as usize;
    let mut slots = vec![0u8; 2 * s];
    io.read_at(BLOCK as u64, &mut slots)?;
    let (s0, s1) = slots.split_at(s);
    Header::from_parts(preamble, s0, s1)
}

/// Everything decided before writing.
struct Prepared {
    unlocked: UnlockedHeader,
    new_body: HeaderBody,
    new_sequence: u64,
    payload_len: u64,
}

enum Plan {
    Unchanged(RewrapOutcome),
    /// Already wrapped to the targets, but the inactive slot is not empty.
    WipeOld(Box<UnlockedHeader>),
    Write(Box<Prepared>),
}

fn prepare<S: SlotIo + ?Sized>(
    io: &mut S,
    identities: &[Identity],
    recipients: &[Recipient],
    eseeds: Option<&[[u8; ESEED_LEN]]>,
) -> Result<Plan, EnvelopeError> {
    let header = read_header(io)?;
    let unlocked = header.unlock(identities)?;
    let payload_len = io.len()?.saturating_sub(header.payload_offset());
    check_first_chunk(io, &unlocked, payload_len)?;
    let old_stanzas = summarize(header.body());
    if unlocked.is_wrapped_to(recipients) {
        if header.other_slot() != super::SlotStatus::Empty {
            return Ok(Plan::WipeOld(Box::new(unlocked)));
        }
        return Ok(Plan::Unchanged(RewrapOutcome {
            action: RewrapAction::AlreadyWrapped,
            new_stanzas: old_stanzas.clone(),
            old_stanzas,
            old_slot: header.active_slot(),
            old_sequence: header.sequence(),
            slot: header.active_slot(),
            sequence: header.sequence(),
            bytes_written: 0,
            fell_back: false,
            header_area_len: header.payload_offset(),
        }));
    }
    let (new_sequence, new_body) = unlocked.next_header(recipients, eseeds)?;
    Ok(Plan::Write(Box::new(Prepared {
        unlocked,
        new_body,
        new_sequence,
        payload_len,
    })))
}

/// Opens payload chunk 0: proves the unwrapped key is this payload's key, reading at most
/// one chunk (FORMAT.md §8 step 1).
fn check_first_chunk<S: SlotIo + ?Sized>(
    io: &mut S,
    unlocked: &UnlockedHeader,
    payload_len: u64,
) -> Result<(), EnvelopeError> {
    if payload_len == 0 {
        return Err(EnvelopeError::Truncated);
    }
    let piece = payload_len.min(CT_CHUNK_SIZE as u64) as usize;
    let mut buf = vec![0u8; piece];
    io.read_at(unlocked.header().payload_offset(), &mut buf)?;
    let cipher = PayloadCipher::new(&unlocked.schedule.payload_key);
    cipher.open_piece(0, payload_len <= CT_CHUNK_SIZE as u64, &mut buf)?;
    Ok(())
}

/// FORMAT.md §8 step 1, second case: the active header is already the target's (verified:
/// unlocked, first chunk opened) but the other slot is not empty, so a re-wrap stopped
/// between writing the new slot and wiping the old one, or the wipe was torn. Finishing that
/// wipe is what re-running the job must do: otherwise the retired key's wrapping of the
/// unchanged file key would stay in the live file.
fn wipe_old_slot<S: SlotIo + ?Sized>(
    io: &mut S,
    unlocked: &UnlockedHeader,
) -> Result<RewrapOutcome, EnvelopeError> {
    let header = unlocked.header();
    if read_header(io)? != *header {
        return Err(EnvelopeError::Verify("header changed during re-wrap"));
    }
    let preamble = *header.preamble();
    let active = header.active_slot();
    let zeros = vec![0u8; preamble.slot_size() as usize];
    io.write_at(preamble.slot_offset(1 - active), &zeros)?;
    io.sync()?;
    let after = read_header(io)?;
    if after.active_slot() != active
        || after.sequence() != header.sequence()
        || after.other_slot() != super::SlotStatus::Empty
    {
        return Err(EnvelopeError::Verify("old slot not empty after wiping it"));
    }
    let stanzas = summarize(header.body());
    Ok(RewrapOutcome {
        action: RewrapAction::WipedOldSlot,
        old_stanzas: stanzas.clone(),
        new_stanzas: stanzas,
        old_slot: active,
        old_sequence: header.sequence(),
        slot: active,
        sequence: header.sequence(),
        bytes_written: zeros.len() as u64,
        fell_back: false,
        header_area_len: header.payload_offset(),
    })
}

fn write_in_place<S: SlotIo + ?Sized>(
    io: &mut S,
    p: Box<Prepared>,
) -> Result<Result<RewrapOutcome, Box<Prepared>>, EnvelopeError> {
    let header = p.unlocked.header().clone();
    let preamble = *header.preamble();
    let slot = match seal_slot(
        &preamble,
        p.new_sequence,
        p.new_body.clone(),
        &p.unlocked.schedule,
    ) {
        Ok(s) => s,
        Err(EnvelopeError::HeaderAreaTooSmall { .. }) => return Ok(Err(p)),
        Err(e) => return Err(e),
    };
    // The file must still be what we unlocked: a concurrent writer makes us stop.
    if read_header(io)? != header {
        return Err(EnvelopeError::Verify("header changed during re-wrap"));
    }
    let old = header.active_slot();
    let new = 1 - old;
    io.write_at(preamble.slot_offset(new), &slot)?;
    io.sync()?;
    let zeros = vec![0u8; preamble.slot_size() as usize];
    io.write_at(preamble.slot_offset(old), &zeros)?;
    io.sync()?;

    // Re-check: the new slot is selected, the old one is empty, and it authenticates.
    let after = read_header(io)?;
    if after.active_slot() != new
        || after.sequence() != p.new_sequence
        || after.other_slot() != super::SlotStatus::Empty
    {
        return Err(EnvelopeError::Verify("new slot not selected after writing"));
    }
    after.unlock_with_key(p.unlocked.file_key().clone(), None)?;
    Ok(Ok(RewrapOutcome {
        action: RewrapAction::InPlace,
        old_stanzas: summarize(header.body()),
        new_stanzas: summarize(after.body()),
        old_slot: old,
        old_sequence: header.sequence(),
        slot: new,
        sequence: p.new_sequence,
        bytes_written: (slot.len() + zeros.len()) as u64,
        fell_back: false,
        header_area_len: after.payload_offset(),
    }))
}

fn rewrap_impl<S: SlotIo + ?Sized>(
    io: &mut S,
    identities: &[Identity],
    recipients: &[Recipient],
    eseeds: Option<&[[u8; ESEED_LEN]]>,
) -> Result<Result<RewrapOutcome, Box<Prepared>>, EnvelopeError> {
    match prepare(io, identities, recipients, eseeds)? {
        Plan::Unchanged(o) => Ok(Ok(o)),
        Plan::WipeOld(u) => wipe_old_slot(io, &u).map(Ok),
        Plan::Write(p) => write_in_place(io, p),
    }
}

fn too_small(p: &Prepared) -> EnvelopeError {
    EnvelopeError::HeaderAreaTooSmall {
        needed: p.new_body.encoded_len() + super::SLOT_FIXED,
        available: p.unlocked.header().preamble().slot_size() as usize,
    }
}

/// Re-wraps through any [`SlotIo`]: unwraps the file key with `identities`, checks the
/// header and the first payload chunk, and — unless the header is already wrapped to exactly
/// `recipients` — writes a new header for `recipients` to the inactive slot, syncs, wipes
/// the old slot, syncs, and re-reads. When the new header does not fit the slot, returns
/// [`EnvelopeError::HeaderAreaTooSmall`] without writing.
pub fn rewrap_io<S: SlotIo + ?Sized>(
    io: &mut S,
    identities: &[Identity],
    recipients: &[Recipient],
) -> Result<RewrapOutcome, EnvelopeError> {
    rewrap_impl(io, identities, recipients, None)?.map_err(|p| too_small(&p))
}

/// Deterministic [`rewrap_io`] for known-answer tests: one X-Wing `eseed` per recipient.
/// Never use it for real data: reusing an eseed is fatal.
#[cfg(feature = "hazmat")]
pub fn rewrap_io_derand<S: SlotIo + ?Sized>(
    io: &mut S,
    identities: &[Identity],
    recipients: &[Recipient],
    eseeds: &[[u8; ESEED_LEN]],
) -> Result<RewrapOutcome, EnvelopeError> {
    if eseeds.len() != recipients.len() {
        return Err(EnvelopeError::Crypto("one eseed per recipient"));
    }
    rewrap_impl(io, identities, recipients, Some(eseeds))?.map_err(|p| too_small(&p))
}

/// Re-wraps one open native file in place (FORMAT.md §8): the payload is not touched (only
/// its first chunk is read and authenticated); the inode, hard links, owner, mode and xattrs
/// stay. `file` must be open for reading and writing. Idempotent: a file already wrapped to
/// exactly `recipients` is left alone ([`RewrapAction::AlreadyWrapped`]), unless its other
/// slot still holds an older header, which is then wiped ([`RewrapAction::WipedOldSlot`]).
///
/// When the new header does not fit the slot, it falls back to the atomic rewrite of
/// [`rewrap_path`] (larger header area, new inode; `fell_back` is set and `*file` is
/// replaced by a handle to the new file). That needs the file's path, which is found from
/// the open descriptor on Linux and must still name this same inode; where it cannot be
/// found (another OS, an unlinked file) the result is [`EnvelopeError::HeaderAreaTooSmall`]
/// and nothing is written.
///
/// ```
/// use std::io::{Seek, Write};
/// use pqwrap_core::envelope::{Encryptor, RewrapAction, decrypt_to, rewrap_in_place};
/// use pqwrap_core::keys::Identity;
///
/// let (old, new) = (Identity::generate_hybrid()?, Identity::generate_hybrid()?);
/// let mut file = tempfile::tempfile()?;
/// let mut enc = Encryptor::new(&mut file, &[old.to_recipient()])?;
/// enc.write_all(b"archive")?;
/// enc.finish()?;
///
/// let out = rewrap_in_place(&mut file, &[old.clone()], &[new.to_recipient()])?;
/// assert_eq!((out.action, out.slot, out.sequence), (RewrapAction::InPlace, 1, 2));
///
/// // Only the new identity opens it now; the old wrapping was wiped.
/// let mut plain = Vec::new();
/// file.seek(std::io::SeekFrom::Start(0))?;
/// decrypt_to(&file, &[new], &mut plain)?;
/// assert_eq!(plain, b"archive");
/// file.seek(std::io::SeekFrom::Start(0))?;
/// assert!(decrypt_to(&file, &[old], std::io::sink()).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn rewrap_in_place(
    file: &mut File,
    identities: &[Identity],
    recipients: &[Recipient],
) -> Result<RewrapOutcome, EnvelopeError> {
    let p = match rewrap_impl(&mut FileSlotIo::new(file), identities, recipients, None)? {
        Ok(outcome) => return Ok(outcome),
        Err(p) => p,
    };
    let Some(path) = path_of(file) else {
        return Err(too_small(&p));
    };
    let meta = file.metadata()?;
    match std::fs::symlink_metadata(&path) {
        Ok(m) if same_inode(&m, &meta) => {}
        _ => return Err(too_small(&p)),
    }
    let (outcome, new_file) = rewrite_atomically(&path, file, &meta, p)?;
    *file = new_file;
    Ok(outcome)
}

/// The path of an open file, from `/proc/self/fd` (Linux only).
fn path_of(file: &File) -> Option<std::path::PathBuf> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let p = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
        p.is_absolute().then_some(p)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        None
    }
}

fn same_inode(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        a.dev() == b.dev() && a.ino() == b.ino()
    }
    #[cfg(not(unix))]
    {
        a.len() == b.len() && a.modified().ok() == b.modified().ok()
    }
}

/// Re-wraps the native file at `path`: in place when the new header fits its slot, else an
/// atomic rewrite (temporary file in the same directory, sync, rename, directory sync) with
/// a header area twice the new header's size. The rewrite keeps mode, owner (where
/// permitted), timestamps and extended attributes (all of them, or it fails: see
/// [`crate::xattr`]), copies the payload bytes unchanged, and refuses files with more than
/// one hard link ([`EnvelopeError::HardLinked`]) and non-regular files.
pub fn rewrap_path(
    path: &Path,
    identities: &[Identity],
    recipients: &[Recipient],
) -> Result<RewrapOutcome, EnvelopeError> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_file() {
        return Err(EnvelopeError::NotRegularFile);
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    // What we opened must be what we checked (no symlink swapped in meanwhile).
    let opened = file.metadata()?;
    if !same_inode(&opened, &meta) {
        return Err(EnvelopeError::Verify("path changed while opening"));
    }
    let p = match rewrap_impl(&mut FileSlotIo::new(&file), identities, recipients, None)? {
        Ok(outcome) => return Ok(outcome),
        Err(p) => p,
    };
    rewrite_atomically(path, &file, &opened, p).map(|(outcome, _)| outcome)
}

/// FORMAT.md §8 step 4: a fresh header area with slots twice the new header's size, the new
/// header in slot 0 under `sequence`, slot 1 empty.
fn grown_area(
    unlocked: &UnlockedHeader,
    sequence: u64,
    body: HeaderBody,
) -> Result<(Preamble, Vec<u8>), EnvelopeError> {
    let preamble = Preamble::new(grown_slot_size(body.encoded_len())?)?;
    let area = encode_fresh_area(&preamble, sequence, body, &unlocked.schedule)?;
    Ok((preamble, area))
}

impl UnlockedHeader {
    /// Whether a header wrapped to `recipients` X-Wing recipients fits this file's slots, so
    /// that [`rewrap_in_place`] re-wraps it in place. Sizes only: no key is used.
    pub fn fits_in_place(&self, recipients: usize) -> bool {
        let body = BODY_FIXED + recipients * (STANZA_FIXED + XWING_STANZA_BODY);
        body + SLOT_FIXED <= self.header.preamble().slot_size() as usize
    }

    /// The re-wrap of FORMAT.md §8 step 4 for callers that write the new file themselves
    /// (`pqwrap rewrap` does, to commit it with its own temporaries, locks and group sync):
    /// the whole header area of a new file wrapped to `recipients` — a larger area, the next
    /// sequence number, the same file key and salt. The new file is this area followed,
    /// unchanged, by the bytes of this file from `self.header().payload_offset()` on.
    ///
    /// ```
    /// use pqwrap_core::envelope::{Encryptor, Header, decrypt_to};
    /// use pqwrap_core::keys::{Identity, Recipient};
    ///
    /// let old = Identity::generate_hybrid()?;
    /// let file = Encryptor::new(Vec::new(), &[old.to_recipient()])?.finish()?;
    /// let header = Header::parse(&file)?;
    /// let unlocked = header.unlock(&[old])?;
    /// let new: Vec<Identity> = (0..8).map(|_| Identity::generate_hybrid()).collect::<Result<_, _>>()?;
    /// let rs: Vec<Recipient> = new.iter().map(Identity::to_recipient).collect();
    /// assert!(!unlocked.fits_in_place(rs.len()));
    ///
    /// let mut copy = unlocked.rewritten_area(&rs)?;
    /// copy.extend_from_slice(&file[header.payload_offset() as usize..]);
    /// decrypt_to(&copy[..], &new[7..], std::io::sink())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rewritten_area(&self, recipients: &[Recipient]) -> Result<Vec<u8>, EnvelopeError> {
        let (sequence, body) = self.next_header(recipients, None)?;
        Ok(grown_area(self, sequence, body)?.1)
    }

    /// The next sequence number and a body (MAC still zero) wrapping this file key to
    /// `recipients`, with the same salt — so the same commitment and payload key: only the
    /// stanzas change.
    fn next_header(
        &self,
        recipients: &[Recipient],
        eseeds: Option<&[[u8; ESEED_LEN]]>,
    ) -> Result<(u64, HeaderBody), EnvelopeError> {
        let sequence = self
            .header
            .sequence()
            .checked_add(1)
            .ok_or(EnvelopeError::SequenceExhausted)?;
        let body = build_body(
            &self.file_key,
            &self.schedule,
            *self.header.body().payload_salt(),
            recipients,
            eseeds,
        )?;
        Ok((sequence, body))
    }
}

fn rewrite_atomically(
    path: &Path,
    file: &File,
    meta: &std::fs::Metadata,
    p: Box<Prepared>,
) -> Result<(RewrapOutcome, File), EnvelopeError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if meta.nlink() > 1 {
            return Err(EnvelopeError::HardLinked(meta.nlink()));
        }
    }
    let old = p.unlocked.header().clone();
    let (preamble, area) = grown_area(&p.unlocked, p.new_sequence, p.new_body.clone())?;

    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".pqwrap-rewrap-")
        .tempfile_in(dir)?;
    tmp.write_all(&area)?;
    let mut src = file;
    src.seek(SeekFrom::Start(old.payload_offset()))?;
    let copied = io::copy(&mut src.take(p.payload_len), tmp.as_file_mut())?;
    if copied != p.payload_len {
        return Err(EnvelopeError::Verify("file shrank during re-wrap"));
    }
    let t = tmp.as_file();
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // Keeping the owner needs privilege; without it the file keeps ours (documented).
        // Before the mode: a change of owner clears the set-user-ID and set-group-ID bits.
        let _ = std::os::unix::fs::fchown(t, Some(meta.uid()), Some(meta.gid()));
    }
    t.set_permissions(meta.permissions())?;
    #[cfg(unix)]
    crate::xattr::copy_all(file, t)?;
    let mut times = std::fs::FileTimes::new();
    if let Ok(m) = meta.modified() {
        times = times.set_modified(m);
    }
    if let Ok(a) = meta.accessed() {
        times = times.set_accessed(a);
    }
    t.set_times(times)?;
    t.sync_all()?;

    // Verify before commit: the new header carries the same key, the payload's first chunk
    // opens, and the original did not change while we copied.
    {
        let mut tio = FileSlotIo::new(t);
        let h = read_header(&mut tio)?;
        let u = h.unlock_with_key(p.unlocked.file_key().clone(), None)?;
        check_first_chunk(&mut tio, &u, p.payload_len)?;
        let now = std::fs::symlink_metadata(path)?;
        if !same_inode(&now, meta)
            || now.len() != meta.len()
            || now.modified().ok() != meta.modified().ok()
        {
            return Err(EnvelopeError::Verify("file changed during re-wrap"));
        }
    }
    let new_file = tmp.persist(path).map_err(|e| EnvelopeError::Io(e.error))?;
    File::open(dir)?.sync_all()?;

    let outcome = RewrapOutcome {
        action: RewrapAction::Rewritten,
        old_stanzas: summarize(old.body()),
        new_stanzas: summarize(&p.new_body),
        old_slot: old.active_slot(),
        old_sequence: old.sequence(),
        slot: 0,
        sequence: p.new_sequence,
        bytes_written: area.len() as u64 + p.payload_len,
        fell_back: true,
        header_area_len: preamble.header_area_len(),
    };
    Ok((outcome, new_file))
}
