//! What a run records. Each step — a refusal or the launch, every proxy decision, the
//! expiry, revocation or signal that ended the run, and the exit — is one record of the
//! hash-chained audit log and, when an OCSF stream is given, one OCSF 1.x event built with
//! [`pqwrap_core::ocsf`] (the broker's envelope). Both come from the same [`Event`].
//!
//! OCSF classes: **Process Activity** (1007) *Launch* for the launch (status Failure for a
//! refusal) and *Terminate* for the end of the run and for the exit; **HTTP Activity**
//! (4002) for the proxy's decisions, its activity the request's method (1 Connect, 3 Get…).
//! docs/SANDBOX.md §6a lists the fields.

use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};

use pqwrap_core::audit::AuditLog;
use pqwrap_core::ocsf::{
    self, Activity, Header, HttpMethod, OcsfLog, ProcessInfo, Product, Severity,
};
use pqwrap_core::token::Claims;
use pqwrap_core::token::keys::hex_lower;
use serde_json::{Map, Value, json};

use crate::proxy::{Decision, Method};
use crate::{Outcome, Say};

const PRODUCT: Product = Product {
    name: "pqwrap exec",
    log_name: "pqwrap-exec",
};

/// What ended a run before the command exited by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    Expired,
    Revoked,
    Interrupted,
}

impl Cause {
    fn event(self) -> &'static str {
        match self {
            Cause::Expired => "exec.expired",
            Cause::Revoked => "exec.revoked",
            Cause::Interrupted => "exec.interrupted",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Cause::Expired => "expired",
            Cause::Revoked => "revoked",
            Cause::Interrupted => "interrupted",
        }
    }
}

/// The facts of a launch.
pub(crate) struct Launch<'a> {
    pub claims: &'a Claims,
    pub command: &'a str,
    pub args: Vec<String>,
    pub pid: u32,
    pub landlock: String,
    pub enforcement: &'static str,
    pub not_enforced: &'a [String],
    pub proxy: String,
    pub terminal: &'static str,
}

/// One step of a run.
pub(crate) enum Event<'a> {
    /// Nothing was started.
    Refused { command: &'a str, reason: &'a str },
    /// The command runs.
    Launch(Launch<'a>),
    /// The egress proxy decided.
    Proxy(&'a Decision),
    /// pqwrap ended the tree.
    Ended {
        cause: Cause,
        reason: &'a str,
        signalled: usize,
        survivors: usize,
    },
    /// The run is over.
    Exit {
        outcome: &'a Outcome,
        left_behind: usize,
    },
}

impl Event<'_> {
    fn name(&self) -> &'static str {
        match self {
            Event::Refused { .. } => "exec.refused",
            Event::Launch(_) => "exec.launch",
            Event::Proxy(_) => "exec.proxy",
            Event::Ended { cause, .. } => cause.event(),
            Event::Exit { .. } => "exec.exit",
        }
    }

    /// The audit record (the journal adds the token's `cti`).
    fn audit(&self) -> Value {
        let fields = match self {
            Event::Refused { command, reason } => json!({"command": command, "reason": reason}),
            Event::Launch(l) => json!({
                "sub": l.claims.sub,
                "aud": l.claims.aud,
                "exp": l.claims.exp,
                "command": l.command,
                "args": l.args,
                "pid": l.pid,
                "landlock": l.landlock,
                "enforcement": l.enforcement,
                "not_enforced": l.not_enforced,
                "proxy": l.proxy,
                "terminal": l.terminal,
            }),
            Event::Proxy(d) => json!({
                "decision": if d.allowed { "allow" } else { "deny" },
                "method": d.method.name(),
                "host": d.host,
                "port": d.port,
                "reason": d.reason,
            }),
            Event::Ended {
                reason,
                signalled,
                survivors,
                ..
            } => json!({"reason": reason, "signalled": signalled, "survivors": survivors}),
            Event::Exit {
                outcome,
                left_behind,
            } => json!({
                "outcome": outcome.name(),
                "exit_code": outcome.exit_code(),
                "left_behind": left_behind,
            }),
        };
        let mut rec = Map::new();
        rec.insert("event".into(), self.name().into());
        if let Value::Object(f) = fields {
            rec.extend(f);
        }
        Value::Object(rec)
    }
}

/// The token a run is for, as its events name it.
struct Subject {
    cti: String,
    sub: String,
    aud: String,
}

impl Subject {
    fn of(c: &Claims) -> Subject {
        Subject {
            cti: hex_lower(&c.cti),
            sub: c.sub.clone(),
            aud: c.aud.clone(),
        }
    }
}

/// The launched command, once it runs.
struct Agent {
    pid: u32,
    command: String,
    cmd_line: String,
}

