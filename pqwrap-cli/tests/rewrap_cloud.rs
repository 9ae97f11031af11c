//! `pqwrap rewrap|scan az://...` against Azurite, the Azure Storage emulator, started by the
//! tests on loopback (`.ci/install-cloud-emulators.sh` installs it, and gcp-storage-emulator).
//! Every object is set up and checked through the tests' own REST client (support/cloud.rs),
//! never through pqwrap's.
//!
//! Covered on Azure: a mixed container re-wrapped and every object decrypted with the new
//! identity, the report, a second run that does nothing; `scan` and `scan --json` before and
//! after; `--dry-run`; 4 shards in parallel; `--manifest`; bad credentials, a missing
//! container and the flags the service does not support (exit 2); an object changed by
//! another writer before pqwrap's commit, and after it; a writer racing the run; SIGKILL at
//! random moments, then a resume.
//!
//! gs:// is not run against a server: object_store's GCS client lists through the XML API,
//! which gcp-storage-emulator answers with 501, and the emulator checks no generation
//! precondition. The `emulator_*` tests measure what each emulator enforces, so that the day
//! one serves object_store, the test bodies (which take the service) can run on both.
//!
//! `cargo test -p pqwrap-cli --test rewrap_cloud` runs the CI size; `-- --ignored` adds the
//! big SIGKILL run.
// A failed unwrap in a test is a failed test, with its message.
#![allow(clippy::unwrap_used)]

#[path = "support/cloud.rs"]
mod cloud;
mod common;
#[path = "support/s3.rs"]
mod s3;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloud::{Server, Service, Version};
use common::{OldKeys, age_bytes, code, native_bytes, plaintext, pqwrap, text};
use pqwrap_core::age;
use pqwrap_core::keys::Identity;

/// Keys and key files of a test.
struct Keys {
    dir: tempfile::TempDir,
    k: common::Keys,
}

impl Keys {
    fn new() -> Keys {
        let dir = tempfile::tempdir().unwrap();
        let k = common::keys(dir.path(), OldKeys::X25519AndPostQuantum);
        std::fs::write(dir.path().join("new.pub"), format!("{}\n", k.new_pub)).unwrap();
        Keys { dir, k }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// `pqwrap rewrap -i old -i new -R new.pub ARGS...` against `s`.
fn rewrap(s: &Server, keys: &Keys, args: &[&str]) -> Command {
    rewrap_with(s.env(), keys, args)
}

fn rewrap_with(env: Vec<(&'static str, String)>, keys: &Keys, args: &[&str]) -> Command {
    let mut c = pqwrap();
    c.envs(env)
        .arg("rewrap")
        .arg("-i")
        .arg(&keys.k.old_file)
        .arg("-i")
        .arg(&keys.k.new_file)
        .arg("-R")
        .arg(keys.path("new.pub"))
        .args(args);
    c
}

fn scan(s: &Server, args: &[&str]) -> Output {
    out(pqwrap().envs(s.env()).arg("scan").args(args))
}

fn out(mut c: impl std::borrow::BorrowMut<Command>) -> Output {
    c.borrow_mut()
        .stdin(Stdio::null())
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// What an object is, and what it must open to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Binary age to the old X25519 identity.
    Age,
    /// Armored age to the old X25519 identity.
    Armored,
    /// Binary age to the old post-quantum identity.
    AgePq,
    /// A native pqwrap file to the old post-quantum identity.
    Native,
    /// Not encrypted.
    Plain,
}

struct Obj {
    key: String,
    kind: Kind,
    original: Vec<u8>,
    plaintext: Vec<u8>,
}

fn make(keys: &Keys, key: &str, kind: Kind, size: usize, seed: u64) -> Obj {
    let data = plaintext(seed, size);
    let k = &keys.k;
    let original = match kind {
        Kind::Age => age_bytes(&[&k.old], &data, false),
        Kind::Armored => age_bytes(&[&k.old], &data, true),
        Kind::AgePq => age_bytes(&[&k.old_pq], &data, false),
        Kind::Native => native_bytes(&[&k.old_pq], &data),
        Kind::Plain => data.clone(),
    };
    Obj {
        key: key.to_string(),
        kind,
        original,
        plaintext: data,
    }
}

fn put_all(s: &Server, container: &str, objs: &[Obj]) {
    // gcp-storage-emulator serves one request at a time: parallel writers only queue there.
    let threads = if s.service == Service::Azure { 8 } else { 1 };
    std::thread::scope(|sc| {
        for chunk in objs.chunks(objs.len().div_ceil(threads).max(1)) {
            sc.spawn(move || {
                for o in chunk {
                    s.put(container, &o.key, &o.original);
                }
            });
        }
    });
}

/// Opens age or native bytes with `id`: `Ok(None)` if it is not for `id`.
fn open_with(bytes: &[u8], kind: Kind, id: &Identity) -> Result<Option<Vec<u8>>, String> {
    common::open_bytes(bytes, kind == Kind::Native, id)
}

/// Which identity an object's `bytes` open with: "old" or "new" ("untouched" for a plain
/// object still as it was); panics if neither, if its plaintext changed, or if it is gone.
fn state(bytes: Option<Vec<u8>>, o: &Obj, keys: &Keys, when: &str) -> &'static str {
    let bytes = bytes.unwrap_or_else(|| panic!("{when}: {} is gone", o.key));
    if o.kind == Kind::Plain {
        assert!(bytes == o.original, "{when}: {} was changed", o.key);
        return "untouched";
    }
    let old = match o.kind {
        Kind::Age | Kind::Armored => &keys.k.old,
        _ => &keys.k.old_pq,
    };
    // The new identity alone must open a re-wrapped object (not only the old one).
    let (got, which) = match open_with(&bytes, o.kind, &keys.k.new) {
        Ok(Some(p)) => (p, "new"),
        Ok(None) => match open_with(&bytes, o.kind, old) {
            Ok(Some(p)) => (p, "old"),
            Ok(None) => panic!("{when}: {} opens with neither identity", o.key),
            Err(e) => panic!("{when}: {} is damaged: {e}", o.key),
        },
        Err(e) => panic!("{when}: {} is damaged: {e}", o.key),
    };
    assert!(
        got == o.plaintext,
        "{when}: {} yields other plaintext",
        o.key
    );
    if which == "new" {
        assert!(
            matches!(open_with(&bytes, o.kind, old), Ok(None)),
            "{when}: {} still opens with the old identity",
            o.key
        );
        if o.kind != Kind::Native {
            let dec = age::Decryptor::new(&bytes[..]).unwrap();
            assert_eq!(
                dec.header().protection(),
                age::Protection::PostQuantum,
                "{when}: {}",
                o.key
            );
        }
        assert_eq!(
            bytes.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"),
            o.kind == Kind::Armored,
            "{when}: {} changed its armor",
            o.key
        );
    }
    which
}

fn states(
    s: &Server,
    container: &str,
    objs: &[Obj],
    keys: &Keys,
    when: &str,
) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for o in objs {
        *m.entry(state(s.get(container, &o.key), o, keys, when))
            .or_default() += 1;
    }
    m
}

fn report_lines(bytes: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs one test body per service: `NAME::azure` and `NAME::gcs`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn azure() {
                super::$name(super::Service::Azure, concat!(stringify!($name), "::azure"));
            }
            #[test]
            fn gcs() {
                super::$name(super::Service::Gcs, concat!(stringify!($name), "::gcs"));
            }
        }
    )*};
}

