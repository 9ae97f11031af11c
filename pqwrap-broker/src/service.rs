//! The broker's decisions: one [`Broker`] per state directory, shared by every connection.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use pqwrap_core::audit::AuditLog;
use pqwrap_core::ocsf::OcsfLog;
use pqwrap_core::token::keys::hex_lower;
use pqwrap_core::token::manifest::{JobCeiling, parse_duration};
use pqwrap_core::token::status::{StatusListClaims, StatusRef};
use pqwrap_core::token::verify::MAX_LEEWAY_SECS;
use pqwrap_core::token::{
    Claims, Cti, Manifest, ParentToken, QuantumJob, Request as Check, SigningKey, TrustSet,
    Verifier, unix_now,
};
use serde_json::json;
use thiserror::Error;

use crate::consent::{self, Answer};
use crate::events::{self, Activity, Outcome};
use crate::journal::{Batch, Committer, Journal, JournalError, Record, Sinks};
use crate::peer::{HashCache, Peer};
use crate::policy::{Consent, Policy, PolicyError, SelfIds, summary};
use crate::proto::{
    ConsumeRequest, ErrorCode, IssueRequest, Issued, Request, Response, RevokeTarget, Revoked,
    Rotated, TrustSetBody, Usage,
};
use crate::state::{KeyEntry, State, StateError, TokenInfo, load_key, parse_cti, write_atomic};

/// Where the broker keeps and publishes things.
#[derive(Clone, Debug)]
pub struct Config {
    /// The signing key (private JWK), key 0.
    pub key: PathBuf,
    /// The policy file.
    pub policy: PathBuf,
    /// The state directory (journal, rotated keys, published trust set).
    pub state: PathBuf,
    /// The hash-chained audit log (default: `STATE/audit.log`).
    pub audit_log: Option<PathBuf>,
    /// The OCSF JSON-lines stream, if wanted.
    pub ocsf: Option<PathBuf>,
    /// Where to publish the signed Token Status List, if anywhere.
    pub status_list: Option<PathBuf>,
}

/// Why the broker cannot start or keep its state.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The policy file is invalid.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The journal cannot be read or written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The journal does not replay.
    #[error(transparent)]
    State(#[from] StateError),
    /// The audit log cannot be opened.
    #[error("audit log {path}: {source}")]
    Audit {
        /// The log.
        path: PathBuf,
        /// Why.
        source: pqwrap_core::audit::AuditError,
    },
    /// A file could not be opened or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What it is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The signing key cannot be read.
    #[error("signing key {path}: {what}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        what: String,
    },
    /// Another broker holds the state directory.
    #[error("another broker is using the state directory {0}")]
    Locked(PathBuf),
    /// The status list cannot be published.
    #[error("status list {path}: {what}")]
    Publish {
        /// The file.
        path: PathBuf,
        /// Why.
        what: String,
    },
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Default)]
struct Published {
    len: u64,
    at: u64,
}

/// The broker.
pub struct Broker {
    cfg: Config,
    ids: SelfIds,
    policy: RwLock<Arc<Policy>>,
    state: Mutex<State>,
    committer: Committer,
    /// Executable hashes, shared by attestation.
    pub cache: HashCache,
    rate: Mutex<HashMap<(u32, [u8; 32]), Bucket>>,
    published: Mutex<Published>,
    status_uri: Option<String>,
    _lock: File,
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BrokerError + 'a {
    move |source| BrokerError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

fn mkdir(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        r => r,
    }
}

