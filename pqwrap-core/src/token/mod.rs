//! ML-DSA-signed capability tokens for desktop AI agents.
//!
//! A token is a tagged COSE_Sign1 (RFC 9052) whose payload is a CWT claims set (RFC 8392)
//! carrying a capability manifest, signed with pure ML-DSA (RFC 9964; ML-DSA-65 by default).
//! The format is specified in `docs/TOKENS.md`.
//!
//! A broker loads its [`SigningKey`] once and mints tokens with an [`Issuer`]; an enforcement
//! point pins the broker's public key in a [`TrustSet`], verifies with a [`Verifier`] and asks
//! the resulting [`VerifiedToken`] whether a request is allowed:
//!
//! ```
//! use std::time::Duration;
//! use pqwrap_core::token::{Algorithm, Issuer, Manifest, SigningKey, TrustSet, Verifier};
//!
//! let key = SigningKey::from_seed(Algorithm::MlDsa65, &[42u8; 32]);
//! let trust: TrustSet = [key.public_key().clone()].into_iter().collect();
//! let issuer = Issuer::new(key);
//! let manifest = Manifest::from_json(r#"{"agent": "session-1",
//!     "capabilities": {"fileAccess": [{"path": "/home/u/Docs", "mode": "read"}]}}"#)?;
//! let now = 1_760_000_000;
//! let token = issuer.issue(&manifest, "files.local", Duration::from_secs(600), now, None)?;
//!
//! let verified = Verifier::new(trust, "files.local").verify_text(&token.to_text(), now)?;
//! let granted = verified.may_read("/home/u/Docs/a.pdf")?;
//! assert_eq!((granted.root(), granted.relative()), ("/home/u/Docs", "a.pdf"));
//! assert!(verified.may_read("/home/u/Docs2/a.pdf").is_err());
//! assert!(verified.may_read("/home/u/Docs/../Docs2/a.pdf").is_err()); // not canonical
//! assert!(verified.may_write("/home/u/Docs/a.pdf").is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod cbor;
pub mod claims;
pub mod cose;
pub mod enforce;
pub mod keys;
pub mod manifest;
pub mod narrow;
pub mod status;
pub mod verify;

use std::time::Duration;

use base64ct::{Base64UrlUnpadded, Encoding};
use sha2::{Digest, Sha256};
use thiserror::Error;

pub use cbor::CborError;
pub use claims::{Claims, ClaimsError, Cti};
pub use enforce::{
    Access, Allowed, Denied, GrantedCommand, GrantedPath, QuantumJob, Reason, Request,
};
pub use keys::{Algorithm, KeyError, Kid, PublicKey, SigningKey};
pub use manifest::{
    Capabilities, FileGrant, FileMode, JobCeiling, Manifest, ManifestError, ManifestProblem,
    NetGrant, PathProblem,
};
pub use verify::{
    NarrowingVerifier, ParentToken, RevocationList, TrustSet, VerifiedToken, Verifier,
};

