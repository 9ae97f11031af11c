//! ML-KEM-768 (FIPS 203) from libcrux, the formally verified implementation (hax/F*: panic
//! freedom, functional correctness against the FIPS 203 specification, secret independence).
//!
//! libcrux ships a portable and an AVX2 implementation of the same verified code. The AVX2
//! one runs only where the CPU reports AVX2 ([`Backend::detect`]); elsewhere the portable one
//! does. An [`EncapsulationKey`] is kept *unpacked* for its whole life: its matrix Â is
//! sampled, its vector t̂ decoded and its hash H(ek) computed once, when it is parsed, so that
//! each encapsulation to it (one per file in a re-wrap job) does only the encryption.
//!
//! The decapsulation key stays in libcrux's packed (serialised) form, the only form that can
//! be wiped: it is zeroized on drop. libcrux's unpacked private key would decapsulate about
//! twice as fast but has no way to be wiped, and decapsulation is not on the hot path.
//!
//! Encapsulation here takes its randomness from the caller, so it is only public with the
//! `hazmat` feature (for known-answer tests); [`super::PublicKey::encapsulate`] draws it from
//! the operating system.
//!
//! ```
//! # #[cfg(feature = "hazmat")] {
//! use pqwrap_core::kem::mlkem768::DecapsulationKey;
//! let dk = DecapsulationKey::from_seed(&[7u8; 64]);
//! let (ct, k) = dk.encapsulation_key().encapsulate_derand(&[9u8; 32]);
//! assert_eq!(dk.decapsulate(&ct)[..], k[..]);
//! # }
//! ```

use core::fmt;

use libcrux_ml_kem::mlkem768 as lc;
use zeroize::{Zeroize, Zeroizing};

use super::KemError;

/// Length of an encoded ML-KEM-768 encapsulation key.
pub const ENCAPSULATION_KEY_LEN: usize = 1184;
/// Length of an ML-KEM-768 ciphertext.
pub const CIPHERTEXT_LEN: usize = 1088;
/// Length of the key generation seed `d ‖ z`.
pub const SEED_LEN: usize = 64;
/// Length of the encapsulation randomness `m` and of the shared secret.
pub const SHARED_SECRET_LEN: usize = 32;

/// Which of libcrux's ML-KEM implementations runs. Both are the same verified code and give
/// the same results; AVX2 is about three times faster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// 64-bit portable Rust.
    Portable,
    /// AVX2 intrinsics (x86-64 only).
    Avx2,
}

impl Backend {
    /// The fastest backend this CPU can run.
    pub fn detect() -> Backend {
        if Backend::Avx2.is_available() {
            Backend::Avx2
        } else {
            Backend::Portable
        }
    }

    /// Whether this CPU can run the backend.
    pub fn is_available(self) -> bool {
        match self {
            Backend::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => std::is_x86_feature_detected!("avx2"),
            #[cfg(not(target_arch = "x86_64"))]
            Backend::Avx2 => false,
        }
    }

    /// A short name for version and diagnostic output, e.g. `avx2`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Portable => "portable",
            Backend::Avx2 => "avx2",
        }
    }

    /// The backend, checked to run on this CPU: the only way to reach the AVX2 code.
    fn check(self) -> Result<Available, KemError> {
        match self {
            Backend::Portable => Ok(Available::Portable),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 if self.is_available() => Ok(Available::Avx2),
            _ => Err(KemError::BackendUnavailable(self)),
        }
    }
}

/// A backend this CPU has been seen to run. Calling libcrux's AVX2 functions on a CPU
/// without AVX2 would be undefined behaviour, so the AVX2 variant exists only after
/// [`Backend::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Available {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Available {
    fn detect() -> Available {
        Backend::detect().check().unwrap_or(Available::Portable)
    }

    fn backend(self) -> Backend {
        match self {
            Available::Portable => Backend::Portable,
            #[cfg(target_arch = "x86_64")]
            Available::Avx2 => Backend::Avx2,
        }
    }
}

/// The unpacked key, one type per backend (the polynomial representation differs).
#[derive(Clone)]
enum Unpacked {
    Portable(Box<lc::portable::unpacked::MlKem768PublicKeyUnpacked>),
    #[cfg(target_arch = "x86_64")]
    Avx2(Box<lc::avx2::unpacked::MlKem768PublicKeyUnpacked>),
}

/// An ML-KEM-768 encapsulation (public) key, validated and kept unpacked.
#[derive(Clone)]
pub struct EncapsulationKey {
    bytes: [u8; ENCAPSULATION_KEY_LEN],
    unpacked: Unpacked,
}

impl fmt::Debug for EncapsulationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncapsulationKey")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

impl PartialEq for EncapsulationKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}
impl Eq for EncapsulationKey {}

impl EncapsulationKey {
    /// Parses and validates a key (the FIPS 203 §7.2 modulus check) and unpacks it for the
    /// fastest backend this CPU runs.
    pub fn from_bytes(bytes: &[u8; ENCAPSULATION_KEY_LEN]) -> Result<Self, KemError> {
        Self::unpack(bytes, Available::detect())
    }

    /// As [`EncapsulationKey::from_bytes`], for the given backend.
    pub fn from_bytes_with(
        bytes: &[u8; ENCAPSULATION_KEY_LEN],
        backend: Backend,
    ) -> Result<Self, KemError> {
        Self::unpack(bytes, backend.check()?)
    }

