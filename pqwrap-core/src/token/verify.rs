//! Verification: from received bytes to a [`VerifiedToken`], or a reason.
//!
//! Order matters and is fixed: bound the size; parse the COSE_Sign1 frame and protected
//! header (strict deterministic CBOR); look the `kid` up in the pinned trust set; require the
//! header `alg` to be the pinned key's algorithm; verify ML-DSA over the `Sig_structure` of
//! the exact received bytes; only then decode the claims; then time, audience and
//! revocation. Nothing in the token can pick the key or the algorithm.

use std::collections::{HashMap, HashSet};

use super::TokenError;
use super::claims::{CTI_LEN, Claims, Cti};
use super::cose;
use super::keys::{Algorithm, Kid, PublicKey, hex_lower};
use super::status::{Status, VerifiedStatusList};

/// Largest token accepted, checked before any parsing.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Default clock leeway for `exp`, `nbf` and `iat`, seconds.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;
/// Largest leeway a verifier may be configured with, seconds.
pub const MAX_LEEWAY_SECS: u64 = 300;

/// The pinned public keys a verifier accepts, by kid.
#[derive(Clone, Debug, Default)]
pub struct TrustSet {
    keys: HashMap<Kid, PublicKey>,
}

impl TrustSet {
    /// An empty set (which accepts nothing).
    pub fn new() -> TrustSet {
        TrustSet::default()
    }

    /// Pins `key` (under its thumbprint).
    pub fn add(&mut self, key: PublicKey) {
        self.keys.insert(*key.kid(), key);
    }

    /// The pinned key with this kid.
    pub fn get(&self, kid: &Kid) -> Option<&PublicKey> {
        self.keys.get(kid)
    }

    /// Number of pinned keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is pinned.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl FromIterator<PublicKey> for TrustSet {
    fn from_iter<I: IntoIterator<Item = PublicKey>>(iter: I) -> Self {
        let mut t = TrustSet::new();
        for k in iter {
            t.add(k);
        }
        t
    }
}

/// Revoked token ids. A token is refused if its own cti or any ancestor's is listed.
#[derive(Clone, Debug, Default)]
pub struct RevocationList {
    ctis: HashSet<Cti>,
}

impl RevocationList {
    /// An empty list.
    pub fn new() -> RevocationList {
        RevocationList::default()
    }

    /// Revokes `cti`.
    pub fn insert(&mut self, cti: Cti) {
        self.ctis.insert(cti);
    }

    /// Whether `cti` is revoked.
    pub fn contains(&self, cti: &Cti) -> bool {
        self.ctis.contains(cti)
    }

    /// Parses a revocation file: one cti per line as 32 lowercase hex digits (as pqwrap
    /// prints them; nothing else, not even a sign); surrounding whitespace, blank lines and
    /// lines starting with `#` are ignored.
    pub fn parse(text: &str) -> Result<RevocationList, TokenError> {
        let mut list = RevocationList::new();
        for (i, line) in text.lines().enumerate() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let cti = parse_hex_cti(l).ok_or_else(|| TokenError::Revocations { line: i + 1 })?;
            list.insert(cti);
        }
        Ok(list)
    }
}

/// Exactly `2 * CTI_LEN` digits of `0-9a-f`. Digit by digit: `u8::from_str_radix` would
/// also take `+9` as a pair.
fn parse_hex_cti(s: &str) -> Option<Cti> {
    fn nibble(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        }
    }
    let b = s.as_bytes();
    if b.len() != CTI_LEN * 2 {
        return None;
    }
    let mut out = [0u8; CTI_LEN];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let &[hi, lo] = pair else { return None };
        *o = (nibble(hi)? << 4) | nibble(lo)?;
    }
    Some(out)
}

/// Who the token must be for.
#[derive(Clone, Debug)]
enum Audience {
    /// Exactly this audience.
    Exactly(String),
    /// Any (still mandatory) audience: only for a broker re-reading its own tokens to
    /// narrow them, where the child keeps the parent's audience.
    AnyForNarrowing,
}

/// Checks tokens against a pinned trust set, an audience, a clock leeway and revocations.
#[derive(Clone, Debug)]
pub struct Verifier {
    trust: TrustSet,
    audience: Audience,
    leeway: u64,
    revoked: RevocationList,
    status: Option<VerifiedStatusList>,
}

impl Verifier {
    /// A verifier that accepts tokens signed by a key in `trust` and addressed to `audience`,
    /// with the default leeway and no revocations.
    pub fn new(trust: TrustSet, audience: impl Into<String>) -> Verifier {
        Verifier {
            trust,
            audience: Audience::Exactly(audience.into()),
            leeway: DEFAULT_LEEWAY_SECS,
            revoked: RevocationList::new(),
            status: None,
        }
    }

