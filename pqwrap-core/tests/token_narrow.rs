//! Narrowing: children are subsets, live no longer, record their ancestry; proptest shows
//! narrowing never widens.
// A failed unwrap in a test is a failed test, with its message.
#![allow(clippy::unwrap_used)]

mod token_support;

use std::time::Duration;

use pqwrap_core::token::enforce::Request;
use pqwrap_core::token::manifest::{JobCeiling, QuantumGrant, ShellGrant};
use pqwrap_core::token::narrow::check_subset;
use pqwrap_core::token::{
    Algorithm, Capabilities, FileGrant, FileMode, Issuer, Manifest, NarrowingVerifier, NetGrant,
    ParentToken, QuantumJob, TokenError, Verifier,
};
use proptest::prelude::*;
use token_support::*;

fn issuer() -> Issuer {
    Issuer::new(key(Algorithm::MlDsa65, 9))
}

fn narrowing_verifier() -> NarrowingVerifier {
    Verifier::for_narrowing(trust_of(&key(Algorithm::MlDsa65, 9)))
}

fn manifest(caps: Capabilities) -> Manifest {
    Manifest {
        agent: "sub-agent".into(),
        capabilities: caps,
        ttl: None,
    }
}

#[test]
fn child_records_parent_and_keeps_audience() {
    let i = issuer();
    let parent = i
        .issue(&design(), AUD, Duration::from_secs(3600), NOW, None)
        .unwrap();
    let vp = narrowing_verifier().verify(&parent.bytes, NOW).unwrap();
    let mut m = design();
    m.ttl = Some(Duration::from_secs(60));
    m.capabilities.file_access[0].path.push_str("/2025");
    let child = i.narrow(&vp, &m, None, NOW + 5).unwrap();
    let vc = verifier(&key(Algorithm::MlDsa65, 9))
        .verify(&child.bytes, NOW + 5)
        .unwrap();
    assert_eq!(vc.claims().ancestors, vec![parent.claims.cti]);
    assert_eq!(vc.claims().aud, AUD);
    assert_eq!(vc.claims().exp, NOW + 65);
    assert_eq!(
        child.audit_record()["parent"],
        pqwrap_core::token::keys::hex_lower(&parent.claims.cti)
    );
    vc.may_read("/home/user/Documents/Contracts/2025/x")
        .unwrap();
    assert!(
        vc.may_read("/home/user/Documents/Contracts/2024/x")
            .is_err()
    );
}

/// Each child gets its own `maxJobs` ceiling, copied from the parent: two children could
/// each use all of it. The types say so (a per-token `JobCeiling`), and every token names
/// the accounts a job counts against, so that the broker can hold the parent's total.
#[test]
fn job_ceilings_are_per_token_and_children_name_their_quota_accounts() {
    let i = issuer();
    let parent = i
        .issue(&design(), AUD, Duration::from_secs(3600), NOW, None)
        .unwrap();
    let vp = narrowing_verifier().verify(&parent.bytes, NOW).unwrap();
    let child = |n| {
        let c = i
            .narrow(&vp, &design(), Some(Duration::from_secs(60)), NOW + n)
            .unwrap();
        verifier(&key(Algorithm::MlDsa65, 9))
            .verify(&c.bytes, NOW + n)
            .unwrap()
    };
    let (a, b) = (child(1), child(2));
    let job = QuantumJob {
        backend: "qpu-sim-1".into(),
        algorithm: "vqe".into(),
        qubits: 1,
        shots: 1,
        runtime: Duration::from_secs(1),
    };
    for c in [&a, &b] {
        let ceiling = c.claims().capabilities.quantum.as_ref().unwrap().max_jobs;
        assert_eq!(ceiling, JobCeiling::new(5));
        // Each child alone may submit its 5th job: only a count against the parent stops
        // the 6th overall.
        c.may_submit(&job, 4).unwrap();
        assert_eq!(c.claims().parent(), Some(&parent.claims.cti));
        let accounts: Vec<_> = c.claims().quota_accounts().copied().collect();
        assert_eq!(accounts, vec![c.claims().cti, parent.claims.cti]);
    }
    let grandchild = {
        let ca: ParentToken = a.clone().into();
        let g = i
            .narrow(&ca, &design(), Some(Duration::from_secs(30)), NOW + 3)
            .unwrap();
        verifier(&key(Algorithm::MlDsa65, 9))
            .verify(&g.bytes, NOW + 3)
            .unwrap()
    };
    let accounts: Vec<_> = grandchild.claims().quota_accounts().copied().collect();
    assert_eq!(
        accounts,
        vec![grandchild.claims().cti, a.claims().cti, parent.claims.cti],
        "own, parent, root"
    );
}