/// Where a run's messages and records go; shared with the proxy's threads.
pub(crate) struct Journal {
    audit: Mutex<Option<AuditLog>>,
    ocsf: Mutex<Option<OcsfLog>>,
    say: Say,
    subject: Option<Subject>,
    agent: OnceLock<Agent>,
    /// pqwrap itself, the `actor` of its events.
    me: Value,
    uid: u32,
}

impl Journal {
    /// A journal for a run whose token is not verified yet.
    pub(crate) fn new(audit: Option<AuditLog>, ocsf: Option<OcsfLog>, say: Say) -> Journal {
        let uid = rustix::process::geteuid().as_raw();
        let exe = std::env::current_exe()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let me = ocsf::process(&ProcessInfo {
            pid: Some(std::process::id()),
            path: &exe,
            uid: Some(uid),
            ..ProcessInfo::default()
        });
        Journal {
            audit: Mutex::new(audit),
            ocsf: Mutex::new(ocsf),
            say,
            subject: None,
            agent: OnceLock::new(),
            me,
            uid,
        }
    }

    /// The same journal, its records now naming the admitted token.
    pub(crate) fn for_token(self, claims: &Claims) -> Journal {
        Journal {
            subject: Some(Subject::of(claims)),
            ..self
        }
    }

    pub(crate) fn say(&self, msg: &str) {
        (self.say)(msg)
    }

    /// Records `ev` in the audit log and the OCSF stream. A record that cannot be written is
    /// reported and the run goes on, as the audit log has always done.
    pub(crate) fn record(&self, ev: &Event<'_>) {
        if let Event::Launch(l) = ev {
            let mut cmd_line = l.command.to_owned();
            for a in &l.args {
                cmd_line.push(' ');
                cmd_line.push_str(a);
            }
            let _ = self.agent.set(Agent {
                pid: l.pid,
                command: l.command.to_owned(),
                cmd_line,
            });
        }
        let mut rec = ev.audit();
        if let (Some(s), Some(m)) = (&self.subject, rec.as_object_mut()) {
            m.insert("cti".into(), s.cti.clone().into());
        }
        {
            let mut guard = self.audit.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(log) = guard.as_mut()
                && let Err(e) = log.append(&rec)
            {
                self.say(&format!("audit log: cannot append a record: {e}"));
            }
        }
        let mut guard = self.ocsf.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(log) = guard.as_mut()
            && let Err(e) = log.append_all(&[self.ocsf(ev)])
        {
            self.say(&format!("OCSF stream: cannot append an event: {e}"));
        }
    }

    /// Prints and records a proxy decision.
    pub(crate) fn proxy(&self, d: &Decision) {
        let verdict = if d.allowed { "allowed" } else { "denied" };
        self.say(&format!(
            "proxy: {verdict} {} {}:{} ({})",
            d.method.name(),
            d.host,
            d.port,
            d.reason
        ));
        self.record(&Event::Proxy(d));
    }

    /// The launched command as an OCSF `process`.
    fn agent_process(&self) -> Value {
        match self.agent.get() {
            Some(a) => ocsf::process(&ProcessInfo {
                pid: Some(a.pid),
                path: &a.command,
                uid: Some(self.uid),
                cmd_line: Some(&a.cmd_line),
                ..ProcessInfo::default()
            }),
            None => json!({}),
        }
    }

