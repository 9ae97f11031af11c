//! The small part of HPKE (RFC 9180) that age's `mlkem768x25519` stanza uses: base mode,
//! KEM 0x647a (MLKEM768-X25519, i.e. X-Wing, from [`crate::kem`]), KDF HKDF-SHA256
//! (0x0001), AEAD ChaCha20-Poly1305 (0x0003).
//!
//! Only the key schedule is written here, from HKDF and ChaCha20-Poly1305; it is pinned by
//! the HPKE-PQ draft's kem 25722 / kdf 1 / aead 3 test vector (see this module's tests).

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

impl Context {
    /// The base-mode key schedule (RFC 9180 §5.1, mode 0, empty PSK) from a KEM shared
    /// secret and `info`.
    pub fn base(shared_secret: &[u8], info: &[u8]) -> Self {
        let (psk_id_hash, _) = labeled_extract(&[], b"psk_id_hash", &[]);
        let (info_hash, _) = labeled_extract(&[], b"info_hash", info);
        let mut ctx = [0u8; 1 + NH + NH];
        ctx[1..1 + NH].copy_from_slice(&psk_id_hash[..]);
        ctx[1 + NH..].copy_from_slice(&info_hash[..]);
        let (_, secret) = labeled_extract(shared_secret, b"secret", &[]);
        let mut key = Zeroizing::new([0u8; NK]);
        labeled_expand(&secret, b"key", &ctx, &mut key[..]);
        let mut base_nonce = [0u8; NN];
        labeled_expand(&secret, b"base_nonce", &ctx, &mut base_nonce);
        let mut exporter_secret = Zeroizing::new([0u8; NH]);
        labeled_expand(&secret, b"exp", &ctx, &mut exporter_secret[..]);
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

    fn next_nonce(&mut self) -> Result<[u8; NN], HpkeError> {
        let mut nonce = self.base_nonce;
        for (n, s) in nonce[NN - 8..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        self.seq = self.seq.checked_add(1).ok_or(HpkeError::MessageLimit)?;
        Ok(nonce)
    }

    /// Encrypts the next message: ciphertext ‖ tag.
    pub fn seal(&mut self, aad: &[u8], pt: &[u8]) -> Result<Vec<u8>, HpkeError> {
        let nonce = self.next_nonce()?;
        let mut out = Vec::with_capacity(pt.len() + TAG_LEN);
        out.extend_from_slice(pt);
        let tag = seal_in_place(&aead(&self.key), &nonce, aad, &mut out);
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Decrypts the next message (ciphertext ‖ tag).
    pub fn open(&mut self, aad: &[u8], ct: &[u8]) -> Result<Zeroizing<Vec<u8>>, HpkeError> {
        let body_len = ct.len().checked_sub(TAG_LEN).ok_or(HpkeError::Short)?;
        let (body, tag) = ct.split_at(body_len);
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| HpkeError::Short)?;
        let nonce = self.next_nonce()?;
        let mut out = Zeroizing::new(body.to_vec());
        open_in_place(&aead(&self.key), &nonce, aad, &mut out, &tag)
            .map_err(|_| HpkeError::Open)?;
        Ok(out)
    }

    /// The secret export interface: `LabeledExpand(exporter_secret, "sec", context, L)`,
    /// for `L` ≤ 255·32.
    pub fn export(&self, context: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(vec![0u8; len.min(255 * NH)]);
        if let Ok(h) = Hkdf::<Sha256>::from_prk(&self.exporter_secret[..]) {
            labeled_expand(&h, b"sec", context, &mut out);
        }
        out
    }
}

/// `SetupBaseS`: encapsulates to `pk` and derives the sender context.
pub fn setup_base_s(
    pk: &kem::PublicKey,
    info: &[u8],
) -> Result<(kem::Ciphertext, Context), HpkeError> {
    let (enc, ss) = pk.encapsulate()?;
    Ok((enc, Context::base(ss.as_bytes(), info)))
}

/// `SetupBaseR`: decapsulates `enc` with `sk` and derives the recipient context.
pub fn setup_base_r(
    enc: &kem::Ciphertext,
    sk: &kem::SecretKey,
    info: &[u8],
) -> Result<Context, HpkeError> {
    let ss = sk.decapsulate(enc)?;
    Ok(Context::base(ss.as_bytes(), info))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors_dir() -> std::path::PathBuf {
        std::env::var_os("PQWRAP_VECTORS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors")
            })
    }

    fn h(v: &serde_json::Value) -> Vec<u8> {
        hex::decode(v.as_str().expect("hex string")).expect("valid hex")
    }

    /// The HPKE-PQ draft vector for kem 25722 / kdf 1 / aead 3 — exactly age's suite.
    #[test]
    fn hpke_pq_xwing_vector() {
        let path = vectors_dir().join("hpke-pq/test-vectors.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let all: Vec<serde_json::Value> = serde_json::from_str(&text).expect("JSON");
        let v = all
            .iter()
            .find(|v| {
                v["mode"] == 0 && v["kem_id"] == 25722 && v["kdf_id"] == 1 && v["aead_id"] == 3
            })
            .expect("kem 25722 / kdf 1 / aead 3 vector present");
        assert_eq!(h(&v["suite_id"]), suite_id());

        let seed: [u8; 32] = h(&v["skRm"]).try_into().expect("32-byte seed");
        let sk = kem::SecretKey::from_seed(&seed);
        assert_eq!(&sk.public_key().as_bytes()[..], &h(&v["pkRm"])[..]);
        let enc = kem::Ciphertext::from_bytes(&h(&v["enc"])).expect("enc length");
        let info = h(&v["info"]);

        let mut ctx = setup_base_r(&enc, &sk, &info).expect("decapsulates");
        assert_eq!(ctx.key()[..], h(&v["key"])[..]);
        assert_eq!(ctx.base_nonce()[..], h(&v["base_nonce"])[..]);
        assert_eq!(ctx.exporter_secret()[..], h(&v["exporter_secret"])[..]);
        // The shared secret itself, through the KEM.
        assert_eq!(
            sk.decapsulate(&enc).expect("ok").as_bytes()[..],
            h(&v["shared_secret"])[..]
        );

        let encs = v["encryptions"].as_array().expect("encryptions");
        assert!(!encs.is_empty());
        let mut sender = Context::base(&h(&v["shared_secret"]), &info);
        for e in encs {
            let (aad, ct, pt) = (h(&e["aad"]), h(&e["ct"]), h(&e["pt"]));
            assert_eq!(sender.seal(&aad, &pt).expect("seal"), ct);
            assert_eq!(&ctx.open(&aad, &ct).expect("open")[..], &pt[..]);
        }
        for x in v["exports"].as_array().expect("exports") {
            let len = usize::try_from(x["L"].as_u64().expect("L")).expect("small");
            assert_eq!(
                &ctx.export(&h(&x["exporter_context"]), len)[..],
                &h(&x["exported_value"])[..]
            );
        }
        // A tampered ciphertext fails.
        let mut fresh = Context::base(&h(&v["shared_secret"]), &info);
        let mut ct = h(&encs[0]["ct"]);
        ct[0] ^= 1;
        assert_eq!(
            fresh.open(&h(&encs[0]["aad"]), &ct).err(),
            Some(HpkeError::Open)
        );
    }
}
