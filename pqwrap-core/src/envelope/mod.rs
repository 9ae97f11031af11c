//! The pqwrap native envelope, format version 1 (specified in `docs/FORMAT.md`).
//!
//! An AES-256-GCM STREAM payload behind a header area of two fixed-size slots, so that
//! changing the recipients ([`rewrap_in_place`]) rewrites a few KiB in place whatever the
//! file size, and a crash at any moment leaves a file that opens with the old or the new
//! recipients. Recipients are X-Wing (ML-KEM-768 + X25519) stanzas wrapping a random 32-byte
//! file key; the header carries a key commitment and a MAC under a key derived from the
//! file key.
//!
//! Entry points:
//! - [`Encryptor`] / [`Decryptor`] (streaming, bounded memory), [`decrypt_to`];
//! - [`is_native`], [`inspect`], [`inspect_file`] (no keys needed);
//! - [`Header::read_from`] / [`Header::parse`] and [`Header::unlock`] →
//!   [`UnlockedHeader::is_wrapped_to`] (idempotent re-wrap check);
//! - [`rewrap_in_place`] (one open file) and [`rewrap_path`] (one path): in place, or an
//!   atomic rewrite with a larger header area when the new header does not fit;
//!   [`rewrap_io`] over any [`SlotIo`] (what the torn-write test drives).

use std::io::{self, Read};

mod header;
mod payload;
mod rewrap;
mod schedule;
mod slots;

pub use header::{
    BLOCK, FORMAT_VERSION, HeaderBody, KEM_XWING, MAGIC, MAX_SLOT_SIZE, MAX_STANZA_BODY,
    MAX_STANZAS, MIN_SLOT_SIZE, Preamble, Stanza, Suite, XWING_STANZA_BODY, kem_name,
};
pub use payload::{
    CHUNK_SIZE, CT_CHUNK_SIZE, Decryptor, EncryptOptions, Encryptor, decrypt_to, plaintext_len,
};
#[cfg(feature = "hazmat")]
pub use rewrap::rewrap_io_derand;
pub use rewrap::{
    FileSlotIo, RewrapAction, RewrapOutcome, SlotIo, rewrap_in_place, rewrap_io, rewrap_path,
};
pub use schedule::FileKey;
pub use slots::{SLOT_FIXED, SLOT_MAGIC, SlotStatus};

use crate::kem::KemError;
use crate::keys::{Identity, Recipient};
use header::STANZA_FIXED;
use schedule::Schedule;

/// File key length.
pub const FILE_KEY_LEN: usize = 32;
/// Per-file salt length.
pub const SALT_LEN: usize = 32;
/// Header MAC length.
pub const MAC_LEN: usize = 32;
/// Recipient tag length.
pub const TAG_LEN: usize = 16;