/// Why a token could not be issued, parsed or verified.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Larger than [`verify::MAX_TOKEN_LEN`]; refused before parsing.
    #[error("token is {0} bytes, more than the 16 KiB limit")]
    TooLarge(usize),
    /// The text form is not unpadded base64url.
    #[error("token text is not unpadded base64url")]
    Encoding,
    /// Not deterministic CBOR of the accepted subset (duplicate keys, indefinite lengths…).
    #[error(transparent)]
    Cbor(#[from] CborError),
    /// Not a tagged COSE_Sign1 of the expected shape.
    #[error("token structure: {0}")]
    Structure(&'static str),
    /// The unprotected header is not empty (nothing unauthenticated is accepted).
    #[error(
        "the unprotected header must be empty (keys and parameters carried unprotected are never trusted)"
    )]
    UnprotectedHeader,
    /// The protected header is malformed, lacks alg/kid/typ, or has an unknown parameter.
    #[error("protected header: {0}")]
    Header(HeaderParam),
    /// `crit` lists a header parameter this verifier does not understand.
    #[error("unknown critical header parameter {0}")]
    UnknownCritical(String),
    /// No pinned key has this kid.
    #[error("no trusted key has kid {0}")]
    UnknownKid(String),
    /// The header's alg is not the pinned key's algorithm.
    #[error("header alg {header} does not match the trusted key's algorithm {key}")]
    AlgorithmMismatch {
        /// The alg in the header.
        header: i64,
        /// The pinned key's algorithm.
        key: Algorithm,
    },
    /// The ML-DSA signature does not verify.
    #[error("signature verification failed")]
    BadSignature,
    /// The (authenticated) claims are malformed.
    #[error("{0}")]
    Claims(ClaimsError),
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not valid before {nbf} (now {now})")]
    NotYetValid {
        /// Not-before.
        nbf: u64,
        /// Verification time.
        now: u64,
    },
    /// `exp` has passed (beyond the leeway).
    #[error("token expired at {exp} (now {now})")]
    Expired {
        /// Expiry.
        exp: u64,
        /// Verification time.
        now: u64,
    },
    /// `iat` is in the future (beyond the leeway).
    #[error("token issued in the future ({iat}, now {now})")]
    IssuedInFuture {
        /// Issued-at.
        iat: u64,
        /// Verification time.
        now: u64,
    },
    /// The audience is not the verifier's.
    #[error("token is for audience {got:?}, not {expected:?}")]
    WrongAudience {
        /// The verifier's audience.
        expected: String,
        /// The token's.
        got: String,
    },
    /// The token's cti is revoked.
    #[error("token {0} is revoked")]
    Revoked(String),
    /// An ancestor (a token it was narrowed from) is revoked.
    #[error("token was narrowed from revoked token {0}")]
    AncestorRevoked(String),
    /// A line of a revocation file is not a cti.
    #[error("revocation list line {line}: not a cti (32 lowercase hex digits)")]
    Revocations {
        /// The line, from 1.
        line: usize,
    },
    /// A leeway above [`verify::MAX_LEEWAY_SECS`] was asked for.
    #[error("leeway of {0} s is more than the 300 s allowed")]
    Leeway(u64),
    /// The manifest is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The request breaks the issuance policy.
    #[error("issuance policy: {0}")]
    Policy(#[from] PolicyError),
    /// A narrowed token would be wider or longer-lived than its parent.
    #[error("narrowing refused: {0}")]
    Wider(narrow::Widening),
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Rng,
    /// A Status List Token is malformed or expired.
    #[error(transparent)]
    StatusList(#[from] status::StatusError),
    /// The status list says the token is not valid.
    #[error("token is {} in its status list (index {idx})", status.name())]
    StatusRevoked {
        /// The token's index in the list.
        idx: u64,
        /// Its status there.
        status: status::Status,
    },
    /// A status list was given but cannot answer for this token (another list, an index
    /// beyond it, or a list past its expiry): refused rather than assumed valid.
    #[error("revocation status unknown: {0}")]
    StatusUnavailable(Unavailable),
}

/// What is wrong with a COSE protected header.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HeaderParam {
    /// The protected header is not a CBOR map.
    #[error("protected header is not a map")]
    NotMap,
    /// `alg` is not an integer.
    #[error("alg is not an integer")]
    AlgType,
    /// `kid` is not a byte string of a kid's length.
    #[error("kid is not a 32-byte string")]
    KidType,
    /// `typ` is not the one this kind of token must carry.
    #[error("typ is not {want:?}")]
    Typ {
        /// The `typ` required.
        want: &'static str,
    },
    /// `crit` is not an array.
    #[error("crit is not an array")]
    CritType,
    /// `crit` is an empty array (RFC 9052 forbids it).
    #[error("crit is empty")]
    CritEmpty,
    /// A header parameter this profile does not accept (its label, as decoded).
    #[error("unknown protected header label {0}")]
    UnknownLabel(String),
    /// A required parameter (`alg`, `kid` or `typ`) is absent.
    #[error("{0} missing")]
    Missing(&'static str),
}

/// Why an issuance request breaks the issuer's policy.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A lifetime of zero seconds.
    #[error("ttl must be at least one second")]
    ZeroTtl,
    /// A lifetime above the policy's maximum.
    #[error("ttl {ttl}s exceeds the maximum {max}s")]
    TtlTooLong {
        /// Seconds asked for.
        ttl: u64,
        /// The policy's maximum.
        max: u64,
    },
    /// An allowed root of the policy is not an acceptable absolute path.
    #[error("policy: {0}")]
    Root(ManifestError),
    /// A file grant outside every allowed root.
    #[error("capabilities.fileAccess[{index}].path: {path:?} is outside the allowed roots")]
    OutsideRoots {
        /// The grant's index in the manifest.
        index: usize,
        /// Its path.
        path: String,
    },
}

