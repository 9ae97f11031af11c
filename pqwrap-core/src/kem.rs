//! X-Wing: the hybrid X25519 + ML-KEM-768 KEM (draft-connolly-cfrg-xwing-kem).
//!
//! This is the same KEM as HPKE's `MLKEM768-X25519` (KEM id 0x647a) and the one age's
//! `mlkem768x25519` recipients use. It is assembled here from `libcrux-ml-kem` (FIPS 203),
//! AWS-LC's X25519 (`aws-lc-rs`) and `sha3`, exactly as the draft specifies:
//!
//! * a 32-byte seed is expanded with SHAKE256 into 96 bytes: the first 64 are the
//!   ML-KEM-768 seed `d ‖ z`, the last 32 the X25519 secret scalar;
//! * `pk = pk_M ‖ pk_X` (1184 + 32 = 1216 bytes), `ct = ct_M ‖ ct_X` (1088 + 32 = 1120);
//! * `ss = SHA3-256(ss_M ‖ ss_X ‖ ct_X ‖ pk_X ‖ "\.//^\")`.
//!
//! Unlike the reference code, a [`SecretKey`] keeps its expanded form, so decapsulation
//! does not re-run SHAKE256 and ML-KEM key generation on every call, and a [`PublicKey`]
//! keeps its ML-KEM half unpacked (the matrix Â expanded, the key's hash computed), so that
//! every encapsulation to the same recipient during a job skips that work. An X25519 share that
//! yields the all-zero shared secret (a low-order point) is refused with
//! [`KemError::NonContributory`] in both directions.
//!
//! ```
//! use pqwrap_core::kem::SecretKey;
//! let sk = SecretKey::generate()?;
//! let (ct, ss_sender) = sk.public_key().encapsulate()?;
//! let ss_receiver = sk.decapsulate(&ct)?;
//! assert_eq!(ss_sender.as_bytes(), ss_receiver.as_bytes());
//! # Ok::<(), pqwrap_core::kem::KemError>(())
//! ```

use core::fmt;

use sha3::{Digest, Sha3_256};
use shake::{ExtendableOutput, Shake256, Update, XofReader};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub mod mlkem768;
pub mod x25519;

pub use mlkem768::Backend;

/// Length of an encoded X-Wing public key (`pk_M ‖ pk_X`).
pub const PUBLIC_KEY_LEN: usize = 1216;
/// Length of an X-Wing ciphertext (`ct_M ‖ ct_X`).
pub const CIPHERTEXT_LEN: usize = 1120;
/// Length of an X-Wing secret key: the seed it is expanded from.
pub const SEED_LEN: usize = 32;
/// Length of the randomness consumed by one encapsulation (`m ‖ ek_X`).
pub const ESEED_LEN: usize = 64;
/// Length of the shared secret.
pub const SHARED_SECRET_LEN: usize = 32;

const MLKEM_PK_LEN: usize = 1184;
const MLKEM_CT_LEN: usize = 1088;
/// The X-Wing combiner label, `\.//^\` (bytes 5c 2e 2f 2f 5e 5c).
const LABEL: &[u8; 6] = b"\\.//^\\";

/// Errors from the hybrid KEM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KemError {
    /// A public key, ciphertext or seed had the wrong length.
    #[error("wrong length for {what}: expected {expected} bytes, got {got}")]
    Length {
        /// Which object was being decoded.
        what: &'static str,
        /// The length X-Wing requires.
        expected: usize,
        /// The length that was supplied.
        got: usize,
    },
    /// The ML-KEM-768 half of a public key is not a valid encapsulation key
    /// (FIPS 203 modulus check).
    #[error("invalid ML-KEM-768 encapsulation key (coefficients not reduced mod q)")]
    InvalidMlKemKey,
    /// The X25519 exchange produced the all-zero shared secret: the peer's share is a
    /// low-order point and contributes nothing.
    #[error("X25519 share is a low-order point (all-zero shared secret)")]
    NonContributory,
    /// The operating system's random number generator failed.
    #[error("operating system random number generator failed")]
    Rng,
    /// A caller asked for an ML-KEM backend this CPU cannot run.
    #[error("the {0:?} ML-KEM backend is not available on this CPU")]
    BackendUnavailable(Backend),
}

/// Fills `buf` from the operating system's CSPRNG.
pub(crate) fn os_random(buf: &mut [u8]) -> Result<(), KemError> {
    getrandom::fill(buf).map_err(|_| KemError::Rng)
}