/// Runs one test body against Azurite only: `NAME::azure`.
macro_rules! on_azure {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn azure() {
                super::$name(super::Service::Azure, concat!(stringify!($name), "::azure"));
            }
        }
    )*};
}

on_both!(helpers_round_trip);

// The bodies take the service, but gs:// runs against no server: object_store's GCS client
// lists through the XML API, which gcp-storage-emulator answers with 501, and the emulator
// checks no generation precondition (both pinned by the emulator_gcs_* tests below). Where a
// GCS server that serves object_store can be installed, these go to `on_both!`.
on_azure!(
    a_mixed_container_is_rewrapped_and_every_object_checked,
    scan_counts_before_and_after,
    a_dry_run_changes_nothing,
    four_shards_in_parallel_cover_the_container_exactly_once,
    a_manifest_takes_only_the_listed_keys,
    bad_credentials_a_missing_container_and_unsupported_flags_exit_2,
);

// ---- the helpers and the emulators themselves ----

fn helpers_round_trip(service: Service, test: &str) {
    let Some(s) = cloud::shared(service, test) else {
        return;
    };
    let c = "helpers";
    s.create_container(c);
    s.create_container(c);
    let key = "a dir/sub/ü+x.bin";
    assert_eq!(s.get(c, key), None);
    assert_eq!(s.version(c, key), None);
    let v1 = s.put(c, key, b"one");
    assert_eq!(s.get(c, key).unwrap(), b"one");
    assert_eq!(s.version(c, key).unwrap(), v1);
    let v2 = s.put(c, key, b"two");
    assert_ne!(v1, v2, "a write makes a new version");
    assert_eq!(s.version(c, key).unwrap(), v2);
    s.put(c, "a dir/other", b"");
    s.put(c, "elsewhere", b"x");
    assert_eq!(s.get(c, "a dir/other").unwrap(), b"");
    let big = plaintext(1, 6 << 20);
    s.put(c, "big", &big);
    assert!(s.get(c, "big").unwrap() == big);
    assert_eq!(s.list(c, "a dir/"), ["a dir/other", "a dir/sub/ü+x.bin"]);
    assert_eq!(s.list(c, "").len(), 4);
    // The version the write was pinned to is current: the conditional write goes through.
    let v3 = s.put_cond(c, key, b"three", Some(&v2)).unwrap();
    assert_eq!(s.get(c, key).unwrap(), b"three");
    assert_eq!(s.version(c, key).unwrap(), v3);
}

