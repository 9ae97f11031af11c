//! The policy file: who may have which capabilities, for which audiences, for how long.
//!
//! TOML, validated completely when loaded; every error names the line. docs/BROKER.md is the
//! reference. In short: `[broker]` settings, `[[admin]]` selectors (who may revoke and rotate
//! keys), `[[gatekeeper]]` selectors with audiences (who may charge quantum jobs), and
//! `[[rule]]`s, each with selectors, `audiences`, `max_ttl`, `consent`, `excess` and a
//! `[rule.grant]` ceiling written like a manifest's `capabilities`. The first rule whose
//! selectors all match the peer decides; no matching rule refuses.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pqwrap_core::token::enforce::is_within;
use pqwrap_core::token::manifest::{JobCeiling, QuantumGrant, ShellGrant, parse_duration};
use pqwrap_core::token::narrow::check_subset;
use pqwrap_core::token::{Capabilities, FileGrant, FileMode, Manifest};
use serde::Deserialize;
use thiserror::Error;
use toml::Spanned;

use crate::peer::Peer;

/// Largest policy file read.
pub const MAX_POLICY_LEN: usize = 1 << 20;

/// A policy that cannot be used; `line` is 1-based.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{}line {line}: {message}", file.as_ref().map(|f| format!("{}: ", f.display())).unwrap_or_default())]
pub struct PolicyError {
    /// The file, when loaded from one.
    pub file: Option<PathBuf>,
    /// Line of the offending item.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Whether a rule asks a person before granting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consent {
    /// Grant without asking.
    Never,
    /// Run the consent command every time; only "yes" grants.
    Always,
}

/// What a rule does with a request that asks for more than its ceiling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Excess {
    /// Refuse the whole request, naming what is too wide.
    Refuse,
    /// Grant the part that fits (never more than was asked, never more than the ceiling).
    Narrow,
}

/// Which peers a rule, admin or gatekeeper entry matches: every selector given must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    /// Effective uid.
    pub uid: Option<u32>,
    /// Effective gid.
    pub gid: Option<u32>,
    /// Executable path.
    pub exe: Option<PathBuf>,
    /// Executable SHA-256.
    pub exe_sha256: Option<[u8; 32]>,
}

impl Selector {
    /// Whether `peer` matches.
    pub fn matches(&self, peer: &Peer) -> bool {
        self.uid.is_none_or(|u| u == peer.uid)
            && self.gid.is_none_or(|g| g == peer.gid)
            && self.exe.as_ref().is_none_or(|e| *e == peer.exe)
            && self.exe_sha256.is_none_or(|h| h == peer.exe_sha256)
    }
}

/// An issuance rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Its name (for audit records and refusals).
    pub name: String,
    /// Its line in the file.
    pub line: usize,
    /// Who it applies to.
    pub selector: Selector,
    /// Audiences tokens may be for.
    pub audiences: Vec<String>,
    /// Longest lifetime granted; longer requests are shortened to it.
    pub max_ttl: Duration,
    /// Whether to ask a person.
    pub consent: Consent,
    /// What to do with requests wider than the ceiling.
    pub excess: Excess,
    /// The most that may be granted.
    pub grant: Capabilities,
}

/// Who may charge quantum jobs, for which audiences.
#[derive(Clone, Debug)]
pub struct Gatekeeper {
    /// Who.
    pub selector: Selector,
    /// Tokens of which audiences it may charge.
    pub audiences: Vec<String>,
}

/// The consent command and how long to wait for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentCommand {
    /// argv; `{summary}` in any argument is replaced by the request's summary.
    pub argv: Vec<String>,
    /// No answer within this time is "no".
    pub timeout: Duration,
}

/// Requests allowed per peer identity (uid and executable hash): `requests` per `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Bucket size (and requests per period).
    pub requests: u32,
    /// The period.
    pub per: Duration,
}

