//! The small part of HPKE (RFC 9180) that age's `mlkem768x25519` stanza uses: base mode,
//! KEM 0x647a (MLKEM768-X25519, i.e. X-Wing, from [`crate::kem`]), KDF HKDF-SHA256
//! (0x0001), AEAD ChaCha20-Poly1305 (0x0003).
//!
//! Only the key schedule is written here, from HKDF and ChaCha20-Poly1305; it is pinned by
//! the HPKE-PQ draft's kem 25722 / kdf 1 / aead 3 test vector (the test-vectors crate's
//! `hpke_pq` suite: key, base nonce, exporter secret, every encryption and export).

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::primitives::{TAG_LEN, aead, open_in_place, seal_in_place};
use crate::kem::{self, KemError};

/// HPKE KEM identifier of MLKEM768-X25519 (X-Wing).
pub const KEM_ID: u16 = 0x647a;
/// HPKE KDF identifier of HKDF-SHA256.
pub const KDF_ID: u16 = 0x0001;
/// HPKE AEAD identifier of ChaCha20-Poly1305.
pub const AEAD_ID: u16 = 0x0003;

const NK: usize = 32;
const NN: usize = 12;
const NH: usize = 32;

/// `"HPKE" ‖ kem_id ‖ kdf_id ‖ aead_id`.
fn suite_id() -> [u8; 10] {
    let mut s = [0u8; 10];
    s[..4].copy_from_slice(b"HPKE");
    s[4..6].copy_from_slice(&KEM_ID.to_be_bytes());
    s[6..8].copy_from_slice(&KDF_ID.to_be_bytes());
    s[8..10].copy_from_slice(&AEAD_ID.to_be_bytes());
    s
}

fn labeled_extract(salt: &[u8], label: &[u8], ikm: &[u8]) -> (Zeroizing<[u8; NH]>, Hkdf<Sha256>) {
    let mut labeled = Zeroizing::new(Vec::with_capacity(7 + 10 + label.len() + ikm.len()));
    labeled.extend_from_slice(b"HPKE-v1");
    labeled.extend_from_slice(&suite_id());
    labeled.extend_from_slice(label);
    labeled.extend_from_slice(ikm);
    let (prk, h) = Hkdf::<Sha256>::extract(Some(salt), &labeled);
    let mut out = Zeroizing::new([0u8; NH]);
    out.copy_from_slice(&prk);
    (out, h)
}

fn labeled_expand(prk: &Hkdf<Sha256>, label: &[u8], info: &[u8], out: &mut [u8]) {
    let len = u16::try_from(out.len()).unwrap_or(u16::MAX).to_be_bytes();
    let mut labeled = Vec::with_capacity(2 + 7 + 10 + label.len() + info.len());
    labeled.extend_from_slice(&len);
    labeled.extend_from_slice(b"HPKE-v1");
    labeled.extend_from_slice(&suite_id());
    labeled.extend_from_slice(label);
    labeled.extend_from_slice(info);
    // Our output lengths (≤ 32) are always valid for HKDF-SHA256.
    let _ = prk.expand(&labeled, out);
}

/// Errors from HPKE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HpkeError {
    /// The ciphertext did not authenticate.
    #[error("HPKE open failed")]
    Open,
    /// The ciphertext is shorter than a tag.
    #[error("HPKE ciphertext too short")]
    Short,
    /// The sequence number overflowed.
    #[error("HPKE message limit reached")]
    MessageLimit,
    /// An export longer than HKDF-SHA256 can produce (255 · 32 bytes).
    #[error("HPKE export length {0} exceeds 8160 bytes")]
    ExportTooLong(usize),
    /// The KEM failed.
    #[error(transparent)]
    Kem(#[from] KemError),
}

/// An HPKE encryption context (base mode): key, base nonce, exporter secret and sequence
/// number. Secrets are zeroized on drop; Debug prints nothing secret.
pub struct Context {
    key: Zeroizing<[u8; NK]>,
    base_nonce: [u8; NN],
    exporter_secret: Zeroizing<[u8; NH]>,
    seq: u64,
}

