//! OCSF 1.x events (Open Cybersecurity Schema Framework), as the broker and `pqwrap exec`
//! write them for a SIEM: one JSON object per line.
//!
//! [`event`] builds the fields every class shares — `class_uid`/`class_name`,
//! `category_uid`/`category_name`, `activity_id`/`activity_name`, `type_uid` (class × 100 +
//! activity) and `type_name`, `time` in milliseconds, `severity_id`/`severity`,
//! `status_id`/`status` (1 Success, 2 Failure) with `status_detail` (the reason), `message`,
//! and `metadata` (`version` [`VERSION`], `product`, `log_name`). The caller adds the class's
//! own objects (`actor`, `process`, `http_request`, `session`…) and pqwrap's fields under
//! `unmapped`. [`process`] builds the OCSF `process` object, [`privileges`] the privilege
//! strings of a token's capabilities, and [`OcsfLog`] appends events to a file, synced.

use std::fs::File;
use std::io::Write;

use serde_json::{Map, Value, json};

use crate::token::Capabilities;

/// OCSF schema version the events follow.
pub const VERSION: &str = "1.3.0";

/// An OCSF event class (with its category).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Class {
    /// Process Activity (1007), category System Activity (1).
    ProcessActivity,
    /// HTTP Activity (4002), category Network Activity (4).
    HttpActivity,
    /// Authorize Session (3003), category Identity & Access Management (3).
    AuthorizeSession,
    /// API Activity (6003), category Application Activity (6).
    ApiActivity,
}

impl Class {
    /// `class_uid`.
    pub fn uid(self) -> u32 {
        match self {
            Class::ProcessActivity => 1007,
            Class::HttpActivity => 4002,
            Class::AuthorizeSession => 3003,
            Class::ApiActivity => 6003,
        }
    }

    /// `class_name`.
    pub fn name(self) -> &'static str {
        match self {
            Class::ProcessActivity => "Process Activity",
            Class::HttpActivity => "HTTP Activity",
            Class::AuthorizeSession => "Authorize Session",
            Class::ApiActivity => "API Activity",
        }
    }

    /// `category_uid` and `category_name`.
    pub fn category(self) -> (u32, &'static str) {
        match self {
            Class::ProcessActivity => (1, "System Activity"),
            Class::HttpActivity => (4, "Network Activity"),
            Class::AuthorizeSession => (3, "Identity & Access Management"),
            Class::ApiActivity => (6, "Application Activity"),
        }
    }
}

/// The method of an HTTP Activity event (its `activity_id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpMethod {
    /// 1: CONNECT (a tunnel).
    Connect,
    /// 2: DELETE.
    Delete,
    /// 3: GET.
    Get,
    /// 4: HEAD.
    Head,
    /// 5: OPTIONS.
    Options,
    /// 6: POST.
    Post,
    /// 7: PUT.
    Put,
    /// 8: TRACE.
    Trace,
    /// 9: PATCH.
    Patch,
    /// 99: any other method, or a request that could not be parsed.
    Other,
}

impl HttpMethod {
    /// From the request line's method token (case-sensitive, as HTTP methods are).
    pub fn from_verb(verb: &str) -> HttpMethod {
        match verb {
            "CONNECT" => HttpMethod::Connect,
            "DELETE" => HttpMethod::Delete,
            "GET" => HttpMethod::Get,
            "HEAD" => HttpMethod::Head,
            "OPTIONS" => HttpMethod::Options,
            "POST" => HttpMethod::Post,
            "PUT" => HttpMethod::Put,
            "TRACE" => HttpMethod::Trace,
            "PATCH" => HttpMethod::Patch,
            _ => HttpMethod::Other,
        }
    }

    fn id_name(self) -> (u32, &'static str) {
        match self {
            HttpMethod::Connect => (1, "Connect"),
            HttpMethod::Delete => (2, "Delete"),
            HttpMethod::Get => (3, "Get"),
            HttpMethod::Head => (4, "Head"),
            HttpMethod::Options => (5, "Options"),
            HttpMethod::Post => (6, "Post"),
            HttpMethod::Put => (7, "Put"),
            HttpMethod::Trace => (8, "Trace"),
            HttpMethod::Patch => (9, "Patch"),
            HttpMethod::Other => (99, "Other"),
        }
    }
}