/// A loaded, validated policy.
#[derive(Clone, Debug)]
pub struct Policy {
    /// `iss` put in tokens.
    pub issuer: Option<String>,
    /// Lifetime when neither request nor manifest says.
    pub default_ttl: Duration,
    /// Socket file mode.
    pub socket_mode: u32,
    /// Socket group, if set.
    pub socket_group: Option<u32>,
    /// Per-identity rate limit.
    pub rate: RateLimit,
    /// Consent command, required if any rule has `consent = "always"`.
    pub consent: Option<ConsentCommand>,
    /// Lifetime of each published status list (republished at half of it).
    pub status_list_ttl: Duration,
    /// Who may revoke and rotate keys.
    pub admins: Vec<Selector>,
    /// Who may charge quantum jobs.
    pub gatekeepers: Vec<Gatekeeper>,
    /// Issuance rules, in file order.
    pub rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    broker: Option<Spanned<RawBroker>>,
    #[serde(default)]
    admin: Vec<Spanned<RawSelector>>,
    #[serde(default)]
    gatekeeper: Vec<Spanned<RawGatekeeper>>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBroker {
    issuer: Option<String>,
    default_ttl: Option<Spanned<String>>,
    socket_mode: Option<Spanned<String>>,
    socket_group: Option<Spanned<toml::Value>>,
    rate_limit: Option<Spanned<RawRate>>,
    consent_command: Option<Spanned<Vec<String>>>,
    consent_timeout: Option<Spanned<String>>,
    status_list_ttl: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    requests: u32,
    per: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelector {
    uid: Option<Spanned<toml::Value>>,
    gid: Option<Spanned<toml::Value>>,
    exe: Option<Spanned<String>>,
    exe_sha256: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGatekeeper {
    uid: Option<Spanned<toml::Value>>,
    gid: Option<Spanned<toml::Value>>,
    exe: Option<Spanned<String>>,
    exe_sha256: Option<Spanned<String>>,
    audiences: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    uid: Option<Spanned<toml::Value>>,
    gid: Option<Spanned<toml::Value>>,
    exe: Option<Spanned<String>>,
    exe_sha256: Option<Spanned<String>>,
    audiences: Spanned<Vec<String>>,
    max_ttl: Spanned<String>,
    #[serde(default = "consent_never")]
    consent: Consent,
    #[serde(default = "excess_refuse")]
    excess: Excess,
    grant: Spanned<toml::Table>,
}

fn consent_never() -> Consent {
    Consent::Never
}

fn excess_refuse() -> Excess {
    Excess::Refuse
}

/// Who "self" is: the broker's own effective uid and gid.
#[derive(Clone, Copy, Debug)]
pub struct SelfIds {
    /// Effective uid of the broker.
    pub uid: u32,
    /// Effective gid of the broker.
    pub gid: u32,
}

impl SelfIds {
    /// This process's.
    pub fn current() -> SelfIds {
        SelfIds {
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
        }
    }
}

struct Lines<'a> {
    text: &'a str,
}

impl Lines<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text
            .as_bytes()
            .iter()
            .take(offset)
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn err(&self, offset: usize, message: impl Into<String>) -> PolicyError {
        PolicyError {
            file: None,
            line: self.line_of(offset),
            message: message.into(),
        }
    }
}

fn dur(l: &Lines<'_>, name: &str, v: &Spanned<String>) -> Result<Duration, PolicyError> {
    parse_duration(name, v.get_ref()).map_err(|e| l.err(v.span().start, e.detail()))
}

fn id_of(
    l: &Lines<'_>,
    name: &str,
    v: &Spanned<toml::Value>,
    own: u32,
) -> Result<u32, PolicyError> {
    match v.get_ref() {
        toml::Value::Integer(n) => u32::try_from(*n)
            .map_err(|_| l.err(v.span().start, format!("{name}: {n} is not a valid id"))),
        toml::Value::String(s) if s == "self" => Ok(own),
        _ => Err(l.err(
            v.span().start,
            format!("{name}: must be a number or \"self\" (the broker's own)"),
        )),
    }
}

fn selector(
    l: &Lines<'_>,
    at: usize,
    ids: SelfIds,
    uid: &Option<Spanned<toml::Value>>,
    gid: &Option<Spanned<toml::Value>>,
    exe: &Option<Spanned<String>>,
    sha: &Option<Spanned<String>>,
) -> Result<Selector, PolicyError> {
    let s = Selector {
        uid: uid
            .as_ref()
            .map(|v| id_of(l, "uid", v, ids.uid))
            .transpose()?,
        gid: gid
            .as_ref()
            .map(|v| id_of(l, "gid", v, ids.gid))
            .transpose()?,
        exe: exe
            .as_ref()
            .map(|e| {
                let p = e.get_ref();
                if !p.starts_with('/') {
                    return Err(l.err(e.span().start, format!("exe: {p:?} is not absolute")));
                }
                Ok(PathBuf::from(p))
            })
            .transpose()?,
        exe_sha256: sha
            .as_ref()
            .map(|h| {
                parse_sha256(h.get_ref()).ok_or_else(|| {
                    l.err(
                        h.span().start,
                        "exe_sha256: must be 64 lowercase hex digits",
                    )
                })
            })
            .transpose()?,
    };
    if s == Selector::default() {
        return Err(l.err(
            at,
            "a selector needs at least one of uid, gid, exe, exe_sha256 (an empty one would match every process)",
        ));
    }
    Ok(s)
}

fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn group_id(l: &Lines<'_>, v: &Spanned<toml::Value>) -> Result<u32, PolicyError> {
    match v.get_ref() {
        toml::Value::Integer(n) => u32::try_from(*n)
            .map_err(|_| l.err(v.span().start, format!("socket_group: {n} is not a gid"))),
        toml::Value::String(name) => {
            let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
            groups
                .lines()
                .find_map(|line| {
                    let mut f = line.split(':');
                    (f.next() == Some(name.as_str()))
                        .then(|| f.nth(1).and_then(|g| g.parse().ok()))
                        .flatten()
                })
                .ok_or_else(|| {
                    l.err(
                        v.span().start,
                        format!("socket_group: no group {name:?} in /etc/group"),
                    )
                })
        }
        _ => Err(l.err(v.span().start, "socket_group: a group name or number")),
    }
}

fn audiences(l: &Lines<'_>, at: usize, a: &[String]) -> Result<(), PolicyError> {
    if a.is_empty() {
        return Err(l.err(at, "audiences: at least one audience"));
    }
    for x in a {
        if x.is_empty() || x.len() > 256 || x.chars().any(char::is_control) {
            return Err(l.err(at, format!("audiences: {x:?} is not a valid audience")));
        }
    }
    Ok(())
}

impl Policy {
    /// Reads and validates the policy at `path`.
    pub fn load(path: &Path, ids: SelfIds) -> Result<Policy, PolicyError> {
        let with_file = |mut e: PolicyError| {
            e.file = Some(path.to_owned());
            e
        };
        let text = read_bounded(path).map_err(|m| {
            with_file(PolicyError {
                file: None,
                line: 0,
                message: m,
            })
        })?;
        Policy::parse(&text, ids).map_err(with_file)
    }