impl core::fmt::Debug for Context {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Context")
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// The base-mode `key_schedule_context` for one `info` (RFC 9180 §5.1: `mode ‖ psk_id_hash ‖
/// info_hash`, mode 0, empty PSK id). It holds nothing secret and depends only on `info`, so
/// a sender or receiver that uses one `info` for every message (age's stanzas do) computes it
/// once instead of two HKDF-Extracts per message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleContext([u8; 1 + NH + NH]);

impl ScheduleContext {
    /// The context of base mode with `info`.
    pub fn base(info: &[u8]) -> Self {
        let (psk_id_hash, _) = labeled_extract(&[], b"psk_id_hash", &[]);
        let (info_hash, _) = labeled_extract(&[], b"info_hash", info);
        let mut ctx = [0u8; 1 + NH + NH];
        ctx[1..1 + NH].copy_from_slice(&psk_id_hash[..]);
        ctx[1 + NH..].copy_from_slice(&info_hash[..]);
        Self(ctx)
    }
}

impl Context {
    /// The base-mode key schedule (RFC 9180 §5.1, mode 0, empty PSK) from a KEM shared
    /// secret and `info`.
    pub fn base(shared_secret: &[u8], info: &[u8]) -> Self {
        Self::with_schedule(shared_secret, &ScheduleContext::base(info))
    }

    /// As [`Context::base`], with the `info`-dependent part computed beforehand.
    pub fn with_schedule(shared_secret: &[u8], schedule: &ScheduleContext) -> Self {
        let ctx = &schedule.0;
        let (_, secret) = labeled_extract(shared_secret, b"secret", &[]);
        let mut key = Zeroizing::new([0u8; NK]);
        labeled_expand(&secret, b"key", ctx, &mut key[..]);
        let mut base_nonce = [0u8; NN];
        labeled_expand(&secret, b"base_nonce", ctx, &mut base_nonce);
        let mut exporter_secret = Zeroizing::new([0u8; NH]);
        labeled_expand(&secret, b"exp", ctx, &mut exporter_secret[..]);
        Self {
            key,
            base_nonce,
            exporter_secret,
            seq: 0,
        }
    }

    /// The AEAD key.
    pub fn key(&self) -> &[u8; NK] {
        &self.key
    }
    /// The base nonce.
    pub fn base_nonce(&self) -> &[u8; NN] {
        &self.base_nonce
    }
    /// The exporter secret.
    pub fn exporter_secret(&self) -> &[u8; NH] {
        &self.exporter_secret
    }

    /// `ComputeNonce(seq)`, refusing the last sequence number so that the increment after a
    /// successful seal or open cannot overflow (RFC 9180 §5.2 `IncrementSeq`).
    fn nonce(&self) -> Result<[u8; NN], HpkeError> {
        if self.seq == u64::MAX {
            return Err(HpkeError::MessageLimit);
        }
        let mut nonce = self.base_nonce;
        for (n, s) in nonce[NN - 8..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        Ok(nonce)
    }

    /// Encrypts the next message: ciphertext ‖ tag.
    pub fn seal(&mut self, aad: &[u8], pt: &[u8]) -> Result<Vec<u8>, HpkeError> {
        let nonce = self.nonce()?;
        let mut out = Vec::with_capacity(pt.len() + TAG_LEN);
        out.extend_from_slice(pt);
        let tag = seal_in_place(&aead(&self.key), &nonce, aad, &mut out);
        out.extend_from_slice(&tag);
        self.seq += 1;
        Ok(out)
    }

    /// Decrypts the next message (ciphertext ‖ tag). As RFC 9180 §5.2's `ContextR.Open`,
    /// the sequence number moves only when the message authenticates: a forged or damaged
    /// message does not desynchronise the context from its sender.
    pub fn open(&mut self, aad: &[u8], ct: &[u8]) -> Result<Zeroizing<Vec<u8>>, HpkeError> {
        let body_len = ct.len().checked_sub(TAG_LEN).ok_or(HpkeError::Short)?;
        let (body, tag) = ct.split_at(body_len);
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| HpkeError::Short)?;
        let nonce = self.nonce()?;
        let mut out = Zeroizing::new(body.to_vec());
        open_in_place(&aead(&self.key), &nonce, aad, &mut out, &tag)
            .map_err(|_| HpkeError::Open)?;
        self.seq += 1;
        Ok(out)
    }