/// Everything that can go wrong reading, writing or re-wrapping a native file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The input does not start with the native magic.
    #[error("not a pqwrap native file (bad magic)")]
    NotNative,
    /// The input ends inside the header area.
    #[error("file ends inside the header area")]
    TruncatedHeader,
    /// A format version this implementation does not know.
    #[error("unsupported pqwrap format version {0} (this build reads version 1)")]
    UnsupportedVersion(u16),
    /// Reserved preamble flags are set.
    #[error("unsupported preamble flags {0:#06x}")]
    UnsupportedFlags(u16),
    /// The slot size is out of range or not a multiple of 4096.
    #[error("invalid slot size {0} (must be a multiple of 4096 in 4096..=1048576)")]
    BadSlotSize(u32),
    /// Non-zero bytes in the reserved part of the preamble.
    #[error("malformed preamble (reserved bytes not zero)")]
    MalformedPreamble,
    /// Neither header slot is valid.
    #[error("no valid header slot (both empty or damaged)")]
    NoValidSlot,
    /// Both slots are valid with the same sequence number.
    #[error("both header slots have sequence {0}")]
    AmbiguousSlots(u64),
    /// The header body is malformed.
    #[error("malformed header: {0}")]
    MalformedHeader(&'static str),
    /// An unknown payload suite identifier.
    #[error("unknown payload suite {0:#06x} (this build knows 0x0001, AES-256-GCM STREAM)")]
    UnknownSuite(u16),
    /// No stanza uses a KEM this build knows.
    #[error(
        "no stanza uses a known KEM (first unknown KEM id {0:#06x}; this build knows 0x647a, X-Wing)"
    )]
    UnknownKem(u16),
    /// More stanzas than the format allows.
    #[error("too many recipients: {0} (at most 128)")]
    TooManyRecipients(usize),
    /// No recipient given.
    #[error("no recipients")]
    NoRecipients,
    /// The same recipient given twice.
    #[error("duplicate recipient")]
    DuplicateRecipient,
    /// A recipient type the native format does not wrap to.
    #[error(
        "the native format wraps only to post-quantum hybrid recipients (age1pq1…), not classical X25519"
    )]
    ClassicalRecipient,
    /// No identity opens any stanza.
    #[error("no identity matches any recipient stanza")]
    NoMatch,
    /// A stanza opened but the file key does not match the header's key commitment.
    #[error("file key does not match the header's key commitment")]
    KeyCommitment,
    /// The header MAC does not verify.
    #[error("header MAC does not verify")]
    HeaderMac,
    /// The payload ends early.
    #[error("payload truncated")]
    Truncated,
    /// Data after the final chunk.
    #[error("data after the final payload chunk")]
    TrailingData,
    /// An empty final chunk after other chunks.
    #[error("non-canonical payload (empty final chunk)")]
    NonCanonicalPayload,
    /// A payload chunk fails authentication.
    #[error("payload chunk {chunk} fails authentication")]
    PayloadAuth {
        /// Index of the failing chunk.
        chunk: u64,
    },
    /// The new header does not fit the reserved slot.
    #[error("new header needs {needed} bytes, slot holds {available}")]
    HeaderAreaTooSmall {
        /// Bytes the slot would need.
        needed: usize,
        /// Slot size.
        available: usize,
    },
    /// The slot sequence number cannot grow.
    #[error("slot sequence number exhausted")]
    SequenceExhausted,
    /// An atomic rewrite would leave other hard links with the old header.
    #[error("file has {0} hard links; an atomic rewrite would leave the old header behind")]
    HardLinked(u64),
    /// A path that is not a regular file (symlink, device, directory).
    #[error("not a regular file (symlinks and special files are refused)")]
    NotRegularFile,
    /// A post-write check failed (the file changed under us, or the write did not land).
    #[error("verification after writing failed: {0}")]
    Verify(&'static str),
    /// The KEM failed.
    #[error("KEM: {0}")]
    Kem(#[from] KemError),
    /// An internal cryptographic failure.
    #[error("crypto: {0}")]
    Crypto(&'static str),
    /// I/O.
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
}

impl EnvelopeError {
    /// A short stable name, used by the negative test vectors.
    pub fn code(&self) -> &'static str {
        use EnvelopeError::*;
        match self {
            NotNative => "not_native",
            TruncatedHeader => "truncated_header",
            UnsupportedVersion(_) => "unsupported_version",
            UnsupportedFlags(_) => "unsupported_flags",
            BadSlotSize(_) => "bad_slot_size",
            MalformedPreamble => "malformed_preamble",
            NoValidSlot => "no_valid_slot",
            AmbiguousSlots(_) => "ambiguous_slots",
            MalformedHeader(_) => "malformed_header",
            UnknownSuite(_) => "unknown_suite",
            UnknownKem(_) => "unknown_kem",
            TooManyRecipients(_) => "too_many_recipients",
            NoRecipients => "no_recipients",
            DuplicateRecipient => "duplicate_recipient",
            ClassicalRecipient => "classical_recipient",
            NoMatch => "no_match",
            KeyCommitment => "key_commitment",
            HeaderMac => "header_mac",
            Truncated => "truncated",
            TrailingData => "trailing_data",
            NonCanonicalPayload => "non_canonical_payload",
            PayloadAuth { .. } => "payload_auth",
            HeaderAreaTooSmall { .. } => "header_area_too_small",
            SequenceExhausted => "sequence_exhausted",
            HardLinked(_) => "hard_linked",
            NotRegularFile => "not_regular_file",
            Verify(_) => "verify",
            Kem(_) => "kem",
            Crypto(_) => "crypto",
            Io(_) => "io",
        }
    }

    /// Recovers the typed error from an `io::Error` returned by [`Decryptor`] or
    /// [`Encryptor`]; other I/O errors become [`EnvelopeError::Io`].
    pub fn from_io(e: io::Error) -> Self {
        if e.get_ref().is_some_and(|i| i.is::<EnvelopeError>()) {
            if let Some(inner) = e.into_inner()
                && let Ok(env) = inner.downcast::<EnvelopeError>()
            {
                return *env;
            }
            return EnvelopeError::Crypto("lost error");
        }
        EnvelopeError::Io(e)
    }

    /// Wraps this error in an `io::Error` (kind `InvalidData`, or the original I/O error).
    pub fn into_io(self) -> io::Error {
        match self {
            EnvelopeError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }

    /// A copy as an `io::Error` (I/O errors keep their kind and message).
    pub(crate) fn clone_for_io(&self) -> io::Error {
        match self {
            EnvelopeError::Io(e) => io::Error::new(e.kind(), e.to_string()),
            other => io::Error::new(io::ErrorKind::InvalidData, other.shallow_clone()),
        }
    }

    fn shallow_clone(&self) -> Self {
        use EnvelopeError::*;
        match self {
            NotNative => NotNative,
            TruncatedHeader => TruncatedHeader,
            UnsupportedVersion(v) => UnsupportedVersion(*v),
            UnsupportedFlags(v) => UnsupportedFlags(*v),
            BadSlotSize(v) => BadSlotSize(*v),
            MalformedPreamble => MalformedPreamble,
            NoValidSlot => NoValidSlot,
            AmbiguousSlots(v) => AmbiguousSlots(*v),
            MalformedHeader(v) => MalformedHeader(v),
            UnknownSuite(v) => UnknownSuite(*v),
            UnknownKem(v) => UnknownKem(*v),
            TooManyRecipients(v) => TooManyRecipients(*v),
            NoRecipients => NoRecipients,
            DuplicateRecipient => DuplicateRecipient,
            ClassicalRecipient => ClassicalRecipient,
            NoMatch => NoMatch,
            KeyCommitment => KeyCommitment,
            HeaderMac => HeaderMac,
            Truncated => Truncated,
            TrailingData => TrailingData,
            NonCanonicalPayload => NonCanonicalPayload,
            PayloadAuth { chunk } => PayloadAuth { chunk: *chunk },
            HeaderAreaTooSmall { needed, available } => HeaderAreaTooSmall {
                needed: *needed,
                available: *available,
            },
            SequenceExhausted => SequenceExhausted,
            HardLinked(v) => HardLinked(*v),
            NotRegularFile => NotRegularFile,
            Verify(v) => Verify(v),
            Kem(k) => Kem(*k),
            Crypto(v) => Crypto(v),
            Io(e) => Io(io::Error::new(e.kind(), e.to_string())),
        }
    }
}

/// Whether `prefix` (the first bytes of a file, at least 8) starts like a native file.
///
/// ```
/// assert!(pqwrap_core::envelope::is_native(b"\x89PQW\r\n\x1a\n\x00\x01"));
/// assert!(!pqwrap_core::envelope::is_native(b"age-encryption.org/v1\n"));
/// ```
pub fn is_native(prefix: &[u8]) -> bool {
    prefix.len() >= MAGIC.len() && prefix[..MAGIC.len()] == MAGIC
}

/// A parsed header: the preamble, the selected slot and its body. Parsing needs no key;
/// nothing here is authenticated until [`Header::unlock`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    preamble: Preamble,
    active_slot: u8,
    sequence: u64,
    other_slot: SlotStatus,
    body: HeaderBody,
}

impl Header {
    /// Parses the header area at the start of `bytes` (which may hold the whole file).
    pub fn parse(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let preamble = Preamble::parse(bytes)?;
        let s = preamble.slot_size() as usize;
        let area = bytes
            .get(..BLOCK + 2 * s)
            .ok_or(EnvelopeError::TruncatedHeader)?;
        let (s0, s1) = area[BLOCK..].split_at(s);
        Self::from_parts(preamble, s0, s1)
    }

    pub(crate) fn from_parts(
        preamble: Preamble,
        s0: &[u8],
        s1: &[u8],
    ) -> Result<Self, EnvelopeError> {
        let sel = slots::select(s0, s1)?;
        let body = HeaderBody::parse(sel.body)?;
        Ok(Header {
            preamble,
            active_slot: sel.index,
            sequence: sel.sequence,
            other_slot: sel.other,
            body,
        })
    }

    /// Reads exactly the header area from `reader` (leaving it at the payload).
    pub fn read_from<R: Read>(reader: &mut R) -> Result<Self, EnvelopeError> {
        let mut block = vec![0u8; BLOCK];
        read_exact_or(reader, &mut block[..MAGIC.len()], EnvelopeError::NotNative)?;
        if !is_native(&block) {
            return Err(EnvelopeError::NotNative);
        }
        read_exact_or(
            reader,
            &mut block[MAGIC.len()..],
            EnvelopeError::TruncatedHeader,
        )?;
        let preamble = Preamble::parse(&block)?;
        // Bounded: the slot size is at most 1 MiB (checked by Preamble::parse).
        let s = preamble.slot_size() as usize;
        let mut slots_buf = vec![0u8; 2 * s];
        read_exact_or(reader, &mut slots_buf, EnvelopeError::TruncatedHeader)?;
        let (s0, s1) = slots_buf.split_at(s);
        Self::from_parts(preamble, s0, s1)
    }

    /// Reads the header area of an open file with positional reads (the file's cursor does
    /// not move on Unix); only the header area is read.
    pub fn from_file(file: &std::fs::File) -> Result<Self, EnvelopeError> {
        rewrap::read_header(&mut FileSlotIo::new(file))
    }

    /// The preamble.
    pub fn preamble(&self) -> &Preamble {
        &self.preamble
    }
    /// Index (0 or 1) of the slot in use.
    pub fn active_slot(&self) -> u8 {
        self.active_slot
    }
    /// Sequence number of the slot in use.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }
    /// State of the other slot.
    pub fn other_slot(&self) -> SlotStatus {
        self.other_slot
    }
    /// The header body.
    pub fn body(&self) -> &HeaderBody {
        &self.body
    }
    /// Offset of the payload (= size of the header area).
    pub fn payload_offset(&self) -> u64 {
        self.preamble.header_area_len()
    }

    /// Unwraps the file key with the first (identity, stanza) pair that opens, then checks
    /// the key commitment (before anything else uses the key) and the header MAC.
    ///
    /// Classical X25519 identities never match (the native format has no X25519 stanza).
    pub fn unlock(&self, identities: &[Identity]) -> Result<UnlockedHeader, EnvelopeError> {
        let stanzas = self.body.stanzas();
        if !stanzas.iter().any(|s| s.kem() == KEM_XWING) {
            let first = stanzas.first().map_or(0, Stanza::kem);
            return Err(EnvelopeError::UnknownKem(first));
        }
        for id in identities {
            let Identity::Hybrid(sk) = id else { continue };
            for (i, st) in stanzas.iter().enumerate() {
                if st.kem() != KEM_XWING {
                    continue;
                }
                if let Some(key) = schedule::xwing_unwrap(st, sk)? {
                    return self.unlock_with_key(key, Some(i));
                }
            }
        }
        Err(EnvelopeError::NoMatch)
    }

    /// Checks a file key obtained elsewhere against this header (commitment, then MAC).
    pub fn unlock_with_key(
        &self,
        key: FileKey,
        opened_stanza: Option<usize>,
    ) -> Result<UnlockedHeader, EnvelopeError> {
        let sched = Schedule::derive(&key, self.body.payload_salt());
        if !sched.commitment_matches(self.body.commitment()) {
            return Err(EnvelopeError::KeyCommitment);
        }
        if !sched.verify_header_mac(
            &self.preamble.fields(),
            self.sequence,
            &self.body.encode_unmaced(),
            self.body.mac(),
        ) {
            return Err(EnvelopeError::HeaderMac);
        }
        Ok(UnlockedHeader {
            header: self.clone(),
            file_key: key,
            schedule: sched,
            opened_stanza,
        })
    }
}

fn read_exact_or<R: Read>(
    r: &mut R,
    buf: &mut [u8],
    short: EnvelopeError,
) -> Result<(), EnvelopeError> {
    match r.read_exact(buf) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(short),
        Err(e) => Err(EnvelopeError::Io(e)),
    }
}