    /// Parses and validates policy text.
    pub fn parse(text: &str, ids: SelfIds) -> Result<Policy, PolicyError> {
        let l = Lines { text };
        let raw: RawPolicy = toml::from_str(text).map_err(|e| {
            l.err(
                e.span().map(|s| s.start).unwrap_or(0),
                e.message().trim_end().to_owned(),
            )
        })?;
        let mut p = Policy {
            issuer: None,
            default_ttl: Duration::from_secs(900),
            socket_mode: 0o660,
            socket_group: None,
            rate: RateLimit {
                requests: 60,
                per: Duration::from_secs(60),
            },
            consent: None,
            status_list_ttl: Duration::from_secs(3600),
            admins: Vec::new(),
            gatekeepers: Vec::new(),
            rules: Vec::new(),
        };
        let mut consent_timeout = Duration::from_secs(60);
        let mut consent_argv = None;
        if let Some(b) = &raw.broker {
            let at = b.span().start;
            let b = b.get_ref();
            if let Some(iss) = &b.issuer {
                if iss.is_empty() || iss.len() > 256 || iss.chars().any(char::is_control) {
                    return Err(l.err(at, "broker.issuer: 1..=256 printable bytes"));
                }
                p.issuer = Some(iss.clone());
            }
            if let Some(d) = &b.default_ttl {
                p.default_ttl = dur(&l, "broker.default_ttl", d)?;
            }
            if let Some(m) = &b.socket_mode {
                let digits = m.get_ref();
                p.socket_mode = (matches!(digits.len(), 3 | 4))
                    .then(|| u32::from_str_radix(digits, 8).ok())
                    .flatten()
                    .filter(|m| *m <= 0o777)
                    .ok_or_else(|| {
                        l.err(
                            m.span().start,
                            "broker.socket_mode: an octal mode such as \"0660\"",
                        )
                    })?;
                if p.socket_mode & 0o600 != 0o600 {
                    return Err(l.err(
                        m.span().start,
                        "broker.socket_mode: the owner needs read and write (0600 at least)",
                    ));
                }
            }
            if let Some(g) = &b.socket_group {
                p.socket_group = Some(group_id(&l, g)?);
            }
            if let Some(r) = &b.rate_limit {
                let per = parse_duration("broker.rate_limit.per", &r.get_ref().per)
                    .map_err(|e| l.err(r.span().start, e.detail()))?;
                if r.get_ref().requests == 0 {
                    return Err(l.err(r.span().start, "broker.rate_limit.requests: at least 1"));
                }
                p.rate = RateLimit {
                    requests: r.get_ref().requests,
                    per,
                };
            }
            if let Some(c) = &b.consent_command {
                let argv = c.get_ref();
                if argv.first().is_none_or(|a| !a.starts_with('/')) {
                    return Err(l.err(
                        c.span().start,
                        "broker.consent_command: [\"/absolute/program\", args…]",
                    ));
                }
                consent_argv = Some(argv.clone());
            }
            if let Some(t) = &b.consent_timeout {
                consent_timeout = dur(&l, "broker.consent_timeout", t)?;
            }
            if let Some(t) = &b.status_list_ttl {
                p.status_list_ttl = dur(&l, "broker.status_list_ttl", t)?;
                if p.status_list_ttl < Duration::from_secs(60) {
                    return Err(l.err(t.span().start, "broker.status_list_ttl: at least 60s"));
                }
            }
        }
        p.consent = consent_argv.map(|argv| ConsentCommand {
            argv,
            timeout: consent_timeout,
        });
        for a in &raw.admin {
            let r = a.get_ref();
            p.admins.push(selector(
                &l,
                a.span().start,
                ids,
                &r.uid,
                &r.gid,
                &r.exe,
                &r.exe_sha256,
            )?);
        }
        for g in &raw.gatekeeper {
            let r = g.get_ref();
            audiences(&l, g.span().start, &r.audiences)?;
            p.gatekeepers.push(Gatekeeper {
                selector: selector(
                    &l,
                    g.span().start,
                    ids,
                    &r.uid,
                    &r.gid,
                    &r.exe,
                    &r.exe_sha256,
                )?,
                audiences: r.audiences.clone(),
            });
        }
        for r in &raw.rule {
            let at = r.span().start;
            let raw_rule = r.get_ref();
            let name = &raw_rule.name;
            let rule_err = |e: PolicyError| PolicyError {
                message: format!("rule {name:?}: {}", e.message),
                ..e
            };
            if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
                return Err(l.err(at, "rule name: 1..=256 printable bytes"));
            }
            if p.rules.iter().any(|x| x.name == *name) {
                return Err(l.err(at, format!("rule {name:?}: a second rule of that name")));
            }
            let selector = selector(
                &l,
                at,
                ids,
                &raw_rule.uid,
                &raw_rule.gid,
                &raw_rule.exe,
                &raw_rule.exe_sha256,
            )
            .map_err(rule_err)?;
            audiences(
                &l,
                raw_rule.audiences.span().start,
                raw_rule.audiences.get_ref(),
            )
            .map_err(rule_err)?;
            let max_ttl = dur(&l, "max_ttl", &raw_rule.max_ttl).map_err(rule_err)?;
            let grant = grant_of(&raw_rule.grant)
                .map_err(|m| rule_err(l.err(raw_rule.grant.span().start, format!("grant: {m}"))))?;
            if raw_rule.consent == Consent::Always && p.consent.is_none() {
                return Err(rule_err(
                    l.err(at, "consent = \"always\" needs broker.consent_command"),
                ));
            }
            p.rules.push(Rule {
                name: name.clone(),
                line: l.line_of(at),
                selector,
                audiences: raw_rule.audiences.get_ref().clone(),
                max_ttl,
                consent: raw_rule.consent,
                excess: raw_rule.excess,
                grant,
            });
        }
        Ok(p)
    }

