//! The classical `X25519` recipient stanza: `-> X25519 <base64 ephemeral share>`, body the
//! file key sealed with ChaCha20-Poly1305 under HKDF(ss, salt = share ‖ recipient,
//! "age-encryption.org/v1/X25519").

use zeroize::Zeroizing;

use super::header::{Stanza, X25519_TAG};
use super::primitives::{b64_decode, b64_encode, hkdf32, open_file_key, seal_file_key};
use super::{AgeError, EncryptError, FileKey, HeaderError, StanzaKind};
use crate::kem::{KemError, x25519};
use crate::keys::{X25519Identity, X25519Recipient};

const INFO: &[u8] = b"age-encryption.org/v1/X25519";

fn wrap_key(shared: &[u8; 32], share: &[u8; 32], recipient: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(share);
    salt[32..].copy_from_slice(recipient);
    hkdf32(&salt, shared, INFO)
}

/// Wraps `file_key` to `recipient`.
pub(crate) fn wrap(file_key: &FileKey, recipient: &X25519Recipient) -> Result<Stanza, AgeError> {
    let mut e = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut e[..]).map_err(|_| AgeError::Random)?;
    let share = x25519::public_key(&e);
    let shared = x25519::shared_secret(&e, recipient.as_bytes())
        .map_err(|_| AgeError::from(EncryptError::LowOrderRecipient))?;
    let key = wrap_key(&shared, &share, recipient.as_bytes());
    let body = seal_file_key(&key, &[0u8; 12], file_key.expose());
    Stanza::new(X25519_TAG, vec![b64_encode(&share)], body.to_vec())
}

/// Tries to unwrap an `X25519` stanza: `Ok(None)` if it is not for `identity`, an error
/// if it is malformed (wrong argument count, non-canonical or wrong-length share or body,
/// low-order share).
pub(crate) fn unwrap(
    identity: &X25519Identity,
    stanza: &Stanza,
) -> Result<Option<FileKey>, AgeError> {
    let [arg] = stanza.args() else {
        return Err(AgeError::from(HeaderError::ArgumentCount {
            kind: StanzaKind::X25519,
            expected: 1,
        }));
    };
    let share: [u8; 32] = b64_decode(arg.as_bytes())
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| {
            AgeError::from(HeaderError::Share {
                kind: StanzaKind::X25519,
            })
        })?;
    let body: &[u8; 32] = stanza.body().try_into().map_err(|_| {
        AgeError::from(HeaderError::BodyLength {
            kind: StanzaKind::X25519,
        })
    })?;
    let shared = match identity.secret().diffie_hellman(&share) {
        Ok(s) => s,
        Err(KemError::NonContributory) => {
            return Err(AgeError::from(HeaderError::LowOrderShare {
                kind: StanzaKind::X25519,
            }));
        }
        Err(source) => {
            return Err(AgeError::from(HeaderError::Kem {
                kind: StanzaKind::X25519,
                source,
            }));
        }
    };
    let key = wrap_key(&shared, &share, identity.public().as_bytes());
    Ok(open_file_key(&key, &[0u8; 12], body).map(FileKey))
}