/// What happened: an activity of one class, so a class and an activity that do not belong
/// together cannot be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Activity {
    /// Process Activity: Launch (1).
    Launch,
    /// Process Activity: Terminate (2).
    Terminate,
    /// HTTP Activity, by method.
    Http(HttpMethod),
    /// Authorize Session: Assign Privileges (1).
    AssignPrivileges,
    /// API Activity: Create (1).
    ApiCreate,
    /// API Activity: Read (2).
    ApiRead,
    /// API Activity: Update (3).
    ApiUpdate,
    /// API Activity: Delete (4).
    ApiDelete,
    /// Other (99) of a class, with the `activity_name` to show.
    Other(Class, &'static str),
}

impl Activity {
    /// The class it belongs to.
    pub fn class(self) -> Class {
        match self {
            Activity::Launch | Activity::Terminate => Class::ProcessActivity,
            Activity::Http(_) => Class::HttpActivity,
            Activity::AssignPrivileges => Class::AuthorizeSession,
            Activity::ApiCreate | Activity::ApiRead | Activity::ApiUpdate | Activity::ApiDelete => {
                Class::ApiActivity
            }
            Activity::Other(c, _) => c,
        }
    }

    /// `activity_id` and `activity_name`.
    pub fn id_name(self) -> (u32, &'static str) {
        match self {
            Activity::Launch => (1, "Launch"),
            Activity::Terminate => (2, "Terminate"),
            Activity::Http(m) => m.id_name(),
            Activity::AssignPrivileges => (1, "Assign Privileges"),
            Activity::ApiCreate => (1, "Create"),
            Activity::ApiRead => (2, "Read"),
            Activity::ApiUpdate => (3, "Update"),
            Activity::ApiDelete => (4, "Delete"),
            Activity::Other(_, name) => (99, name),
        }
    }
}

/// Whether the activity succeeded (`status_id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 1: Success (granted, done).
    Success,
    /// 2: Failure (refused, or failed).
    Failure,
}

impl Outcome {
    fn id_name(self) -> (u8, &'static str) {
        match self {
            Outcome::Success => (1, "Success"),
            Outcome::Failure => (2, "Failure"),
        }
    }
}

/// `severity_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// 1: no action required.
    Informational,
    /// 2: the user decides.
    Low,
    /// 3: action is required (pqwrap's refusals and revocations).
    Medium,
    /// 4: action is required immediately.
    High,
}

impl Severity {
    /// pqwrap's convention: Informational for a success, Medium for a refusal or failure.
    pub fn of(outcome: Outcome) -> Severity {
        match outcome {
            Outcome::Success => Severity::Informational,
            Outcome::Failure => Severity::Medium,
        }
    }

    fn id_name(self) -> (u8, &'static str) {
        match self {
            Severity::Informational => (1, "Informational"),
            Severity::Low => (2, "Low"),
            Severity::Medium => (3, "Medium"),
            Severity::High => (4, "High"),
        }
    }
}

/// The product writing the events (`metadata.product`, `metadata.log_name`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Product {
    /// `metadata.product.name`, e.g. "pqwrap broker".
    pub name: &'static str,
    /// `metadata.log_name`, e.g. "pqwrap-broker".
    pub log_name: &'static str,
}

/// What is said about one event.
#[derive(Clone, Copy, Debug)]
pub struct Header<'a> {
    /// Its class and activity.
    pub activity: Activity,
    /// Success or failure.
    pub outcome: Outcome,
    /// How serious.
    pub severity: Severity,
    /// `status_detail`: the reason.
    pub detail: &'a str,
    /// `message`: a short human summary.
    pub message: &'a str,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The fields every event has, timed now; the caller inserts the class's own.
