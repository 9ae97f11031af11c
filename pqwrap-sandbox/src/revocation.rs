//! Revocation, asked before the start and polled during the run.
//!
//! The supervisor only knows [`RevocationSource`]. [`RevocationFile`] is the revocation list
//! of `pqwrap token verify --revoked` (one hex cti per line); [`StatusListFile`] is a signed
//! Token Status List as `pqwrap broker serve --status-list` publishes it. Both are read
//! again at every poll (they are small and bounded, and a modification time can miss a
//! same-length rewrite).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pqwrap_core::token::keys::hex_lower;
use pqwrap_core::token::status::{self as tsl, MAX_STATUS_TOKEN_LEN, VerifiedStatusList};
use pqwrap_core::token::{RevocationList, TrustSet, VerifiedToken, unix_now};

use crate::error::{SandboxError, StatusListProblem};

/// What a revocation source says about a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Not revoked.
    Valid,
    /// Revoked; the text says which cti or status list entry.
    Revoked(String),
    /// The source cannot say (the token is not covered by it): treated as revoked, since a
    /// revocation that cannot be checked must not let the agent run.
    Unknown(String),
}

/// Something that can say whether a token is revoked, polled every
/// [`poll_interval`](RevocationSource::poll_interval) while the agent runs.
pub trait RevocationSource: Send {
    /// Whether `token` is revoked now. A source that cannot be read answers `Err`, and the
    /// supervisor fails closed: the agent is ended.
    fn check(&mut self, token: &VerifiedToken) -> Result<Status, SandboxError>;

    /// How often the supervisor asks during the run.
    fn poll_interval(&self) -> Duration;

    /// A name for messages and the audit log.
    fn describe(&self) -> String;

    /// [`check`](RevocationSource::check) for admission, where an unreadable source refuses.
    fn status(&mut self, token: &VerifiedToken) -> Status {
        match self.check(token) {
            Ok(s) => s,
            Err(e) => Status::Unknown(format!("cannot be checked: {e}")),
        }
    }
}

/// How often a revocation file is looked at during the run.
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);
/// Largest revocation file read (a cti line is 33 bytes: about 30,000 entries).
pub const MAX_LIST_LEN: u64 = 1 << 20;

/// A revocation list file, parsed again at every check.
pub struct RevocationFile {
    path: PathBuf,
    interval: Duration,
    list: RevocationList,
}

impl RevocationFile {
    /// Reads the list at `path` now (a malformed or unreadable file is an error).
    pub fn open(path: &Path, interval: Duration) -> Result<RevocationFile, SandboxError> {
        let mut f = RevocationFile {
            path: path.to_owned(),
            interval,
            list: RevocationList::new(),
        };
        f.refresh()?;
        Ok(f)
    }

    fn err(&self, what: impl Into<String>) -> SandboxError {
        SandboxError::Revocation {
            path: self.path.clone(),
            what: what.into(),
        }
    }

    fn refresh(&mut self) -> Result<(), SandboxError> {
        let file = std::fs::File::open(&self.path).map_err(|e| self.err(e.to_string()))?;
        let meta = file.metadata().map_err(|e| self.err(e.to_string()))?;
        if meta.len() > MAX_LIST_LEN {
            return Err(self.err(format!("larger than {MAX_LIST_LEN} bytes")));
        }
        let mut text = String::new();
        file.take(MAX_LIST_LEN + 1)
            .read_to_string(&mut text)
            .map_err(|e| self.err(e.to_string()))?;
        self.list = RevocationList::parse(&text).map_err(|e| self.err(e.to_string()))?;
        Ok(())
    }
}

impl RevocationSource for RevocationFile {
    fn check(&mut self, token: &VerifiedToken) -> Result<Status, SandboxError> {
        self.refresh()?;
        let c = token.claims();
        if self.list.contains(&c.cti) {
            return Ok(Status::Revoked(format!("cti {}", hex_lower(&c.cti))));
        }
        if let Some(a) = c.ancestors.iter().find(|a| self.list.contains(a)) {
            return Ok(Status::Revoked(format!("ancestor cti {}", hex_lower(a))));
        }
        Ok(Status::Valid)
    }

    fn poll_interval(&self) -> Duration {
        self.interval
    }

    fn describe(&self) -> String {
        format!("revocation list {}", self.path.display())
    }
}

/// Largest status list file read: the text form of the largest Status List Token, plus room
/// for surrounding whitespace.
pub const MAX_STATUS_FILE_LEN: u64 = (MAX_STATUS_TOKEN_LEN.div_ceil(3) * 4 + 64) as u64;

