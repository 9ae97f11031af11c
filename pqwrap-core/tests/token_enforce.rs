//! Enforcement: default deny, component-boundary path checks, quotas, reasons.
// A failed unwrap in a test is a failed test, with its message.
#![allow(clippy::unwrap_used)]

mod token_support;

use std::time::Duration;

use pqwrap_core::token::{Algorithm, Manifest, QuantumJob, Request, VerifiedToken};
use token_support::*;

fn verified(manifest: &str) -> VerifiedToken {
    let k = key(Algorithm::MlDsa65, 5);
    let issuer = pqwrap_core::token::Issuer::new(key(Algorithm::MlDsa65, 5));
    let m = Manifest::from_json(manifest).unwrap();
    let t = issuer
        .issue(&m, AUD, Duration::from_secs(600), NOW, None)
        .unwrap();
    verifier(&k).verify(&t.bytes, NOW).unwrap()
}

fn design_verified() -> VerifiedToken {
    verified(DESIGN_MANIFEST)
}

#[test]
fn read_is_allowed_below_the_granted_path_only() {
    let v = design_verified();
    v.may_read("/home/user/Documents/Contracts").unwrap();
    v.may_read("/home/user/Documents/Contracts/a.pdf").unwrap();
    v.may_read("/home/user/Documents/Contracts/sub/./b.pdf")
        .unwrap();
    v.may_read("/home/user/Documents/Contracts//c.pdf").unwrap();
    let d = v
        .may_read("/home/user/Documents/Contracts2/a.pdf")
        .unwrap_err();
    assert!(d.0.contains("not under any granted path"), "{d}");
    assert!(v.may_read("/home/user/Documents").is_err());
    assert!(v.may_read("/home/user/Documents/Contract").is_err());
}

#[test]
fn dot_dot_cannot_escape() {
    let v = design_verified();
    let d = v
        .may_read("/home/user/Documents/Contracts/../../../etc/shadow")
        .unwrap_err();
    assert!(d.0.contains("/etc/shadow"), "{d}");
    assert!(v.may_read("/home/user/Documents/Contracts/..").is_err());
    v.may_read("/home/user/Documents/Other/../Contracts/x")
        .unwrap();
}

#[test]
fn relative_paths_are_denied() {
    let v = design_verified();
    let d = v
        .may_read("home/user/Documents/Contracts/a.pdf")
        .unwrap_err();
    assert!(d.0.contains("not an absolute path"), "{d}");
    assert!(v.may_read("").is_err());
    assert!(v.may_read("./a").is_err());
}

#[test]
fn write_needs_a_write_mode() {
    let v = design_verified();
    let d = v
        .may_write("/home/user/Documents/Contracts/a.pdf")
        .unwrap_err();
    assert!(d.0.contains("mode"), "{d}");
    let v = verified(
        r#"{"agent":"a","capabilities":{"fileAccess":[
            {"path":"/srv/out","mode":"write"},{"path":"/srv/both","mode":"readwrite"}]}}"#,
    );
    v.may_write("/srv/out/x").unwrap();
    assert!(v.may_read("/srv/out/x").is_err());
    v.may_write("/srv/both/x").unwrap();
    v.may_read("/srv/both/x").unwrap();
}

#[test]
fn connect_needs_exact_host_and_port() {
    let v = design_verified();
    v.may_connect("internal-api.company.local", 443).unwrap();
    v.may_connect("INTERNAL-API.company.local", 443).unwrap();
    let d = v.may_connect("internal-api.company.local", 80).unwrap_err();
    assert!(d.0.contains(":80"), "{d}");
    assert!(v.may_connect("evil.company.local", 443).is_err());
    assert!(
        v.may_connect("internal-api.company.local.evil.com", 443)
            .is_err()
    );
}