impl Broker {
    /// Opens the state directory (creating it), replays the journal, opens the
    /// audit log and OCSF stream, and publishes the status list and trust set.
    pub fn open(cfg: Config) -> Result<Broker, BrokerError> {
        let ids = SelfIds::current();
        let policy = Policy::load(&cfg.policy, ids)?;
        // Traversable but not listable by others, so that the published trust set under it
        // can be read; the journal, keys and lock inside are the owner's only.
        mkdir(&cfg.state, 0o711).map_err(io("state directory", &cfg.state))?;
        let lock_path = cfg.state.join("lock");
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io("lock file", &lock_path))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|_| BrokerError::Locked(cfg.state.clone()))?;
        let keys_dir = cfg.state.join("keys");
        mkdir(&keys_dir, 0o700).map_err(io("keys directory", &keys_dir))?;
        mkdir(&cfg.state.join("trust"), 0o755).map_err(io("trust directory", &cfg.state))?;
        let key = load_key(&cfg.key).map_err(|what| BrokerError::Key {
            path: cfg.key.clone(),
            what,
        })?;
        let jpath = cfg.state.join("journal");
        let (journal, records) = Journal::open(&jpath)?;
        let state = State::replay(key, &keys_dir, &records)?;
        let audit_path = cfg
            .audit_log
            .clone()
            .unwrap_or_else(|| cfg.state.join("audit.log"));
        let audit = AuditLog::open(&audit_path).map_err(|source| BrokerError::Audit {
            path: audit_path.clone(),
            source,
        })?;
        let ocsf = match &cfg.ocsf {
            Some(p) => Some(OcsfLog::from_file(
                OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o640)
                    .open(p)
                    .map_err(io("OCSF stream", p))?,
            )),
            None => None,
        };
        let status_uri = match &cfg.status_list {
            Some(p) => {
                let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
                let dir = std::fs::canonicalize(dir.unwrap_or(Path::new(".")))
                    .map_err(io("status list directory", p))?;
                let name = p.file_name().ok_or_else(|| BrokerError::Publish {
                    path: p.clone(),
                    what: "not a file name".into(),
                })?;
                Some(format!("file://{}", dir.join(name).display()))
            }
            None => None,
        };
        let b = Broker {
            cfg,
            ids,
            policy: RwLock::new(Arc::new(policy)),
            state: Mutex::new(state),
            committer: Committer::new(Sinks {
                journal,
                audit,
                ocsf,
            }),
            cache: HashCache::default(),
            rate: Mutex::new(HashMap::new()),
            published: Mutex::new(Published::default()),
            status_uri,
            _lock: lock,
        };
        b.publish_status(None)
            .map_err(|what| BrokerError::Publish {
                path: b.cfg.status_list.clone().unwrap_or_default(),
                what,
            })?;
        b.publish_trust()
            .map_err(io("trust directory", &b.cfg.state))?;
        Ok(b)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        match self.policy.read() {
            Ok(p) => p.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        }
    }

    /// The kid of the key that signs now.
    pub fn current_kid(&self) -> String {
        hex_lower(&self.state().current().kid())
    }

    /// Re-reads the policy file; a bad file keeps the old policy and says why. Appends an
    /// audit record either way.
    pub fn reload_policy(&self) -> Result<(), PolicyError> {
        let result = Policy::load(&self.cfg.policy, self.ids);
        let (ok, detail) = match &result {
            Ok(p) => (true, format!("{} rule(s)", p.rules.len())),
            Err(e) => (false, e.to_string()),
        };
        let batch = Batch {
            records: vec![],
            audit: vec![events::audit(
                "broker.policy_reload",
                None,
                json!({"decision": if ok { "loaded" } else { "kept the old policy" }, "reason": detail}),
            )],
            ocsf: vec![events::ocsf(
                Activity::Other,
                if ok {
                    Outcome::Success
                } else {
                    Outcome::Failure
                },
                None,
                &detail,
                "policy reload",
                json!({}),
            )],
        };
        let _ = self.committer.commit(batch);
        let p = result?;
        if let Ok(mut g) = self.policy.write() {
            *g = Arc::new(p);
        }
        Ok(())
    }

    /// Commits an audit-only batch for a request that never reached a decision (malformed,
    /// rate-limited, unattestable).
    pub fn audit_rejected(&self, peer: Option<&Peer>, code: ErrorCode, reason: &str) {
        let code_name = serde_json::to_value(code).unwrap_or_default();
        let _ = self.committer.commit(Batch {
            records: vec![],
            audit: vec![events::audit(
                "broker.reject",
                peer,
                json!({"decision": "rejected", "code": code_name, "reason": reason}),
            )],
            ocsf: vec![events::ocsf(
                Activity::Other,
                Outcome::Failure,
                peer,
                reason,
                "request rejected",
                json!({"code": code_name}),
            )],
        });
    }

    /// Takes one request from `peer`'s rate-limit bucket; false when it is empty.
    pub fn admit(&self, peer: &Peer) -> bool {
        let r = self.policy().rate;
        let mut m = match self.rate.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let now = Instant::now();
        if m.len() > 65_536 {
            // Identities are (uid, executable): bounded in practice; this is a backstop.
            m.clear();
        }
        let b = m.entry(peer.identity()).or_insert(Bucket {
            tokens: f64::from(r.requests),
            last: now,
        });
        let refill = now.duration_since(b.last).as_secs_f64() / r.per.as_secs_f64().max(1e-3)
            * f64::from(r.requests);
        b.tokens = (b.tokens + refill).min(f64::from(r.requests));
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Handles one request from an attested peer.
    pub fn handle(&self, peer: &Peer, req: Request) -> Response {
        match req {
            Request::Issue(r) => self.issue(peer, r),
            Request::Revoke(t) => self.revoke(peer, t),
            Request::Consume(c) => self.consume(peer, c),
            Request::RotateKey(_) => self.rotate(peer),
            Request::TrustSet(_) => self.trust_set(peer),
        }
    }

    fn trust(&self) -> TrustSet {
        self.state()
            .keys
            .iter()
            .map(|k| k.issuer.key().public_key().clone())
            .collect()
    }

    fn commit_or_error(&self, batch: Batch) -> Result<(), Response> {
        self.committer.commit(batch).map_err(|e| {
            Response::error(
                ErrorCode::Internal,
                format!("could not record the decision durably, so nothing was granted: {e}"),
            )
        })
    }

    fn refuse_issue(
        &self,
        peer: &Peer,
        r: &IssueRequest,
        requested: Option<&Manifest>,
        rule: Option<&str>,
        reason: String,
    ) -> Response {
        let requested_json = requested.map(|m| m.capabilities.to_json());
        let agent = requested.map(|m| m.agent.clone());
        let batch = Batch {
            records: vec![],
            audit: vec![events::audit(
                "token.refuse",
                Some(peer),
                json!({"decision": "refused", "reason": reason, "aud": r.aud, "sub": agent,
                       "rule": rule, "requested": requested_json}),
            )],
            ocsf: vec![events::ocsf(
                Activity::Grant,
                Outcome::Failure,
                Some(peer),
                &reason,
                "token request refused",
                json!({"decision": "refused", "audience": r.aud, "agent": agent, "rule": rule,
                       "requested": requested_json}),
            )],
        };
        if let Err(e) = self.commit_or_error(batch) {
            return e;
        }
        Response::refused(reason)
    }

    fn issue(&self, peer: &Peer, r: IssueRequest) -> Response {
        let policy = self.policy();
        let now = unix_now();
        let manifest = match Manifest::from_json(&r.manifest) {
            Ok(m) => m,
            Err(e) => return self.bad_request(peer, format!("invalid {e}")),
        };
        let refuse = |rule: Option<&str>, reason: String| {
            self.refuse_issue(peer, &r, Some(&manifest), rule, reason)
        };
        let ttl = match r.ttl.as_deref() {
            Some(t) => match parse_duration("ttl", t) {
                Ok(d) => d,
                Err(e) => return self.bad_request(peer, e.detail()),
            },
            None => manifest.ttl.unwrap_or(policy.default_ttl),
        };
        // A parent to narrow: it must verify under our keys and be one we issued and did
        // not revoke; the child keeps its audience.
        let parent: Option<ParentToken> = match &r.parent {
            None => None,
            Some(text) => {
                let p = match Verifier::for_narrowing(self.trust()).verify_text(text, now) {
                    Ok(p) => p,
                    Err(e) => return refuse(None, format!("the parent token is not valid: {e}")),
                };
                let c = p.claims();
                let s = self.state();
                if !s.tokens.contains_key(&c.cti) {
                    return refuse(
                        None,
                        "the parent token was not issued by this broker".into(),
                    );
                }
                if s.is_revoked(&c.cti, &c.ancestors) {
                    return refuse(None, "the parent token is revoked".into());
                }
                drop(s);
                if c.aud != r.aud {
                    return refuse(
                        None,
                        format!(
                            "a narrowed token keeps its parent's audience {:?}, not {:?}",
                            c.aud, r.aud
                        ),
                    );
                }
                Some(p)
            }
        };
        let mut grant = match policy.decide(peer, &manifest, &r.aud, ttl) {
            Ok(g) => g,
            Err(reason) => return refuse(policy.rule_for(peer).map(|r| r.name.as_str()), reason),
        };
        let rule_name = grant.rule.clone();
        let rule = Some(rule_name.as_str());
        if let Some(p) = &parent
            && let Err(e) = pqwrap_core::token::narrow::check_subset(
                &grant.capabilities,
                &p.claims().capabilities,
            )
        {
            return refuse(rule, format!("wider than the parent token: {e}"));
        }
        if grant.consent == Consent::Always {
            let text = summary(
                peer,
                &manifest.agent,
                &grant.capabilities,
                grant.ttl,
                &r.aud,
            );
            let answer = match &policy.consent {
                Some(cmd) => consent::ask(cmd, &text),
                None => Answer::No("no consent command configured".into()),
            };
            let why = match &answer {
                Answer::Yes => "yes".to_string(),
                Answer::No(w) => w.clone(),
            };
            let outcome = if answer == Answer::Yes {
                Outcome::Success
            } else {
                Outcome::Failure
            };
            let batch = Batch {
                records: vec![],
                audit: vec![events::audit(
                    "broker.consent",
                    Some(peer),
                    json!({"answer": answer.word(), "reason": why, "summary": text,
                           "sub": manifest.agent, "aud": r.aud, "rule": rule}),
                )],
                ocsf: vec![events::ocsf(
                    Activity::Consent,
                    outcome,
                    Some(peer),
                    &why,
                    &text,
                    json!({"answer": answer.word(), "agent": manifest.agent, "audience": r.aud, "rule": rule}),
                )],
            };
            if let Err(e) = self.commit_or_error(batch) {
                return e;
            }
            if let Answer::No(w) = answer {
                return refuse(rule, format!("consent was not given: {w}"));
            }
        }
        // Reserve an index and pick the key; sign outside the lock.
        let (idx, key) = {
            let mut s = self.state();
            if s.revoked_agents.contains(&manifest.agent) {
                drop(s);
                return refuse(
                    rule,
                    format!("agent session {:?} is revoked", manifest.agent),
                );
            }
            let idx = match s.allocate_idx() {
                Ok(i) => i,
                Err(e) => return Response::error(ErrorCode::Internal, e.to_string()),
            };
            s.next_idx = idx + 1;
            (idx, s.current().issuer.clone())
        };
        let status = match &self.status_uri {
            Some(uri) => match StatusRef::new(uri.clone(), idx) {
                Ok(r) => Some(r),
                Err(e) => return Response::error(ErrorCode::Internal, e.to_string()),
            },
            None => None,
        };
        if let Some(p) = &parent {
            // A child cannot outlive its parent: shorten rather than refuse.
            let left = p.claims().exp.saturating_sub(now);
            if grant.ttl.as_secs() > left {
                grant.narrowed.push(format!(
                    "ttl: {}s shortened to the parent's remaining {left}s",
                    grant.ttl.as_secs()
                ));
                grant.ttl = Duration::from_secs(left);
            }
        }
        let signed = match &parent {
            Some(p) => {
                let child = Manifest {
                    agent: manifest.agent.clone(),
                    capabilities: grant.capabilities.clone(),
                    ttl: None,
                };
                match status {
                    Some(st) => key.narrow_with_status(p, &child, Some(grant.ttl), now, st),
                    None => key.narrow(p, &child, Some(grant.ttl), now),
                }
            }
            None => {
                let mut cti: Cti = [0u8; 16];
                if getrandom::fill(&mut cti).is_err() {
                    return Response::error(ErrorCode::Internal, "the system RNG failed");
                }
                key.sign_claims(Claims {
                    iss: policy.issuer.clone(),
                    sub: manifest.agent.clone(),
                    aud: r.aud.clone(),
                    iat: now,
                    nbf: now,
                    exp: now.saturating_add(grant.ttl.as_secs()),
                    cti,
                    cnf: None,
                    capabilities: grant.capabilities.clone(),
                    ancestors: vec![],
                    status,
                })
            }
        };
        let token = match signed {
            Ok(t) => t,
            Err(e) => return refuse(rule, format!("cannot mint the token: {e}")),
        };
        let c = &token.claims;
        let kid_hex = hex_lower(&token.kid);
        {
            let mut s = self.state();
            let info = TokenInfo {
                idx,
                sub: c.sub.clone(),
                aud: c.aud.clone(),
                exp: c.exp,
                ancestors: c.ancestors.clone(),
                children: Vec::new(),
                jobs_max: c.capabilities.quantum.as_ref().map(|q| q.max_jobs.get()),
                jobs_used: 0,
                shots_used: 0,
                runtime_used: 0,
            };
            if let Err(e) = s.insert_issued(c.cti, info, &kid_hex) {
                return Response::error(ErrorCode::Internal, e.to_string());
            }
            // Revoked while it was being signed (its parent or its agent): never handed out.
            if s.is_revoked(&c.cti, &c.ancestors) {
                drop(s);
                return refuse(rule, "revoked while it was being issued".into());
            }
        }
        let mut audit = token.audit_record();
        if let Some(m) = audit.as_object_mut() {
            m.insert("peer".into(), peer.to_json());
            m.insert("decision".into(), "granted".into());
            m.insert("rule".into(), grant.rule.clone().into());
            m.insert("requested".into(), manifest.capabilities.to_json());
            m.insert("granted".into(), c.capabilities.to_json());
            m.insert("narrowed".into(), json!(grant.narrowed));
            m.insert("status_idx".into(), idx.into());
        }
        let cti_hex = hex_lower(&c.cti);
        let batch = Batch {
            records: vec![Record::Issued {
                cti: cti_hex.clone(),
                idx,
                sub: c.sub.clone(),
                aud: c.aud.clone(),
                exp: c.exp,
                kid: kid_hex,
                ancestors: c.ancestors.iter().map(|a| hex_lower(a)).collect(),
                jobs_max: c.capabilities.quantum.as_ref().map(|q| q.max_jobs.get()),
            }],
            audit: vec![audit],
            ocsf: vec![{
                let mut e = events::ocsf(
                    Activity::Grant,
                    Outcome::Success,
                    Some(peer),
                    if grant.narrowed.is_empty() {
                        "granted as requested"
                    } else {
                        "granted, narrowed to the policy"
                    },
                    "token issued",
                    json!({"decision": "granted", "token_id": cti_hex, "audience": c.aud,
                           "agent": c.sub, "rule": grant.rule, "requested": manifest.capabilities.to_json(),
                           "granted": c.capabilities.to_json(), "narrowed": grant.narrowed,
                           "parent": c.ancestors.last().map(|p| hex_lower(p)), "exp": c.exp}),
                );
                if let Some(m) = e.as_object_mut() {
                    m.insert(
                        "privileges".into(),
                        json!(events::privileges(&c.capabilities)),
                    );
                    m.insert(
                        "session".into(),
                        json!({"uid": c.sub, "expiration_time": c.exp.saturating_mul(1000), "is_remote": false}),
                    );
                }
                e
            }],
        };
        if let Err(e) = self.commit_or_error(batch) {
            return e;
        }
        if let Err(e) = self.publish_status(Some(idx)) {
            return Response::error(
                ErrorCode::Internal,
                format!("the token was recorded but the status list could not be published: {e}"),
            );
        }
        Response::Issued(Issued {
            token: token.to_text(),
            cti: cti_hex,
            exp: c.exp,
            granted: c.capabilities.to_json(),
            narrowed: grant.narrowed,
        })
    }

    /// A request whose content is malformed (not its framing): audited, answered
    /// `bad_request`.
    fn bad_request(&self, peer: &Peer, reason: String) -> Response {
        self.audit_rejected(Some(peer), ErrorCode::BadRequest, &reason);
        Response::error(ErrorCode::BadRequest, reason)
    }

    fn forbidden(&self, peer: &Peer, activity: Activity, what: &str) -> Response {
        let reason = format!(
            "{what} is not allowed to this process (uid {}, {})",
            peer.uid,
            peer.exe.display()
        );
        if let Err(e) = self.audit_simple(peer, activity, Outcome::Failure, &reason, json!({})) {
            return e;
        }
        Response::error(ErrorCode::Forbidden, reason)
    }

    fn audit_simple(
        &self,
        peer: &Peer,
        activity: Activity,
        outcome: Outcome,
        reason: &str,
        fields: serde_json::Value,
    ) -> Result<(), Response> {
        let mut audit_fields = fields.clone();
        if let Some(m) = audit_fields.as_object_mut() {
            m.insert(
                "decision".into(),
                if outcome == Outcome::Success {
                    "done"
                } else {
                    "refused"
                }
                .into(),
            );
            m.insert("reason".into(), reason.into());
        }
        let event = match activity {
            Activity::Revoke => "token.revoke",
            Activity::Consume => "quota.consume",
            Activity::RotateKey => "key.rotate",
            Activity::TrustSet => "broker.trust_set",
            _ => "broker.request",
        };
        self.commit_or_error(Batch {
            records: vec![],
            audit: vec![events::audit(event, Some(peer), audit_fields)],
            ocsf: vec![events::ocsf(
                activity,
                outcome,
                Some(peer),
                reason,
                event,
                fields,
            )],
        })
    }

    fn revoke(&self, peer: &Peer, t: RevokeTarget) -> Response {
        if !self.policy().is_admin(peer) {
            return self.forbidden(peer, Activity::Revoke, "revoking");
        }
        let (records, ctis, what) = {
            let mut s = self.state();
            match &t {
                RevokeTarget::Cti(hex) => {
                    let Some(c) = parse_cti(hex) else {
                        drop(s);
                        return Response::error(
                            ErrorCode::BadRequest,
                            format!("{hex:?} is not a cti (32 hex digits)"),
                        );
                    };
                    let all = s.with_descendants(c);
                    for x in &all {
                        s.mark_revoked(*x);
                    }
                    let hexes: Vec<String> = all.iter().map(|x| hex_lower(x)).collect();
                    (
                        vec![Record::Revoked {
                            ctis: hexes.clone(),
                        }],
                        hexes,
                        format!("token {hex}"),
                    )
                }
                RevokeTarget::Agent(agent) => {
                    s.revoked_agents.insert(agent.clone());
                    let all = s.of_agent(agent);
                    for x in &all {
                        s.mark_revoked(*x);
                    }
                    let hexes: Vec<String> = all.iter().map(|x| hex_lower(x)).collect();
                    (
                        vec![
                            Record::AgentRevoked {
                                agent: agent.clone(),
                            },
                            Record::Revoked {
                                ctis: hexes.clone(),
                            },
                        ],
                        hexes,
                        format!("agent session {agent:?}"),
                    )
                }
            }
        };
        let fields = json!({"target": what, "token_ids": ctis});
        let batch = Batch {
            records,
            audit: vec![events::audit(
                "token.revoke",
                Some(peer),
                json!({"decision": "revoked", "target": what, "token_ids": ctis}),
            )],
            ocsf: vec![events::ocsf(
                Activity::Revoke,
                Outcome::Success,
                Some(peer),
                &format!("revoked {what} ({} token(s))", ctis.len()),
                "revocation",
                fields,
            )],
        };
        if let Err(e) = self.commit_or_error(batch) {
            return e;
        }
        if let Err(e) = self.publish_status(None) {
            return Response::error(
                ErrorCode::Internal,
                format!(
                    "the revocation is recorded, but the status list could not be published: {e}"
                ),
            );
        }
        Response::Revoked(Revoked { ctis })
    }

    fn consume(&self, peer: &Peer, c: ConsumeRequest) -> Response {
        let now = unix_now();
        let refuse = |reason: String, fields: serde_json::Value| {
            if let Err(e) =
                self.audit_simple(peer, Activity::Consume, Outcome::Failure, &reason, fields)
            {
                return e;
            }
            Response::refused(reason)
        };
        let token = match Verifier::for_narrowing(self.trust()).verify_text(&c.token, now) {
            Ok(t) => t,
            Err(e) => return refuse(format!("the token is not valid: {e}"), json!({})),
        };
        let claims = token.claims();
        if !self.policy().may_consume(peer, &claims.aud) {
            return self.forbidden(
                peer,
                Activity::Consume,
                &format!("charging jobs to tokens for audience {:?}", claims.aud),
            );
        }
        let cti_hex = hex_lower(&claims.cti);
        let job = match QuantumJob::from_json(&c.job) {
            Ok(j) => j,
            Err(e) => return self.bad_request(peer, format!("invalid job: {e}")),
        };
        // The token's own account first, then each ancestor's up to the root.
        let chain: Vec<Cti> = claims.quota_accounts().copied().collect();
        let runtime_secs = job.runtime.as_secs() + u64::from(job.runtime.subsec_nanos() > 0);
        let fields = |used: u64, max: u64| {
            json!({"token_id": cti_hex, "audience": claims.aud, "agent": claims.sub,
                   "job": {"backend": job.backend, "algorithm": job.algorithm, "qubits": job.qubits,
                           "shots": job.shots, "runtime_secs": runtime_secs},
                   "jobs_used": used, "jobs_max": max})
        };
        let (used, max) = {
            let mut s = self.state();
            if s.is_revoked(&claims.cti, &claims.ancestors) {
                drop(s);
                return refuse("the token is revoked".into(), fields(0, 0));
            }
            for x in &chain {
                if !s.tokens.contains_key(x) {
                    drop(s);
                    return refuse(
                        format!("token {} was not issued by this broker", hex_lower(x)),
                        fields(0, 0),
                    );
                }
            }
            let own_used = s.tokens.get(&claims.cti).map(|t| t.jobs_used).unwrap_or(0);
            let own_max = claims
                .capabilities
                .quantum
                .as_ref()
                .map(|q| q.max_jobs.get())
                .unwrap_or(0);
            if let Err(d) = claims.capabilities.check(&Check::Submit {
                job: &job,
                already_submitted: own_used,
            }) {
                drop(s);
                return refuse(d.0.to_string(), fields(own_used, own_max));
            }
            // Totals are the parent's: children narrowed from a token share its maxJobs.
            for a in &claims.ancestors {
                let Some(t) = s.tokens.get(a) else {
                    continue;
                };
                let max = t.jobs_max.unwrap_or(0);
                if !JobCeiling::new(max).allows_another(t.jobs_used) {
                    let reason = format!(
                        "the job quota of ancestor token {} is used up ({} of maxJobs {max}, counted across the tokens narrowed from it)",
                        hex_lower(a),
                        t.jobs_used
                    );
                    drop(s);
                    return refuse(reason, fields(own_used, own_max));
                }
            }
            for x in &chain {
                if let Some(t) = s.tokens.get_mut(x) {
                    t.jobs_used += 1;
                    t.shots_used = t.shots_used.saturating_add(job.shots);
                    t.runtime_used = t.runtime_used.saturating_add(runtime_secs);
                }
            }
            (own_used + 1, own_max)
        };
        let f = fields(used, max);
        let batch = Batch {
            records: vec![Record::Consumed {
                chain: chain.iter().map(|x| hex_lower(x)).collect(),
                shots: job.shots,
                runtime_secs,
            }],
            audit: vec![events::audit("quota.consume", Some(peer), {
                let mut a = f.clone();
                if let Some(m) = a.as_object_mut() {
                    m.insert("decision".into(), "allowed".into());
                }
                a
            })],
            ocsf: vec![events::ocsf(
                Activity::Consume,
                Outcome::Success,
                Some(peer),
                &format!("job {used} of {max}"),
                "quantum job counted",
                f,
            )],
        };
        if let Err(e) = self.commit_or_error(batch) {
            return e;
        }
        Response::Consumed(Usage {
            jobs_used: used,
            jobs_max: max,
        })
    }

    fn rotate(&self, peer: &Peer) -> Response {
        if !self.policy().is_admin(peer) {
            return self.forbidden(peer, Activity::RotateKey, "rotating the key");
        }
        let (alg, seq) = {
            let s = self.state();
            (
                s.current().issuer.key().algorithm(),
                s.keys.iter().map(|k| k.seq).max().unwrap_or(0) + 1,
            )
        };
        let key = match SigningKey::generate(alg) {
            Ok(k) => k,
            Err(e) => return Response::error(ErrorCode::Internal, e.to_string()),
        };
        let kid = hex_lower(key.public_key().kid());
        let path = self.cfg.state.join("keys").join(format!("{seq}.jwk"));
        let mut jwk = key.to_jwk_private();
        jwk.push('\n');
        if let Err(e) = write_atomic(&path, jwk.as_bytes(), 0o600) {
            return Response::error(
                ErrorCode::Internal,
                format!("cannot store the new key {}: {e}", path.display()),
            );
        }
        let trusted: Vec<String> = {
            let s = self.state();
            s.keys
                .iter()
                .map(|k| hex_lower(&k.kid()))
                .chain(std::iter::once(kid.clone()))
                .collect()
        };
        let fields = json!({"kid": kid, "trusted": trusted});
        let batch = Batch {
            records: vec![Record::KeyAdded {
                seq,
                kid: kid.clone(),
            }],
            audit: vec![events::audit(
                "key.rotate",
                Some(peer),
                json!({"decision": "rotated", "kid": kid, "trusted": trusted}),
            )],
            ocsf: vec![events::ocsf(
                Activity::RotateKey,
                Outcome::Success,
                Some(peer),
                &format!("now signing with {kid}"),
                "key rotation",
                fields,
            )],
        };
        if let Err(e) = self.commit_or_error(batch) {
            return e;
        }
        self.state().keys.push(KeyEntry {
            seq,
            issuer: Arc::new(pqwrap_core::token::Issuer::new(key)),
            last_exp: 0,
        });
        if let Err(e) = self.publish_trust() {
            return Response::error(
                ErrorCode::Internal,
                format!("the key is in use, but the trust set could not be published: {e}"),
            );
        }
        if let Err(e) = self.publish_status(None) {
            return Response::error(ErrorCode::Internal, e);
        }
        Response::Rotated(Rotated { kid, trusted })
    }

    fn trust_set(&self, peer: &Peer) -> Response {
        let keys: Vec<String> = self
            .state()
            .keys
            .iter()
            .map(|k| k.issuer.key().public_key().to_jwk())
            .collect();
        if let Err(e) = self.audit_simple(
            peer,
            Activity::TrustSet,
            Outcome::Success,
            "trust set read",
            json!({"keys": keys.len()}),
        ) {
            return e;
        }
        Response::TrustSet(TrustSetBody { keys })
    }

    /// Publishes the status list unless one covering index `covers` is already out
    /// (`None`: publish now, e.g. after a revocation).
    pub fn publish_status(&self, covers: Option<u64>) -> Result<(), String> {
        let (Some(path), Some(uri)) = (&self.cfg.status_list, &self.status_uri) else {
            return Ok(());
        };
        let mut p = match self.published.lock() {
            Ok(p) => p,
            Err(e) => e.into_inner(),
        };
        if let Some(idx) = covers
            && p.len > idx
        {
            return Ok(());
        }
        let policy = self.policy();
        let (list, issuer) = {
            let s = self.state();
            (s.list.clone(), s.current().issuer.clone())
        };
        let now = unix_now();
        let ttl = policy.status_list_ttl.as_secs();
        let claims = StatusListClaims {
            iss: policy.issuer.clone(),
            sub: uri.clone(),
            iat: now,
            exp: Some(now + ttl),
            ttl: Some((ttl / 2).max(1)),
            list,
        };
        let bytes = issuer
            .sign_status_list(&claims)
            .map_err(|e| e.to_string())?;
        write_atomic(path, &bytes, 0o644).map_err(|e| e.to_string())?;
        p.len = claims.list.len();
        p.at = now;
        Ok(())
    }

    /// Writes `STATE/trust/<kid>.jwk` for every key whose tokens may still be live and
    /// removes the others.
    pub fn publish_trust(&self) -> std::io::Result<()> {
        let dir = self.cfg.state.join("trust");
        let keys: Vec<(String, String)> = self
            .state()
            .keys
            .iter()
            .map(|k| (hex_lower(&k.kid()), k.issuer.key().public_key().to_jwk()))
            .collect();
        for (kid, jwk) in &keys {
            let p = dir.join(format!("{kid}.jwk"));
            if std::fs::read_to_string(&p).ok().as_deref() != Some(&format!("{jwk}\n")) {
                write_atomic(&p, format!("{jwk}\n").as_bytes(), 0o644)?;
            }
        }
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(kid) = name.strip_suffix(".jwk")
                && !keys.iter().any(|(k, _)| k == kid)
            {
                std::fs::remove_file(e.path())?;
            }
        }
        Ok(())
    }

    /// Periodic work: republish the status list at half its lifetime, and retire keys none
    /// of whose tokens can still be live.
    pub fn tick(&self) -> Result<(), String> {
        let now = unix_now();
        let half = self.policy().status_list_ttl.as_secs() / 2;
        let due = {
            let p = match self.published.lock() {
                Ok(p) => p,
                Err(e) => e.into_inner(),
            };
            now >= p.at + half
        };
        if due {
            self.publish_status(None)?;
        }
        let retire: Vec<u64> = {
            let s = self.state();
            let current = s.current().seq;
            s.keys
                .iter()
                .filter(|k| k.seq != current && now > k.last_exp + MAX_LEEWAY_SECS)
                .map(|k| k.seq)
                .collect()
        };
        for seq in retire {
            self.committer.commit(Batch {
                records: vec![Record::KeyRetired { seq }],
                audit: vec![events::audit(
                    "key.retire",
                    None,
                    json!({"seq": seq, "reason": "every token it signed has expired"}),
                )],
                ocsf: vec![],
            })?;
            self.state().keys.retain(|k| k.seq != seq);
            if seq > 0 {
                let _ =
                    std::fs::remove_file(self.cfg.state.join("keys").join(format!("{seq}.jwk")));
            }
            self.publish_trust().map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// How long to wait between [`Broker::tick`]s.
    pub fn tick_interval(&self) -> Duration {
        Duration::from_secs(30)
    }
}