/// A header whose file key is known and whose commitment and MAC verified.
pub struct UnlockedHeader {
    header: Header,
    file_key: FileKey,
    schedule: Schedule,
    opened_stanza: Option<usize>,
}

impl core::fmt::Debug for UnlockedHeader {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("UnlockedHeader")
            .field("header", &self.header)
            .field("opened_stanza", &self.opened_stanza)
            .finish_non_exhaustive()
    }
}

impl UnlockedHeader {
    /// The authenticated header.
    pub fn header(&self) -> &Header {
        &self.header
    }
    /// The file key (secret).
    pub fn file_key(&self) -> &FileKey {
        &self.file_key
    }
    /// Index of the stanza that opened, if unlocked by an identity.
    pub fn opened_stanza(&self) -> Option<usize> {
        self.opened_stanza
    }

    /// Whether the header is wrapped to exactly these recipients (as a set, by recipient
    /// tag, FORMAT.md §5.3) — the idempotence check of a re-wrap.
    ///
    /// ```
    /// use pqwrap_core::envelope::{Encryptor, Header};
    /// use pqwrap_core::keys::Identity;
    ///
    /// let (a, b) = (Identity::generate_hybrid()?, Identity::generate_hybrid()?);
    /// let file = Encryptor::new(Vec::new(), &[a.to_recipient()])?.finish()?;
    /// let unlocked = Header::parse(&file)?.unlock(&[a.clone()])?;
    /// assert!(unlocked.is_wrapped_to(&[a.to_recipient()]));
    /// assert!(!unlocked.is_wrapped_to(&[a.to_recipient(), b.to_recipient()]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_wrapped_to(&self, recipients: &[Recipient]) -> bool {
        let stanzas = self.header.body.stanzas();
        let mut want = Vec::with_capacity(recipients.len());
        for r in recipients {
            let Recipient::Hybrid(pk) = r else {
                return false;
            };
            let t = (
                KEM_XWING,
                self.schedule.recipient_tag(KEM_XWING, pk.as_bytes()),
            );
            if !want.contains(&t) {
                want.push(t);
            }
        }
        let mut have: Vec<(u16, [u8; TAG_LEN])> =
            stanzas.iter().map(|s| (s.kem(), *s.tag())).collect();
        have.sort_unstable();
        have.dedup();
        want.sort_unstable();
        have.len() == stanzas.len() && have == want
    }
}

