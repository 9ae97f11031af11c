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
//! `audience`, `requested`, `granted`, `rule`, `decision`…) under `unmapped`. The common
//! fields and the `process` object are [`pqwrap_core::ocsf`]'s, shared with `pqwrap exec`.

use pqwrap_core::ocsf::{self, Class, Header, ProcessInfo, Product, Severity};
use serde_json::{Value, json};

use crate::peer::Peer;

pub use pqwrap_core::ocsf::{Outcome, VERSION as OCSF_VERSION, privileges};

/// How the broker's events name their product.
const PRODUCT: Product = Product {
    name: "pqwrap broker",
    log_name: "pqwrap-broker",
};

/// What the broker decided, as an OCSF class and activity.
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
    fn ocsf(self) -> ocsf::Activity {
        match self {
            Activity::Grant => ocsf::Activity::AssignPrivileges,
            Activity::Consent => ocsf::Activity::Other(Class::AuthorizeSession, "Consent"),
            Activity::Revoke => ocsf::Activity::ApiDelete,
            Activity::Consume => ocsf::Activity::ApiUpdate,
            Activity::RotateKey => ocsf::Activity::ApiCreate,
            Activity::TrustSet => ocsf::Activity::ApiRead,
            Activity::Other => ocsf::Activity::Other(Class::ApiActivity, "Other"),
        }
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

fn actor(peer: Option<&Peer>) -> Value {
    match peer {
        Some(p) => {
            let path = p.exe.to_string_lossy();
            let sha = p.exe_sha256_hex();
            json!({
                "process": ocsf::process(&ProcessInfo {
                    pid: u32::try_from(p.pid).ok(),
                    path: &path,
                    sha256: Some(&sha),
                    uid: Some(p.uid),
                    cmd_line: None,
                }),
                "user": {"uid": p.uid.to_string()},
            })
        }
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
    let class = activity.ocsf().class();
    let mut m = ocsf::event(
        &PRODUCT,
        &Header {
            activity: activity.ocsf(),
            outcome,
            severity: Severity::of(outcome),
            detail,
            message,
        },
    );
    m.insert("actor".into(), actor(peer));
    m.insert("unmapped".into(), unmapped);
    if class == Class::AuthorizeSession {
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
    Value::Object(m)
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