pub fn event(product: &Product, h: &Header<'_>) -> Map<String, Value> {
    let class = h.activity.class();
    let (class_uid, class_name) = (class.uid(), class.name());
    let (category_uid, category_name) = class.category();
    let (activity_id, activity_name) = h.activity.id_name();
    let (status_id, status) = h.outcome.id_name();
    let (severity_id, severity) = h.severity.id_name();
    let v = json!({
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "category_name": category_name,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": u64::from(class_uid) * 100 + u64::from(activity_id),
        "type_name": format!("{class_name}: {activity_name}"),
        "time": now_ms(),
        "severity_id": severity_id,
        "severity": severity,
        "status_id": status_id,
        "status": status,
        "status_detail": h.detail,
        "message": h.message,
        "metadata": {
            "version": VERSION,
            "product": {"name": product.name, "vendor_name": "pqwrap", "version": env!("CARGO_PKG_VERSION")},
            "log_name": product.log_name,
        },
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// A process, for the OCSF `process` object (of `actor` or of a Process Activity event).
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessInfo<'a> {
    /// Its pid, if it has one (a command that was never started has none).
    pub pid: Option<u32>,
    /// Its executable's path.
    pub path: &'a str,
    /// The SHA-256 of the executable in lowercase hex, if known.
    pub sha256: Option<&'a str>,
    /// Its user id.
    pub uid: Option<u32>,
    /// The command line, if known.
    pub cmd_line: Option<&'a str>,
}

/// The OCSF `process` object: `pid`, `file` (`path`, `name`, `type_id` 1 Regular File,
/// `hashes` with the SHA-256 when known), `user.uid` (a string, as OCSF has it), `cmd_line`.
pub fn process(p: &ProcessInfo<'_>) -> Value {
    let mut file = json!({
        "path": p.path,
        "name": p.path.rsplit('/').next().unwrap_or(p.path),
        "type_id": 1,
        "type": "Regular File",
    });
    if let (Some(h), Some(f)) = (p.sha256, file.as_object_mut()) {
        f.insert(
            "hashes".into(),
            json!([{"algorithm_id": 3, "algorithm": "SHA-256", "value": h}]),
        );
    }
    let mut m = Map::new();
    if let Some(pid) = p.pid {
        m.insert("pid".into(), pid.into());
    }
    m.insert("file".into(), file);
    if let Some(uid) = p.uid {
        m.insert("user".into(), json!({"uid": uid.to_string()}));
    }
    if let Some(c) = p.cmd_line {
        m.insert("cmd_line".into(), c.into());
    }
    Value::Object(m)
}

/// The capabilities as OCSF privilege strings: `file:read:/path`, `net:host:443`,
/// `clipboard`, `exec:/cmd`, `shell:interactive`, `quantum:backend`.
pub fn privileges(caps: &Capabilities) -> Vec<String> {
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

/// An OCSF JSON-lines file, appended to: each call writes its events with one `write` and
/// one `fdatasync`, so what a call returned from survives a power cut.
#[derive(Debug)]
pub struct OcsfLog {
    file: File,
}

impl OcsfLog {
    /// Takes a file the caller opened for appending (with its own rules for the path).
    pub fn from_file(file: File) -> OcsfLog {
        OcsfLog { file }
    }

    /// Appends `events`, one line each, and syncs them.
    pub fn append_all(&mut self, events: &[Value]) -> std::io::Result<()> {
        let mut out = String::new();
        for e in events {
            out.push_str(&e.to_string());
            out.push('\n');
        }
        if out.is_empty() {
            return Ok(());
        }
        self.file.write_all(out.as_bytes())?;
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_uid_is_class_times_100_plus_activity_and_fields_are_there() {
        let p = Product {
            name: "pqwrap test",
            log_name: "pqwrap-test",
        };
        for (a, class, type_uid) in [
            (Activity::Launch, 1007, 100701),
            (Activity::Terminate, 1007, 100702),
            (Activity::Http(HttpMethod::Connect), 4002, 400201),
            (Activity::Http(HttpMethod::from_verb("GET")), 4002, 400203),
            (Activity::Http(HttpMethod::from_verb("get")), 4002, 400299),
            (Activity::AssignPrivileges, 3003, 300301),
            (Activity::ApiDelete, 6003, 600304),
            (
                Activity::Other(Class::AuthorizeSession, "Consent"),
                3003,
                300399,
            ),
        ] {
            let e = event(
                &p,
                &Header {
                    activity: a,
                    outcome: Outcome::Failure,
                    severity: Severity::of(Outcome::Failure),
                    detail: "why",
                    message: "what",
                },
            );
            assert_eq!(e["class_uid"], class);
            assert_eq!(e["type_uid"], type_uid);
            assert_eq!(e["status_id"], 2);
            assert_eq!(e["severity_id"], 3);
            assert_eq!(e["status_detail"], "why");
            assert_eq!(e["metadata"]["version"], VERSION);
            assert_eq!(e["metadata"]["log_name"], "pqwrap-test");
            assert!(e["time"].as_u64().unwrap_or(0) > 1_700_000_000_000);
        }
    }

    #[test]
    fn the_process_object() {
        let v = process(&ProcessInfo {
            pid: Some(42),
            path: "/usr/bin/python3",
            sha256: Some("ab"),
            uid: Some(1000),
            cmd_line: Some("/usr/bin/python3 -c x"),
        });
        assert_eq!(v["pid"], 42);
        assert_eq!(v["file"]["name"], "python3");
        assert_eq!(v["file"]["hashes"][0]["algorithm_id"], 3);
        assert_eq!(v["user"]["uid"], "1000");
        let v = process(&ProcessInfo {
            path: "sh",
            ..ProcessInfo::default()
        });
        assert!(v.get("pid").is_none() && v.get("user").is_none());
        assert_eq!(v["file"]["name"], "sh");
    }
}
