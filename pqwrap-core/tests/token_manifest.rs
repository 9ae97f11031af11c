//! The manifest is accepted exactly in the design shape and validated strictly; every error
//! names the field.
// A failed unwrap in a test is a failed test, with its message.
#![allow(clippy::unwrap_used)]

mod token_support;

use std::time::Duration;

use pqwrap_core::token::{FileMode, Manifest};
use token_support::DESIGN_MANIFEST;

fn err(json: &str) -> String {
    Manifest::from_json(json).unwrap_err().to_string()
}

fn with_caps(caps: &str) -> String {
    format!(r#"{{"agent":"a","capabilities":{caps},"ttl":"60s"}}"#)
}

#[test]
fn design_example_is_accepted() {
    let m = Manifest::from_json(DESIGN_MANIFEST).unwrap();
    assert_eq!(m.agent, "cowork-session-1234");
    assert_eq!(m.ttl, Some(Duration::from_secs(3600)));
    let c = &m.capabilities;
    assert_eq!(c.file_access[0].path, "/home/user/Documents/Contracts");
    assert_eq!(c.file_access[0].mode, FileMode::Read);
    assert_eq!(
        (c.network[0].host.as_str(), c.network[0].port),
        ("internal-api.company.local", 443)
    );
    assert!(!c.clipboard);
    let s = c.shell.as_ref().unwrap();
    assert_eq!(s.allowed_commands, ["/usr/bin/less"]);
    let q = c.quantum.as_ref().unwrap();
    assert_eq!(
        (
            q.max_qubits,
            q.max_shots,
            q.max_jobs.get(),
            q.max_runtime_secs
        ),
        (32, 10_000, 5, 600)
    );
    assert_eq!(q.backends, ["qpu-sim-1"]);
    assert_eq!(q.algorithms, ["vqe"]);
}

#[test]
fn unknown_fields_are_errors_naming_the_field() {
    let e = err(r#"{"agent":"a","capabilities":{},"extra":1}"#);
    assert!(e.contains("extra"), "{e}");
    let e = err(&with_caps(
        r#"{"fileAccess":[{"path":"/a","mode":"read","recursive":true}]}"#,
    ));
    assert!(
        e.contains("capabilities.fileAccess[0]") && e.contains("recursive"),
        "{e}"
    );
    let e = err(&with_caps(
        r#"{"quantum":{"backends":[],"maxQubits":1,"maxShots":1,"maxJobs":1,"maxRuntime":"1s","algorithms":[],"priority":9}}"#,
    ));
    assert!(
        e.contains("capabilities.quantum") && e.contains("priority"),
        "{e}"
    );
}

#[test]
fn duplicate_json_fields_are_errors() {
    let e = err(r#"{"agent":"a","agent":"b","capabilities":{}}"#);
    assert!(e.contains("duplicate field") && e.contains("agent"), "{e}");
}

#[test]
fn relative_paths_are_errors() {
    let e = err(&with_caps(
        r#"{"fileAccess":[{"path":"home/user","mode":"read"}]}"#,
    ));
    assert!(
        e.contains("capabilities.fileAccess[0].path") && e.contains("absolute"),
        "{e}"
    );
}

#[test]
fn non_normalised_paths_are_errors() {
    for p in ["/a/../b", "/a/./b", "/a//b", "/a/", "/a/.."] {
        let e = err(&with_caps(&format!(
            r#"{{"fileAccess":[{{"path":"/ok","mode":"read"}},{{"path":"{p}","mode":"read"}}]}}"#
        )));
        assert!(
            e.contains("capabilities.fileAccess[1].path") && e.contains("normalised"),
            "{p}: {e}"
        );
    }
}

#[test]
fn bad_ports_are_errors() {
    for port in ["0", "65536", "-1"] {
        let e = err(&with_caps(&format!(
            r#"{{"network":[{{"host":"h.local","port":{port}}}]}}"#
        )));
        assert!(e.contains("capabilities.network[0].port"), "{port}: {e}");
    }
    let e = err(&with_caps(
        r#"{"network":[{"host":"h.local","port":"443"}]}"#,
    ));
    assert!(e.contains("capabilities.network[0].port"), "{e}");
}

#[test]
fn bad_hosts_are_errors() {
    for h in ["", "Upper.local", "a..b", "-a.b", "a b", "h.local:443"] {
        let e = err(&with_caps(&format!(
            r#"{{"network":[{{"host":"{h}","port":1}}]}}"#
        )));
        assert!(e.contains("capabilities.network[0].host"), "{h}: {e}");
    }
}

#[test]
fn empty_command_paths_are_errors() {
    let e = err(&with_caps(
        r#"{"shell":{"allowedCommands":["/bin/ls",""],"interactive":false}}"#,
    ));
    assert!(
        e.contains("capabilities.shell.allowedCommands[1]") && e.contains("empty"),
        "{e}"
    );
    let e = err(&with_caps(
        r#"{"shell":{"allowedCommands":["ls"],"interactive":false}}"#,
    ));
    assert!(e.contains("capabilities.shell.allowedCommands[0]"), "{e}");
    let e = err(&with_caps(r#"{"shell":{"allowedCommands":["/bin/ls"]}}"#));
    assert!(
        e.contains("capabilities.shell") && e.contains("interactive"),
        "{e}"
    );
}

#[test]
fn bad_modes_durations_and_duplicates_are_errors() {
    let e = err(&with_caps(
        r#"{"fileAccess":[{"path":"/a","mode":"execute"}]}"#,
    ));
    assert!(e.contains("capabilities.fileAccess[0].mode"), "{e}");
    let e = err(r#"{"agent":"a","capabilities":{},"ttl":"soon"}"#);
    assert!(e.starts_with("manifest: ttl:"), "{e}");
    let e = err(r#"{"agent":"a","capabilities":{},"ttl":"1500ms"}"#);
    assert!(e.contains("ttl") && e.contains("whole"), "{e}");
    let e = err(&with_caps(
        r#"{"quantum":{"backends":["b"],"maxQubits":1,"maxShots":1,"maxJobs":1,"maxRuntime":"0s","algorithms":[]}}"#,
    ));
    assert!(e.contains("capabilities.quantum.maxRuntime"), "{e}");
    let e = err(&with_caps(
        r#"{"fileAccess":[{"path":"/a","mode":"read"},{"path":"/a","mode":"write"}]}"#,
    ));
    assert!(
        e.contains("capabilities.fileAccess[1]") && e.contains("duplicate"),
        "{e}"
    );
    let e = err(r#"{"agent":"","capabilities":{}}"#);
    assert!(e.contains("agent"), "{e}");
    let e = err(r#"{"agent":"a"}"#);
    assert!(e.contains("capabilities"), "{e}");
}

#[test]
fn oversized_manifest_is_refused() {
    let big = format!(
        r#"{{"agent":"{}","capabilities":{{}}}}"#,
        "a".repeat(70_000)
    );
    assert!(err(&big).contains("longer than"));
}