/// Why a status list cannot answer for a token.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Unavailable {
    /// The token names another list than the one given.
    #[error("the token's status list is {token:?}, the list given is {given:?}")]
    OtherList {
        /// The token's `status.uri`.
        token: String,
        /// The given list's `sub`.
        given: String,
    },
    /// The token's index is not in the list.
    #[error("{0} (is the status list out of date?)")]
    Entry(status::StatusError),
    /// The list has expired since it was loaded.
    #[error("the status list {uri:?} has expired")]
    Expired {
        /// The list's `sub`.
        uri: String,
    },
}

/// Seconds since the Unix epoch now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Encodes token bytes as the text form: one line of unpadded base64url.
pub fn encode_text(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

/// Decodes the text form (no whitespace inside).
pub fn decode_text(text: &str) -> Result<Vec<u8>, TokenError> {
    Base64UrlUnpadded::decode_vec(text).map_err(|_| TokenError::Encoding)
}

/// A freshly minted token.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    /// The tagged COSE_Sign1 bytes.
    pub bytes: Vec<u8>,
    /// The claims it carries.
    pub claims: Claims,
    /// The signing key's kid.
    pub kid: Kid,
}

impl IssuedToken {
    /// The text form (unpadded base64url, one line).
    pub fn to_text(&self) -> String {
        encode_text(&self.bytes)
    }

    /// The audit record for this issuance: cti, sub, aud, iat, exp, manifest hash (SHA-256 of
    /// the deterministic CBOR of the capabilities), kid, and the parent cti if narrowed.
    pub fn audit_record(&self) -> serde_json::Value {
        let c = &self.claims;
        let mut v = serde_json::json!({
            "event": "token.issue",
            "cti": keys::hex_lower(&c.cti),
            "sub": c.sub,
            "aud": c.aud,
            "iat": c.iat,
            "exp": c.exp,
            "manifest_sha256": keys::hex_lower(&manifest_hash(&c.capabilities)),
            "kid": keys::hex_lower(&self.kid),
        });
        if let (Some(p), Some(m)) = (c.ancestors.last(), v.as_object_mut()) {
            m.insert("parent".into(), keys::hex_lower(p).into());
        }
        v
    }
}

/// SHA-256 of the deterministic CBOR encoding of `caps` (as carried in tokens).
pub fn manifest_hash(caps: &Capabilities) -> [u8; 32] {
    Sha256::digest(cbor::to_vec(&caps.to_cbor())).into()
}

/// Mints tokens with one signing key, loaded once.
pub struct Issuer {
    key: SigningKey,
    iss: Option<String>,
}

impl Issuer {
    /// An issuer signing with `key`.
    pub fn new(key: SigningKey) -> Issuer {
        Issuer { key, iss: None }
    }

    /// Sets the `iss` claim put in every token.
    pub fn with_iss(mut self, iss: impl Into<String>) -> Issuer {
        self.iss = Some(iss.into());
        self
    }

    /// The signing key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// Mints a token for `manifest` (its agent becomes `sub`), addressed to `aud`, valid from
    /// `now` for `ttl`, optionally bound to a holder key (`cnf`).
    pub fn issue(
        &self,
        manifest: &Manifest,
        aud: &str,
        ttl: Duration,
        now: u64,
        cnf: Option<PublicKey>,
    ) -> Result<IssuedToken, TokenError> {
        self.issue_inner(manifest, aud, ttl, now, cnf, None)
    }