/// An X-Wing shared secret. Zeroized on drop; its Debug output is redacted.
#[derive(Clone)]
pub struct SharedSecret(Zeroizing<[u8; SHARED_SECRET_LEN]>);

impl SharedSecret {
    /// The 32 secret bytes.
    pub fn as_bytes(&self) -> &[u8; SHARED_SECRET_LEN] {
        &self.0
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(<redacted>)")
    }
}

impl PartialEq for SharedSecret {
    /// Constant-time comparison.
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&*other.0).into()
    }
}
impl Eq for SharedSecret {}

/// An X-Wing ciphertext (`ct_M ‖ ct_X`, 1120 bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct Ciphertext([u8; CIPHERTEXT_LEN]);

impl Ciphertext {
    /// Decodes a ciphertext; only the length is checked (every 1120-byte string is one).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KemError> {
        let arr: [u8; CIPHERTEXT_LEN] = bytes.try_into().map_err(|_| KemError::Length {
            what: "X-Wing ciphertext",
            expected: CIPHERTEXT_LEN,
            got: bytes.len(),
        })?;
        Ok(Self(arr))
    }

    /// The encoded ciphertext.
    pub fn as_bytes(&self) -> &[u8; CIPHERTEXT_LEN] {
        &self.0
    }

    fn ct_x(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(&self.0[MLKEM_CT_LEN..]);
        out
    }
}

impl fmt::Debug for Ciphertext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ciphertext({}…)", hex_prefix(&self.0))
    }
}

/// An X-Wing public (encapsulation) key: `pk_M ‖ pk_X`, 1216 bytes, validated on decode.
#[derive(Clone)]
pub struct PublicKey {
    bytes: [u8; PUBLIC_KEY_LEN],
    ek_m: mlkem768::EncapsulationKey,
    pk_x: [u8; 32],
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}
impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({}…)", hex_prefix(&self.bytes))
    }
}

impl PublicKey {
    /// Decodes and validates a public key (length, and the FIPS 203 encapsulation-key check
    /// on the ML-KEM half).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KemError> {
        let arr: [u8; PUBLIC_KEY_LEN] = bytes.try_into().map_err(|_| KemError::Length {
            what: "X-Wing public key",
            expected: PUBLIC_KEY_LEN,
            got: bytes.len(),
        })?;
        Self::from_array(arr, Backend::detect())
    }

    /// As [`PublicKey::from_bytes`], with the ML-KEM half unpacked for `backend` (an error
    /// if this CPU cannot run it). For tests that compare the backends.
    pub fn from_bytes_with(bytes: &[u8], backend: Backend) -> Result<Self, KemError> {
        let arr: [u8; PUBLIC_KEY_LEN] = bytes.try_into().map_err(|_| KemError::Length {
            what: "X-Wing public key",
            expected: PUBLIC_KEY_LEN,
            got: bytes.len(),
        })?;
        Self::from_array(arr, backend)
    }

    fn from_array(arr: [u8; PUBLIC_KEY_LEN], backend: Backend) -> Result<Self, KemError> {
        let mut ek = [0u8; mlkem768::ENCAPSULATION_KEY_LEN];
        ek.copy_from_slice(&arr[..MLKEM_PK_LEN]);
        let ek_m = mlkem768::EncapsulationKey::from_bytes_with(&ek, backend)?;
        let mut pk_x = [0u8; 32];
        pk_x.copy_from_slice(&arr[MLKEM_PK_LEN..]);
        Ok(Self {
            bytes: arr,
            ek_m,
            pk_x,
        })
    }

    /// The ML-KEM backend this key encapsulates with.
    pub fn backend(&self) -> Backend {
        self.ek_m.backend()
    }

    /// The encoded public key.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.bytes
    }

    /// Encapsulates a fresh shared secret to this key, with randomness from the OS.
    pub fn encapsulate(&self) -> Result<(Ciphertext, SharedSecret), KemError> {
        let mut eseed = Zeroizing::new([0u8; ESEED_LEN]);
        os_random(&mut eseed[..])?;
        self.encapsulate_with(&eseed)
    }

    /// Derandomized encapsulation: `eseed[..32]` is ML-KEM's `m`, `eseed[32..]` the
    /// ephemeral X25519 scalar. Only for known-answer tests: reusing an `eseed` is fatal.
    #[cfg(feature = "hazmat")]
    pub fn encapsulate_derand(
        &self,
        eseed: &[u8; ESEED_LEN],
    ) -> Result<(Ciphertext, SharedSecret), KemError> {
        self.encapsulate_with(eseed)
    }

    pub(crate) fn encapsulate_with(
        &self,
        eseed: &[u8; ESEED_LEN],
    ) -> Result<(Ciphertext, SharedSecret), KemError> {
        let mut m = Zeroizing::new([0u8; 32]);
        m.copy_from_slice(&eseed[..32]);
        let (ct_m, ss_m) = self.ek_m.encapsulate_with(&m);

        let mut ek_x = Zeroizing::new([0u8; 32]);
        ek_x.copy_from_slice(&eseed[32..]);
        let ek_x = x25519::StaticSecret::from_bytes(&ek_x);
        let ct_x = ek_x.public_key();
        let ss_x = ek_x.diffie_hellman(&self.pk_x)?;

        let mut ct = [0u8; CIPHERTEXT_LEN];
        ct[..MLKEM_CT_LEN].copy_from_slice(&ct_m);
        ct[MLKEM_CT_LEN..].copy_from_slice(&ct_x);
        let ss = combine(&ss_m[..], &ss_x, &ct_x, &self.pk_x);
        Ok((Ciphertext(ct), ss))
    }
}

