//! ML-DSA signing and verifying keys for tokens (FIPS 204, RFC 9964).
//!
//! A signing key is its 32-byte seed ξ (the RFC 9964 private key representation). Public keys
//! are exported as a COSE_Key and as a JWK of key type AKP. A key's identifier (`kid`) is its
//! RFC 9679 COSE Key Thumbprint with SHA-256: the hash of the deterministic CBOR encoding of
//! the map `{1 (kty): 7 (AKP), 3 (alg): <alg>, -1 (pub): <public key bytes>}` (RFC 9964 §6
//! names kty, alg and pub as the AKP thumbprint members). In JWKs the `kid` member is, as in
//! the RFC 9964 examples, the RFC 7638 JWK Thumbprint (SHA-256 of
//! `{"alg":…,"kty":"AKP","pub":…}`); both are checked against the key when present.
//!
//! ML-DSA itself is libcrux's (`libcrux-ml-dsa`, AVX2 where the CPU has it, chosen on the
//! measurements in BENCHMARKS.md), checked against RustCrypto's `ml-dsa` by the differential
//! tests and against RFC 9964 Appendix A.

use std::fmt;
use std::str::FromStr;

use base64ct::{Base64UrlUnpadded, Encoding};
use libcrux_ml_dsa::{MLDSASignature, MLDSASigningKey, MLDSAVerificationKey};
use libcrux_ml_dsa::{ml_dsa_44, ml_dsa_65, ml_dsa_87};
use sha2::{Digest, Sha256};
use thiserror::Error;
use zeroize::{Zeroize, Zeroizing};

use super::cbor::{self, CborError, Value};

/// COSE key type AKP (RFC 9964).
pub const KTY_AKP: i64 = 7;
/// Length of a key identifier (SHA-256 thumbprint).
pub const KID_LEN: usize = 32;
/// Length of an ML-DSA seed.
pub const SEED_LEN: usize = 32;

/// A key identifier: the SHA-256 COSE Key Thumbprint (RFC 9679) of the public key.
pub type Kid = [u8; KID_LEN];

/// Which ML-DSA parameter set a key uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// ML-DSA-44, COSE alg -48.
    MlDsa44,
    /// ML-DSA-65, COSE alg -49 (the default).
    MlDsa65,
    /// ML-DSA-87, COSE alg -50.
    MlDsa87,
}

impl Algorithm {
    /// The COSE algorithm identifier (RFC 9964).
    pub fn cose_alg(self) -> i64 {
        match self {
            Algorithm::MlDsa44 => -48,
            Algorithm::MlDsa65 => -49,
            Algorithm::MlDsa87 => -50,
        }
    }

    /// The algorithm for a COSE identifier.
    pub fn from_cose_alg(alg: i64) -> Option<Self> {
        match alg {
            -48 => Some(Algorithm::MlDsa44),
            -49 => Some(Algorithm::MlDsa65),
            -50 => Some(Algorithm::MlDsa87),
            _ => None,
        }
    }

    /// The JOSE/COSE name, e.g. `ML-DSA-65`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::MlDsa44 => "ML-DSA-44",
            Algorithm::MlDsa65 => "ML-DSA-65",
            Algorithm::MlDsa87 => "ML-DSA-87",
        }
    }

    /// Length of an encoded public key.
    pub fn public_key_len(self) -> usize {
        match self {
            Algorithm::MlDsa44 => 1312,
            Algorithm::MlDsa65 => 1952,
            Algorithm::MlDsa87 => 2592,
        }
    }

    /// Length of a signature.
    pub fn signature_len(self) -> usize {
        match self {
            Algorithm::MlDsa44 => 2420,
            Algorithm::MlDsa65 => 3309,
            Algorithm::MlDsa87 => 4627,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s {
            "ML-DSA-44" => Ok(Algorithm::MlDsa44),
            "ML-DSA-65" => Ok(Algorithm::MlDsa65),
            "ML-DSA-87" => Ok(Algorithm::MlDsa87),
            other => Err(KeyError::UnknownAlgorithm(other.to_owned())),
        }
    }
}