    fn ocsf(&self, ev: &Event<'_>) -> Value {
        let mut unmapped = Map::new();
        unmapped.insert("event".into(), ev.name().into());
        if let Some(s) = &self.subject {
            unmapped.insert("token_id".into(), s.cti.clone().into());
            unmapped.insert("agent".into(), s.sub.clone().into());
            unmapped.insert("audience".into(), s.aud.clone().into());
        }
        let mut actor = json!({"process": self.me.clone(), "user": {"uid": self.uid.to_string()}});
        let mut extra = Map::new();
        let (header, detail, message);
        match ev {
            Event::Refused { command, reason } => {
                detail = reason.to_string();
                message = format!("{command} was not started");
                header = (Activity::Launch, ocsf::Outcome::Failure, None);
                extra.insert(
                    "process".into(),
                    ocsf::process(&ProcessInfo {
                        path: command,
                        ..ProcessInfo::default()
                    }),
                );
            }
            Event::Launch(l) => {
                detail = "admitted: the token verified and grants the command".into();
                message = format!("started {} under the token's sandbox", l.command);
                header = (Activity::Launch, ocsf::Outcome::Success, None);
                extra.insert("process".into(), self.agent_process());
                unmapped.insert("exp".into(), l.claims.exp.into());
                unmapped.insert(
                    "privileges".into(),
                    json!(ocsf::privileges(&l.claims.capabilities)),
                );
                unmapped.insert("landlock".into(), l.landlock.clone().into());
                unmapped.insert("enforcement".into(), l.enforcement.into());
                unmapped.insert("not_enforced".into(), json!(l.not_enforced));
                unmapped.insert("proxy".into(), l.proxy.clone().into());
                unmapped.insert("terminal".into(), l.terminal.into());
            }
            Event::Proxy(d) => {
                let verdict = if d.allowed { "allowed" } else { "denied" };
                detail = d.reason.clone();
                message = format!("{verdict} {} {}:{}", d.method.name(), d.host, d.port);
                let method = match d.method {
                    Method::Connect => HttpMethod::Connect,
                    Method::Forward => HttpMethod::from_verb(&d.verb),
                };
                let outcome = if d.allowed {
                    ocsf::Outcome::Success
                } else {
                    ocsf::Outcome::Failure
                };
                header = (Activity::Http(method), outcome, None);
                if !d.host.is_empty() {
                    let mut dst = Map::new();
                    match d.host.parse::<IpAddr>() {
                        Ok(ip) => dst.insert("ip".into(), ip.to_string().into()),
                        Err(_) => dst.insert("hostname".into(), d.host.clone().into()),
                    };
                    dst.insert("port".into(), d.port.into());
                    extra.insert("dst_endpoint".into(), Value::Object(dst));
                    let mut url = json!({"hostname": d.host, "port": d.port});
                    if d.method == Method::Forward
                        && let Some(u) = url.as_object_mut()
                    {
                        u.insert("scheme".into(), "http".into());
                    }
                    let mut req = Map::new();
                    if !d.verb.is_empty() {
                        req.insert("http_method".into(), d.verb.clone().into());
                    }
                    req.insert("url".into(), url);
                    extra.insert("http_request".into(), Value::Object(req));
                }
                if let Some(code) = d.code {
                    extra.insert("http_response".into(), json!({"code": code}));
                }
                if let Some(c) = d.client {
                    extra.insert(
                        "src_endpoint".into(),
                        json!({"ip": c.ip().to_string(), "port": c.port()}),
                    );
                }
                unmapped.insert(
                    "decision".into(),
                    if d.allowed { "allow" } else { "deny" }.into(),
                );
                unmapped.insert("method".into(), d.method.name().into());
            }
            Event::Ended {
                cause,
                reason,
                signalled,
                survivors,
            } => {
                detail = reason.to_string();
                message = format!("ended the agent's process tree: {}", cause.name());
                let (outcome, severity) = match (survivors, cause) {
                    (0, Cause::Revoked) => (ocsf::Outcome::Success, Severity::Medium),
                    (0, _) => (ocsf::Outcome::Success, Severity::Informational),
                    _ => (ocsf::Outcome::Failure, Severity::High),
                };
                header = (Activity::Terminate, outcome, Some(severity));
                extra.insert("process".into(), self.agent_process());
                unmapped.insert("cause".into(), cause.name().into());
                unmapped.insert("signalled".into(), (*signalled).into());
                unmapped.insert("survivors".into(), (*survivors).into());
                unmapped.insert(
                    "grace_ms".into(),
                    u64::try_from(crate::tree::GRACE.as_millis())
                        .unwrap_or(u64::MAX)
                        .into(),
                );
            }
            Event::Exit {
                outcome,
                left_behind,
            } => {
                let agent = self.agent_process();
                detail = match outcome {
                    Outcome::Exited(c) => format!("exited with status {c}"),
                    Outcome::Signaled(s) => format!("killed by signal {s}"),
                    other => format!("ended by pqwrap ({})", other.name()),
                };
                message = format!("the agent's run is over: {}", outcome.name());
                header = (Activity::Terminate, ocsf::Outcome::Success, None);
                if let Outcome::Exited(c) = outcome {
                    extra.insert("exit_code".into(), (*c).into());
                }
                // A command that ended by itself is the actor of its own termination.
                if matches!(outcome, Outcome::Exited(_) | Outcome::Signaled(_)) {
                    actor =
                        json!({"process": agent.clone(), "user": {"uid": self.uid.to_string()}});
                }
                extra.insert("process".into(), agent);
                unmapped.insert("outcome".into(), outcome.name().into());
                unmapped.insert("exit_status".into(), outcome.exit_code().into());
                unmapped.insert("left_behind".into(), (*left_behind).into());
                if let Outcome::Signaled(s) = outcome {
                    unmapped.insert("signal".into(), (*s).into());
                }
            }
        }
        let (activity, outcome, severity) = header;
        let mut e = ocsf::event(
            &PRODUCT,
            &Header {
                activity,
                outcome,
                severity: severity.unwrap_or(Severity::of(outcome)),
                detail: &detail,
                message: &message,
            },
        );
        e.insert("actor".into(), actor);
        e.extend(extra);
        e.insert("unmapped".into(), Value::Object(unmapped));
        Value::Object(e)
    }
}