/// Azurite refuses a Put Blob whose If-Match names a replaced version (412) and leaves the
/// blob as it was, and refuses a wrong account key (403): what the az:// tests of
/// preconditions and credentials rely on.
#[test]
fn emulator_azurite_enforces_if_match_and_the_account_key() {
    let Some(s) = cloud::shared(
        Service::Azure,
        "emulator_azurite_enforces_if_match_and_the_account_key",
    ) else {
        return;
    };
    let c = "preconditions";
    s.create_container(c);
    let stale = s.put(c, "k", b"first");
    let current = s.put(c, "k", b"second");
    let e = s.put_cond(c, "k", b"third", Some(&stale)).unwrap_err();
    assert_eq!(e.status, 412, "{e}");
    assert!(e.body.contains("ConditionNotMet"), "{e}");
    assert_eq!(s.get(c, "k").unwrap(), b"second");
    assert_eq!(s.version(c, "k").unwrap(), current);
    let e = s
        .put_cond(
            c,
            "k",
            b"x",
            Some(&Version::ETag("\"0x8D0000000000000\"".into())),
        )
        .unwrap_err();
    assert_eq!(e.status, 412, "{e}");
    assert_eq!(s.azure_status_with_wrong_key(), 403);
    // A blob with only staged blocks is not there to read, but the helpers' listing shows it.
    s.stage_block(c, "staged", b"a block");
    assert_eq!(s.get(c, "staged"), None);
    assert_eq!(s.list(c, ""), ["k", "staged"]);
}

/// What gcp-storage-emulator does not check, measured: a write conditioned on a replaced
/// generation goes through. If this starts failing, the emulator enforces preconditions and
/// the Azure-only tests below can run against it too.
#[test]
fn emulator_gcs_checks_no_generation_precondition() {
    let Some(s) = cloud::shared(
        Service::Gcs,
        "emulator_gcs_checks_no_generation_precondition",
    ) else {
        return;
    };
    let c = "preconditions";
    s.create_container(c);
    let stale = s.put(c, "k", b"first");
    // Generations are nanosecond clocks: make sure the second differs.
    std::thread::sleep(Duration::from_millis(2));
    let current = s.put(c, "k", b"second");
    assert_ne!(stale, current);
    let r = s.put_cond(c, "k", b"third", Some(&stale));
    assert!(
        r.is_ok(),
        "the emulator now refuses a stale generation: {r:?}"
    );
    assert_eq!(s.get(c, "k").unwrap(), b"third");
}

/// What gcp-storage-emulator's XML API (the one object_store's GCS client speaks) lacks,
/// measured: a PUT or GET of an object answers no `ETag`, `Last-Modified` or
/// `x-goog-generation` header (object_store requires the first two), and a bucket listing
/// (`GET /BUCKET?list-type=2`) answers 501. If this starts failing, the emulator has grown
/// them and the gs:// runs may work against it.
#[test]
fn emulator_gcs_xml_api_lacks_what_object_store_needs() {
    let Some(s) = cloud::shared(
        Service::Gcs,
        "emulator_gcs_xml_api_lacks_what_object_store_needs",
    ) else {
        return;
    };
    let c = "xmlapi";
    s.create_container(c);
    let (st, h) = s.raw("PUT", "/xmlapi/a%2Fb", b"hello");
    assert_eq!(st, 200);
    assert!(
        h.get("etag").is_none() && h.get("x-goog-generation").is_none(),
        "{h:?}"
    );
    assert_eq!(s.get(c, "a/b").unwrap(), b"hello", "the XML PUT stored it");
    let (st, h) = s.raw("GET", "/xmlapi/a%2Fb", b"");
    assert_eq!(st, 200);
    for name in ["etag", "last-modified", "x-goog-generation"] {
        assert!(h.get(name).is_none(), "{name}: {h:?}");
    }
    let (st, _) = s.raw("GET", "/xmlapi?list-type=2&prefix=a%2F", b"");
    assert_eq!(st, 501);
}

// ---- re-wrapping, both services ----

/// The mixed container's objects: every kind, nested prefixes, an empty object, one over
/// 5 MiB.
fn mixed_objects(keys: &Keys) -> Vec<Obj> {
    let kinds = [
        Kind::Age,
        Kind::Armored,
        Kind::AgePq,
        Kind::Native,
        Kind::Plain,
    ];
    let mut objs = Vec::new();
    for i in 0..20 {
        let kind = kinds[i % kinds.len()];
        let size = [1, 100, 65_536, 70_000, 300_000][i / kinds.len() % 5];
        let dir = ["", "a/", "a/b/", "a/b/c d/"][i % 4];
        objs.push(make(
            keys,
            &format!("data/{dir}{i:02} name+ü.bin"),
            kind,
            size,
            i as u64,
        ));
    }
    objs.push(make(keys, "data/empty", Kind::Plain, 0, 0));
    objs.push(make(keys, "data/a/empty-age.age", Kind::Age, 0, 0));
    objs.push(make(
        keys,
        "data/big.age",
        Kind::Age,
        (5 << 20) + 300_000,
        40,
    ));
    objs.push(make(keys, "data/a/big.pqw", Kind::Native, 6 << 20, 41));
    objs
}