/// Builds a body (MAC still zero) wrapping `key` to `recipients`.
pub(crate) fn build_body(
    key: &FileKey,
    sched: &Schedule,
    salt: [u8; SALT_LEN],
    recipients: &[Recipient],
    eseeds: Option<&[[u8; crate::kem::ESEED_LEN]]>,
) -> Result<HeaderBody, EnvelopeError> {
    if recipients.is_empty() {
        return Err(EnvelopeError::NoRecipients);
    }
    if recipients.len() > MAX_STANZAS {
        return Err(EnvelopeError::TooManyRecipients(recipients.len()));
    }
    let mut stanzas: Vec<Stanza> = Vec::with_capacity(recipients.len());
    for (i, r) in recipients.iter().enumerate() {
        let Recipient::Hybrid(pk) = r else {
            return Err(EnvelopeError::ClassicalRecipient);
        };
        if recipients[..i].contains(r) {
            return Err(EnvelopeError::DuplicateRecipient);
        }
        let eseed = match eseeds {
            Some(e) => Some(
                e.get(i)
                    .ok_or(EnvelopeError::Crypto("one eseed per recipient"))?,
            ),
            None => None,
        };
        stanzas.push(schedule::xwing_wrap(key, sched, pk, eseed)?);
    }
    HeaderBody::new(
        Suite::Aes256GcmStream64K,
        salt,
        *sched.commitment_ref(),
        stanzas,
    )
}