/// Why a key could not be made, read or used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not one of ML-DSA-44/65/87.
    #[error("unknown algorithm {0:?} (expected ML-DSA-44, ML-DSA-65 or ML-DSA-87)")]
    UnknownAlgorithm(String),
    /// A byte string had the wrong length.
    #[error("{what} has {got} bytes, expected {expected}")]
    Length {
        /// What was being decoded.
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// The key encoding is malformed; the message names the member.
    #[error("malformed key: {0}")]
    Malformed(&'static str),
    /// A COSE_Key member this profile does not know (its label, as decoded).
    #[error("malformed key: unexpected COSE_Key member {0}")]
    UnexpectedMember(String),
    /// A COSE_Key that is not strict deterministic CBOR.
    #[error("malformed key: {0}")]
    Cbor(CborError),
    /// A JWK that is not JSON of the expected shape (the JSON decoder's message).
    #[error("malformed key: JWK: {0}")]
    Json(String),
    /// A JWK member that is not unpadded base64url.
    #[error("malformed key: {member}: not unpadded base64url")]
    Base64 {
        /// `pub`, `priv` or `kid`.
        member: &'static str,
    },
    /// A private JWK whose `pub` does not belong to its `priv`.
    #[error("the public key in the key file does not match its private seed")]
    Mismatch,
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Rng,
}

/// An expanded ML-DSA signing key (FIPS 204 skEncode), wiped on drop.
struct ExpandedSk<const N: usize>(Box<MLDSASigningKey<N>>);

impl<const N: usize> Drop for ExpandedSk<N> {
    fn drop(&mut self) {
        self.0.as_mut_slice().zeroize();
    }
}

const SK44: usize = 2560;
const SK65: usize = 4032;
const SK87: usize = 4896;
const PK44: usize = 1312;
const PK65: usize = 1952;
const PK87: usize = 2592;
const SIG44: usize = 2420;
const SIG65: usize = 3309;
const SIG87: usize = 4627;

enum SkInner {
    A44(ExpandedSk<SK44>),
    A65(ExpandedSk<SK65>),
    A87(ExpandedSk<SK87>),
}

/// An ML-DSA signing key. The seed and the expanded key are zeroized on drop; Debug shows
/// only the algorithm and kid.
pub struct SigningKey {
    seed: Zeroizing<[u8; SEED_LEN]>,
    inner: SkInner,
    public: PublicKey,
}

impl SigningKey {
    /// Derives the key pair from a 32-byte seed ξ (FIPS 204 ML-DSA.KeyGen_internal).
    pub fn from_seed(alg: Algorithm, seed: &[u8; SEED_LEN]) -> SigningKey {
        let (inner, vk) = match alg {
            Algorithm::MlDsa44 => {
                let kp = ml_dsa_44::generate_key_pair(*seed);
                let vk = VkInner::A44(Box::new(kp.verification_key));
                (SkInner::A44(ExpandedSk(Box::new(kp.signing_key))), vk)
            }
            Algorithm::MlDsa65 => {
                let kp = ml_dsa_65::generate_key_pair(*seed);
                let vk = VkInner::A65(Box::new(kp.verification_key));
                (SkInner::A65(ExpandedSk(Box::new(kp.signing_key))), vk)
            }
            Algorithm::MlDsa87 => {
                let kp = ml_dsa_87::generate_key_pair(*seed);
                let vk = VkInner::A87(Box::new(kp.verification_key));
                (SkInner::A87(ExpandedSk(Box::new(kp.signing_key))), vk)
            }
        };
        let bytes = vk.as_slice().to_vec();
        let public = PublicKey {
            alg,
            kid: thumbprint(alg, &bytes),
            bytes,
            inner: vk,
        };
        SigningKey {
            seed: Zeroizing::new(*seed),
            inner,
            public,
        }
    }

    /// A new key from the operating system's random number generator.
    pub fn generate(alg: Algorithm) -> Result<SigningKey, KeyError> {
        let mut seed = Zeroizing::new([0u8; SEED_LEN]);
        getrandom::fill(seed.as_mut()).map_err(|_| KeyError::Rng)?;
        Ok(SigningKey::from_seed(alg, &seed))
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.public.alg
    }

    /// The 32-byte seed (secret).
    pub fn seed(&self) -> Zeroizing<[u8; SEED_LEN]> {
        self.seed.clone()
    }

    /// The public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `msg` with pure ML-DSA and the empty context (RFC 9964). Uses the deterministic
    /// variant of ML-DSA.Sign; token payloads always contain a fresh random `cti`, so no two
    /// signed messages repeat.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        // FIPS 204's signing loop is unbounded; libcrux stops after the 814 attempts of its
        // Appendix C (failure probability at most 2^-256 per signature). On that event the
        // signature is made again with other per-signature randomness `rnd`, as the hedged
        // variant does: still a valid signature, still deterministic for the message.
        let mut counter: u64 = 0;
        loop {
            let mut rnd = [0u8; 32];
            rnd[..8].copy_from_slice(&counter.to_le_bytes());
            let sig = match &self.inner {
                SkInner::A44(k) => {
                    ml_dsa_44::sign(&k.0, msg, &[], rnd).map(|s| s.as_slice().to_vec())
                }
                SkInner::A65(k) => {
                    ml_dsa_65::sign(&k.0, msg, &[], rnd).map(|s| s.as_slice().to_vec())
                }
                SkInner::A87(k) => {
                    ml_dsa_87::sign(&k.0, msg, &[], rnd).map(|s| s.as_slice().to_vec())
                }
            };
            match sig {
                Ok(sig) => return sig,
                Err(_) => counter = counter.wrapping_add(1),
            }
        }
    }

    /// The private JWK (`kty` AKP, `alg`, `pub`, `priv` = seed, `kid`), for a 0600 key file.
    pub fn to_jwk_private(&self) -> Zeroizing<String> {
        let seed = self.seed();
        let priv_b64 = Zeroizing::new(Base64UrlUnpadded::encode_string(seed.as_ref()));
        Zeroizing::new(format!(
            "{{\"kty\":\"AKP\",\"alg\":\"{}\",\"kid\":\"{}\",\"pub\":\"{}\",\"priv\":\"{}\"}}",
            self.public.alg.name(),
            Base64UrlUnpadded::encode_string(&self.public.jwk_thumbprint()),
            Base64UrlUnpadded::encode_string(&self.public.bytes),
            priv_b64.as_str()
        ))
    }

    /// Reads a private JWK written by [`SigningKey::to_jwk_private`]. The `pub` and `kid`
    /// members, when present, must match the key derived from `priv`.
    pub fn from_jwk_private(text: &str) -> Result<SigningKey, KeyError> {
        let jwk = Jwk::parse(text)?;
        let priv_b64 = jwk
            .private
            .ok_or(KeyError::Malformed("priv: missing (not a private key)"))?;
        let seed_vec = Zeroizing::new(
            Base64UrlUnpadded::decode_vec(&priv_b64)
                .map_err(|_| KeyError::Malformed("priv: not unpadded base64url"))?,
        );
        let seed: &[u8; SEED_LEN] =
            seed_vec
                .as_slice()
                .try_into()
                .map_err(|_| KeyError::Length {
                    what: "priv (seed)",
                    expected: SEED_LEN,
                    got: seed_vec.len(),
                })?;
        let sk = SigningKey::from_seed(jwk.alg, seed);
        if let Some(p) = jwk.public
            && p != sk.public.bytes
        {
            return Err(KeyError::Mismatch);
        }
        if let Some(kid) = jwk.kid
            && kid != sk.public.jwk_thumbprint()
        {
            return Err(KeyError::Mismatch);
        }
        Ok(sk)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.public.alg)
            .field("kid", &hex_lower(&self.public.kid))
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
enum VkInner {
    A44(Box<MLDSAVerificationKey<PK44>>),
    A65(Box<MLDSAVerificationKey<PK65>>),
    A87(Box<MLDSAVerificationKey<PK87>>),
}

impl VkInner {
    fn as_slice(&self) -> &[u8] {
        match self {
            VkInner::A44(k) => k.as_slice(),
            VkInner::A65(k) => k.as_slice(),
            VkInner::A87(k) => k.as_slice(),
        }
    }
}

#[derive(Clone)]
/// An ML-DSA public key, checked for length and kept with its thumbprint.
pub struct PublicKey {
    alg: Algorithm,
    bytes: Vec<u8>,
    kid: Kid,
    inner: VkInner,
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.alg == other.alg && self.bytes == other.bytes
    }
}
impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("alg", &self.alg)
            .field("kid", &hex_lower(&self.kid))
            .finish_non_exhaustive()
    }
}