fn a_mixed_container_is_rewrapped_and_every_object_checked(service: Service, test: &str) {
    let Some(s) = cloud::shared(service, test) else {
        return;
    };
    let keys = Keys::new();
    let c = "mixed";
    s.create_container(c);
    let objs = mixed_objects(&keys);
    put_all(s, c, &objs);
    // Outside the prefix: never touched.
    let outside = make(&keys, "elsewhere/x.age", Kind::Age, 10, 99);
    put_all(s, c, std::slice::from_ref(&outside));
    let listed_before = s.list(c, "");
    let encrypted = objs.iter().filter(|o| o.kind != Kind::Plain).count();
    let plain = objs.len() - encrypted;

    let report = keys.path("r.jsonl");
    let url = s.url(c, "data/");
    let o = out(rewrap(
        s,
        &keys,
        &["--report", report.to_str().unwrap(), &url],
    ));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let st = states(s, c, &objs, &keys, "after the run");
    assert_eq!(st.get("old"), None, "{st:?}");
    assert_eq!(st["new"], encrypted, "{st:?}");
    assert_eq!(st["untouched"], plain, "{st:?}");
    assert_eq!(
        state(s.get(c, &outside.key), &outside, &keys, "outside"),
        "old"
    );
    // Nothing added, nothing removed: no temporary or marker left beside the objects.
    assert_eq!(s.list(c, ""), listed_before);

    // The report names every object under the prefix once, with its URL.
    let rep = report_lines(&std::fs::read(&report).unwrap());
    let named: BTreeSet<String> = rep
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = objs
        .iter()
        .map(|o| format!("{}://{c}/{}", service.scheme(), o.key))
        .collect();
    assert_eq!(named, expected, "{rep:?}");
    assert_eq!(rep.len(), objs.len(), "{rep:?}");
    for r in &rep {
        let path = r["path"].as_str().unwrap();
        let o = objs
            .iter()
            .find(|o| path.ends_with(&format!("/{}", o.key)))
            .unwrap();
        if o.kind == Kind::Plain {
            assert_eq!(r["outcome"], "skipped", "{r}");
            assert_eq!(r["reason"], "not_encrypted", "{r}");
        } else {
            assert_eq!(r["outcome"], "rewrapped", "{r}");
        }
    }

    // Done means done: a second run verifies and changes nothing.
    let versions: Vec<Option<Version>> = objs.iter().map(|o| s.version(c, &o.key)).collect();
    let o = out(rewrap(s, &keys, &[&url]));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(
        stderr(&o).contains(&format!("already done  {encrypted}\n")),
        "{}",
        text(&o)
    );
    assert!(stderr(&o).contains("nothing to change"), "{}", text(&o));
    let after: Vec<Option<Version>> = objs.iter().map(|o| s.version(c, &o.key)).collect();
    assert_eq!(versions, after, "the second run wrote");
}

