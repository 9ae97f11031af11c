//! The two header slots: encoding, classification and selection (FORMAT.md §3).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::EnvelopeError;
use super::header::{BODY_FIXED, be_u32, be_u64};

/// The 4-byte magic at the start of a written slot.
pub const SLOT_MAGIC: [u8; 4] = *b"PQWS";
/// Bytes of a slot before its body: magic, sequence, body length, checksum.
pub const SLOT_FIXED: usize = 4 + 8 + 4 + 32;

/// What a slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotStatus {
    /// All zero: never written, or wiped by a re-wrap.
    Empty,
    /// A complete slot with this sequence number.
    Valid {
        /// The slot's sequence number.
        sequence: u64,
    },
    /// Neither: a torn write or damage.
    Invalid,
}

/// Classifies one slot (`slot` is exactly the slot's bytes) and returns its body when valid.
pub(crate) fn classify(slot: &[u8]) -> (SlotStatus, Option<&[u8]>) {
    if slot.iter().all(|&b| b == 0) {
        return (SlotStatus::Empty, None);
    }
    if slot.len() < SLOT_FIXED || slot[..4] != SLOT_MAGIC {
        return (SlotStatus::Invalid, None);
    }
    let sequence = be_u64(&slot[4..12]);
    let len = be_u32(&slot[12..16]) as usize;
    let max = slot.len() - SLOT_FIXED;
    if sequence == 0 || len < BODY_FIXED || len > max {
        return (SlotStatus::Invalid, None);
    }
    let end = SLOT_FIXED + len;
    if slot[end..].iter().any(|&b| b != 0) {
        return (SlotStatus::Invalid, None);
    }
    let want = checksum(slot);
    if !bool::from(want.ct_eq(&slot[16..48])) {
        return (SlotStatus::Invalid, None);
    }
    (SlotStatus::Valid { sequence }, Some(&slot[SLOT_FIXED..end]))
}

/// SHA-256 of the slot with the checksum field replaced by zeros.
fn checksum(slot: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(&slot[..16]);
    h.update([0u8; 32]);
    h.update(&slot[SLOT_FIXED..]);
    h.finalize().into()
}

/// Encodes a full slot of `slot_size` bytes. The caller guarantees the body fits
/// (`body.len() + SLOT_FIXED <= slot_size`) and that the body is at least `BODY_FIXED`.
pub(crate) fn encode(
    sequence: u64,
    body: &[u8],
    slot_size: usize,
) -> Result<Vec<u8>, EnvelopeError> {
    if body.len() + SLOT_FIXED > slot_size {
        return Err(EnvelopeError::HeaderAreaTooSmall {
            needed: body.len() + SLOT_FIXED,
            available: slot_size,
        });
    }
    let mut out = vec![0u8; slot_size];
    out[..4].copy_from_slice(&SLOT_MAGIC);
    out[4..12].copy_from_slice(&sequence.to_be_bytes());
    out[12..16].copy_from_slice(&(body.len() as u32).to_be_bytes());
    out[SLOT_FIXED..SLOT_FIXED + body.len()].copy_from_slice(body);
    let sum = checksum(&out);
    out[16..48].copy_from_slice(&sum);
    Ok(out)
}

/// The slot readers use.
pub(crate) struct Selected<'a> {
    pub index: u8,
    pub sequence: u64,
    pub body: &'a [u8],
    pub other: SlotStatus,
}

/// Selects the valid slot with the highest sequence (FORMAT.md §3).
pub(crate) fn select<'a>(s0: &'a [u8], s1: &'a [u8]) -> Result<Selected<'a>, EnvelopeError> {
    let (st0, b0) = classify(s0);
    let (st1, b1) = classify(s1);
    match (st0, b0, st1, b1) {
        (
            SlotStatus::Valid { sequence: q0 },
            Some(b0),
            SlotStatus::Valid { sequence: q1 },
            Some(b1),
        ) => {
            if q0 == q1 {
                Err(EnvelopeError::AmbiguousSlots(q0))
            } else if q0 > q1 {
                Ok(Selected {
                    index: 0,
                    sequence: q0,
                    body: b0,
                    other: st1,
                })
            } else {
                Ok(Selected {
                    index: 1,
                    sequence: q1,
                    body: b1,
                    other: st0,
                })
            }
        }
        (SlotStatus::Valid { sequence }, Some(body), other, _) => Ok(Selected {
            index: 0,
            sequence,
            body,
            other,
        }),
        (other, _, SlotStatus::Valid { sequence }, Some(body)) => Ok(Selected {
            index: 1,
            sequence,
            body,
            other,
        }),
        _ => Err(EnvelopeError::NoValidSlot),
    }
}
