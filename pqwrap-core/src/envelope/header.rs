//! Codec for the preamble and the header body (docs/FORMAT.md §2, §4).
//!
//! The types here can only hold values the format allows: constructors and parsers check
//! every length and identifier, so encoding never fails and never produces an invalid file.

use super::{EnvelopeError, MAC_LEN, SALT_LEN, TAG_LEN};
use crate::kem;

/// The 8-byte magic that starts every native file: `\x89PQW\r\n\x1a\n`.
pub const MAGIC: [u8; 8] = [0x89, b'P', b'Q', b'W', 0x0D, 0x0A, 0x1A, 0x0A];
/// The only format version this implementation reads and writes.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the preamble block (and the alignment of every region of the header area).
pub const BLOCK: usize = 4096;
/// Smallest slot size.
pub const MIN_SLOT_SIZE: u32 = 4096;
/// Largest slot size (1 MiB): bounds what a reader allocates for the header area.
pub const MAX_SLOT_SIZE: u32 = 1 << 20;
/// Most stanzas a header may carry (bounds the work of trying identities).
pub const MAX_STANZAS: usize = 128;
/// Longest stanza body, for any KEM.
pub const MAX_STANZA_BODY: usize = 8192;
/// Bytes of the preamble that are meaningful (and covered by the header MAC).
pub(crate) const PREAMBLE_FIELDS: usize = 16;
/// Fixed part of a body: suite, salt, commitment, count, MAC.
pub(crate) const BODY_FIXED: usize = 2 + SALT_LEN + 32 + 2 + MAC_LEN;
/// Bytes of a stanza before its body: kem, length, tag.
pub(crate) const STANZA_FIXED: usize = 2 + 2 + TAG_LEN;

/// Payload suite identifiers (FORMAT.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// `0x0001`: HKDF-SHA256 key schedule, HMAC-SHA256 header MAC, AES-256-GCM STREAM with
    /// 64 KiB chunks.
    Aes256GcmStream64K,
}

impl Suite {
    /// The identifier as stored in the header.
    pub fn id(self) -> u16 {
        match self {
            Suite::Aes256GcmStream64K => 0x0001,
        }
    }
    /// The suite with this identifier.
    pub fn from_id(id: u16) -> Result<Self, EnvelopeError> {
        match id {
            0x0001 => Ok(Suite::Aes256GcmStream64K),
            other => Err(EnvelopeError::UnknownSuite(other)),
        }
    }
    /// A human-readable name.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Aes256GcmStream64K => "AES-256-GCM-STREAM-64K/HKDF-SHA256",
        }
    }
}

/// KEM identifier of X-Wing stanzas (the HPKE KEM id of MLKEM768-X25519).
pub const KEM_XWING: u16 = 0x647A;
/// Body length of an X-Wing stanza: KEM ciphertext and the wrapped file key.
pub const XWING_STANZA_BODY: usize = kem::CIPHERTEXT_LEN + 32 + 16;

/// Name of a KEM identifier, if known.
pub fn kem_name(id: u16) -> Option<&'static str> {
    match id {
        KEM_XWING => Some("X-Wing (ML-KEM-768 + X25519)"),
        _ => None,
    }
}

/// The immutable preamble: for version 1 only the slot size varies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preamble {
    slot_size: u32,
}

impl Preamble {
    /// A preamble for slots of `slot_size` bytes (checked).
    pub fn new(slot_size: u32) -> Result<Self, EnvelopeError> {
        if !(MIN_SLOT_SIZE..=MAX_SLOT_SIZE).contains(&slot_size)
            || !slot_size.is_multiple_of(BLOCK as u32)
        {
            return Err(EnvelopeError::BadSlotSize(slot_size));
        }
        Ok(Preamble { slot_size })
    }

    /// Size of each of the two slots.
    pub fn slot_size(&self) -> u32 {
        self.slot_size
    }

    /// Size of the whole header area (preamble block and both slots) = payload offset.
    pub fn header_area_len(&self) -> u64 {
        BLOCK as u64 + 2 * u64::from(self.slot_size)
    }