fn scan_counts_before_and_after(service: Service, test: &str) {
    let Some(s) = cloud::shared(service, test) else {
        return;
    };
    let keys = Keys::new();
    let c = "scan";
    s.create_container(c);
    let objs: Vec<Obj> = [
        Kind::Age,
        Kind::Age,
        Kind::Armored,
        Kind::AgePq,
        Kind::Native,
    ]
    .iter()
    .chain(&[Kind::Plain, Kind::Plain])
    .enumerate()
    .map(|(i, k)| make(&keys, &format!("s/{i}"), *k, 1000 + i, i as u64))
    .collect();
    put_all(s, c, &objs);
    let url = s.url(c, "s/");
    let inventory = |when: &str| -> serde_json::Value {
        let o = scan(s, &["--json", &url]);
        assert_eq!(code(&o), 0, "{when}: {}", text(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let files = |inv: &serde_json::Value, p: &str| inv["by_protection"][p]["files"].clone();
    let before = inventory("before");
    assert_eq!(before["total"]["files"], 7, "{before}");
    assert_eq!(before["to_rewrap"]["files"], 3, "{before}");
    assert_eq!(files(&before, "classical"), 3, "{before}");
    // Already post-quantum, to the old identity: scan (without keys) counts it as done.
    assert_eq!(files(&before, "post_quantum"), 2, "{before}");
    assert_eq!(files(&before, "not_encrypted"), 2, "{before}");
    let o = scan(s, &[&url]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        table.contains(
            "encrypted files: 5; post-quantum only: 2; to re-wrap (classical or mixed): 3"
        ),
        "{table}"
    );

    let o = out(rewrap(s, &keys, &[&url]));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let after = inventory("after");
    assert_eq!(after["total"]["files"], 7, "{after}");
    assert_eq!(after["to_rewrap"]["files"], 0, "{after}");
    assert_eq!(files(&after, "post_quantum"), 5, "{after}");
    assert_eq!(files(&after, "not_encrypted"), 2, "{after}");
    let o = scan(s, &[&url]);
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        table.contains(
            "encrypted files: 5; post-quantum only: 5; to re-wrap (classical or mixed): 0"
        ),
        "{table}"
    );
}

fn a_dry_run_changes_nothing(service: Service, test: &str) {
    let Some(s) = cloud::shared(service, test) else {
        return;
    };
    let keys = Keys::new();
    let c = "dryrun";
    s.create_container(c);
    let objs: Vec<Obj> = (0..6)
        .map(|i| {
            let kind = [Kind::Age, Kind::Native, Kind::Plain][i % 3];
            make(&keys, &format!("d/{i}"), kind, 500 + i, i as u64)
        })
        .collect();
    put_all(s, c, &objs);
    let versions: Vec<Option<Version>> = objs.iter().map(|o| s.version(c, &o.key)).collect();
    let report = keys.path("r.jsonl");
    let o = out(rewrap(
        s,
        &keys,
        &[
            "--dry-run",
            "--report",
            report.to_str().unwrap(),
            &s.url(c, "d/"),
        ],
    ));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(stderr(&o).contains("would re-wrap 4"), "{}", text(&o));
    for (o, v) in objs.iter().zip(&versions) {
        assert!(s.get(c, &o.key).unwrap() == o.original, "{} changed", o.key);
        assert_eq!(&s.version(c, &o.key), v, "{} was written", o.key);
    }
    let rep = report_lines(&std::fs::read(&report).unwrap());
    assert_eq!(
        rep.iter()
            .filter(|r| r["outcome"] == "would_rewrap")
            .count(),
        4,
        "{rep:?}"
    );
    assert_eq!(s.list(c, "").len(), objs.len());
}

fn four_shards_in_parallel_cover_the_container_exactly_once(service: Service, test: &str) {
    let Some(s) = cloud::shared(service, test) else {
        return;
    };
    let keys = Keys::new();
    let c = "shards";
    s.create_container(c);
    let objs: Vec<Obj> = (0..120)
        .map(|i| {
            make(
                &keys,
                &format!("s/{i:03}.age"),
                Kind::Age,
                300 + i,
                i as u64,
            )
        })
        .collect();
    put_all(s, c, &objs);
    let children: Vec<_> = (0..4)
        .map(|k| {
            let shard = format!("{k}/4");
            let report = keys.path(&format!("shard-{k}.jsonl"));
            rewrap(
                s,
                &keys,
                &[
                    "-j",
                    "4",
                    "--shard",
                    &shard,
                    "--report",
                    report.to_str().unwrap(),
                    &s.url(c, ""),
                ],
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for ch in children {
        let o = ch.wait_with_output().unwrap();
        assert_eq!(code(&o), 0, "{}", text(&o));
    }
    let mut seen = BTreeMap::<String, usize>::new();
    for k in 0..4 {
        let lines = report_lines(&std::fs::read(keys.path(&format!("shard-{k}.jsonl"))).unwrap());
        assert!(!lines.is_empty(), "shard {k} took nothing");
        for l in lines {
            assert_eq!(l["outcome"], "rewrapped", "{l}");
            *seen
                .entry(l["path"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert_eq!(seen.len(), objs.len());
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");
    let st = states(s, c, &objs, &keys, "after the shards");
    assert_eq!(st["new"], objs.len());
}

fn a_manifest_takes_only_the_listed_keys(service: Service, test: &str) {
    let Some(s) = cloud::shared(service, test) else {
        return;
    };
    let keys = Keys::new();
    let c = "manifest";
    s.create_container(c);
    let objs: Vec<Obj> = (0..5)
        .map(|i| make(&keys, &format!("m/{i} x.age"), Kind::Age, 300, i as u64))
        .collect();
    put_all(s, c, &objs);
    let list = keys.path("keys.txt");
    std::fs::write(&list, "m/0 x.age\n# a comment\n\nm/3 x.age\n").unwrap();
    let report = keys.path("r.jsonl");
    let o = out(rewrap(
        s,
        &keys,
        &[
            "--manifest",
            list.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
            &s.url(c, "m/"),
        ],
    ));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let got: Vec<&str> = objs
        .iter()
        .map(|o| state(s.get(c, &o.key), o, &keys, "manifest"))
        .collect();
    assert_eq!(got, ["new", "old", "old", "new", "old"]);
    assert_eq!(report_lines(&std::fs::read(&report).unwrap()).len(), 2);
    // A key outside the prefix is an error naming its line.
    std::fs::write(&list, "m/1 x.age\nother/k\n").unwrap();
    let o = out(rewrap(
        s,
        &keys,
        &["--manifest", list.to_str().unwrap(), &s.url(c, "m/")],
    ));
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(stderr(&o).contains("line 2"), "{}", text(&o));
}

fn bad_credentials_a_missing_container_and_unsupported_flags_exit_2(service: Service, test: &str) {
    let Some(s) = cloud::shared(service, test) else {
        return;
    };
    let keys = Keys::new();
    let c = "creds";
    s.create_container(c);
    let obj = make(&keys, "k.age", Kind::Age, 100, 1);
    put_all(s, c, std::slice::from_ref(&obj));
    let url = s.url(c, "");
    let said = |o: &Output, what: &str| {
        assert_eq!(code(o), 2, "{what}: {}", text(o));
        let e = stderr(o);
        assert!(!e.contains("not supported: only s3://"), "{what}: {e}");
        e
    };
    match s.env_bad_credentials() {
        Some(env) => {
            let o = out(rewrap_with(env.clone(), &keys, &[&url]));
            let e = said(&o, "a wrong key");
            assert!(e.contains(c), "the message names the container: {e}");
            let o = out(pqwrap().envs(env).args(["scan", &url]));
            said(&o, "scan with a wrong key");
        }
        None => eprintln!(
            "{test}: gcp-storage-emulator checks no credentials: bad credentials not tested"
        ),
    }
    let missing = s.url("no-such-container", "");
    let o = out(rewrap(s, &keys, &[&missing]));
    let e = said(&o, "a missing container");
    assert!(e.contains("no-such-container"), "{e}");
    let o = scan(s, &[&missing]);
    let e = said(&o, "scan of a missing container");
    assert!(e.contains("no-such-container"), "{e}");
    // Object versions are an S3 feature here: refused, not ignored.
    let o = out(rewrap(s, &keys, &["--purge-old-versions", &url]));
    let e = said(&o, "--purge-old-versions");
    assert!(e.contains("--purge-old-versions"), "{e}");
    let o = scan(s, &["--versions", &url]);
    let e = said(&o, "scan --versions");
    assert!(e.contains("--versions"), "{e}");
    // Nothing happened to the object on the way.
    assert!(s.get(c, &obj.key).unwrap() == obj.original);
}

// ---- Azure only: preconditions ----

/// The looping writer: rewrites `victims` again and again (age to the old identity, a new
/// plaintext each round, an unconditional Put Blob) until `stop`. Before each write it reads
/// the object back: it must still hold the writer's previous plaintext (as written, or
/// re-wrapped by a pqwrap that read exactly that version); anything else means a write of
/// its own was overwritten, and goes in the list of violations. Returns the last plaintext it
/// wrote to each victim, and the violations.
fn writer_loop(
    s: &Server,
    c: &str,
    keys: &Keys,
    victims: &[&Obj],
    stop: &AtomicBool,
    rounds: &AtomicU64,
) -> (BTreeMap<String, Vec<u8>>, Vec<String>) {
    let mut expected: BTreeMap<String, Vec<u8>> = victims
        .iter()
        .map(|o| (o.key.clone(), o.plaintext.clone()))
        .collect();
    let mut violations = Vec::new();
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        for v in victims {
            let now = s.get(c, &v.key).unwrap_or_default();
            let got = open_either(&now, keys);
            if got.as_ref() != expected.get(&v.key) {
                violations.push(format!(
                    "round {round}: {} holds {:?}",
                    v.key,
                    got.map(|g| String::from_utf8_lossy(&g[..g.len().min(40)]).into_owned())
                ));
            }
            let data = format!("the writer's round {round} of {}", v.key).into_bytes();
            s.put(c, &v.key, &age_bytes(&[&keys.k.old], &data, false));
            expected.insert(v.key.clone(), data);
        }
        rounds.store(round, Ordering::Relaxed);
    }
    (expected, violations)
}

/// The plaintext of age `bytes` opened with the old or the new identity.
fn open_either(bytes: &[u8], keys: &Keys) -> Option<Vec<u8>> {
    [&keys.k.old, &keys.k.new]
        .iter()
        .find_map(|id| open_with(bytes, Kind::Age, id).ok().flatten())
}

/// Another writer rewrites some objects in a loop while `pqwrap rewrap -j 1` runs: nothing
/// the writer wrote is overwritten by pqwrap, nothing is lost, and what pqwrap found changed
/// between its read and its commit is reported `changed_under_us` (exit 1).
#[test]
fn azure_a_concurrent_writer_is_never_overwritten() {
    let test = "azure_a_concurrent_writer_is_never_overwritten";
    let Some(s) = cloud::shared(Service::Azure, test) else {
        return;
    };
    let keys = Keys::new();
    let c = "writer";
    s.create_container(c);
    let objs: Vec<Obj> = (0..240)
        .map(|i| make(&keys, &format!("w/{i:03}"), Kind::Age, 2000 + i, i as u64))
        .collect();
    put_all(s, c, &objs);
    // Every 8th object, spread over the run.
    let victims: Vec<&Obj> = objs.iter().step_by(8).collect();
    let report = keys.path("r.jsonl");
    let stop = AtomicBool::new(false);
    let rounds = AtomicU64::new(0);
    let (o, (last, violations)) = std::thread::scope(|sc| {
        let w = sc.spawn(|| writer_loop(s, c, &keys, &victims, &stop, &rounds));
        while rounds.load(Ordering::Relaxed) == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let o = out(rewrap(
            s,
            &keys,
            &[
                "-j",
                "1",
                "--report",
                report.to_str().unwrap(),
                &s.url(c, "w/"),
            ],
        ));
        stop.store(true, Ordering::Relaxed);
        (o, w.join().unwrap())
    });
    let rep = report_lines(&std::fs::read(&report).unwrap());
    let changed: BTreeSet<&str> = rep
        .iter()
        .filter(|r| r["reason"] == "changed_under_us")
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    eprintln!(
        "{test}: the writer made {} rounds over {} objects; {} reported changed_under_us",
        rounds.load(Ordering::Relaxed),
        victims.len(),
        changed.len()
    );
    assert!(violations.is_empty(), "{violations:#?}");
    assert_eq!(rep.len(), objs.len(), "{rep:?}");
    for r in &rep {
        let path = r["path"].as_str().unwrap();
        let key = path.strip_prefix(&format!("az://{c}/")).unwrap();
        assert!(
            victims.iter().any(|v| v.key == key) || r["outcome"] == "rewrapped",
            "only the writer's objects may be left: {r}"
        );
        assert!(
            r["outcome"] == "rewrapped" || r["reason"] == "changed_under_us",
            "{r}"
        );
    }
    assert_eq!(
        code(&o),
        if changed.is_empty() { 0 } else { 1 },
        "{}",
        text(&o)
    );
    for o in &objs {
        let now = s.get(c, &o.key).unwrap();
        match last.get(&o.key) {
            // The writer's last write stands.
            Some(data) => assert_eq!(
                open_either(&now, &keys).as_ref(),
                Some(data),
                "{}: the writer's last write was overwritten",
                o.key
            ),
            None => assert_eq!(state(Some(now), o, &keys, "after the run"), "new"),
        }
    }
}

/// The deterministic case: a proxy in front of Azurite lets another writer replace each
/// victim just before pqwrap's commit of it (its Put Blob). The writer's contents win and
/// stay, the victims are reported `changed_under_us`, the run exits 1.
#[test]
fn azure_an_object_changed_before_the_commit_is_left_alone_and_reported() {
    let test = "azure_an_object_changed_before_the_commit_is_left_alone_and_reported";
    let Some(s) = cloud::shared(Service::Azure, test) else {
        return;
    };
    let keys = Keys::new();
    let c = "beforecommit";
    s.create_container(c);
    let objs = vec![
        make(&keys, "small.age", Kind::Age, 1000, 1),
        make(&keys, "large.age", Kind::Age, 6 << 20, 2),
        make(&keys, "native.pqw", Kind::Native, 1000, 3),
        make(&keys, "other.age", Kind::Age, 1000, 4),
    ];
    put_all(s, c, &objs);
    const VICTIMS: &[&str] = &["small.age", "large.age", "native.pqw"];
    let writes = Arc::new(Mutex::new(Vec::<String>::new()));
    let w2 = writes.clone();
    let port = s.port;
    // The proxy thread needs a 'static server: the shared one is.
    let server: &'static Server = s;
    let proxy = s3::Proxy::start(
        port,
        Arc::new(move |seen: &s3::Seen<'_>, _| {
            for victim in VICTIMS {
                let path = format!("/{}/{c}/{victim}", cloud::AZURE_ACCOUNT);
                let on_victim = seen.target == path || seen.target.starts_with(&format!("{path}?"));
                // Put Blob, or the Put Block List that commits staged blocks.
                let commit = seen.method == "PUT"
                    && (!seen.target.contains("comp=") || seen.target.contains("comp=blocklist"));
                if on_victim && commit {
                    server.put(c, victim, b"someone else's new contents");
                    w2.lock().unwrap().push(victim.to_string());
                }
            }
            s3::Fault::Pass
        }),
    );
    let mut env = s.env();
    for (k, v) in &mut env {
        if *k == "AZURITE_BLOB_STORAGE_URL" {
            *v = format!("http://127.0.0.1:{}", proxy.port);
        }
    }
    let report = keys.path("r.jsonl");
    let o = out(rewrap_with(
        env,
        &keys,
        &["--report", report.to_str().unwrap(), &s.url(c, "")],
    ));
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(stderr(&o).contains("changed under us 3"), "{}", text(&o));
    let rep = report_lines(&std::fs::read(&report).unwrap());
    for victim in VICTIMS {
        let line = rep
            .iter()
            .find(|r| r["path"] == format!("az://{c}/{victim}"))
            .unwrap();
        assert_eq!(line["reason"], "changed_under_us", "{line}");
        assert_eq!(s.get(c, victim).unwrap(), b"someone else's new contents");
    }
    assert_eq!(
        state(s.get(c, "other.age"), &objs[3], &keys, "other"),
        "new"
    );
    let written: BTreeSet<String> = writes.lock().unwrap().iter().cloned().collect();
    assert_eq!(written.len(), VICTIMS.len(), "{written:?}");
}

/// The other writer replaces each victim right after pqwrap's commit of it, before pqwrap
/// reads its replacement back (the read-back, pinned to the version pqwrap wrote, then finds
/// another): the writer's contents stay, and the victim is reported `changed_under_us`, not
/// as a failed read.
#[test]
fn azure_an_object_changed_after_the_commit_is_reported_changed_under_us() {
    let test = "azure_an_object_changed_after_the_commit_is_reported_changed_under_us";
    let Some(s) = cloud::shared(Service::Azure, test) else {
        return;
    };
    let keys = Keys::new();
    let c = "aftercommit";
    s.create_container(c);
    let objs = vec![
        make(&keys, "small.age", Kind::Age, 1000, 1),
        make(&keys, "other.age", Kind::Age, 1000, 4),
    ];
    put_all(s, c, &objs);
    const VICTIM: &str = "small.age";
    let committed = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicBool::new(false));
    let (c2, w2) = (committed.clone(), written.clone());
    let server: &'static Server = s;
    let proxy = s3::Proxy::start(
        s.port,
        Arc::new(move |seen: &s3::Seen<'_>, _| {
            let path = format!("/{}/{c}/{VICTIM}", cloud::AZURE_ACCOUNT);
            let on_victim = seen.target == path || seen.target.starts_with(&format!("{path}?"));
            if on_victim && seen.method == "PUT" {
                c2.store(true, Ordering::SeqCst);
            } else if on_victim
                && seen.method == "GET"
                && c2.load(Ordering::SeqCst)
                && !w2.swap(true, Ordering::SeqCst)
            {
                server.put(c, VICTIM, b"someone else's newer contents");
            }
            s3::Fault::Pass
        }),
    );
    let mut env = s.env();
    for (k, v) in &mut env {
        if *k == "AZURITE_BLOB_STORAGE_URL" {
            *v = format!("http://127.0.0.1:{}", proxy.port);
        }
    }
    let report = keys.path("r.jsonl");
    let o = out(rewrap_with(
        env,
        &keys,
        &["--report", report.to_str().unwrap(), &s.url(c, "")],
    ));
    assert!(
        written.load(Ordering::SeqCst),
        "the writer never ran: {}",
        text(&o)
    );
    assert_eq!(s.get(c, VICTIM).unwrap(), b"someone else's newer contents");
    assert_eq!(
        state(s.get(c, "other.age"), &objs[1], &keys, "other"),
        "new"
    );
    let rep = report_lines(&std::fs::read(&report).unwrap());
    let line = rep
        .iter()
        .find(|r| r["path"] == format!("az://{c}/{VICTIM}"))
        .unwrap();
    assert_eq!(line["reason"], "changed_under_us", "{line}");
    assert_eq!(code(&o), 1, "{}", text(&o));
}

fn sigkill(objects: usize, large: usize, runs: usize) {
    let test = "azure_sigkill_at_random_moments";
    let Some(s) = cloud::shared(Service::Azure, test) else {
        return;
    };
    let keys = Keys::new();
    let c = format!("kill-{objects}");
    s.create_container(&c);
    let mut objs = Vec::new();
    for i in 0..objects {
        let kind = [Kind::Age, Kind::Age, Kind::Armored, Kind::Native][i % 4];
        objs.push(make(
            &keys,
            &format!("k/{i:04}"),
            kind,
            100 + (i * 7_919) % 20_000,
            i as u64,
        ));
    }
    for i in 0..large {
        objs.push(make(
            &keys,
            &format!("k/large-{i}"),
            Kind::Age,
            (6 << 20) + i * 100_000,
            1000 + i as u64,
        ));
    }
    put_all(s, &c, &objs);
    let listed = s.list(&c, "");
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut kills = 0;
    // Kills that left some objects re-wrapped and some not: the run was cut at work.
    let mut mid_run = 0;
    for run in 0..runs {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Early enough to catch a run at work on an idle machine too (a whole run of this
        // container can take well under a second), late enough to let some commits land.
        let delay = Duration::from_millis(20 + seed % 400);
        let mut child = rewrap(s, &keys, &["-j", "4", &s.url(&c, "k/")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let mut finished = false;
        while start.elapsed() < delay {
            if child.try_wait().unwrap().is_some() {
                finished = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if !finished {
            let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
            rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
            kills += 1;
        }
        child.wait().unwrap();
        // Whatever moment it died at: every object opens with the old or the new identity.
        let st = states(s, &c, &objs, &keys, &format!("after kill {run}"));
        let done = st.get("new").copied().unwrap_or(0);
        if !finished && done > 0 && done < objs.len() {
            mid_run += 1;
        }
    }
    let o = out(rewrap(s, &keys, &[&s.url(&c, "k/")]));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let st = states(s, &c, &objs, &keys, "after the resume");
    assert_eq!(st["new"], objects + large, "{st:?}");
    // Nothing a killed run wrote beside the objects is left.
    assert_eq!(s.list(&c, ""), listed);
    eprintln!(
        "{test}: {kills} of {runs} runs killed, {mid_run} in the middle of the work; {} \
         objects, 0 lost",
        objs.len()
    );
    assert!(
        mid_run > 0,
        "no run was killed in the middle of its work: the delays do not fit this machine"
    );
}

#[test]
fn azure_sigkill_at_random_moments_loses_nothing() {
    sigkill(200, 2, 6);
}

#[test]
#[ignore = "big: 2,000 objects, 30 kills (cargo test -- --ignored)"]
fn azure_sigkill_at_random_moments_many_runs() {
    sigkill(2000, 8, 30);
}
