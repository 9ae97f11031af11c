//! Thin wrappers over the RustCrypto primitives age uses, so the stanza and stream code
//! reads like the specification.

use base64ct::{Base64Unpadded, Encoding};
use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// Poly1305 tag length.
pub(crate) const TAG_LEN: usize = 16;

/// HKDF-SHA-256 to a 32-byte key.
pub(crate) fn hkdf32(salt: &[u8], ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut okm = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid HKDF-SHA-256 output length.
    let _ = Hkdf::<Sha256>::new(Some(salt), ikm).expand(info, &mut okm[..]);
    okm
}

/// A ChaCha20-Poly1305 instance under a 32-byte key.
pub(crate) fn aead(key: &[u8; 32]) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new(&(*key).into())
}

/// Encrypts `buf` in place and returns the tag.
pub(crate) fn seal_in_place(
    cipher: &ChaCha20Poly1305,
    nonce: &[u8; 12],
    aad: &[u8],
    buf: &mut [u8],
) -> [u8; TAG_LEN] {
    // Only fails for messages longer than ChaCha20's 256 GiB limit; ours are ≤ 64 KiB.
    cipher
        .encrypt_inout_detached(&(*nonce).into(), aad, buf.into())
        .map(|t| t.into())
        .unwrap_or([0u8; TAG_LEN])
}

/// Decrypts `buf` in place after checking `tag`; on failure `buf` is left unspecified and
/// must be discarded.
pub(crate) fn open_in_place(
    cipher: &ChaCha20Poly1305,
    nonce: &[u8; 12],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), ()> {
    cipher
        .decrypt_inout_detached(&(*nonce).into(), aad, buf.into(), &(*tag).into())
        .map_err(|_| ())
}

/// Seals a 16-byte file key with a one-time key and the all-zero nonce: 32 bytes out.
pub(crate) fn seal_file_key(key: &[u8; 32], nonce: &[u8; 12], file_key: &[u8; 16]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let (body, tag) = out.split_at_mut(16);
    body.copy_from_slice(file_key);
    let t = seal_in_place(&aead(key), nonce, &[], body);
    tag.copy_from_slice(&t);
    out
}

/// Opens a 32-byte wrapped file key; `None` if the tag does not verify.
pub(crate) fn open_file_key(
    key: &[u8; 32],
    nonce: &[u8; 12],
    body: &[u8; 32],
) -> Option<Zeroizing<[u8; 16]>> {
    let mut pt = Zeroizing::new([0u8; 16]);
    pt.copy_from_slice(&body[..16]);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&body[16..]);
    open_in_place(&aead(key), nonce, &[], &mut pt[..], &tag).ok()?;
    Some(pt)
}

/// Canonical unpadded standard base64 decoding: refuses padding, non-alphabet characters
/// and non-zero trailing bits (only one string may encode a value).
pub(crate) fn b64_decode(s: &[u8]) -> Option<Vec<u8>> {
    let v = Base64Unpadded::decode_vec(core::str::from_utf8(s).ok()?).ok()?;
    // base64ct already checks the last block; re-encoding makes canonicality evident.
    (Base64Unpadded::encode_string(&v).as_bytes() == s).then_some(v)
}

/// Unpadded standard base64.
pub(crate) fn b64_encode(b: &[u8]) -> String {
    Base64Unpadded::encode_string(b)
}