#[test]
fn wider_children_are_refused_with_the_reason() {
    let i = issuer();
    let parent = i
        .issue(&design(), AUD, Duration::from_secs(3600), NOW, None)
        .unwrap();
    let vp = narrowing_verifier().verify(&parent.bytes, NOW).unwrap();
    let reason = |edit: &dyn Fn(&mut Manifest)| {
        let mut m = design();
        m.ttl = None;
        edit(&mut m);
        match i.narrow(&vp, &m, None, NOW) {
            Err(TokenError::Wider(r)) => r,
            other => panic!("not refused: {other:?}"),
        }
    };
    use pqwrap_core::token::narrow::Widening as W;
    assert!(matches!(
        reason(&|m| m.capabilities.file_access[0].mode = FileMode::ReadWrite),
        W::FileAccess { index: 0, .. }
    ));
    assert!(matches!(
        reason(&|m| m.capabilities.file_access[0].path = "/home/user/Documents".into()),
        W::FileAccess { index: 0, .. }
    ));
    assert!(matches!(
        reason(&|m| m.capabilities.file_access[0].path = "/home/user/Documents/Contracts2".into()),
        W::FileAccess { index: 0, .. }
    ));
    assert!(matches!(
        reason(&|m| m.capabilities.network[0].port = 80),
        W::Network {
            index: 0,
            port: 80,
            ..
        }
    ));
    assert_eq!(reason(&|m| m.capabilities.clipboard = true), W::Clipboard);
    assert_eq!(
        reason(&|m| m.capabilities.shell.as_mut().unwrap().interactive = true),
        W::Interactive
    );
    assert_eq!(
        reason(&|m| m
            .capabilities
            .shell
            .as_mut()
            .unwrap()
            .allowed_commands
            .push("/bin/sh".into())),
        W::Command {
            index: 1,
            command: "/bin/sh".into()
        }
    );
    assert!(matches!(
        reason(&|m| m.capabilities.quantum.as_mut().unwrap().max_qubits = 33),
        W::Limit {
            limit: "maxQubits",
            child: 33,
            ..
        }
    ));
    assert!(matches!(
        reason(&|m| m.capabilities.quantum.as_mut().unwrap().max_jobs = JobCeiling::new(6)),
        W::Limit {
            limit: "maxJobs",
            child: 6,
            ..
        }
    ));
    assert!(matches!(
        reason(&|m| m
            .capabilities
            .quantum
            .as_mut()
            .unwrap()
            .backends
            .push("qpu-real".into())),
        W::Backend { .. }
    ));
    assert!(matches!(
        reason(&|m| m.ttl = Some(Duration::from_secs(3601))),
        W::OutlivesParent { .. }
    ));
    // Explicit ttl argument, too.
    let r = i.narrow(
        &vp,
        &manifest(Capabilities::default()),
        Some(Duration::from_secs(7200)),
        NOW,
    );
    assert!(matches!(
        r,
        Err(TokenError::Wider(W::OutlivesParent { .. }))
    ));
}

#[test]
fn narrowing_depth_is_bounded() {
    let i = issuer();
    let mut t = i
        .issue(&design(), AUD, Duration::from_secs(3600), NOW, None)
        .unwrap();
    let empty = manifest(Capabilities::default());
    for depth in 1..=8 {
        let v = narrowing_verifier().verify(&t.bytes, NOW).unwrap();
        t = i.narrow(&v, &empty, None, NOW).unwrap();
        assert_eq!(t.claims.ancestors.len(), depth);
    }
    let v = narrowing_verifier().verify(&t.bytes, NOW).unwrap();
    assert!(matches!(
        i.narrow(&v, &empty, None, NOW),
        Err(TokenError::Wider(_))
    ));
}

// ---- properties ----

const PATHS: &[&str] = &["/", "/a", "/a/b", "/a/b/c", "/a/bc", "/d"];
const PROBE_PATHS: &[&str] = &[
    "/",
    "/a",
    "/a/b",
    "/a/b/c",
    "/a/b/c/x",
    "/a/bc",
    "/a/bc/y",
    "/a/b2",
    "/d",
    "/d/e",
    "/x",
    "/a/b/../bc/z",
    "/a/b/c/../../../../d",
];
const HOSTS: &[&str] = &["h1.local", "h2.local"];
const PORTS: &[u16] = &[80, 443];
const CMDS: &[&str] = &["/bin/ls", "/bin/cat", "/usr/bin/less"];
const NAMES: &[&str] = &["b1", "b2"];
const ALGS: &[&str] = &["vqe", "qaoa"];

fn mode() -> impl Strategy<Value = FileMode> {
    prop_oneof![
        Just(FileMode::Read),
        Just(FileMode::Write),
        Just(FileMode::ReadWrite)
    ]
}

fn subset_of(pool: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
    proptest::sample::subsequence(pool, 0..=pool.len())
        .prop_map(|v| v.into_iter().map(String::from).collect())
}