    fn unpack(bytes: &[u8; ENCAPSULATION_KEY_LEN], on: Available) -> Result<Self, KemError> {
        let packed = lc::MlKem768PublicKey::from(bytes);
        if !lc::validate_public_key(&packed) {
            return Err(KemError::InvalidMlKemKey);
        }
        Ok(Self::unpack_valid(&packed, on))
    }

    /// Unpacks a key that is known to pass the modulus check.
    fn unpack_valid(packed: &lc::MlKem768PublicKey, on: Available) -> Self {
        let unpacked = match on {
            Available::Portable => {
                let mut k = Box::new(lc::portable::unpacked::init_public_key());
                lc::portable::unpacked::unpacked_public_key(packed, &mut k);
                Unpacked::Portable(k)
            }
            #[cfg(target_arch = "x86_64")]
            Available::Avx2 => {
                let mut k = Box::new(lc::avx2::unpacked::init_public_key());
                lc::avx2::unpacked::unpacked_public_key(packed, &mut k);
                Unpacked::Avx2(k)
            }
        };
        Self {
            bytes: *packed.as_slice(),
            unpacked,
        }
    }

    /// The encoded key.
    pub fn as_bytes(&self) -> &[u8; ENCAPSULATION_KEY_LEN] {
        &self.bytes
    }

    /// The backend this key was unpacked for.
    pub fn backend(&self) -> Backend {
        match self.unpacked {
            Unpacked::Portable(_) => Backend::Portable,
            #[cfg(target_arch = "x86_64")]
            Unpacked::Avx2(_) => Backend::Avx2,
        }
    }

    /// ML-KEM.Encaps_internal with the randomness `m`: the ciphertext and the shared secret.
    /// Reusing an `m` with the same key repeats the shared secret.
    #[cfg(feature = "hazmat")]
    pub fn encapsulate_derand(
        &self,
        m: &[u8; SHARED_SECRET_LEN],
    ) -> ([u8; CIPHERTEXT_LEN], Zeroizing<[u8; SHARED_SECRET_LEN]>) {
        self.encapsulate_with(m)
    }

    pub(crate) fn encapsulate_with(
        &self,
        m: &[u8; SHARED_SECRET_LEN],
    ) -> ([u8; CIPHERTEXT_LEN], Zeroizing<[u8; SHARED_SECRET_LEN]>) {
        let (ct, ss) = match &self.unpacked {
            Unpacked::Portable(k) => lc::portable::unpacked::encapsulate(k, *m),
            #[cfg(target_arch = "x86_64")]
            Unpacked::Avx2(k) => lc::avx2::unpacked::encapsulate(k, *m),
        };
        (*ct.as_slice(), Zeroizing::new(ss))
    }
}

/// libcrux's packed decapsulation key (`dk_PKE ‖ ek ‖ H(ek) ‖ z`, 2400 bytes), wiped on drop.
#[derive(Clone)]
struct PackedSecret(Box<lc::MlKem768PrivateKey>);

impl Drop for PackedSecret {
    fn drop(&mut self) {
        self.0[0..].zeroize();
    }
}

/// An ML-KEM-768 decapsulation key. Its secret part is zeroized on drop; Debug shows
/// nothing secret.
#[derive(Clone)]
pub struct DecapsulationKey {
    secret: PackedSecret,
    on: Available,
    ek: EncapsulationKey,
}

impl fmt::Debug for DecapsulationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecapsulationKey")
            .field("backend", &self.on.backend())
            .finish_non_exhaustive()
    }
}

impl DecapsulationKey {
    /// ML-KEM.KeyGen_internal(d, z) from `seed = d ‖ z`, on the fastest backend.
    pub fn from_seed(seed: &[u8; SEED_LEN]) -> Self {
        Self::generate(seed, Available::detect())
    }

    /// As [`DecapsulationKey::from_seed`], on the given backend.
    pub fn from_seed_with(seed: &[u8; SEED_LEN], backend: Backend) -> Result<Self, KemError> {
        Ok(Self::generate(seed, backend.check()?))
    }

    fn generate(seed: &[u8; SEED_LEN], on: Available) -> Self {
        let pair = match on {
            Available::Portable => lc::portable::generate_key_pair(*seed),
            #[cfg(target_arch = "x86_64")]
            Available::Avx2 => lc::avx2::generate_key_pair(*seed),
        };
        let (sk, pk) = pair.into_parts();
        let secret = PackedSecret(Box::new(sk));
        // Key generation encodes reduced coefficients, so its key needs no modulus check.
        let ek = EncapsulationKey::unpack_valid(&pk, on);
        Self { secret, on, ek }
    }

    /// The matching encapsulation key.
    pub fn encapsulation_key(&self) -> &EncapsulationKey {
        &self.ek
    }

    /// The backend this key decapsulates with.
    pub fn backend(&self) -> Backend {
        self.on.backend()
    }

    /// ML-KEM.Decaps: the shared secret, or (implicit rejection) the pseudorandom value
    /// derived from `z` and the ciphertext when the ciphertext does not re-encrypt.
    pub fn decapsulate(&self, ct: &[u8; CIPHERTEXT_LEN]) -> Zeroizing<[u8; SHARED_SECRET_LEN]> {
        let ct = lc::MlKem768Ciphertext::from(ct);
        let ss = match self.on {
            Available::Portable => lc::portable::decapsulate(&self.secret.0, &ct),
            #[cfg(target_arch = "x86_64")]
            Available::Avx2 => lc::avx2::decapsulate(&self.secret.0, &ct),
        };
        Zeroizing::new(ss)
    }
}
