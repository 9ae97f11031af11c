//! Key schedule, header MAC, recipient tags and the X-Wing wrap (FORMAT.md §5).

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::header::{KEM_XWING, Stanza, XWING_STANZA_BODY};
use super::{EnvelopeError, FILE_KEY_LEN, MAC_LEN, SALT_LEN, TAG_LEN};
use crate::kem;

const LABEL_COMMIT: &[u8] = b"pqwrap/v1 key commitment";
const LABEL_MAC: &[u8] = b"pqwrap/v1 header mac";
const LABEL_PAYLOAD: &[u8] = b"pqwrap/v1 payload";
const LABEL_TAG: &[u8] = b"pqwrap/v1 recipient tag";
const LABEL_XWING_WRAP: &[u8] = b"pqwrap/v1 x-wing wrap";

/// A 32-byte file key. Zeroized on drop; Debug prints nothing secret.
#[derive(Clone)]
pub struct FileKey(Zeroizing<[u8; FILE_KEY_LEN]>);

impl FileKey {
    /// Wraps raw bytes (known-answer tests, or a key obtained elsewhere).
    pub fn from_bytes(bytes: [u8; FILE_KEY_LEN]) -> Self {
        FileKey(Zeroizing::new(bytes))
    }
    /// A fresh key from the OS CSPRNG.
    pub fn generate() -> Result<Self, EnvelopeError> {
        let mut k = Zeroizing::new([0u8; FILE_KEY_LEN]);
        kem::os_random(&mut k[..])?;
        Ok(FileKey(k))
    }
    /// The secret bytes.
    pub fn as_bytes(&self) -> &[u8; FILE_KEY_LEN] {
        &self.0
    }
}

impl core::fmt::Debug for FileKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("FileKey([redacted])")
    }
}

impl PartialEq for FileKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&*other.0).into()
    }
}
impl Eq for FileKey {}

/// Keys derived from the file key and the per-file salt.
pub(crate) struct Schedule {
    pub commitment: [u8; 32],
    pub mac_key: Zeroizing<[u8; 32]>,
    pub payload_key: Zeroizing<[u8; 32]>,
    pub tag_key: Zeroizing<[u8; 32]>,
}

impl Schedule {
    pub fn derive(key: &FileKey, salt: &[u8; SALT_LEN]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(salt), key.as_bytes());
        let mut commitment = [0u8; 32];
        let mut mac_key = Zeroizing::new([0u8; 32]);
        let mut payload_key = Zeroizing::new([0u8; 32]);
        let mut tag_key = Zeroizing::new([0u8; 32]);
        // 32 <= 255 * 32: HKDF-Expand cannot fail for these lengths.
        for (label, out) in [
            (LABEL_COMMIT, &mut commitment[..]),
            (LABEL_MAC, &mut mac_key[..]),
            (LABEL_PAYLOAD, &mut payload_key[..]),
            (LABEL_TAG, &mut tag_key[..]),
        ] {
            let _ = hk.expand(label, out);
        }
        Schedule {
            commitment,
            mac_key,
            payload_key,
            tag_key,
        }
    }

    pub fn commitment_ref(&self) -> &[u8; 32] {
        &self.commitment
    }

    /// Constant-time check of a header's commitment against this key.
    pub fn commitment_matches(&self, stored: &[u8; 32]) -> bool {
        self.commitment.ct_eq(stored).into()
    }

    /// The header MAC over preamble fields, sequence and the body without its MAC.
    pub fn header_mac(&self, preamble: &[u8], sequence: u64, body_unmaced: &[u8]) -> [u8; MAC_LEN] {
        let mut m = hmac_new(&self.mac_key);
        m.update(preamble);
        m.update(&sequence.to_be_bytes());
        m.update(body_unmaced);
        m.finalize().into_bytes().into()
    }

    /// Constant-time header MAC verification.
    pub fn verify_header_mac(
        &self,
        preamble: &[u8],
        sequence: u64,
        body_unmaced: &[u8],
        mac: &[u8; MAC_LEN],
    ) -> bool {
        let want = self.header_mac(preamble, sequence, body_unmaced);
        want.ct_eq(mac).into()
    }

    /// The recipient tag for a public key of a given KEM.
    pub fn recipient_tag(&self, kem_id: u16, public_key: &[u8]) -> [u8; TAG_LEN] {
        let mut m = hmac_new(&self.tag_key);
        m.update(&kem_id.to_be_bytes());
        m.update(public_key);
        let full: [u8; 32] = m.finalize().into_bytes().into();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }
}

