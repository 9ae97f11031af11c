//! Narrowing a request to a policy grant never widens it: whatever is asked and whatever the
//! rule allows, the grant is within both (the same subset check token narrowing uses), and
//! it validates as a manifest would.
// A failed unwrap in a test is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use pqwrap_broker::policy::intersect;
use pqwrap_core::token::manifest::{JobCeiling, QuantumGrant, ShellGrant};
use pqwrap_core::token::narrow::check_subset;
use pqwrap_core::token::{Capabilities, FileGrant, FileMode, NetGrant};
use proptest::prelude::*;

const PATHS: &[&str] = &[
    "/",
    "/home",
    "/home/user",
    "/home/user/Documents",
    "/home/user/Documents/Contracts",
    "/home/user/Documents/Contracts2",
    "/home/user/Documents/Contracts/2024",
    "/etc",
];
const HOSTS: &[&str] = &["a.local", "b.local", "10.0.0.1"];
const CMDS: &[&str] = &["/usr/bin/less", "/bin/sh", "/usr/bin/git"];
const NAMES: &[&str] = &["qpu-sim-1", "qpu-2", "vqe", "qaoa"];

fn mode() -> impl Strategy<Value = FileMode> {
    prop_oneof![
        Just(FileMode::Read),
        Just(FileMode::Write),
        Just(FileMode::ReadWrite)
    ]
}

fn subset_of(all: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
    proptest::sample::subsequence(all, 0..=all.len())
        .prop_map(|v| v.into_iter().map(String::from).collect())
}

fn caps() -> impl Strategy<Value = Capabilities> {
    let files = proptest::collection::vec((0..PATHS.len(), mode()), 0..5).prop_map(|v| {
        let mut out: Vec<FileGrant> = Vec::new();
        for (i, m) in v {
            if !out.iter().any(|g| g.path == PATHS[i]) {
                out.push(FileGrant {
                    path: PATHS[i].into(),
                    mode: m,
                });
            }
        }
        out
    });
    let net = proptest::sample::subsequence(
        HOSTS
            .iter()
            .flat_map(|h| [443u16, 22].map(|p| (*h, p)))
            .collect::<Vec<_>>(),
        0..4,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(h, p)| NetGrant {
                host: h.into(),
                port: p,
            })
            .collect::<Vec<_>>()
    });
    let shell =
        proptest::option::of(
            (subset_of(CMDS), any::<bool>()).prop_map(|(c, i)| ShellGrant {
                allowed_commands: c,
                interactive: i,
            }),
        );
    let quantum = proptest::option::of(
        (
            subset_of(&NAMES[..2]),
            subset_of(&NAMES[2..]),
            0u64..100,
            0u64..100,
            0u64..10,
            1u64..1000,
        )
            .prop_map(|(b, a, q, s, j, r)| QuantumGrant {
                backends: b,
                algorithms: a,
                max_qubits: q,
                max_shots: s,
                max_jobs: JobCeiling::new(j),
                max_runtime_secs: r,
            }),
    );
    (files, net, any::<bool>(), shell, quantum).prop_map(|(f, n, c, s, q)| Capabilities {
        file_access: f,
        network: n,
        clipboard: c,
        shell: s,
        quantum: q,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn narrowing_never_widens(req in caps(), ceiling in caps()) {
        let (granted, _) = intersect(&req, &ceiling);
        prop_assert!(check_subset(&granted, &ceiling).is_ok(), "wider than the rule: {:?}", check_subset(&granted, &ceiling));
        prop_assert!(check_subset(&granted, &req).is_ok(), "wider than the request: {:?}", check_subset(&granted, &req));
        prop_assert!(granted.validate().is_ok());
        // What fits entirely is granted entirely.
        if check_subset(&req, &ceiling).is_ok() {
            prop_assert!(check_subset(&req, &granted).is_ok(), "a request within the rule was cut");
        }
    }
}
