//! Enforcement: default deny, canonical requests only, component-boundary path checks, the
//! granted value handed back, quotas, reasons.
// A failed unwrap in a test is a failed test, with its message.
#![allow(clippy::unwrap_used)]

mod token_support;

use std::time::Duration;

use pqwrap_core::token::{
    Access, Algorithm, Allowed, FileMode, Manifest, PathProblem, QuantumJob, Reason, Request,
    VerifiedToken,
};
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
    let g = v.may_read("/home/user/Documents/Contracts").unwrap();
    assert_eq!(
        (g.root(), g.relative()),
        ("/home/user/Documents/Contracts", ".")
    );
    let g = v
        .may_read("/home/user/Documents/Contracts/sub/a.pdf")
        .unwrap();
    assert_eq!(
        (g.root(), g.relative(), g.path()),
        (
            "/home/user/Documents/Contracts",
            "sub/a.pdf",
            "/home/user/Documents/Contracts/sub/a.pdf"
        )
    );
    let d = v
        .may_read("/home/user/Documents/Contracts2/a.pdf")
        .unwrap_err();
    assert!(matches!(d.0, Reason::NotGranted { .. }), "{d}");
    assert_eq!(
        d.to_string(),
        "denied: /home/user/Documents/Contracts2/a.pdf is not under any granted path"
    );
    assert!(v.may_read("/home/user/Documents").is_err());
    assert!(v.may_read("/home/user/Documents/Contract").is_err());
}

/// `..`, `.`, `//` and a trailing `/` are refused, not resolved on the string: the kernel
/// resolves `..` after following the symlink before it, so a tidied string would not name
/// what the kernel opens (`Contracts/link/../../x` is anywhere `link` points).
#[test]
fn non_canonical_paths_are_refused_not_resolved() {
    let v = design_verified();
    for p in [
        "/home/user/Documents/Contracts/../../../etc/shadow",
        "/home/user/Documents/Contracts/..",
        "/home/user/Documents/Other/../Contracts/x",
        "/home/user/Documents/Contracts/link/../x",
        "/home/user/Documents/Contracts/sub/./b.pdf",
        "/home/user/Documents/Contracts//c.pdf",
        "/home/user/Documents/Contracts/",
        "/home/user/Documents/Contracts/.",
        "/home/user/Documents/Contracts/x\0",
    ] {
        let d = v.may_read(p).unwrap_err();
        assert!(matches!(d.0, Reason::NonCanonicalPath { .. }), "{p:?}: {d}");
        assert!(v.may_write(p).is_err(), "{p:?}");
    }
}

#[test]
fn relative_paths_are_denied() {
    let v = design_verified();
    let d = v
        .may_read("home/user/Documents/Contracts/a.pdf")
        .unwrap_err();
    assert!(
        matches!(
            d.0,
            Reason::NonCanonicalPath {
                problem: PathProblem::NotAbsolute,
                ..
            }
        ),
        "{d}"
    );
    assert!(v.may_read("").is_err());
    assert!(v.may_read("./a").is_err());
}

#[test]
fn write_needs_a_write_mode() {
    let v = design_verified();
    let d = v
        .may_write("/home/user/Documents/Contracts/a.pdf")
        .unwrap_err();
    assert!(
        matches!(
            d.0,
            Reason::Mode {
                access: Access::Write,
                ..
            }
        ),
        "{d}"
    );
    let v = verified(
        r#"{"agent":"a","capabilities":{"fileAccess":[
            {"path":"/srv/out","mode":"write"},{"path":"/srv/both","mode":"readwrite"}]}}"#,
    );
    assert_eq!(v.may_write("/srv/out/x").unwrap().relative(), "x");
    assert!(v.may_read("/srv/out/x").is_err());
    let g = v.may_write("/srv/both/x").unwrap();
    assert_eq!((g.root(), g.mode()), ("/srv/both", FileMode::ReadWrite));
    v.may_read("/srv/both/x").unwrap();
}

#[test]
fn connect_needs_exact_host_and_port() {
    let v = design_verified();
    v.may_connect("internal-api.company.local", 443).unwrap();
    v.may_connect("INTERNAL-API.company.local", 443).unwrap();
    let d = v.may_connect("internal-api.company.local", 80).unwrap_err();
    assert!(matches!(d.0, Reason::Connect { port: 80, .. }), "{d}");
    assert!(v.may_connect("evil.company.local", 443).is_err());
    assert!(
        v.may_connect("internal-api.company.local.evil.com", 443)
            .is_err()
    );
}

#[test]
fn exec_needs_an_allowed_absolute_command() {
    let v = design_verified();
    assert_eq!(v.may_exec("/usr/bin/less").unwrap().path(), "/usr/bin/less");
    match v
        .check(&Request::Exec {
            command: "/usr/bin/less",
            interactive: false,
        })
        .unwrap()
    {
        Allowed::Exec(g) => assert_eq!(g.path(), "/usr/bin/less"),
        other => panic!("{other:?}"),
    }
    assert!(v.may_exec("/usr/bin/more").is_err());
    assert!(v.may_exec("less").is_err());
    let d = v
        .check(&Request::Exec {
            command: "/usr/bin/less",
            interactive: true,
        })
        .unwrap_err();
    assert_eq!(d.0, Reason::Interactive, "{d}");
    let none = verified(r#"{"agent":"a","capabilities":{}}"#);
    assert_eq!(none.may_exec("/usr/bin/less").unwrap_err().0, Reason::Shell);
}

/// A command must equal a granted one byte for byte; any other spelling of it is refused,
/// because the kernel may run something else (`/tmp/xlink/../../usr/bin/less` runs
/// `…/usr/bin/less` under wherever `xlink` points).
#[test]
fn exec_refuses_every_other_spelling_of_a_granted_command() {
    let v = design_verified();
    for c in [
        "/usr/bin/../bin/less",
        "/tmp/xlink/../../usr/bin/less",
        "/usr/bin/less/.",
        "/usr/bin//less",
        "//usr/bin/less",
        "/usr/bin/less/",
        "/usr/./bin/less",
        "usr/bin/less",
        "./less",
        "/usr/bin/LESS",
        "/usr/bin/less ",
    ] {
        assert!(v.may_exec(c).is_err(), "{c:?} allowed");
    }
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
    assert_eq!(
        reason(&job("qpu-sim-1", "vqe", 1, 1, 1), 5),
        Reason::Quota { used: 5, max: 5 }
    );
    assert_eq!(
        reason(&job("qpu-sim-1", "vqe", 33, 1, 1), 0),
        Reason::Qubits { asked: 33, max: 32 }
    );
    assert_eq!(
        reason(&job("qpu-sim-1", "vqe", 1, 10_001, 1), 0),
        Reason::Shots {
            asked: 10_001,
            max: 10_000
        }
    );
    assert!(matches!(
        reason(&job("qpu-sim-1", "vqe", 1, 1, 601), 0),
        Reason::Runtime { max_secs: 600, .. }
    ));
    assert_eq!(
        reason(&job("qpu-real", "vqe", 1, 1, 1), 0),
        Reason::Backend("qpu-real".into())
    );
    assert_eq!(
        reason(&job("qpu-sim-1", "qaoa", 1, 1, 1), 0),
        Reason::Algorithm("qaoa".into())
    );
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
    assert_eq!(d.0, Reason::NotLive, "{d}");
}
