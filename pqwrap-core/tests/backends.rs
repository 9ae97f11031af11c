//! `pqwrap_core::backends()` is a hand-kept list: these tests hold it to the workspace's
//! `Cargo.lock` and to the core's own `Cargo.toml`, so a changed or added cryptographic
//! dependency cannot leave `pqwrap --version` telling a reviewer something untrue.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use pqwrap_core::backends;

/// Dependencies of the core that compute no cryptographic primitive (encodings,
/// serialisation, memory hygiene, errors, the operating system, threads). A new dependency
/// must go either here or into `backends()`.
const NOT_CRYPTOGRAPHIC: &[&str] = &[
    "bech32",
    "base64ct",
    // Compression (zlib), for data that is signed or encrypted elsewhere.
    "flate2",
    // Constant-time comparison and selection: security-relevant, but it implements no
    // primitive a reviewer would pick an implementation of.
    "subtle",
    "zeroize",
    "thiserror",
    "serde",
    "serde_json",
    "serde_path_to_error",
    "humantime",
    "rustix",
    "tempfile",
    "rayon",
    // Parsing SOPS files and `.sops.yaml` (the `sops` feature).
    "saphyr-parser",
    "regex",
];

/// Optional cryptographic dependencies that backends() lists only when their feature is on.
#[cfg(not(feature = "sops"))]
const NOT_LINKED: &[&str] = &["vsss-rs", "chacha20"];
#[cfg(feature = "sops")]
const NOT_LINKED: &[&str] = &[];

struct Package {
    name: String,
    version: String,
    /// As the lockfile writes them: `name`, or `name version` where the name is ambiguous.
    dependencies: Vec<String>,
}

fn quoted(s: &str) -> &str {
    s.trim().trim_end_matches(',').trim_matches('"')
}

/// The `[[package]]` entries of a version-4 `Cargo.lock` (names, versions, dependencies).
fn parse_lock(text: &str) -> Vec<Package> {
    let mut out: Vec<Package> = Vec::new();
    let mut in_deps = false;
    for line in text.lines() {
        let line = line.trim();
        if line == "[[package]]" {
            out.push(Package {
                name: String::new(),
                version: String::new(),
                dependencies: Vec::new(),
            });
            in_deps = false;
        } else if in_deps {
            if line == "]" {
                in_deps = false;
            } else if let Some(p) = out.last_mut() {
                p.dependencies.push(quoted(line).to_owned());
            }
        } else if let Some(p) = out.last_mut() {
            if let Some(v) = line.strip_prefix("name = ") {
                p.name = quoted(v).to_owned();
            } else if let Some(v) = line.strip_prefix("version = ") {
                p.version = quoted(v).to_owned();
            } else if line == "dependencies = [" {
                in_deps = true;
            }
        }
    }
    out
}

/// name -> version of each package pqwrap-core's lockfile entry depends on directly (the
/// lockfile lists dev-dependencies there too; they only add names).
fn core_direct_dependencies(packages: &[Package]) -> BTreeMap<String, String> {
    let find = |spec: &str| -> &Package {
        let mut parts = spec.split(' ');
        let name = parts.next().unwrap_or_default();
        let version = parts.next();
        let matches: Vec<&Package> = packages
            .iter()
            .filter(|p| p.name == name && version.is_none_or(|v| p.version == v))
            .collect();
        assert_eq!(
            matches.len(),
            1,
            "lockfile entry {spec:?} is ambiguous or missing"
        );
        matches[0]
    };
    find("pqwrap-core")
        .dependencies
        .iter()
        .map(|d| {
            let p = find(d);
            (p.name.clone(), p.version.clone())
        })
        .collect()
}

/// The names under `[dependencies]` in the core's manifest.
fn core_dependencies() -> BTreeSet<String> {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .expect("pqwrap-core/Cargo.toml is readable");
    let mut out = BTreeSet::new();
    let mut in_deps = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
        } else if in_deps && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.', ' ']).next().unwrap_or_default();
            out.insert(name.to_owned());
        }
    }
    out
}

/// The workspace lockfile, or `None` (with a banner) where the core is built outside its
/// workspace, as from a published package.
fn workspace_lock() -> Option<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock");
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) => {
            eprintln!(
                "\n********************************************************************\n\
                 SKIPPED: no workspace Cargo.lock at {} ({e}):\n\
                 the backend versions cannot be checked outside the workspace\n\
                 ********************************************************************\n",
                path.display()
            );
            None
        }
    }
}

#[test]
fn every_listed_version_is_the_one_the_lockfile_links() {
    let Some(lock) = workspace_lock() else {
        return;
    };
    let direct = core_direct_dependencies(&parse_lock(&lock));
    assert!(
        direct.contains_key("libcrux-ml-kem"),
        "the lockfile parser found {direct:?}"
    );
    for b in backends() {
        if b.implementation == "pqwrap-core" {
            continue;
        }
        let locked = direct.get(b.implementation).unwrap_or_else(|| {
            panic!(
                "{} is listed for {} but pqwrap-core does not depend on it",
                b.implementation, b.primitive
            )
        });
        assert_eq!(
            locked, b.version,
            "backends() says {} {} for {}; Cargo.lock links {locked}",
            b.implementation, b.version, b.primitive
        );
    }
}

#[test]
fn every_dependency_of_the_core_is_listed_or_known_to_be_no_cryptography() {
    let listed: BTreeSet<&str> = backends().iter().map(|b| b.implementation).collect();
    let deps = core_dependencies();
    assert!(
        deps.contains("libcrux-ml-kem"),
        "the manifest parser found {deps:?}"
    );
    let unaccounted: Vec<&String> = deps
        .iter()
        .filter(|d| {
            !listed.contains(d.as_str())
                && !NOT_CRYPTOGRAPHIC.contains(&d.as_str())
                && !NOT_LINKED.contains(&d.as_str())
        })
        .collect();
    assert!(
        unaccounted.is_empty(),
        "pqwrap-core depends on {unaccounted:?}: list each in backends() (src/backend.rs) or, \
         if it computes no cryptographic primitive, in NOT_CRYPTOGRAPHIC here"
    );
}

#[test]
fn each_primitive_is_listed_once_with_a_version() {
    let mut primitives = BTreeSet::new();
    for b in backends() {
        assert!(
            primitives.insert(b.primitive),
            "{} is listed twice",
            b.primitive
        );
        assert!(
            !b.version.is_empty() && b.version.split('.').all(|n| n.parse::<u64>().is_ok()),
            "{}: version {:?} is not a release version",
            b.primitive,
            b.version
        );
    }
}