fn caps() -> impl Strategy<Value = Capabilities> {
    let files = proptest::collection::btree_map(proptest::sample::select(PATHS), mode(), 0..4);
    let net = proptest::collection::btree_set(
        (
            proptest::sample::select(HOSTS),
            proptest::sample::select(PORTS),
        ),
        0..4,
    );
    let shell = proptest::option::of((subset_of(CMDS), any::<bool>()));
    let quantum = proptest::option::of((
        subset_of(NAMES),
        subset_of(ALGS),
        0u64..64,
        0u64..1000,
        0u64..5,
        1u64..100,
    ));
    (files, net, any::<bool>(), shell, quantum).prop_map(|(files, net, clip, shell, q)| {
        Capabilities {
            file_access: files
                .into_iter()
                .map(|(p, mode)| FileGrant {
                    path: p.to_string(),
                    mode,
                })
                .collect(),
            network: net
                .into_iter()
                .map(|(h, port)| NetGrant {
                    host: h.to_string(),
                    port,
                })
                .collect(),
            clipboard: clip,
            shell: shell.map(|(cmds, interactive)| ShellGrant {
                allowed_commands: cmds,
                interactive,
            }),
            quantum: q.map(|(backends, algorithms, qb, sh, jb, rt)| QuantumGrant {
                backends,
                algorithms,
                max_qubits: qb,
                max_shots: sh,
                max_jobs: JobCeiling::new(jb),
                max_runtime_secs: rt,
            }),
        }
    })
}

/// Every request in a fixed probe set that `c` allows.
fn allowed(c: &Capabilities) -> Vec<String> {
    let mut out = Vec::new();
    let mut probe = |label: String, r: Request<'_>| {
        if c.check(&r).is_ok() {
            out.push(label);
        }
    };
    for p in PROBE_PATHS {
        probe(format!("read {p}"), Request::Read(p));
        probe(format!("write {p}"), Request::Write(p));
    }
    for h in HOSTS {
        for port in PORTS {
            probe(
                format!("connect {h}:{port}"),
                Request::Connect {
                    host: h,
                    port: *port,
                },
            );
        }
    }
    for cmd in CMDS {
        for interactive in [false, true] {
            probe(
                format!("exec {cmd} {interactive}"),
                Request::Exec {
                    command: cmd,
                    interactive,
                },
            );
        }
    }
    probe("clipboard".into(), Request::Clipboard);
    for b in NAMES {
        for a in ALGS {
            for (qubits, shots, secs, done) in [(1, 1, 1, 0), (32, 500, 50, 2), (63, 999, 99, 4)] {
                let job = QuantumJob {
                    backend: b.to_string(),
                    algorithm: a.to_string(),
                    qubits,
                    shots,
                    runtime: Duration::from_secs(secs),
                };
                probe(
                    format!("submit {b} {a} {qubits} {shots} {secs} {done}"),
                    Request::Submit {
                        job: &job,
                        already_submitted: done,
                    },
                );
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Whenever the subset check accepts a child, the child allows nothing its parent denies.
    #[test]
    fn accepted_children_never_allow_more(parent in caps(), child in caps()) {
        if check_subset(&child, &parent).is_ok() {
            let p = allowed(&parent);
            for a in allowed(&child) {
                prop_assert!(p.contains(&a), "child allows {a} but parent does not");
            }
        }
    }

    /// Every capability set is a subset of itself, and the empty set of every set.
    #[test]
    fn subset_is_reflexive(c in caps()) {
        prop_assert!(check_subset(&c, &c).is_ok());
        prop_assert!(check_subset(&Capabilities::default(), &c).is_ok());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// End to end with real tokens: a minted child verifies, lives no longer than its parent,
    /// names it, and allows nothing the parent denies.
    #[test]
    fn minted_children_never_widen(parent_caps in caps(), child_caps in caps(), ttl in 1u64..7200) {
        let i = issuer();
        let parent = i.issue(&manifest(parent_caps), AUD, Duration::from_secs(3600), NOW, None).unwrap();
        let vp = narrowing_verifier().verify(&parent.bytes, NOW).unwrap();
        match i.narrow(&vp, &manifest(child_caps.clone()), Some(Duration::from_secs(ttl)), NOW + 1) {
            Ok(child) => {
                let vc = verifier(&key(Algorithm::MlDsa65, 9)).verify(&child.bytes, NOW + 1).unwrap();
                prop_assert!(vc.claims().exp <= vp.claims().exp);
                prop_assert!(vc.claims().nbf >= vp.claims().nbf);
                prop_assert_eq!(vc.claims().ancestors.last(), Some(&vp.claims().cti));
                let p = allowed(&vp.claims().capabilities);
                for a in allowed(&vc.claims().capabilities) {
                    prop_assert!(p.contains(&a), "child allows {} but parent does not", a);
                }
            }
            Err(TokenError::Wider(_)) => {
                prop_assert!(check_subset(&child_caps, &vp.claims().capabilities).is_err() || ttl >= 3600);
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }
}