/// An X-Wing secret (decapsulation) key.
///
/// It is stored as its 32-byte seed (the form that is exported) together with the expanded
/// ML-KEM and X25519 keys, so that decapsulation does not re-expand. Everything secret is
/// zeroized on drop, and Debug shows only a prefix of the public key.
pub struct SecretKey {
    seed: Zeroizing<[u8; SEED_LEN]>,
    dk_m: mlkem768::DecapsulationKey,
    sk_x: x25519::StaticSecret,
    public: PublicKey,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl Clone for SecretKey {
    fn clone(&self) -> Self {
        let mut expanded = Zeroizing::new([0u8; 96]);
        let mut xof = Shake256::default();
        Update::update(&mut xof, &self.seed[..]);
        xof.finalize_xof().read(&mut expanded[..]);
        let mut sk_x = Zeroizing::new([0u8; 32]);
        sk_x.copy_from_slice(&expanded[64..]);
        Self {
            seed: self.seed.clone(),
            dk_m: self.dk_m.clone(),
            sk_x: x25519::StaticSecret::from_bytes(&sk_x),
            public: self.public.clone(),
        }
    }
}

impl SecretKey {
    /// Expands a 32-byte seed into a key pair (SHAKE256 → ML-KEM-768 `d ‖ z`, X25519 scalar).
    pub fn from_seed(seed: &[u8; SEED_LEN]) -> Self {
        let key = Self::expand(seed, |s| {
            Ok::<_, core::convert::Infallible>(mlkem768::DecapsulationKey::from_seed(s))
        });
        match key {
            Ok(k) => k,
            Err(never) => match never {},
        }
    }

    /// As [`SecretKey::from_seed`], with ML-KEM running on `backend` (an error if this CPU
    /// cannot run it). For tests that compare the backends.
    pub fn from_seed_with(seed: &[u8; SEED_LEN], backend: Backend) -> Result<Self, KemError> {
        Self::expand(seed, |s| {
            mlkem768::DecapsulationKey::from_seed_with(s, backend)
        })
    }

    /// The X-Wing key expansion, with `ml_kem_keygen` making the ML-KEM half from `d ‖ z`.
    fn expand<E>(
        seed: &[u8; SEED_LEN],
        ml_kem_keygen: impl FnOnce(&[u8; mlkem768::SEED_LEN]) -> Result<mlkem768::DecapsulationKey, E>,
    ) -> Result<Self, E> {
        let mut expanded = Zeroizing::new([0u8; 96]);
        let mut xof = Shake256::default();
        Update::update(&mut xof, seed);
        xof.finalize_xof().read(&mut expanded[..]);

        let mut mlkem_seed = Zeroizing::new([0u8; mlkem768::SEED_LEN]);
        mlkem_seed.copy_from_slice(&expanded[..64]);
        let dk_m = ml_kem_keygen(&mlkem_seed)?;

        let mut sk_x_bytes = Zeroizing::new([0u8; 32]);
        sk_x_bytes.copy_from_slice(&expanded[64..]);
        let sk_x = x25519::StaticSecret::from_bytes(&sk_x_bytes);
        let pk_x = sk_x.public_key();

        let ek_m = dk_m.encapsulation_key().clone();
        let mut bytes = [0u8; PUBLIC_KEY_LEN];
        bytes[..MLKEM_PK_LEN].copy_from_slice(ek_m.as_bytes());
        bytes[MLKEM_PK_LEN..].copy_from_slice(&pk_x);

        Ok(Self {
            seed: Zeroizing::new(*seed),
            dk_m,
            sk_x,
            public: PublicKey { bytes, ek_m, pk_x },
        })
    }