/// A Token Status List file (the broker's `--status-list` output), read and verified against
/// the pinned trust set at every check, the first being admission's.
///
/// Fails closed: a file that is missing, too large, does not verify (signature, pinned kid,
/// `typ`, strict claims), has no `exp`, is past its `exp` (with the 30 s leeway tokens get),
/// or was signed before one already accepted (an old list put back) is an error, and so the
/// agent does not start or is ended. A token is looked up by its own `status` claim; one
/// without the claim, naming another list, or beyond the list's end is [`Status::Unknown`].
pub struct StatusListFile {
    path: PathBuf,
    trust: TrustSet,
    interval: Duration,
    /// The `iat` of the newest list accepted so far.
    newest_iat: Option<u64>,
}

impl StatusListFile {
    /// A source reading `path`, which is first read by the first check.
    pub fn new(path: &Path, trust: TrustSet, interval: Duration) -> StatusListFile {
        StatusListFile {
            path: path.to_owned(),
            trust,
            interval,
            newest_iat: None,
        }
    }
}

/// Reads and verifies a status list; `newest_iat` is the `iat` of the list accepted before.
fn read_status_list(
    path: &Path,
    trust: &TrustSet,
    now: u64,
    newest_iat: Option<u64>,
) -> Result<VerifiedStatusList, SandboxError> {
    let err = |problem| SandboxError::StatusList {
        path: path.to_owned(),
        problem,
    };
    let file = std::fs::File::open(path).map_err(|e| err(StatusListProblem::Read(e)))?;
    let len = file
        .metadata()
        .map_err(|e| err(StatusListProblem::Read(e)))?
        .len();
    if len > MAX_STATUS_FILE_LEN {
        return Err(err(StatusListProblem::TooLarge(len)));
    }
    let mut bytes = Vec::new();
    file.take(MAX_STATUS_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| err(StatusListProblem::Read(e)))?;
    if bytes.len() as u64 > MAX_STATUS_FILE_LEN {
        return Err(err(StatusListProblem::TooLarge(bytes.len() as u64)));
    }
    let list = tsl::verify(trust, &bytes, now).map_err(|e| err(StatusListProblem::Invalid(e)))?;
    let c = list.claims();
    if c.exp.is_none() {
        return Err(err(StatusListProblem::NoExpiry));
    }
    if let Some(newest) = newest_iat
        && c.iat < newest
    {
        return Err(err(StatusListProblem::Older { iat: c.iat, newest }));
    }
    Ok(list)
}

impl RevocationSource for StatusListFile {
    fn check(&mut self, token: &VerifiedToken) -> Result<Status, SandboxError> {
        let list = read_status_list(&self.path, &self.trust, unix_now(), self.newest_iat)?;
        self.newest_iat = Some(list.claims().iat);
        let Some(r) = &token.claims().status else {
            return Ok(Status::Unknown(format!(
                "the token has no status claim, so {} cannot say whether it is revoked",
                self.describe()
            )));
        };
        Ok(match list.status_of(r) {
            Ok(tsl::Status::Valid) => Status::Valid,
            Ok(s) => Status::Revoked(format!(
                "{} marks entry {} {}",
                self.describe(),
                r.idx(),
                s.name()
            )),
            Err(e) => Status::Unknown(format!("{}: {e}", self.describe())),
        })
    }

    fn poll_interval(&self) -> Duration {
        self.interval
    }