    /// A verifier for a broker that narrows its own tokens: the audience must be present but
    /// is not compared, since a child always keeps its parent's audience. What it yields is
    /// a [`ParentToken`], which can be narrowed but has no enforcement checks: a token
    /// verified without its audience must never answer `may_read`. Enforcement points use
    /// [`Verifier::new`].
    pub fn for_narrowing(trust: TrustSet) -> NarrowingVerifier {
        NarrowingVerifier(Verifier {
            trust,
            audience: Audience::AnyForNarrowing,
            leeway: DEFAULT_LEEWAY_SECS,
            revoked: RevocationList::new(),
            status: None,
        })
    }

    /// Sets the clock leeway (at most [`MAX_LEEWAY_SECS`]).
    pub fn with_leeway(mut self, secs: u64) -> Result<Verifier, TokenError> {
        if secs > MAX_LEEWAY_SECS {
            return Err(TokenError::Leeway(secs));
        }
        self.leeway = secs;
        Ok(self)
    }

    /// Sets the revocation list.
    pub fn with_revocations(mut self, revoked: RevocationList) -> Verifier {
        self.revoked = revoked;
        self
    }

    /// Consults a verified Token Status List: a token whose `status` claim names this list is
    /// refused unless its entry is VALID; one naming another list, or an entry beyond it, is
    /// refused as unknown; and once the list itself expires every token with a `status`
    /// claim is refused until a fresh list is given. Tokens without a `status` claim are not
    /// affected (use a revocation list for those).
    pub fn with_status_list(mut self, list: VerifiedStatusList) -> Verifier {
        self.status = Some(list);
        self
    }

    /// Verifies the text form (unpadded base64url of the COSE_Sign1 bytes, surrounding
    /// whitespace ignored) at time `now` (seconds since the Unix epoch).
    pub fn verify_text(&self, text: &str, now: u64) -> Result<VerifiedToken, TokenError> {
        let t = text.trim();
        // Base64 of MAX_TOKEN_LEN bytes; bounded before decoding.
        if t.len() > MAX_TOKEN_LEN.div_ceil(3) * 4 {
            return Err(TokenError::TooLarge(t.len() / 4 * 3));
        }
        let bytes = super::decode_text(t)?;
        self.verify(&bytes, now)
    }

    /// Verifies token bytes (tagged COSE_Sign1) at time `now`.
    pub fn verify(&self, token: &[u8], now: u64) -> Result<VerifiedToken, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLarge(token.len()));
        }
        let s = cose::parse(token)?;
        let key = self
            .trust
            .get(&s.kid)
            .ok_or_else(|| TokenError::UnknownKid(hex_lower(&s.kid)))?;
        // The pinned key decides the algorithm; the header must agree with it.
        if s.alg != key.algorithm().cose_alg() {
            return Err(TokenError::AlgorithmMismatch {
                header: s.alg,
                key: key.algorithm(),
            });
        }
        if s.signature.len() != key.algorithm().signature_len() {
            return Err(TokenError::BadSignature);
        }
        let msg = cose::sig_structure(&s.protected, &s.payload);
        if !key.verify(&msg, &s.signature) {
            return Err(TokenError::BadSignature);
        }
        let claims_value = super::cbor::decode(&s.payload)
            .map_err(|e| TokenError::Claims(super::claims::ClaimsError::Payload(e)))?;
        let claims = Claims::from_cbor(&claims_value).map_err(TokenError::Claims)?;
        if claims.iat > now.saturating_add(self.leeway) {
            return Err(TokenError::IssuedInFuture {
                iat: claims.iat,
                now,
            });
        }
        if claims.nbf > now.saturating_add(self.leeway) {
            return Err(TokenError::NotYetValid {
                nbf: claims.nbf,
                now,
            });
        }
        if now >= claims.exp.saturating_add(self.leeway) {
            return Err(TokenError::Expired {
                exp: claims.exp,
                now,
            });
        }
        if let Audience::Exactly(aud) = &self.audience
            && claims.aud != *aud
        {
            return Err(TokenError::WrongAudience {
                expected: aud.clone(),
                got: claims.aud,
            });
        }
        if self.revoked.contains(&claims.cti) {
            return Err(TokenError::Revoked(hex_lower(&claims.cti)));
        }
        if let Some(a) = claims.ancestors.iter().find(|a| self.revoked.contains(a)) {
            return Err(TokenError::AncestorRevoked(hex_lower(a)));
        }
        if let (Some(list), Some(r)) = (&self.status, &claims.status) {
            if !list.is_live_at(now) {
                return Err(TokenError::StatusUnavailable(super::Unavailable::Expired {
                    uri: list.uri().to_owned(),
                }));
            }
            match list.status_of(r)? {
                Status::Valid => {}
                status => {
                    return Err(TokenError::StatusRevoked {
                        idx: r.idx(),
                        status,
                    });
                }
            }
        }
        Ok(VerifiedToken {
            claims,
            kid: s.kid,
            alg: key.algorithm(),
            verified_at: now,
            leeway: self.leeway,
        })
    }
}