    /// The first rule that matches `peer`.
    pub fn rule_for(&self, peer: &Peer) -> Option<&Rule> {
        self.rules.iter().find(|r| r.selector.matches(peer))
    }

    /// Whether `peer` may revoke and rotate keys.
    pub fn is_admin(&self, peer: &Peer) -> bool {
        self.admins.iter().any(|s| s.matches(peer))
    }

    /// Whether `peer` may charge jobs to tokens for `aud`.
    pub fn may_consume(&self, peer: &Peer, aud: &str) -> bool {
        self.gatekeepers
            .iter()
            .any(|g| g.selector.matches(peer) && g.audiences.iter().any(|a| a == aud))
    }
}

fn read_bounded(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut s = String::new();
    f.take(MAX_POLICY_LEN as u64 + 1)
        .read_to_string(&mut s)
        .map_err(|e| format!("cannot read: {e}"))?;
    if s.len() > MAX_POLICY_LEN {
        return Err(format!("larger than {MAX_POLICY_LEN} bytes"));
    }
    Ok(s)
}

/// A grant table, written like a manifest's `capabilities`, validated by the manifest parser.
fn grant_of(t: &Spanned<toml::Table>) -> Result<Capabilities, String> {
    let caps = serde_json::to_value(t.get_ref()).map_err(|e| e.to_string())?;
    let doc = serde_json::json!({"agent": "policy", "capabilities": caps});
    Manifest::from_json(&doc.to_string())
        .map(|m| m.capabilities)
        .map_err(|e| e.detail())
}