impl PublicKey {
    /// Parses raw FIPS 204 public key bytes (pkEncode) for `alg`.
    pub fn from_bytes(alg: Algorithm, bytes: &[u8]) -> Result<PublicKey, KeyError> {
        let len_err = || KeyError::Length {
            what: "ML-DSA public key",
            expected: alg.public_key_len(),
            got: bytes.len(),
        };
        // Every byte string of the right length is a public key (pkEncode packs t1 into
        // exactly 10 bits per coefficient, so there is nothing to reduce or refuse).
        let inner = match alg {
            Algorithm::MlDsa44 => VkInner::A44(Box::new(MLDSAVerificationKey::new(
                bytes.try_into().map_err(|_| len_err())?,
            ))),
            Algorithm::MlDsa65 => VkInner::A65(Box::new(MLDSAVerificationKey::new(
                bytes.try_into().map_err(|_| len_err())?,
            ))),
            Algorithm::MlDsa87 => VkInner::A87(Box::new(MLDSAVerificationKey::new(
                bytes.try_into().map_err(|_| len_err())?,
            ))),
        };
        let kid = thumbprint(alg, bytes);
        Ok(PublicKey {
            alg,
            bytes: bytes.to_vec(),
            kid,
            inner,
        })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The raw public key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The key identifier (RFC 9679 SHA-256 COSE Key Thumbprint).
    pub fn kid(&self) -> &Kid {
        &self.kid
    }

    /// Verifies a pure ML-DSA signature with the empty context over `msg`.
    /// A signature of the wrong length, or one that does not decode (a hint vector that is
    /// not canonical, a response out of range), is refused like a wrong one.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match &self.inner {
            VkInner::A44(k) => <[u8; SIG44]>::try_from(sig)
                .is_ok_and(|s| ml_dsa_44::verify(k, msg, &[], &MLDSASignature::new(s)).is_ok()),
            VkInner::A65(k) => <[u8; SIG65]>::try_from(sig)
                .is_ok_and(|s| ml_dsa_65::verify(k, msg, &[], &MLDSASignature::new(s)).is_ok()),
            VkInner::A87(k) => <[u8; SIG87]>::try_from(sig)
                .is_ok_and(|s| ml_dsa_87::verify(k, msg, &[], &MLDSASignature::new(s)).is_ok()),
        }
    }

    /// The COSE_Key as a CBOR value: `{1: 7, 3: alg, -1: pub}`.
    pub(crate) fn to_cose_value(&self) -> Value {
        cose_key_value(self.alg, &self.bytes)
    }

    /// The deterministic CBOR encoding of the COSE_Key `{1: 7, 3: alg, -1: pub}` (RFC 9964).
    pub fn to_cose_key(&self) -> Vec<u8> {
        cbor::to_vec(&self.to_cose_value())
    }

    /// Parses a COSE_Key value: exactly the members kty (1) = AKP (7), alg (3) and pub (-1);
    /// kid (2), if present, must equal the thumbprint.
    pub(crate) fn from_cose_value(v: &Value) -> Result<PublicKey, KeyError> {
        let Value::Map(entries) = v else {
            return Err(KeyError::Malformed("COSE_Key is not a map"));
        };
        let (mut kty, mut alg, mut pubk, mut kid) = (None, None, None, None);
        for (k, val) in entries {
            match k.as_i64() {
                Some(1) => kty = val.as_i64(),
                Some(3) => alg = val.as_i64(),
                Some(-1) => match val {
                    Value::Bytes(b) => pubk = Some(b.as_slice()),
                    _ => return Err(KeyError::Malformed("pub (-1) is not a byte string")),
                },
                Some(2) => match val {
                    Value::Bytes(b) => kid = Some(b.as_slice()),
                    _ => return Err(KeyError::Malformed("kid (2) is not a byte string")),
                },
                _ => {
                    return Err(KeyError::UnexpectedMember(format!("{k:?}")));
                }
            }
        }
        if kty != Some(KTY_AKP) {
            return Err(KeyError::Malformed("kty (1) must be 7 (AKP)"));
        }
        let alg = alg
            .and_then(Algorithm::from_cose_alg)
            .ok_or(KeyError::Malformed("alg (3) must be -48, -49 or -50"))?;
        let pubk = pubk.ok_or(KeyError::Malformed("pub (-1) missing"))?;
        let pk = PublicKey::from_bytes(alg, pubk)?;
        if let Some(kid) = kid
            && kid != pk.kid
        {
            return Err(KeyError::Malformed("kid (2) is not the key's thumbprint"));
        }
        Ok(pk)
    }

    /// Parses the bytes of a COSE_Key (strict deterministic CBOR).
    pub fn from_cose_key(bytes: &[u8]) -> Result<PublicKey, KeyError> {
        if bytes.len() > 4096 {
            return Err(KeyError::Malformed("COSE_Key longer than 4096 bytes"));
        }
        let v = cbor::decode(bytes).map_err(KeyError::Cbor)?;
        PublicKey::from_cose_value(&v)
    }

    /// The RFC 7638 JWK Thumbprint (SHA-256) of the public JWK: the `kid` of JWKs, as in the
    /// RFC 9964 examples. (Tokens name keys by the COSE Key Thumbprint, [`PublicKey::kid`].)
    pub fn jwk_thumbprint(&self) -> [u8; 32] {
        let canonical = format!(
            "{{\"alg\":\"{}\",\"kty\":\"AKP\",\"pub\":\"{}\"}}",
            self.alg.name(),
            Base64UrlUnpadded::encode_string(&self.bytes)
        );
        Sha256::digest(canonical.as_bytes()).into()
    }

    /// The public JWK (RFC 9964 AKP): `{"kty":"AKP","alg":"ML-DSA-65","kid":…,"pub":…}`, where
    /// `kid` is the base64url RFC 7638 JWK Thumbprint.
    pub fn to_jwk(&self) -> String {
        format!(
            "{{\"kty\":\"AKP\",\"alg\":\"{}\",\"kid\":\"{}\",\"pub\":\"{}\"}}",
            self.alg.name(),
            Base64UrlUnpadded::encode_string(&self.jwk_thumbprint()),
            Base64UrlUnpadded::encode_string(&self.bytes)
        )
    }

    /// Reads a public key from text: a public JWK (starts with `{`), or one line of unpadded
    /// base64url of a COSE_Key (the default output of `pqwrap token pubkey`). A JWK carrying
    /// `priv` is refused, so that secret key files are not passed around as trust anchors.
    pub fn from_text(text: &str) -> Result<PublicKey, KeyError> {
        let t = text.trim();
        if t.starts_with('{') {
            let jwk = Jwk::parse(t)?;
            if jwk.private.is_some() {
                return Err(KeyError::Malformed(
                    "priv: a secret key was given where a public key is expected",
                ));
            }
            let p = jwk.public.ok_or(KeyError::Malformed("pub: missing"))?;
            let pk = PublicKey::from_bytes(jwk.alg, &p)?;
            if let Some(kid) = jwk.kid
                && kid != pk.jwk_thumbprint()
            {
                return Err(KeyError::Malformed(
                    "kid: is not the key's JWK thumbprint (RFC 7638)",
                ));
            }
            Ok(pk)
        } else {
            let bytes = Base64UrlUnpadded::decode_vec(t)
                .map_err(|_| KeyError::Malformed("not a JWK and not base64url COSE_Key"))?;
            PublicKey::from_cose_key(&bytes)
        }
    }
}