#[test]
fn exec_needs_an_allowed_absolute_command() {
    let v = design_verified();
    v.may_exec("/usr/bin/less").unwrap();
    v.may_exec("/usr/bin/../bin/less").unwrap();
    assert!(v.may_exec("/usr/bin/more").is_err());
    assert!(v.may_exec("less").is_err());
    let d = v
        .check(&Request::Exec {
            command: "/usr/bin/less",
            interactive: true,
        })
        .unwrap_err();
    assert!(d.0.contains("interactive"), "{d}");
    let none = verified(r#"{"agent":"a","capabilities":{}}"#);
    assert!(
        none.may_exec("/usr/bin/less")
            .unwrap_err()
            .0
            .contains("shell")
    );
}

#[test]
fn clipboard_is_denied_unless_granted() {
    assert!(design_verified().may_use_clipboard().is_err());
    verified(r#"{"agent":"a","capabilities":{"clipboard":true}}"#)
        .may_use_clipboard()
        .unwrap();
}

#[test]
fn quantum_jobs_are_checked_against_quotas() {
    let v = design_verified();
    let job = |backend: &str, alg: &str, qubits, shots, secs| QuantumJob {
        backend: backend.into(),
        algorithm: alg.into(),
        qubits,
        shots,
        runtime: Duration::from_secs(secs),
    };
    v.may_submit(&job("qpu-sim-1", "vqe", 32, 10_000, 600), 0)
        .unwrap();
    v.may_submit(&job("qpu-sim-1", "vqe", 32, 10_000, 600), 4)
        .unwrap();
    let reason = |j: &QuantumJob, n| v.may_submit(j, n).unwrap_err().0;
    assert!(reason(&job("qpu-sim-1", "vqe", 1, 1, 1), 5).contains("maxJobs"));
    assert!(reason(&job("qpu-sim-1", "vqe", 33, 1, 1), 0).contains("maxQubits"));
    assert!(reason(&job("qpu-sim-1", "vqe", 1, 10_001, 1), 0).contains("maxShots"));
    assert!(reason(&job("qpu-sim-1", "vqe", 1, 1, 601), 0).contains("maxRuntime"));
    assert!(reason(&job("qpu-real", "vqe", 1, 1, 1), 0).contains("backend"));
    assert!(reason(&job("qpu-sim-1", "qaoa", 1, 1, 1), 0).contains("algorithm"));
    let parsed = QuantumJob::from_json(
        r#"{"backend":"qpu-sim-1","algorithm":"vqe","qubits":4,"shots":100,"runtime":"60s"}"#,
    )
    .unwrap();
    v.may_submit(&parsed, 0).unwrap();
    assert!(
        QuantumJob::from_json(
            r#"{"backend":"b","algorithm":"a","qubits":1,"shots":1,"runtime":"1s","x":1}"#
        )
        .is_err()
    );
}

#[test]
fn empty_manifest_denies_everything() {
    let v = verified(r#"{"agent":"a","capabilities":{}}"#);
    assert!(v.may_read("/").is_err());
    assert!(v.may_write("/tmp/x").is_err());
    assert!(v.may_connect("localhost", 80).is_err());
    assert!(v.may_exec("/bin/sh").is_err());
    assert!(v.may_use_clipboard().is_err());
    let j = QuantumJob {
        backend: "b".into(),
        algorithm: "a".into(),
        qubits: 1,
        shots: 1,
        runtime: Duration::from_secs(1),
    };
    assert!(v.may_submit(&j, 0).is_err());
}

#[test]
fn check_at_denies_once_expired() {
    let v = design_verified(); // exp = NOW + 600, leeway 30
    v.check_at(&Request::Clipboard, NOW).unwrap_err(); // clipboard not granted
    v.check_at(
        &Request::Read("/home/user/Documents/Contracts/a"),
        NOW + 629,
    )
    .unwrap();
    let d = v
        .check_at(
            &Request::Read("/home/user/Documents/Contracts/a"),
            NOW + 630,
        )
        .unwrap_err();
    assert!(d.0.contains("expired"), "{d}");
}