/// What the policy grants for one request.
#[derive(Clone, Debug)]
pub struct Grant {
    /// The rule that decided.
    pub rule: String,
    /// The capabilities to put in the token.
    pub capabilities: Capabilities,
    /// Its lifetime.
    pub ttl: Duration,
    /// Whether to ask first.
    pub consent: Consent,
    /// How the request was narrowed (empty: as asked).
    pub narrowed: Vec<String>,
}

impl Policy {
    /// Decides a request by `peer` for `manifest`, addressed to `aud`, with lifetime `ttl`
    /// (already defaulted from the manifest or the policy): a grant no wider than the request
    /// and no wider than the rule, or the reason for refusing.
    pub fn decide(
        &self,
        peer: &Peer,
        manifest: &Manifest,
        aud: &str,
        ttl: Duration,
    ) -> Result<Grant, String> {
        let rule = self.rule_for(peer).ok_or_else(|| {
            format!(
                "no policy rule matches this process (uid {}, gid {}, {})",
                peer.uid,
                peer.gid,
                peer.exe.display()
            )
        })?;
        if !rule.audiences.iter().any(|a| a == aud) {
            return Err(format!(
                "rule {:?} does not allow audience {aud:?}",
                rule.name
            ));
        }
        let mut narrowed = Vec::new();
        let ttl = if ttl > rule.max_ttl {
            narrowed.push(format!(
                "ttl: {}s shortened to the rule's max_ttl {}s",
                ttl.as_secs(),
                rule.max_ttl.as_secs()
            ));
            rule.max_ttl
        } else {
            ttl
        };
        let requested = &manifest.capabilities;
        let capabilities = match rule.excess {
            Excess::Refuse => {
                check_subset(requested, &rule.grant)
                    .map_err(|e| format!("rule {:?} does not allow {e}", rule.name))?;
                requested.clone()
            }
            Excess::Narrow => {
                let (c, changes) = intersect(requested, &rule.grant);
                narrowed.extend(changes);
                c
            }
        };
        // Whatever the mode, the grant is within both the request and the rule.
        check_subset(&capabilities, &rule.grant)
            .and_then(|()| check_subset(&capabilities, requested))
            .map_err(|e| format!("internal: narrowing produced a wider grant ({e})"))?;
        capabilities
            .validate()
            .map_err(|e| format!("internal: narrowing produced an invalid grant ({e})"))?;
        Ok(Grant {
            rule: rule.name.clone(),
            capabilities,
            ttl,
            consent: rule.consent,
            narrowed,
        })
    }
}