/// Sets the MAC of `body` for `sequence` and encodes the slot.
pub(crate) fn seal_slot(
    preamble: &Preamble,
    sequence: u64,
    mut body: HeaderBody,
    sched: &Schedule,
) -> Result<Vec<u8>, EnvelopeError> {
    let mac = sched.header_mac(&preamble.fields(), sequence, &body.encode_unmaced());
    body.set_mac(mac);
    slots::encode(sequence, &body.encode(), preamble.slot_size() as usize)
}

/// The whole header area of a new file: preamble, slot 0 with `sequence`, empty slot 1.
pub(crate) fn encode_fresh_area(
    preamble: &Preamble,
    sequence: u64,
    body: HeaderBody,
    sched: &Schedule,
) -> Result<Vec<u8>, EnvelopeError> {
    let mut area = preamble.encode();
    area.extend_from_slice(&seal_slot(preamble, sequence, body, sched)?);
    area.resize(BLOCK + 2 * preamble.slot_size() as usize, 0);
    Ok(area)
}

fn round_up_block(n: usize) -> usize {
    n.div_ceil(BLOCK) * BLOCK
}

/// FORMAT.md §7: at least 8192, room for two more X-Wing stanzas.
pub(crate) fn default_slot_size(body_len: usize) -> Result<u32, EnvelopeError> {
    let spare = 2 * (STANZA_FIXED + XWING_STANZA_BODY);
    let want = round_up_block(body_len + SLOT_FIXED + spare).max(8192);
    let need = round_up_block(body_len + SLOT_FIXED);
    let s = want.min(MAX_SLOT_SIZE as usize).max(need);
    u32::try_from(s)
        .ok()
        .filter(|&s| s <= MAX_SLOT_SIZE)
        .ok_or(EnvelopeError::HeaderAreaTooSmall {
            needed: body_len + SLOT_FIXED,
            available: MAX_SLOT_SIZE as usize,
        })
}