    /// Offset of slot `index` (0 or 1; anything else is treated as 1).
    pub fn slot_offset(&self, index: u8) -> u64 {
        BLOCK as u64 + u64::from(index.min(1)) * u64::from(self.slot_size)
    }

    /// The 16 meaningful bytes (covered by the header MAC).
    pub(crate) fn fields(&self) -> [u8; PREAMBLE_FIELDS] {
        let mut out = [0u8; PREAMBLE_FIELDS];
        out[..8].copy_from_slice(&MAGIC);
        out[8..10].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
        out[10..12].copy_from_slice(&0u16.to_be_bytes());
        out[12..16].copy_from_slice(&self.slot_size.to_be_bytes());
        out
    }

    /// The full 4096-byte preamble block.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![0u8; BLOCK];
        out[..PREAMBLE_FIELDS].copy_from_slice(&self.fields());
        out
    }

    /// Parses a preamble block; `block` must hold at least 4096 bytes (only the first 4096
    /// are read). Checks in the order FORMAT.md §2 gives.
    pub fn parse(block: &[u8]) -> Result<Self, EnvelopeError> {
        if block.len() < MAGIC.len() || block[..MAGIC.len()] != MAGIC {
            return Err(EnvelopeError::NotNative);
        }
        let block = block.get(..BLOCK).ok_or(EnvelopeError::TruncatedHeader)?;
        let version = be_u16(&block[8..10]);
        if version != FORMAT_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(version));
        }
        let flags = be_u16(&block[10..12]);
        if flags != 0 {
            return Err(EnvelopeError::UnsupportedFlags(flags));
        }
        let pre = Preamble::new(be_u32(&block[12..16]))?;
        if block[PREAMBLE_FIELDS..].iter().any(|&b| b != 0) {
            return Err(EnvelopeError::MalformedPreamble);
        }
        Ok(pre)
    }
}

/// One recipient stanza: KEM id, recipient tag and opaque body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stanza {
    kem: u16,
    tag: [u8; TAG_LEN],
    body: Vec<u8>,
}

impl Stanza {
    /// A stanza; the body length is checked (exact for known KEMs, bounded otherwise).
    pub fn new(kem: u16, tag: [u8; TAG_LEN], body: Vec<u8>) -> Result<Self, EnvelopeError> {
        let ok = match kem {
            KEM_XWING => body.len() == XWING_STANZA_BODY,
            _ => body.len() <= MAX_STANZA_BODY,
        };
        if !ok {
            return Err(EnvelopeError::MalformedHeader("stanza body length"));
        }
        Ok(Stanza { kem, tag, body })
    }
    /// The KEM identifier.
    pub fn kem(&self) -> u16 {
        self.kem
    }
    /// The recipient tag (meaningful only to holders of the file key).
    pub fn tag(&self) -> &[u8; TAG_LEN] {
        &self.tag
    }
    /// The stanza body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
    fn encoded_len(&self) -> usize {
        STANZA_FIXED + self.body.len()
    }
}

/// A header body (FORMAT.md §4). Valid by construction: the suite is known, there are
/// 1..=128 stanzas, and every stanza is well-formed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderBody {
    suite: Suite,
    payload_salt: [u8; SALT_LEN],
    commitment: [u8; 32],
    stanzas: Vec<Stanza>,
    mac: [u8; MAC_LEN],
}

impl HeaderBody {
    /// A body with a MAC still to be set (all zero).
    pub(crate) fn new(
        suite: Suite,
        payload_salt: [u8; SALT_LEN],
        commitment: [u8; 32],
        stanzas: Vec<Stanza>,
    ) -> Result<Self, EnvelopeError> {
        if stanzas.is_empty() {
            return Err(EnvelopeError::NoRecipients);
        }
        if stanzas.len() > MAX_STANZAS {
            return Err(EnvelopeError::TooManyRecipients(stanzas.len()));
        }
        Ok(HeaderBody {
            suite,
            payload_salt,
            commitment,
            stanzas,
            mac: [0u8; MAC_LEN],
        })
    }