/// HMAC-SHA256 keyed with a 32-byte key. RFC 2104 pads a short key with zeros to the
/// 64-byte block, so keying with the padded block is the same function and cannot fail.
fn hmac_new(key: &[u8; 32]) -> Hmac<Sha256> {
    let mut block = Zeroizing::new([0u8; 64]);
    block[..32].copy_from_slice(key);
    <Hmac<Sha256> as hmac::KeyInit>::new(&(*block).into())
}

fn xwing_wrap_key(ss: &kem::SharedSecret, ct: &kem::Ciphertext, pk: &kem::PublicKey) -> Aes256Gcm {
    let hk = Hkdf::<Sha256>::new(Some(LABEL_XWING_WRAP), ss.as_bytes());
    let mut key = Zeroizing::new([0u8; 32]);
    let _ = hk.expand_multi_info(&[ct.as_bytes(), pk.as_bytes()], &mut key[..]);
    Aes256Gcm::new(&(*key).into())
}

/// Wraps the file key to an X-Wing public key; `eseed` makes it deterministic (known-answer
/// tests only: reusing an eseed is fatal).
pub(crate) fn xwing_wrap(
    key: &FileKey,
    schedule: &Schedule,
    pk: &kem::PublicKey,
    eseed: Option<&[u8; kem::ESEED_LEN]>,
) -> Result<Stanza, EnvelopeError> {
    let (ct, ss) = match eseed {
        Some(e) => pk.encapsulate_with(e)?,
        None => pk.encapsulate()?,
    };
    let aead = xwing_wrap_key(&ss, &ct, pk);
    let mut buf = Vec::with_capacity(XWING_STANZA_BODY);
    buf.extend_from_slice(ct.as_bytes());
    let mut wrapped = *key.as_bytes();
    let tag = aead
        .encrypt_inout_detached(&Nonce::from([0u8; 12]), b"", (&mut wrapped[..]).into())
        .map_err(|_| EnvelopeError::Crypto("AES-GCM seal"))?;
    buf.extend_from_slice(&wrapped);
    buf.extend_from_slice(&tag);
    let rtag = schedule.recipient_tag(KEM_XWING, pk.as_bytes());
    Stanza::new(KEM_XWING, rtag, buf)
}

/// Tries to unwrap an X-Wing stanza with a secret key. `Ok(None)`: not for this key.
pub(crate) fn xwing_unwrap(
    stanza: &Stanza,
    sk: &kem::SecretKey,
) -> Result<Option<FileKey>, EnvelopeError> {
    let body = stanza.body();
    if body.len() != XWING_STANZA_BODY {
        return Err(EnvelopeError::MalformedHeader("X-Wing stanza length"));
    }
    let (ct_bytes, rest) = body.split_at(kem::CIPHERTEXT_LEN);
    let (wrapped, tag) = rest.split_at(FILE_KEY_LEN);
    let ct = kem::Ciphertext::from_bytes(ct_bytes)?;
    let ss = sk.decapsulate(&ct)?;
    let aead = xwing_wrap_key(&ss, &ct, sk.public_key());
    let mut out = Zeroizing::new([0u8; FILE_KEY_LEN]);
    out.copy_from_slice(wrapped);
    let mut tag_arr = [0u8; 16];
    tag_arr.copy_from_slice(tag);
    match aead.decrypt_inout_detached(
        &Nonce::from([0u8; 12]),
        b"",
        (&mut out[..]).into(),
        &tag_arr.into(),
    ) {
        Ok(()) => Ok(Some(FileKey(out))),
        Err(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_hmac_key_is_rfc2104_hmac() {
        let key = [7u8; 32];
        let mut a = hmac_new(&key);
        a.update(b"msg");
        let mut b = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&key).unwrap();
        b.update(b"msg");
        assert_eq!(a.finalize().into_bytes(), b.finalize().into_bytes());
    }
}