    fn describe(&self) -> String {
        format!("status list {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pqwrap_core::token::status::{Bits, StatusList, StatusListClaims, StatusRef};
    use pqwrap_core::token::{
        Algorithm, Issuer, Manifest, SigningKey, Verifier, encode_text, unix_now,
    };

    const URI: &str = "urn:pqwrap:test:exec";

    struct Fx {
        dir: tempfile::TempDir,
        issuer: Issuer,
        trust: TrustSet,
    }

    impl Fx {
        fn new() -> Fx {
            let key = SigningKey::from_seed(Algorithm::MlDsa65, &[3; 32]);
            let trust = [key.public_key().clone()].into_iter().collect();
            Fx {
                dir: tempfile::tempdir().unwrap(),
                issuer: Issuer::new(key),
                trust,
            }
        }

        fn token(&self, status: Option<StatusRef>) -> VerifiedToken {
            let m = Manifest::from_json(r#"{"agent": "a", "capabilities": {"clipboard": true}}"#)
                .unwrap();
            let (ttl, now) = (Duration::from_secs(600), unix_now());
            let t = match status {
                Some(s) => self
                    .issuer
                    .issue_with_status(&m, "x", ttl, now, None, s)
                    .unwrap(),
                None => self.issuer.issue(&m, "x", ttl, now, None).unwrap(),
            };
            Verifier::new(self.trust.clone(), "x")
                .verify(&t.bytes, now)
                .unwrap()
        }

        /// Writes a list signed at `iat` by `issuer` with `revoked` entries set.
        fn write(&self, issuer: &Issuer, iat: u64, exp: Option<u64>, revoked: &[u64]) -> PathBuf {
            let mut l = StatusList::new(Bits::One, 16).unwrap();
            for i in revoked {
                l.set(*i, tsl::Status::Invalid).unwrap();
            }
            let mut c = StatusListClaims::new(URI, iat, l);
            c.exp = exp;
            let p = self.dir.path().join("status.cwt");
            std::fs::write(&p, encode_text(&issuer.sign_status_list(&c).unwrap())).unwrap();
            p
        }

        /// A source for `p`, checked once (as admission does) with a covered token.
        fn open(&self, p: &Path) -> Result<StatusListFile, SandboxError> {
            let mut src = StatusListFile::new(p, self.trust.clone(), DEFAULT_POLL);
            src.check(&self.token(Some(StatusRef::new(URI, 0).unwrap())))?;
            Ok(src)
        }
    }

    fn problem(r: Result<impl Sized, SandboxError>) -> StatusListProblem {
        match r {
            Err(SandboxError::StatusList { problem, .. }) => problem,
            Err(e) => panic!("another error: {e}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn the_tokens_own_entry_decides_and_uncovered_tokens_are_unknown() {
        let f = Fx::new();
        let now = unix_now();
        let p = f.write(&f.issuer, now, Some(now + 60), &[2]);
        let mut src = f.open(&p).unwrap();
        let ok = f.token(Some(StatusRef::new(URI, 1).unwrap()));
        let revoked = f.token(Some(StatusRef::new(URI, 2).unwrap()));
        assert_eq!(src.check(&ok).unwrap(), Status::Valid);
        assert!(
            matches!(src.check(&revoked).unwrap(), Status::Revoked(w) if w.contains("entry 2"))
        );
        for t in [
            f.token(None),
            f.token(Some(StatusRef::new("urn:other", 1).unwrap())),
            f.token(Some(StatusRef::new(URI, 16).unwrap())),
        ] {
            assert!(matches!(src.check(&t).unwrap(), Status::Unknown(_)));
        }
        // Flipped while running: the next check sees it.
        f.write(&f.issuer, now, Some(now + 60), &[1, 2]);
        assert!(matches!(src.check(&ok).unwrap(), Status::Revoked(_)));
    }

    #[test]
    fn lists_that_cannot_show_they_are_current_and_authentic_fail_closed() {
        let f = Fx::new();
        let now = unix_now();
        let missing = f.dir.path().join("absent.cwt");
        assert!(matches!(
            problem(f.open(&missing)),
            StatusListProblem::Read(_)
        ));
        let stranger = Issuer::new(SigningKey::from_seed(Algorithm::MlDsa65, &[4; 32]));
        let p = f.write(&stranger, now, Some(now + 60), &[]);
        assert!(matches!(problem(f.open(&p)), StatusListProblem::Invalid(_)));
        let p = f.write(&f.issuer, now - 100, Some(now - 31), &[]);
        assert!(matches!(problem(f.open(&p)), StatusListProblem::Invalid(_)));
        let p = f.write(&f.issuer, now, None, &[]);
        assert!(matches!(problem(f.open(&p)), StatusListProblem::NoExpiry));
        // One character of the text form changed.
        let p = f.write(&f.issuer, now, Some(now + 60), &[]);
        let mut text = std::fs::read(&p).unwrap();
        let i = text.len() / 2;
        text[i] = if text[i] == b'A' { b'B' } else { b'A' };
        std::fs::write(&p, &text).unwrap();
        assert!(matches!(problem(f.open(&p)), StatusListProblem::Invalid(_)));
        std::fs::write(&p, vec![b'A'; MAX_STATUS_FILE_LEN as usize + 1]).unwrap();
        assert!(matches!(
            problem(f.open(&p)),
            StatusListProblem::TooLarge(_)
        ));

        // An older list put back during the run is refused, not believed.
        let p = f.write(&f.issuer, now, Some(now + 60), &[]);
        let old = std::fs::read(&p).unwrap();
        f.write(&f.issuer, now + 1, Some(now + 61), &[]);
        let mut src = f.open(&p).unwrap();
        let t = f.token(Some(StatusRef::new(URI, 1).unwrap()));
        assert_eq!(src.check(&t).unwrap(), Status::Valid);
        std::fs::write(&p, old).unwrap();
        assert!(matches!(
            src.check(&t).map_err(|e| problem(Err::<(), _>(e))),
            Err(StatusListProblem::Older { .. })
        ));
    }
}