    /// [`Issuer::issue`], with a `status` claim: the token's entry in the status list the
    /// issuer publishes (see [`status`]), so that verifiers holding that list refuse it once
    /// it is revoked.
    pub fn issue_with_status(
        &self,
        manifest: &Manifest,
        aud: &str,
        ttl: Duration,
        now: u64,
        cnf: Option<PublicKey>,
        status: status::StatusRef,
    ) -> Result<IssuedToken, TokenError> {
        self.issue_inner(manifest, aud, ttl, now, cnf, Some(status))
    }

    fn issue_inner(
        &self,
        manifest: &Manifest,
        aud: &str,
        ttl: Duration,
        now: u64,
        cnf: Option<PublicKey>,
        status: Option<status::StatusRef>,
    ) -> Result<IssuedToken, TokenError> {
        if ttl.as_secs() == 0 {
            return Err(TokenError::Policy(PolicyError::ZeroTtl));
        }
        let claims = Claims {
            iss: self.iss.clone(),
            sub: manifest.agent.clone(),
            aud: aud.to_owned(),
            iat: now,
            nbf: now,
            exp: now.saturating_add(ttl.as_secs()),
            cti: new_cti()?,
            cnf,
            capabilities: manifest.capabilities.clone(),
            ancestors: Vec::new(),
            status,
        };
        self.sign_claims(claims)
    }

    /// Signs a complete claims set after checking it the way a verifier will.
    pub fn sign_claims(&self, claims: Claims) -> Result<IssuedToken, TokenError> {
        claims.capabilities.validate()?;
        let payload = cbor::to_vec(&claims.to_cbor());
        // Re-decode so that nothing is signed that a verifier would refuse.
        let back =
            cbor::decode(&payload).map_err(|e| TokenError::Claims(ClaimsError::Payload(e)))?;
        Claims::from_cbor(&back).map_err(TokenError::Claims)?;
        let alg = self.key.algorithm();
        let kid = *self.key.public_key().kid();
        let protected = cose::protected_header(alg.cose_alg(), &kid);
        let sig = self.key.sign(&cose::sig_structure(&protected, &payload));
        let bytes = cose::assemble(protected, payload, sig);
        if bytes.len() > verify::MAX_TOKEN_LEN {
            return Err(TokenError::TooLarge(bytes.len()));
        }
        Ok(IssuedToken { bytes, claims, kid })
    }
}

fn new_cti() -> Result<Cti, TokenError> {
    let mut cti = [0u8; claims::CTI_LEN];
    getrandom::fill(&mut cti).map_err(|_| TokenError::Rng)?;
    Ok(cti)
}

/// What a broker is willing to issue: a maximum lifetime and, optionally, the only path roots
/// file grants may lie under.
#[derive(Clone, Debug)]
pub struct IssuancePolicy {
    /// Longest ttl granted.
    pub max_ttl: Duration,
    /// If non-empty, every file grant must be at or below one of these roots (absolute and
    /// canonical: a root that is not is refused by [`IssuancePolicy::check`]).
    pub allowed_roots: Vec<String>,
}

impl IssuancePolicy {
    /// Checks a manifest and the ttl it would get; the error says what is out of policy.
    pub fn check(&self, manifest: &Manifest, ttl: Duration) -> Result<(), TokenError> {
        if ttl > self.max_ttl {
            return Err(TokenError::Policy(PolicyError::TtlTooLong {
                ttl: ttl.as_secs(),
                max: self.max_ttl.as_secs(),
            }));
        }
        for (i, r) in self.allowed_roots.iter().enumerate() {
            manifest::validate_abs_path(&format!("allowed_roots[{i}]"), r)
                .map_err(PolicyError::Root)?;
        }
        if !self.allowed_roots.is_empty() {
            for (i, g) in manifest.capabilities.file_access.iter().enumerate() {
                if !self
                    .allowed_roots
                    .iter()
                    .any(|r| enforce::is_within(&g.path, r))
                {
                    return Err(TokenError::Policy(PolicyError::OutsideRoots {
                        index: i,
                        path: g.path.clone(),
                    }));
                }
            }
        }
        Ok(())
    }
}