/// FORMAT.md §8 step 4: twice the new slot, rounded up to a block.
pub(crate) fn grown_slot_size(body_len: usize) -> Result<u32, EnvelopeError> {
    let need = body_len + SLOT_FIXED;
    let s = round_up_block(2 * need).min(MAX_SLOT_SIZE as usize);
    if s < need {
        return Err(EnvelopeError::HeaderAreaTooSmall {
            needed: need,
            available: MAX_SLOT_SIZE as usize,
        });
    }
    Ok(s as u32)
}

/// One stanza as [`inspect`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StanzaSummary {
    /// KEM identifier.
    pub kem: u16,
    /// KEM name, if this build knows the identifier.
    pub kem_name: Option<&'static str>,
}

/// What a header says without any key ([`inspect`]). Nothing here is authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    /// Format version (1).
    pub format_version: u16,
    /// Payload suite identifier.
    pub suite: u16,
    /// Payload suite name.
    pub suite_name: &'static str,
    /// Slot size in bytes.
    pub slot_size: u32,
    /// Size of the header area (= payload offset).
    pub header_area_len: u64,
    /// Slot in use (0 or 1).
    pub active_slot: u8,
    /// Its sequence number.
    pub sequence: u64,
    /// State of the other slot.
    pub other_slot: SlotStatus,
    /// Stanzas in file order.
    pub stanzas: Vec<StanzaSummary>,
    /// Payload (ciphertext) bytes, when the file length is known.
    pub payload_len: Option<u64>,
    /// Plaintext bytes implied by the payload length, when that length is possible.
    pub plaintext_len: Option<u64>,
}

impl Inspection {
    /// Whether every stanza is post-quantum (all are X-Wing in version 1).
    pub fn is_post_quantum(&self) -> bool {
        self.stanzas.iter().all(|s| s.kem == KEM_XWING)
    }
}

/// Summaries of a body's stanzas.
pub(crate) fn summarize(body: &HeaderBody) -> Vec<StanzaSummary> {
    body.stanzas()
        .iter()
        .map(|s| StanzaSummary {
            kem: s.kem(),
            kem_name: kem_name(s.kem()),
        })
        .collect()
}

/// Inspects a header without keys. `bytes` is the start of the file (at least the header
/// area); `file_len`, when given, fills in the payload sizes.
///
/// ```
/// use pqwrap_core::envelope::{Encryptor, inspect};
/// use pqwrap_core::keys::Identity;
///
/// let id = Identity::generate_hybrid()?;
/// let file = Encryptor::new(Vec::new(), &[id.to_recipient()])?.finish()?;
/// let info = inspect(&file, Some(file.len() as u64))?;
/// assert_eq!((info.format_version, info.active_slot, info.sequence), (1, 0, 1));
/// assert_eq!(info.stanzas.len(), 1);
/// assert_eq!(info.plaintext_len, Some(0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn inspect(bytes: &[u8], file_len: Option<u64>) -> Result<Inspection, EnvelopeError> {
    let h = Header::parse(bytes)?;
    Ok(inspection_of(&h, file_len))
}

/// Inspects an open file (reads only the header area and the file length).
pub fn inspect_file(file: &std::fs::File) -> Result<Inspection, EnvelopeError> {
    let len = file.metadata()?.len();
    let mut io = FileSlotIo::new(file);
    let h = rewrap::read_header(&mut io)?;
    Ok(inspection_of(&h, Some(len)))
}

fn inspection_of(h: &Header, file_len: Option<u64>) -> Inspection {
    let payload_len = file_len.map(|l| l.saturating_sub(h.payload_offset()));
    Inspection {
        format_version: FORMAT_VERSION,
        suite: h.body.suite().id(),
        suite_name: h.body.suite().name(),
        slot_size: h.preamble.slot_size(),
        header_area_len: h.payload_offset(),
        active_slot: h.active_slot,
        sequence: h.sequence,
        other_slot: h.other_slot,
        stanzas: summarize(&h.body),
        payload_len,
        plaintext_len: payload_len.and_then(plaintext_len),
    }
}