fn mode_and(a: FileMode, b: FileMode) -> Option<FileMode> {
    match (a.can_read() && b.can_read(), a.can_write() && b.can_write()) {
        (true, true) => Some(FileMode::ReadWrite),
        (true, false) => Some(FileMode::Read),
        (false, true) => Some(FileMode::Write),
        (false, false) => None,
    }
}

fn rank(m: FileMode) -> u8 {
    match m {
        FileMode::ReadWrite => 2,
        _ => 1,
    }
}

/// The largest part of `req` that lies within `ceiling`, and what was cut.
pub fn intersect(req: &Capabilities, ceiling: &Capabilities) -> (Capabilities, Vec<String>) {
    let mut out = Capabilities::default();
    let mut changes = Vec::new();
    for g in &req.file_access {
        // At or below a ceiling grant: keep the path, with the best mode one grant allows.
        let best = ceiling
            .file_access
            .iter()
            .filter(|p| is_within(&g.path, &p.path))
            .filter_map(|p| mode_and(g.mode, p.mode))
            .max_by_key(|m| rank(*m));
        match best {
            Some(m) => {
                if m != g.mode {
                    changes.push(format!(
                        "fileAccess {}: {} narrowed to {}",
                        g.path,
                        g.mode.name(),
                        m.name()
                    ));
                }
                push_file(&mut out.file_access, &g.path, m);
            }
            None => {
                // Above ceiling grants: grant those of them that lie under the request.
                let below: Vec<&FileGrant> = ceiling
                    .file_access
                    .iter()
                    .filter(|p| is_within(&p.path, &g.path))
                    .collect();
                let mut any = false;
                for p in below {
                    if let Some(m) = mode_and(g.mode, p.mode) {
                        push_file(&mut out.file_access, &p.path, m);
                        changes.push(format!(
                            "fileAccess {}: narrowed to {} ({})",
                            g.path,
                            p.path,
                            m.name()
                        ));
                        any = true;
                    }
                }
                if !any {
                    changes.push(format!("fileAccess {}: not allowed, left out", g.path));
                }
            }
        }
    }
    for n in &req.network {
        if ceiling.network.contains(n) {
            out.network.push(n.clone());
        } else {
            changes.push(format!(
                "network {}:{}: not allowed, left out",
                n.host, n.port
            ));
        }
    }
    if req.clipboard {
        if ceiling.clipboard {
            out.clipboard = true;
        } else {
            changes.push("clipboard: not allowed, left out".into());
        }
    }
    if let Some(rs) = &req.shell {
        match &ceiling.shell {
            None => changes.push("shell: not allowed, left out".into()),
            Some(cs) => {
                let cmds: Vec<String> = rs
                    .allowed_commands
                    .iter()
                    .filter(|c| cs.allowed_commands.contains(c))
                    .cloned()
                    .collect();
                for c in rs.allowed_commands.iter().filter(|c| !cmds.contains(c)) {
                    changes.push(format!("shell.allowedCommands {c}: not allowed, left out"));
                }
                let interactive = rs.interactive && cs.interactive;
                if rs.interactive && !interactive {
                    changes.push("shell.interactive: not allowed".into());
                }
                out.shell = Some(ShellGrant {
                    allowed_commands: cmds,
                    interactive,
                });
            }
        }
    }
    if let Some(rq) = &req.quantum {
        match &ceiling.quantum {
            None => changes.push("quantum: not allowed, left out".into()),
            Some(cq) => {
                let keep = |r: &[String], c: &[String], what: &str, ch: &mut Vec<String>| {
                    let k: Vec<String> = r.iter().filter(|x| c.contains(x)).cloned().collect();
                    for x in r.iter().filter(|x| !k.contains(x)) {
                        ch.push(format!("quantum.{what} {x}: not allowed, left out"));
                    }
                    k
                };
                let backends = keep(&rq.backends, &cq.backends, "backends", &mut changes);
                let algorithms = keep(&rq.algorithms, &cq.algorithms, "algorithms", &mut changes);
                let mut min = |name: &str, r: u64, c: u64| {
                    if r > c {
                        changes.push(format!("quantum.{name}: {r} lowered to {c}"));
                    }
                    r.min(c)
                };
                let q = QuantumGrant {
                    max_qubits: min("maxQubits", rq.max_qubits, cq.max_qubits),
                    max_shots: min("maxShots", rq.max_shots, cq.max_shots),
                    max_jobs: JobCeiling::new(min("maxJobs", rq.max_jobs.get(), cq.max_jobs.get())),
                    max_runtime_secs: min("maxRuntime", rq.max_runtime_secs, cq.max_runtime_secs),
                    backends,
                    algorithms,
                };
                out.quantum = Some(q);
            }
        }
    }
    (out, changes)
}

