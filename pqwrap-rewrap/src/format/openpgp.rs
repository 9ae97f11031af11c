//! OpenPGP messages (RFC 9580): recognised so that they are named for what they are, never
//! taken for broken age armor or for plaintext; classified from their session-key packets;
//! not re-wrapped.

use std::io;

use super::{Armor, Detected, Format, FormatId, Info, Input, Plan, Protection};
use crate::error::Skip;
use crate::job::Job;

/// OpenPGP messages, armored or binary.
#[derive(Debug)]
pub struct OpenPgp;

const ARMOR_BEGIN: &[u8] = b"-----BEGIN PGP MESSAGE-----";
/// Whitespace accepted before the armor, as for age's armor.
const MAX_WHITESPACE: usize = 1024;

/// The packets that may open an encrypted message (RFC 9580 §5.1, §5.3).
const TAG_PKESK: u8 = 1;
const TAG_SKESK: u8 = 3;

/// Public-key algorithms of a PKESK (RFC 9580 §9.1; draft-ietf-openpgp-pqc for ML-KEM).
fn algorithm_protection(algo: u8) -> Protection {
    match algo {
        // ML-KEM-768+X25519, ML-KEM-1024+X448.
        35 | 36 => Protection::PostQuantum,
        // RSA, Elgamal, ECDH, X25519, X448.
        1 | 2 | 16 | 18 | 25 | 26 => Protection::Classical,
        _ => Protection::Unknown,
    }
}

/// One packet's tag, body start and body length (RFC 9580 §4.2), if its header is complete
/// within `b`.
fn packet(b: &[u8]) -> Option<(u8, usize, usize)> {
    let first = *b.first()?;
    if first & 0x80 == 0 {
        return None;
    }
    if first & 0x40 != 0 {
        // New format: one, two or five length octets (partial lengths cannot open a PKESK).
        let tag = first & 0x3f;
        let l0 = usize::from(*b.get(1)?);
        return match l0 {
            0..=191 => Some((tag, 2, l0)),
            192..=223 => Some((tag, 3, ((l0 - 192) << 8) + usize::from(*b.get(2)?) + 192)),
            255 => {
                let n = u32::from_be_bytes(b.get(2..6)?.try_into().ok()?);
                Some((tag, 6, usize::try_from(n).ok()?))
            }
            _ => None,
        };
    }
    // Legacy format: the length type is in the low two bits.
    let tag = (first >> 2) & 0x0f;
    match first & 3 {
        0 => Some((tag, 2, usize::from(*b.get(1)?))),
        1 => Some((
            tag,
            3,
            usize::from(u16::from_be_bytes(b.get(1..3)?.try_into().ok()?)),
        )),
        2 => {
            let n = u32::from_be_bytes(b.get(1..5)?.try_into().ok()?);
            Some((tag, 5, usize::try_from(n).ok()?))
        }
        _ => None,
    }
}

/// The protection each leading session-key packet gives, read from `head`: empty if `head`
/// does not open with one of a known version.
fn session_keys(head: &[u8]) -> Vec<Protection> {
    let mut out = Vec::new();
    let mut rest = head;
    while let Some((tag, start, len)) = packet(rest) {
        let Some(body) = rest.get(start..start.saturating_add(len)) else {
            break;
        };
        let protection = match (tag, body.first()) {
            // v3: version, key id (8), algorithm.
            (TAG_PKESK, Some(3)) => body.get(9).copied().map(algorithm_protection),
            // v6: version, length of what identifies the key, that, algorithm.
            (TAG_PKESK, Some(6)) => body
                .get(1)
                .and_then(|n| body.get(2 + usize::from(*n)))
                .copied()
                .map(algorithm_protection),
            (TAG_SKESK, Some(4..=6)) => Some(Protection::Passphrase),
            _ => None,
        };
        let Some(p) = protection else { break };
        out.push(p);
        rest = rest.get(start + len..).unwrap_or_default();
    }
    out
}

fn armored(head: &[u8]) -> bool {
    let start = head
        .iter()
        .take(MAX_WHITESPACE + 1)
        .position(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
    start.is_some_and(|s| head.get(s..).unwrap_or_default().starts_with(ARMOR_BEGIN))
}

impl Format for OpenPgp {
    fn id(&self) -> FormatId {
        FormatId::OpenPgp
    }

    fn name(&self) -> &'static str {
        "OpenPGP"
    }

    fn detect(&self, head: &[u8]) -> Option<(&'static str, Armor)> {
        if armored(head) {
            return Some(("openpgp-armored", Armor::Armored));
        }
        (!session_keys(head).is_empty()).then_some(("openpgp", Armor::Binary))
    }

    fn classify(&self, found: &Detected, input: &Input<'_>) -> io::Result<Protection> {
        if found.armor == Armor::Armored {
            // The packets are inside the base64; pqwrap does not decode OpenPGP armor.
            return Ok(Protection::Unknown);
        }
        let kinds = session_keys(input.head);
        let pq = kinds.contains(&Protection::PostQuantum);
        let classical = kinds.contains(&Protection::Classical);
        Ok(match (pq, classical) {
            (true, true) => Protection::Mixed,
            (true, false) if kinds.iter().all(|p| *p == Protection::PostQuantum) => {
                Protection::PostQuantum
            }
            (false, true) => Protection::Classical,
            _ if kinds.iter().all(|p| *p == Protection::Passphrase) => Protection::Passphrase,
            _ => Protection::Unknown,
        })
    }

    fn plan<'a>(&'a self, _job: &'a Job, found: &Detected, _input: &Input<'_>) -> Plan<'a> {
        Plan::Skip {
            info: Info::of(found.label),
            skip: Skip::UnsupportedFormat("OpenPGP"),
        }
    }

    fn is_own_output(&self, _head: &[u8]) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_key_packets_are_recognised_and_classified() {
        // Legacy-format PKESK v3 for RSA (algorithm 1), then a new-format one for X25519.
        let mut m = vec![0x85, 0x00, 12, 3, 1, 2, 3, 4, 5, 6, 7, 8, 1, 0, 0];
        m.extend_from_slice(&[0xc1, 11, 3, 1, 2, 3, 4, 5, 6, 7, 8, 25, 0]);
        assert_eq!(
            session_keys(&m),
            vec![Protection::Classical, Protection::Classical]
        );
        // PKESK v6 for ML-KEM-768+X25519: 1-octet count of key-identifying bytes first.
        let v6 = [0xc1, 6, 6, 2, 6, 0xaa, 35, 0];
        assert_eq!(session_keys(&v6), vec![Protection::PostQuantum]);
        // SKESK v4.
        assert_eq!(
            session_keys(&[0xc3, 4, 4, 9, 3, 0]),
            vec![Protection::Passphrase]
        );
        // Not OpenPGP: plain text, a PKESK of an unknown version, a bare byte.
        for not in [&b"hello"[..], &[0xc1, 3, 9, 0, 0], &[0x85]] {
            assert!(session_keys(not).is_empty(), "{not:?}");
        }
        assert!(armored(b"\n  -----BEGIN PGP MESSAGE-----\n\nhQ"));
        assert!(!armored(b"-----BEGIN AGE ENCRYPTED FILE-----"));
    }
}
