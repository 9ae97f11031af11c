//! Audit records (for the hash-chained log) and OCSF 1.x events (for the SIEM stream).
//!
//! Every decision yields one of each, written in the same batch as its journal records. The
//! OCSF classes used:
//!
//! * **Authorize Session** (`class_uid` 3003, category 3 Identity & Access Management) for
//!   token requests: `activity_id` 1 *Assign Privileges* when granted or refused, 99 *Other*
//!   (`activity_name` "Consent") for a consent answer. `user.uid` is the peer's uid,
//!   `session.uid` the agent session, `privileges` the granted capabilities.
//! * **API Activity** (`class_uid` 6003, category 6 Application Activity) for everything
//!   else: `activity_id` 4 *Delete* (revoke), 3 *Update* (consume), 1 *Create* (rotate-key),
//!   2 *Read* (trust-set), 99 *Other* (a malformed or rate-limited request);
//!   `api.operation` names the request.
//!
//! Both carry `actor.process` (pid, executable path and SHA-256 in `file.hashes`, the uid in
//! `user`), `status_id` 1 *Success* / 2 *Failure* with `status_detail` the reason,
//! `time` in milliseconds, `metadata.version` "1.3.0", and pqwrap's own fields (`token_id`,
//! `audience`, `requested`, `granted`, `rule`, `decision`…) under `unmapped`.

use serde_json::{Value, json};

use crate::peer::Peer;

/// OCSF schema version the events follow.
pub const OCSF_VERSION: &str = "1.3.0";

/// Whether the broker said yes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Granted, done.
    Success,
    /// Refused or failed.
    Failure,
}

impl Outcome {
    fn id(self) -> u8 {
        match self {
            Outcome::Success => 1,
            Outcome::Failure => 2,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Outcome::Success => "Success",
            Outcome::Failure => "Failure",
        }
    }
}

/// An OCSF class and activity.
#[derive(Clone, Copy, Debug)]
pub enum Activity {
    /// Authorize Session / Assign Privileges.
    Grant,
    /// Authorize Session / Other ("Consent").
    Consent,
    /// API Activity / Delete.
    Revoke,
    /// API Activity / Update.
    Consume,
    /// API Activity / Create.
    RotateKey,
    /// API Activity / Read.
    TrustSet,
    /// API Activity / Other.
    Other,
}

impl Activity {
    fn ids(self) -> (u32, &'static str, u32, &'static str, u32, &'static str) {
        const AUTH: (u32, &str, u32, &str) =
            (3003, "Authorize Session", 3, "Identity & Access Management");
        const API: (u32, &str, u32, &str) = (6003, "API Activity", 6, "Application Activity");
        let ((c, cn, cat, catn), a, an) = match self {
            Activity::Grant => (AUTH, 1, "Assign Privileges"),
            Activity::Consent => (AUTH, 99, "Consent"),
            Activity::Revoke => (API, 4, "Delete"),
            Activity::Consume => (API, 3, "Update"),
            Activity::RotateKey => (API, 1, "Create"),
            Activity::TrustSet => (API, 2, "Read"),
            Activity::Other => (API, 99, "Other"),
        };
        (c, cn, cat, catn, a, an)
    }

    fn operation(self) -> &'static str {
        match self {
            Activity::Grant => "issue",
            Activity::Consent => "consent",
            Activity::Revoke => "revoke",
            Activity::Consume => "consume",
            Activity::RotateKey => "rotate_key",
            Activity::TrustSet => "trust_set",
            Activity::Other => "request",
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn actor(peer: Option<&Peer>) -> Value {
    match peer {
        Some(p) => json!({
            "process": {
                "pid": p.pid,
                "file": {
                    "path": p.exe.to_string_lossy(),
                    "name": p.exe.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                    "type_id": 1,
                    "type": "Regular File",
                    "hashes": [{"algorithm_id": 3, "algorithm": "SHA-256", "value": p.exe_sha256_hex()}],
                },
                "user": {"uid": p.uid.to_string()},
            },
            "user": {"uid": p.uid.to_string()},
        }),
        None => json!({"process": {}}),
    }
}

/// One OCSF event.
pub fn ocsf(
    activity: Activity,
    outcome: Outcome,
    peer: Option<&Peer>,
    detail: &str,
    message: &str,
    unmapped: Value,
) -> Value {
    let (class_uid, class_name, category_uid, category_name, activity_id, activity_name) =
        activity.ids();
    let mut e = json!({
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "category_name": category_name,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": format!("{class_name}: {activity_name}"),
        "time": now_ms(),
        "severity_id": if outcome == Outcome::Success { 1 } else { 3 },
        "severity": if outcome == Outcome::Success { "Informational" } else { "Medium" },
        "status_id": outcome.id(),
        "status": outcome.name(),
        "status_detail": detail,
        "message": message,
        "metadata": {
            "version": OCSF_VERSION,
            "product": {"name": "pqwrap broker", "vendor_name": "pqwrap", "version": env!("CARGO_PKG_VERSION")},
            "log_name": "pqwrap-broker",
        },
        "actor": actor(peer),
        "unmapped": unmapped,
    });
    if let Some(m) = e.as_object_mut() {
        if class_uid == 3003 {
            m.insert(
                "user".into(),
                json!({"uid": peer.map(|p| p.uid.to_string()).unwrap_or_default()}),
            );
        } else {
            m.insert(
                "api".into(),
                json!({"operation": activity.operation(), "service": {"name": "pqwrap-broker"}}),
            );
            m.insert("src_endpoint".into(), json!({"name": "unix-socket"}));
        }
    }
    e
}

/// The granted capabilities as OCSF privilege strings (`file:read:/path`, `net:host:443`…).
pub fn privileges(caps: &pqwrap_core::token::Capabilities) -> Vec<String> {
    let mut p = Vec::new();
    for g in &caps.file_access {
        p.push(format!("file:{}:{}", g.mode.name(), g.path));
    }
    for n in &caps.network {
        p.push(format!("net:{}:{}", n.host, n.port));
    }
    if caps.clipboard {
        p.push("clipboard".into());
    }
    if let Some(s) = &caps.shell {
        for c in &s.allowed_commands {
            p.push(format!("exec:{c}"));
        }
        if s.interactive {
            p.push("shell:interactive".into());
        }
    }
    if let Some(q) = &caps.quantum {
        for b in &q.backends {
            p.push(format!("quantum:{b}"));
        }
    }
    p
}

/// An audit record: `event`, the peer, and the fields given.
pub fn audit(event: &str, peer: Option<&Peer>, fields: Value) -> Value {
    let mut v = json!({"event": event});
    if let (Some(m), Some(p)) = (v.as_object_mut(), peer) {
        m.insert("peer".into(), p.to_json());
    }
    if let (Some(m), Value::Object(f)) = (v.as_object_mut(), fields) {
        for (k, x) in f {
            m.insert(k, x);
        }
    }
    v
}
