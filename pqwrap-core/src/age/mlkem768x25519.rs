//! The post-quantum `mlkem768x25519` recipient stanza (C2SP age):
//! `-> mlkem768x25519 <base64 enc>` with the 1120-byte X-Wing encapsulation, body the
//! 16-byte file key sealed by HPKE base mode (X-Wing, HKDF-SHA256, ChaCha20-Poly1305),
//! info `age-encryption.org/mlkem768x25519`, empty aad — 32 bytes.

use std::sync::LazyLock;

use zeroize::Zeroizing;

use super::header::{MLKEM768X25519_TAG, Stanza};
use super::hpke::{self, HpkeError};
use super::primitives::{b64_decode, b64_encode};
use super::{AgeError, EncryptError, FILE_KEY_LEN, FileKey, HeaderError, StanzaKind};
use crate::kem::{self, KemError};

const INFO: &[u8] = b"age-encryption.org/mlkem768x25519";

/// HPKE's `info`-dependent key schedule input for age's fixed `info`, computed once per
/// process (it is public).
static SCHEDULE: LazyLock<hpke::ScheduleContext> =
    LazyLock::new(|| hpke::ScheduleContext::base(INFO));
const BODY_LEN: usize = FILE_KEY_LEN + 16;

fn kem_err(e: KemError) -> AgeError {
    match e {
        KemError::Rng => AgeError::Random,
        other => AgeError::from(EncryptError::Kem(other)),
    }
}

/// Wraps `file_key` to the X-Wing public key `pk`.
pub(crate) fn wrap(file_key: &FileKey, pk: &kem::PublicKey) -> Result<Stanza, AgeError> {
    let (enc, mut ctx) = hpke::setup_base_s_with(pk, &SCHEDULE).map_err(|e| match e {
        HpkeError::Kem(k) => kem_err(k),
        other => AgeError::from(EncryptError::Hpke(other)),
    })?;
    let body = ctx
        .seal(&[], file_key.expose())
        .map_err(|e| AgeError::from(EncryptError::Hpke(e)))?;
    Stanza::new(MLKEM768X25519_TAG, vec![b64_encode(enc.as_bytes())], body)
}

/// Tries to unwrap an `mlkem768x25519` stanza: `Ok(None)` if it is not for `sk`, an error
/// if it is malformed (argument count, non-canonical or wrong-length enc or body, a
/// low-order X25519 share).
pub(crate) fn unwrap(sk: &kem::SecretKey, stanza: &Stanza) -> Result<Option<FileKey>, AgeError> {
    let [arg] = stanza.args() else {
        return Err(AgeError::from(HeaderError::ArgumentCount {
            kind: StanzaKind::MlKem768X25519,
            expected: 1,
        }));
    };
    let enc = b64_decode(arg.as_bytes())
        .filter(|v| v.len() == kem::CIPHERTEXT_LEN)
        .ok_or_else(|| {
            AgeError::from(HeaderError::Share {
                kind: StanzaKind::MlKem768X25519,
            })
        })?;
    let enc = kem::Ciphertext::from_bytes(&enc).map_err(|source| HeaderError::Kem {
        kind: StanzaKind::MlKem768X25519,
        source,
    })?;
    if stanza.body().len() != BODY_LEN {
        return Err(AgeError::from(HeaderError::BodyLength {
            kind: StanzaKind::MlKem768X25519,
        }));
    }
    let mut ctx = match hpke::setup_base_r_with(&enc, sk, &SCHEDULE) {
        Ok(c) => c,
        Err(HpkeError::Kem(KemError::NonContributory)) => {
            return Err(AgeError::from(HeaderError::LowOrderShare {
                kind: StanzaKind::MlKem768X25519,
            }));
        }
        Err(HpkeError::Kem(source)) => {
            return Err(AgeError::from(HeaderError::Kem {
                kind: StanzaKind::MlKem768X25519,
                source,
            }));
        }
        Err(_) => {
            return Err(AgeError::from(HeaderError::BodyLength {
                kind: StanzaKind::MlKem768X25519,
            }));
        }
    };
    match ctx.open(&[], stanza.body()) {
        Ok(pt) => {
            let key: Zeroizing<[u8; FILE_KEY_LEN]> = Zeroizing::new(
                pt.as_slice()
                    .try_into()
                    .map_err(|_| HeaderError::BodyLength {
                        kind: StanzaKind::MlKem768X25519,
                    })?,
            );
            Ok(Some(FileKey(key)))
        }
        Err(_) => Ok(None),
    }
}