    /// The secret export interface: `LabeledExpand(exporter_secret, "sec", context, L)`.
    /// `L` above 255 · 32 is an error (RFC 9180 §5.3), never a shorter secret.
    pub fn export(&self, context: &[u8], len: usize) -> Result<Zeroizing<Vec<u8>>, HpkeError> {
        if len > 255 * NH {
            return Err(HpkeError::ExportTooLong(len));
        }
        let mut out = Zeroizing::new(vec![0u8; len]);
        // A 32-byte PRK is always valid for HKDF-SHA256.
        if let Ok(h) = Hkdf::<Sha256>::from_prk(&self.exporter_secret[..]) {
            labeled_expand(&h, b"sec", context, &mut out);
        }
        Ok(out)
    }
}

/// `SetupBaseS`: encapsulates to `pk` and derives the sender context.
pub fn setup_base_s(
    pk: &kem::PublicKey,
    info: &[u8],
) -> Result<(kem::Ciphertext, Context), HpkeError> {
    setup_base_s_with(pk, &ScheduleContext::base(info))
}

/// `SetupBaseS` with a precomputed [`ScheduleContext`].
pub fn setup_base_s_with(
    pk: &kem::PublicKey,
    schedule: &ScheduleContext,
) -> Result<(kem::Ciphertext, Context), HpkeError> {
    let (enc, ss) = pk.encapsulate()?;
    Ok((enc, Context::with_schedule(ss.as_bytes(), schedule)))
}

/// `SetupBaseR`: decapsulates `enc` with `sk` and derives the recipient context.
pub fn setup_base_r(
    enc: &kem::Ciphertext,
    sk: &kem::SecretKey,
    info: &[u8],
) -> Result<Context, HpkeError> {
    setup_base_r_with(enc, sk, &ScheduleContext::base(info))
}

/// `SetupBaseR` with a precomputed [`ScheduleContext`].
pub fn setup_base_r_with(
    enc: &kem::Ciphertext,
    sk: &kem::SecretKey,
    schedule: &ScheduleContext,
) -> Result<Context, HpkeError> {
    let ss = sk.decapsulate(enc)?;
    Ok(Context::with_schedule(ss.as_bytes(), schedule))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The known-answer check against the HPKE-PQ draft's vector (kem 25722, kdf 1, aead 3)
    // is the test-vectors crate's `hpke_pq` suite; these are the properties a vector cannot
    // show.

    #[test]
    fn a_sealed_message_opens_once_in_order_and_a_flipped_bit_does_not() {
        let ss = [7u8; 32];
        let mut sender = Context::base(&ss, b"info");
        let mut receiver = Context::base(&ss, b"info");
        let first = sender.seal(b"aad", b"first").expect("seal");
        let second = sender.seal(b"aad", b"second").expect("seal");
        assert_ne!(first[..], second[..], "a fresh nonce per message");
        let mut tampered = first.clone();
        tampered[0] ^= 1;
        assert_eq!(
            receiver.open(b"aad", &tampered).err(),
            Some(HpkeError::Open)
        );
        assert_eq!(
            Context::base(&ss, b"info").open(b"other aad", &first).err(),
            Some(HpkeError::Open)
        );
        assert_eq!(&receiver.open(b"aad", &first).expect("open")[..], b"first");
        assert_eq!(
            &receiver.open(b"aad", &second).expect("open")[..],
            b"second"
        );
    }

    #[test]
    fn a_precomputed_schedule_gives_the_same_context() {
        let ss = [9u8; 32];
        let a = Context::base(&ss, b"age-encryption.org/mlkem768x25519");
        let sched = ScheduleContext::base(b"age-encryption.org/mlkem768x25519");
        let b = Context::with_schedule(&ss, &sched);
        assert_eq!((a.key(), a.base_nonce()), (b.key(), b.base_nonce()));
        assert_eq!(a.exporter_secret(), b.exporter_secret());
        assert_ne!(sched, ScheduleContext::base(b"other"));
    }

    #[test]
    fn the_last_sequence_number_is_refused_not_wrapped() {
        let mut ctx = Context::base(&[7u8; 32], b"info");
        ctx.seq = u64::MAX - 1;
        assert!(ctx.seal(b"", b"last one").is_ok());
        assert_eq!(
            ctx.seal(b"", b"one more").err(),
            Some(HpkeError::MessageLimit)
        );
        assert_eq!(
            ctx.open(b"", &[0u8; TAG_LEN]).err(),
            Some(HpkeError::MessageLimit)
        );
    }

    #[test]
    fn an_export_too_long_for_hkdf_is_an_error_not_a_shorter_secret() {
        let ctx = Context::base(&[7u8; 32], b"info");
        assert_eq!(ctx.export(b"ctx", 255 * NH).map(|v| v.len()), Ok(255 * NH));
        assert_eq!(
            ctx.export(b"ctx", 255 * NH + 1).err(),
            Some(HpkeError::ExportTooLong(255 * NH + 1))
        );
    }
}