fn push_file(v: &mut Vec<FileGrant>, path: &str, mode: FileMode) {
    // One grant per path (a manifest may not repeat one); the first kept wins.
    if !v.iter().any(|g| g.path == path) {
        v.push(FileGrant {
            path: path.to_owned(),
            mode,
        });
    }
}

/// A plain-language summary of a request, for the consent dialog: "cowork (pid 4242, uid
/// 1000) wants read-only access to /home/u/Contracts … for 30 minutes (for files.local)".
pub fn summary(peer: &Peer, agent: &str, caps: &Capabilities, ttl: Duration, aud: &str) -> String {
    let who = peer
        .exe
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| peer.exe.display().to_string());
    let mut parts = Vec::new();
    for g in &caps.file_access {
        let how = match g.mode {
            FileMode::Read => "read-only access to",
            FileMode::Write => "write-only access to",
            FileMode::ReadWrite => "read and write access to",
        };
        parts.push(format!("{how} {}", g.path));
    }
    for n in &caps.network {
        parts.push(format!("network access to {}:{}", n.host, n.port));
    }
    if caps.clipboard {
        parts.push("the clipboard".into());
    }
    if let Some(s) = &caps.shell {
        let mut t = if s.allowed_commands.is_empty() {
            "a shell".to_string()
        } else {
            format!("to run {}", s.allowed_commands.join(", "))
        };
        if s.interactive {
            t.push_str(" (interactive)");
        }
        parts.push(t);
    }
    if let Some(q) = &caps.quantum {
        parts.push(format!(
            "up to {} quantum job(s) on {}",
            q.max_jobs.get(),
            q.backends.join(", ")
        ));
    }
    let what = if parts.is_empty() {
        "a token with no capabilities".to_string()
    } else {
        parts.join(", ")
    };
    format!(
        "{who} (pid {}, uid {}, agent {agent}) wants {what} for {} (for {aud})",
        peer.pid,
        peer.uid,
        humantime::format_duration(ttl)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDS: SelfIds = SelfIds {
        uid: 1000,
        gid: 1000,
    };

    fn err(text: &str) -> PolicyError {
        Policy::parse(text, IDS).unwrap_err()
    }

    #[test]
    fn errors_name_the_line() {
        let e = err("[broker]\ndefault_ttl = \"15m\"\nsocket_mode = \"999\"\n");
        assert_eq!(e.line, 3, "{e}");
        let e = err(
            "\n\n[[rule]]\nname = \"a\"\nuid = 1\naudiences = [\"x\"]\nmax_ttl = \"1h\"\n[rule.grant]\nfileAccess = [{path = \"rel\", mode = \"read\"}]\n",
        );
        assert_eq!(e.line, 8, "{e}");
        assert!(e.message.contains("not an absolute path"), "{e}");
        let e = err("[[rule]]\nname = \"a\"\nbogus = 1\n");
        assert_eq!(e.line, 3, "{e}");
        let e = err("[[rule]]\nname = \"a\"\naudiences = [\"x\"]\nmax_ttl = \"1h\"\ngrant = {}\n");
        assert!(e.message.contains("at least one of uid"), "{e}");
        let e = err("[[admin]]\nuid = \"root\"\n");
        assert_eq!(e.line, 2, "{e}");
        let e = err(
            "[[rule]]\nname = \"a\"\nuid = 1\naudiences = [\"x\"]\nmax_ttl = \"1h\"\nconsent = \"always\"\ngrant = {}\n",
        );
        assert!(e.message.contains("consent_command"), "{e}");
    }

    fn peer(uid: u32) -> Peer {
        Peer {
            pid: 42,
            uid,
            gid: uid,
            exe: "/usr/bin/cowork".into(),
            exe_sha256: [7; 32],
        }
    }

    const RULES: &str = r#"
[[rule]]
name = "strict"
uid = 1000
exe = "/usr/bin/cowork"
audiences = ["files.local"]
max_ttl = "30m"
[rule.grant]
fileAccess = [{ path = "/home/u/Docs", mode = "read" }]

[[rule]]
name = "lenient"
uid = 1001
audiences = ["files.local"]
max_ttl = "30m"
excess = "narrow"
[rule.grant]
fileAccess = [{ path = "/home/u/Docs", mode = "read" }]
"#;

    #[test]
    fn decisions_refuse_or_narrow_and_never_widen() {
        let p = Policy::parse(RULES, IDS).unwrap();
        let wide = Manifest::from_json(
            r#"{"agent": "a", "capabilities": {"fileAccess": [{"path": "/home/u", "mode": "readwrite"}], "clipboard": true}}"#,
        )
        .unwrap();
        let hour = Duration::from_secs(3600);
        let e = p
            .decide(&peer(1000), &wide, "files.local", hour)
            .unwrap_err();
        assert!(
            e.contains("\"strict\"") && e.contains("fileAccess[0]"),
            "{e}"
        );
        let g = p.decide(&peer(1001), &wide, "files.local", hour).unwrap();
        assert_eq!(g.rule, "lenient");
        assert_eq!(g.ttl, Duration::from_secs(1800));
        assert_eq!(
            g.capabilities.file_access,
            vec![FileGrant {
                path: "/home/u/Docs".into(),
                mode: FileMode::Read
            }]
        );
        assert!(!g.capabilities.clipboard);
        assert!(
            g.narrowed.iter().any(|n| n.starts_with("ttl")),
            "{:?}",
            g.narrowed
        );
        assert!(
            g.narrowed.iter().any(|n| n.contains("clipboard")),
            "{:?}",
            g.narrowed
        );
        // No rule, wrong audience, another executable.
        assert!(
            p.decide(&peer(7), &wide, "files.local", hour)
                .unwrap_err()
                .contains("no policy rule")
        );
        assert!(
            p.decide(&peer(1001), &wide, "x.local", hour)
                .unwrap_err()
                .contains("audience")
        );
        let mut other = peer(1000);
        other.exe = "/tmp/cowork".into();
        assert!(p.decide(&other, &wide, "files.local", hour).is_err());
    }

    #[test]
    fn summaries_are_plain_language() {
        let m = Manifest::from_json(pqwrap_core::token::manifest::DESIGN_EXAMPLE).unwrap();
        let s = summary(
            &peer(1000),
            &m.agent,
            &m.capabilities,
            Duration::from_secs(1800),
            "files.local",
        );
        assert_eq!(
            s,
            "cowork (pid 42, uid 1000, agent cowork-session-1234) wants read-only access to \
             /home/user/Documents/Contracts, network access to internal-api.company.local:443, \
             to run /usr/bin/less, up to 5 quantum job(s) on qpu-sim-1 for 30m (for files.local)"
        );
    }

    #[test]
    fn self_resolves_to_the_broker() {
        let p = Policy::parse(
            "[[rule]]\nname = \"me\"\nuid = \"self\"\naudiences = [\"files.local\"]\nmax_ttl = \"1h\"\n[rule.grant]\nclipboard = true\n",
            IDS,
        )
        .unwrap();
        assert_eq!(p.rules[0].selector.uid, Some(1000));
        assert!(p.rules[0].grant.clipboard);
        assert_eq!(p.rules[0].line, 1);
    }
}