fn cose_key_value(alg: Algorithm, pubk: &[u8]) -> Value {
    Value::Map(vec![
        (Value::int(1), Value::int(KTY_AKP)),
        (Value::int(3), Value::int(alg.cose_alg())),
        (Value::int(-1), Value::Bytes(pubk.to_vec())),
    ])
}

/// RFC 9679 COSE Key Thumbprint (SHA-256) of an AKP key: the required members are kty, alg
/// and pub.
pub fn thumbprint(alg: Algorithm, pubk: &[u8]) -> Kid {
    let enc = cbor::to_vec(&cose_key_value(alg, pubk));
    Sha256::digest(&enc).into()
}

/// Lowercase hex, for kids and ctis in messages.
pub fn hex_lower(b: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

struct Jwk {
    alg: Algorithm,
    public: Option<Vec<u8>>,
    private: Option<Zeroizing<String>>,
    kid: Option<Vec<u8>>,
}

impl Jwk {
    fn parse(text: &str) -> Result<Jwk, KeyError> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            kty: String,
            alg: String,
            #[serde(rename = "pub")]
            public: Option<String>,
            #[serde(rename = "priv")]
            private: Option<String>,
            kid: Option<String>,
        }
        if text.len() > 16 * 1024 {
            return Err(KeyError::Malformed("JWK longer than 16 KiB"));
        }
        let raw: Raw =
            serde_json::from_str(text.trim()).map_err(|e| KeyError::Json(e.to_string()))?;
        let private = raw.private.map(Zeroizing::new);
        if raw.kty != "AKP" {
            return Err(KeyError::Malformed("kty: must be \"AKP\""));
        }
        let alg: Algorithm = raw.alg.parse()?;
        let b64 = |member: &'static str, s: Option<String>| -> Result<Option<Vec<u8>>, KeyError> {
            s.map(|s| Base64UrlUnpadded::decode_vec(&s).map_err(|_| KeyError::Base64 { member }))
                .transpose()
        };
        Ok(Jwk {
            alg,
            public: b64("pub", raw.public)?,
            kid: b64("kid", raw.kid)?,
            private,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwk_and_cose_key_round_trip() {
        for alg in [Algorithm::MlDsa44, Algorithm::MlDsa65, Algorithm::MlDsa87] {
            let sk = SigningKey::from_seed(alg, &[7u8; 32]);
            let pk = sk.public_key();
            assert_eq!(pk.as_bytes().len(), alg.public_key_len());
            let sig = sk.sign(b"msg");
            assert_eq!(sig.len(), alg.signature_len());
            assert!(pk.verify(b"msg", &sig));
            assert!(!pk.verify(b"msh", &sig));
            assert_eq!(PublicKey::from_text(&pk.to_jwk()).unwrap(), *pk);
            let cose = pk.to_cose_key();
            assert_eq!(PublicKey::from_cose_key(&cose).unwrap(), *pk);
            assert_eq!(*pk.kid(), <[u8; 32]>::from(Sha256::digest(&cose)));
            let back = SigningKey::from_jwk_private(&sk.to_jwk_private()).unwrap();
            assert_eq!(back.public_key(), pk);
            assert!(PublicKey::from_text(&sk.to_jwk_private()).is_err());
        }
    }
}