    /// Generates a new key pair from a seed drawn from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, KemError> {
        let mut seed = Zeroizing::new([0u8; SEED_LEN]);
        os_random(&mut seed[..])?;
        Ok(Self::from_seed(&seed))
    }

    /// The seed this key was expanded from: the secret key's encoding.
    pub fn seed(&self) -> &[u8; SEED_LEN] {
        &self.seed
    }

    /// The matching public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Recovers the shared secret from a ciphertext.
    ///
    /// ML-KEM decapsulation never fails (implicit rejection yields a pseudorandom key);
    /// the only error is a low-order X25519 share.
    pub fn decapsulate(&self, ct: &Ciphertext) -> Result<SharedSecret, KemError> {
        let mut ct_m = [0u8; mlkem768::CIPHERTEXT_LEN];
        ct_m.copy_from_slice(&ct.0[..MLKEM_CT_LEN]);
        let ss_m = self.dk_m.decapsulate(&ct_m);
        let ct_x = ct.ct_x();
        let ss_x = self.sk_x.diffie_hellman(&ct_x)?;
        Ok(combine(&ss_m[..], &ss_x, &ct_x, &self.public.pk_x))
    }
}

/// The X-Wing combiner: `SHA3-256(ss_M ‖ ss_X ‖ ct_X ‖ pk_X ‖ label)`.
fn combine(ss_m: &[u8], ss_x: &[u8; 32], ct_x: &[u8; 32], pk_x: &[u8; 32]) -> SharedSecret {
    let mut h = Sha3_256::new();
    Digest::update(&mut h, ss_m);
    Digest::update(&mut h, ss_x);
    Digest::update(&mut h, ct_x);
    Digest::update(&mut h, pk_x);
    Digest::update(&mut h, LABEL);
    let mut out = Zeroizing::new([0u8; SHARED_SECRET_LEN]);
    out.copy_from_slice(&h.finalize());
    SharedSecret(out)
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_sizes() {
        let sk = SecretKey::from_seed(&[7u8; 32]);
        let (ct, ss) = sk.public_key().encapsulate().unwrap();
        assert_eq!(ct.as_bytes().len(), CIPHERTEXT_LEN);
        assert_eq!(sk.decapsulate(&ct).unwrap(), ss);
    }

    #[test]
    fn low_order_share_is_rejected_on_decapsulation() {
        let sk = SecretKey::from_seed(&[1u8; 32]);
        let (ct, _) = sk.public_key().encapsulate().unwrap();
        let mut bytes = *ct.as_bytes();
        // The identity point (u = 0) and u = 1 are low order: X25519 gives all zeros.
        for u in [[0u8; 32], {
            let mut one = [0u8; 32];
            one[0] = 1;
            one
        }] {
            bytes[MLKEM_CT_LEN..].copy_from_slice(&u);
            let bad = Ciphertext::from_bytes(&bytes).unwrap();
            assert_eq!(sk.decapsulate(&bad), Err(KemError::NonContributory));
        }
    }

    #[test]
    fn low_order_public_key_is_rejected_on_encapsulation() {
        let sk = SecretKey::from_seed(&[2u8; 32]);
        let mut pk = *sk.public_key().as_bytes();
        pk[MLKEM_PK_LEN..].copy_from_slice(&[0u8; 32]);
        let pk = PublicKey::from_bytes(&pk).unwrap();
        assert_eq!(pk.encapsulate().unwrap_err(), KemError::NonContributory);
    }

    #[test]
    fn bad_lengths_and_keys_are_typed_errors() {
        assert!(matches!(
            PublicKey::from_bytes(&[0u8; 10]),
            Err(KemError::Length { got: 10, .. })
        ));
        assert!(matches!(
            Ciphertext::from_bytes(&[0u8; 1121]),
            Err(KemError::Length { got: 1121, .. })
        ));
        // All-0xff coefficients are not reduced mod q.
        assert_eq!(
            PublicKey::from_bytes(&[0xffu8; PUBLIC_KEY_LEN]).unwrap_err(),
            KemError::InvalidMlKemKey
        );
    }

    #[test]
    fn debug_reveals_no_secret() {
        let seed = [0xabu8; 32];
        let sk = SecretKey::from_seed(&seed);
        let dbg = format!("{sk:?}");
        assert!(!dbg.contains("abababab"), "{dbg}");
        let (_, ss) = sk.public_key().encapsulate().unwrap();
        assert_eq!(format!("{ss:?}"), "SharedSecret(<redacted>)");
    }
}