/// A verifier for tokens to be narrowed (see [`Verifier::for_narrowing`]): every check of
/// [`Verifier`] except the comparison of the audience.
#[derive(Clone, Debug)]
pub struct NarrowingVerifier(Verifier);

impl NarrowingVerifier {
    /// Sets the clock leeway (at most [`MAX_LEEWAY_SECS`]).
    pub fn with_leeway(self, secs: u64) -> Result<NarrowingVerifier, TokenError> {
        self.0.with_leeway(secs).map(NarrowingVerifier)
    }

    /// Sets the revocation list.
    pub fn with_revocations(self, revoked: RevocationList) -> NarrowingVerifier {
        NarrowingVerifier(self.0.with_revocations(revoked))
    }

    /// Consults a status list; see [`Verifier::with_status_list`].
    pub fn with_status_list(self, list: VerifiedStatusList) -> NarrowingVerifier {
        NarrowingVerifier(self.0.with_status_list(list))
    }

    /// Verifies the text form; see [`Verifier::verify_text`].
    pub fn verify_text(&self, text: &str, now: u64) -> Result<ParentToken, TokenError> {
        self.0.verify_text(text, now).map(ParentToken)
    }

    /// Verifies token bytes; see [`Verifier::verify`].
    pub fn verify(&self, token: &[u8], now: u64) -> Result<ParentToken, TokenError> {
        self.0.verify(token, now).map(ParentToken)
    }
}

/// A verified token that may be narrowed ([`crate::token::Issuer::narrow`]) but not used
/// for enforcement: from a [`NarrowingVerifier`], which did not compare its audience, or
/// from a fully [`VerifiedToken`] (`.into()`). It has no `may_*` checks, so this does not
/// compile:
///
/// ```compile_fail
/// fn allowed(t: &pqwrap_core::token::ParentToken) -> bool {
///     t.may_read("/home/u/Docs/x").is_ok()
/// }
/// ```
#[derive(Clone, Debug)]
pub struct ParentToken(VerifiedToken);

impl ParentToken {
    /// The verified claims.
    pub fn claims(&self) -> &Claims {
        &self.0.claims
    }

    /// The kid of the pinned key that verified it.
    pub fn kid(&self) -> &Kid {
        &self.0.kid
    }

    /// The algorithm of that key.
    pub fn algorithm(&self) -> Algorithm {
        self.0.alg
    }
}

impl From<VerifiedToken> for ParentToken {
    fn from(t: VerifiedToken) -> ParentToken {
        ParentToken(t)
    }
}

/// A token whose signature, header, claims, time window, audience and revocation status have
/// been checked. It can only be obtained from [`Verifier::verify`]; the enforcement checks
/// (`may_read` and friends) are methods on it.
///
/// Its fields are private and it has no public constructor, so this does not compile:
///
/// ```compile_fail
/// let forged = pqwrap_core::token::VerifiedToken {
///     claims: todo!(), kid: [0; 32], alg: pqwrap_core::token::Algorithm::MlDsa65,
///     verified_at: 0, leeway: 0,
/// };
/// ```
#[derive(Clone, Debug)]
pub struct VerifiedToken {
    claims: Claims,
    kid: Kid,
    alg: Algorithm,
    verified_at: u64,
    leeway: u64,
}

impl VerifiedToken {
    /// The verified claims.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// The kid of the pinned key that verified it.
    pub fn kid(&self) -> &Kid {
        &self.kid
    }

    /// The algorithm of that key.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// When it was verified (seconds since the Unix epoch).
    pub fn verified_at(&self) -> u64 {
        self.verified_at
    }

    /// Whether the token is still within its lifetime at `now` (with the verifier's leeway);
    /// long-running enforcement points call this (or `check_at`) before each decision.
    pub fn is_live_at(&self, now: u64) -> bool {
        now < self.claims.exp.saturating_add(self.leeway)
            && self.claims.nbf <= now.saturating_add(self.leeway)
    }
}