    /// The payload suite.
    pub fn suite(&self) -> Suite {
        self.suite
    }
    /// The per-file salt of the key schedule.
    pub fn payload_salt(&self) -> &[u8; SALT_LEN] {
        &self.payload_salt
    }
    /// The key commitment.
    pub fn commitment(&self) -> &[u8; 32] {
        &self.commitment
    }
    /// The stanzas, in file order.
    pub fn stanzas(&self) -> &[Stanza] {
        &self.stanzas
    }
    /// The header MAC.
    pub fn mac(&self) -> &[u8; MAC_LEN] {
        &self.mac
    }
    pub(crate) fn set_mac(&mut self, mac: [u8; MAC_LEN]) {
        self.mac = mac;
    }

    /// Encoded length in bytes (L).
    pub fn encoded_len(&self) -> usize {
        BODY_FIXED + self.stanzas.iter().map(Stanza::encoded_len).sum::<usize>()
    }

    /// Everything the MAC covers from the body: all bytes but the MAC.
    pub(crate) fn encode_unmaced(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&self.suite.id().to_be_bytes());
        out.extend_from_slice(&self.payload_salt);
        out.extend_from_slice(&self.commitment);
        // At most MAX_STANZAS (checked at construction), so this fits a u16.
        out.extend_from_slice(&(self.stanzas.len() as u16).to_be_bytes());
        for s in &self.stanzas {
            out.extend_from_slice(&s.kem.to_be_bytes());
            out.extend_from_slice(&(s.body.len() as u16).to_be_bytes());
            out.extend_from_slice(&s.tag);
            out.extend_from_slice(&s.body);
        }
        out
    }

    /// The full encoded body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.encode_unmaced();
        out.extend_from_slice(&self.mac);
        out
    }

    /// Parses a body strictly: known suite, stanza count in range, every length checked
    /// before use, stanzas ending exactly where the MAC starts.
    pub fn parse(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() < BODY_FIXED {
            return Err(EnvelopeError::MalformedHeader("body too short"));
        }
        let (head, mac) = bytes.split_at(bytes.len() - MAC_LEN);
        let mut r = Reader(head);
        let suite = Suite::from_id(r.u16()?)?;
        let payload_salt: [u8; SALT_LEN] = r.array()?;
        let commitment: [u8; 32] = r.array()?;
        let count = usize::from(r.u16()?);
        if count == 0 {
            return Err(EnvelopeError::MalformedHeader("no stanzas"));
        }
        if count > MAX_STANZAS {
            return Err(EnvelopeError::TooManyRecipients(count));
        }
        let mut stanzas = Vec::with_capacity(count);
        for _ in 0..count {
            let kem = r.u16()?;
            let len = usize::from(r.u16()?);
            let tag: [u8; TAG_LEN] = r.array()?;
            if len > MAX_STANZA_BODY {
                return Err(EnvelopeError::MalformedHeader("stanza body too long"));
            }
            let body = r.take(len)?.to_vec();
            stanzas.push(Stanza::new(kem, tag, body)?);
        }
        if !r.0.is_empty() {
            return Err(EnvelopeError::MalformedHeader(
                "bytes after the last stanza",
            ));
        }
        let mut mac_arr = [0u8; MAC_LEN];
        mac_arr.copy_from_slice(mac);
        Ok(HeaderBody {
            suite,
            payload_salt,
            commitment,
            stanzas,
            mac: mac_arr,
        })
    }
}

/// A bounds-checked cursor: every read fails with `MalformedHeader` instead of panicking.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EnvelopeError> {
        if self.0.len() < n {
            return Err(EnvelopeError::MalformedHeader("body ends inside a field"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u16(&mut self) -> Result<u16, EnvelopeError> {
        Ok(be_u16(self.take(2)?))
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], EnvelopeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

/// Big-endian u16 from a slice of at least two bytes (callers check).
pub(crate) fn be_u16(b: &[u8]) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[..2]);
    u16::from_be_bytes(a)
}

/// Big-endian u32 from a slice of at least four bytes (callers check).
pub(crate) fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

/// Big-endian u64 from a slice of at least eight bytes (callers check).
pub(crate) fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}
