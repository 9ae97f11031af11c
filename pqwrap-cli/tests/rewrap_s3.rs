//! `pqwrap rewrap s3://...` and `pqwrap scan s3://...` against a real S3 server (SeaweedFS,
//! started by the tests on loopback; `.ci/install-seaweedfs.sh` installs it). Every object is
//! checked by decrypting it, most through the server's filer (not through pqwrap's client).
//!
//! `cargo test -p pqwrap-cli --test rewrap_s3` runs the CI size; `-- --ignored` adds the big
//! SIGKILL run.
// A failed unwrap in a test is a failed test, with its message.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "support/s3.rs"]
mod s3;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{age_bytes, code, native_bytes, plaintext, pqwrap, text, write_identities};
use pqwrap_core::age;
use pqwrap_core::keys::Identity;
use pqwrap_rewrap::store::s3::{Cond, Meta, PART_MIN, S3Store, SMALL_MAX};
use s3::{Fault, Proxy, Weed};

/// Keys and key files of a test.
struct Keys {
    dir: tempfile::TempDir,
    old: Identity,
    old_pq: Identity,
    new: Identity,
}

impl Keys {
    fn new() -> Keys {
        let k = Keys {
            dir: tempfile::tempdir().unwrap(),
            old: Identity::generate_x25519().unwrap(),
            old_pq: Identity::generate_hybrid().unwrap(),
            new: Identity::generate_hybrid().unwrap(),
        };
        write_identities(&k.old_file(), &[&k.old, &k.old_pq]);
        write_identities(&k.new_file(), &[&k.new]);
        std::fs::write(k.recipients(), format!("{}\n", k.new.to_recipient())).unwrap();
        k
    }
    fn old_file(&self) -> PathBuf {
        self.dir.path().join("old.key")
    }
    fn new_file(&self) -> PathBuf {
        self.dir.path().join("new.key")
    }
    fn recipients(&self) -> PathBuf {
        self.dir.path().join("new.pub")
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// `pqwrap rewrap -i old -i new -R new.pub ARGS...` against the server through `port`.
fn rewrap(w: &Weed, port: u16, keys: &Keys, args: &[&str]) -> Command {
    let mut c = pqwrap();
    c.envs(w.env_via(port))
        .arg("rewrap")
        .arg("-i")
        .arg(keys.old_file())
        .arg("-i")
        .arg(keys.new_file())
        .arg("-R")
        .arg(keys.recipients())
        .args(args)
        .env("PQWRAP_S3_RETRIES", "12");
    c
}

fn out(mut c: impl std::borrow::BorrowMut<Command>) -> Output {
    c.borrow_mut().stdin(Stdio::null()).output().unwrap()
}

/// What an object is, and what it must open to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Age,
    Armored,
    Native,
    Plain,
    Passphrase,
}

struct Obj {
    key: String,
    kind: Kind,
    original: Vec<u8>,
    plaintext: Vec<u8>,
}

fn make(keys: &Keys, key: &str, kind: Kind, size: usize, seed: u64) -> Obj {
    let data = plaintext(seed, size);
    let original = match kind {
        Kind::Age => age_bytes(&[&keys.old], &data, false),
        Kind::Armored => age_bytes(&[&keys.old], &data, true),
        Kind::Native => native_bytes(&[&keys.old_pq], &data),
        Kind::Plain => data.clone(),
        Kind::Passphrase => {
            let fk = age::FileKey::generate().unwrap();
            let header =
                age::Header::wrap_passphrase(&fk, &age::Passphrase::new("pw".into()), 10).unwrap();
            let mut w = age::encrypt_writer(Vec::new(), &fk, &header, age::Armor::Binary).unwrap();
            std::io::Write::write_all(&mut w, &data).unwrap();
            w.finish().unwrap()
        }
    };
    Obj {
        key: key.to_string(),
        kind,
        original,
        plaintext: data,
    }
}

fn put_all(store: &S3Store, objs: &[Obj]) {
    std::thread::scope(|s| {
        for chunk in objs.chunks(objs.len().div_ceil(8).max(1)) {
            s.spawn(move || {
                for o in chunk {
                    store
                        .client()
                        .put(&o.key, &o.original, Cond::Always)
                        .unwrap_or_else(|e| panic!("put {}: {e}", o.key));
                }
            });
        }
    });
}

/// Opens age or native bytes with `id`: `Ok(None)` if it is not for `id`.
fn open_with(bytes: &[u8], kind: Kind, id: &Identity) -> Result<Option<Vec<u8>>, String> {
    common::open_bytes(bytes, kind == Kind::Native, id)
}

/// Which identity an object opens with now: "old" or "new"; panics if neither, if its
/// plaintext changed, or if it is gone.
fn state(bytes: Option<Vec<u8>>, o: &Obj, keys: &Keys, when: &str) -> &'static str {
    let bytes = bytes.unwrap_or_else(|| panic!("{when}: {} is gone", o.key));
    match o.kind {
        Kind::Plain | Kind::Passphrase => {
            assert!(bytes == o.original, "{when}: {} was changed", o.key);
            return "untouched";
        }
        _ => {}
    }
    let old = if o.kind == Kind::Native {
        &keys.old_pq
    } else {
        &keys.old
    };
    let (got, which) = match open_with(&bytes, o.kind, old) {
        Ok(Some(p)) => (p, "old"),
        Ok(None) => match open_with(&bytes, o.kind, &keys.new) {
            Ok(Some(p)) => (p, "new"),
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
    if which == "new" && o.kind != Kind::Native {
        // Post-quantum only: no classical stanza left behind.
        let dec = age::Decryptor::new(&bytes[..]).unwrap();
        assert_eq!(
            dec.header().protection(),
            age::Protection::PostQuantum,
            "{}",
            o.key
        );
    }
    which
}

fn states(
    w: &Weed,
    bucket: &str,
    objs: &[Obj],
    keys: &Keys,
    when: &str,
) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for o in objs {
        *m.entry(state(w.filer_get(bucket, &o.key), o, keys, when))
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

/// Headers a replacement must carry over, as a client would set them.
fn meta() -> Meta {
    Meta(vec![
        ("content-type".into(), "application/x-age-test".into()),
        ("x-amz-meta-owner".into(), "team-a".into()),
    ])
}

/// Puts `o` again with [`meta`], and returns a check that the current object still has it.
fn put_with_meta<'a>(store: &'a S3Store, o: &'a Obj) -> impl Fn() + 'a {
    store
        .client()
        .put_with(&o.key, &o.original, Cond::Always, &meta())
        .unwrap();
    move || {
        let got = store.client().get(&o.key, Some((0, 1)), None).unwrap();
        for kv in &meta().0 {
            assert!(
                got.meta.0.contains(kv),
                "{}: {kv:?} lost: {:?}",
                o.key,
                got.meta
            );
        }
    }
}

/// Multipart uploads in progress under the bucket, and pqwrap markers left.
fn leftovers(store: &S3Store) -> (Vec<(String, String)>, Vec<String>) {
    let uploads = store.uploads_in_progress().unwrap();
    let markers = store
        .client()
        .list("", None, None)
        .unwrap()
        .objects
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.contains(".pqwrap-uploads/"))
        .collect();
    (uploads, markers)
}

#[test]
fn a_mixed_bucket_is_rewrapped_and_every_object_checked() {
    let Some(w) = s3::shared("a_mixed_bucket_is_rewrapped_and_every_object_checked") else {
        return;
    };
    let keys = Keys::new();
    let store = w.bucket("mixed", false);
    let mut objs = Vec::new();
    let kinds = [
        Kind::Age,
        Kind::Armored,
        Kind::Native,
        Kind::Plain,
        Kind::Passphrase,
    ];
    for i in 0..40 {
        let kind = kinds[i % kinds.len()];
        let size = [0, 1, 100, 65_536, 70_000, 300_000][i % 6];
        objs.push(make(
            &keys,
            &format!("data/{i:02} name with spaces+ü.bin"),
            kind,
            size,
            i as u64,
        ));
    }
    // Outside the prefix: never touched.
    let outside = make(&keys, "elsewhere/x.age", Kind::Age, 10, 99);
    put_all(&store, &objs);
    put_all(&store, std::slice::from_ref(&outside));
    let kept = put_with_meta(&store, &objs[0]);

    let o = out(rewrap(
        w,
        w.s3,
        &keys,
        &[
            "--report",
            keys.path("r.jsonl").to_str().unwrap(),
            "s3://mixed/data/",
        ],
    ));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let s = states(w, "mixed", &objs, &keys, "after the run");
    assert_eq!(s.get("old"), None, "{s:?}");
    assert_eq!(s["new"], 24);
    assert_eq!(s["untouched"], 16);
    assert_eq!(
        state(
            w.filer_get("mixed", &outside.key),
            &outside,
            &keys,
            "outside"
        ),
        "old"
    );
    kept();

    // The report names every object with its URL; re-wrapped ones say what they moved.
    let rep = report_lines(&std::fs::read(keys.path("r.jsonl")).unwrap());
    assert_eq!(rep.len(), 40, "{rep:?}");
    for r in &rep {
        let path = r["path"].as_str().unwrap();
        assert!(path.starts_with("s3://mixed/data/"), "{path}");
        if r["outcome"] == "rewrapped" {
            // Small objects: read whole, written whole, and the head read back.
            let (moved, size) = (
                r["transferred"].as_u64().unwrap(),
                r["bytes"].as_u64().unwrap(),
            );
            assert!(moved >= size && moved <= 2 * size + (512 << 10), "{r}");
        }
    }
    let reasons: BTreeSet<&str> = rep.iter().filter_map(|r| r["reason"].as_str()).collect();
    assert_eq!(
        reasons,
        BTreeSet::from(["not_encrypted", "passphrase"]),
        "{rep:?}"
    );

    // Done means done: a second run verifies and changes nothing.
    let o = out(rewrap(w, w.s3, &keys, &["s3://mixed/data/"]));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already done  24"),
        "{}",
        text(&o)
    );

    // scan agrees, without keys.
    let o = out(pqwrap()
        .envs(w.env())
        .args(["scan", "--json", "s3://mixed/data/"]));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let inv: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(inv["to_rewrap"]["files"], 0, "{inv}");
    assert_eq!(inv["by_protection"]["post_quantum"]["files"], 24, "{inv}");
    let (uploads, markers) = leftovers(&store);
    assert!(
        uploads.is_empty() && markers.is_empty(),
        "{uploads:?} {markers:?}"
    );
}

#[test]
fn objects_either_side_of_the_multipart_boundary() {
    let Some(w) = s3::shared("objects_either_side_of_the_multipart_boundary") else {
        return;
    };
    let keys = Keys::new();
    let store = w.bucket("boundary", false);
    // The object sizes around SMALL_MAX (read and written whole up to it), for age files of
    // about that size (the header is ~200 bytes, the payload's tags 16 per 64 KiB).
    let payload_for = |total: u64| (total as usize * 65_536 / 65_552).saturating_sub(400);
    let mut objs = Vec::new();
    for (i, total) in [
        SMALL_MAX - 70_000,
        SMALL_MAX + 70_000,
        3 * PART_MIN,
        2 * PART_MIN + 12_345,
    ]
    .iter()
    .enumerate()
    {
        objs.push(make(
            &keys,
            &format!("o{i}.age"),
            Kind::Age,
            payload_for(*total),
            7 + i as u64,
        ));
    }
    objs.push(make(&keys, "big.pqw", Kind::Native, 11 << 20, 3));
    objs.push(make(&keys, "big-armored.age", Kind::Armored, 6 << 20, 4));
    assert!(
        (objs[0].original.len() as u64) < SMALL_MAX && (objs[1].original.len() as u64) > SMALL_MAX
    );
    put_all(&store, &objs);
    let kept = put_with_meta(&store, &objs[2]);
    let o = out(rewrap(
        w,
        w.s3,
        &keys,
        &[
            "--report",
            keys.path("r.jsonl").to_str().unwrap(),
            "s3://boundary",
        ],
    ));
    assert_eq!(code(&o), 0, "{}", text(&o));
    kept();
    let s = states(w, "boundary", &objs, &keys, "after the run");
    assert_eq!(s["new"], objs.len(), "{s:?}");
    let rep = report_lines(&std::fs::read(keys.path("r.jsonl")).unwrap());
    for r in &rep {
        let name = r["path"].as_str().unwrap();
        let size = r["bytes"].as_u64().unwrap();
        let moved = r["transferred"].as_u64().unwrap();
        if name.ends_with("armored.age") {
            // Streamed (base64 moves): the whole object comes down and goes up.
            assert!(moved >= 2 * size, "{r}");
        } else if size > SMALL_MAX {
            // Multipart: the header, the first part and the read-back; never the whole.
            assert!(moved < 2 * PART_MIN + (1 << 20), "{r}");
        } else {
            assert!(moved >= 2 * size && moved < 2 * size + (1 << 20), "{r}");
        }
    }
    let (uploads, markers) = leftovers(&store);
    assert!(
        uploads.is_empty() && markers.is_empty(),
        "{uploads:?} {markers:?}"
    );
}

/// A proxy that lets another writer replace each of `victims` just before pqwrap's commit of
/// it (the PutObject, or the CompleteMultipartUpload).
fn writer_before_commit(
    w: &'static Weed,
    bucket: &'static str,
    victims: &'static [&'static str],
) -> Proxy {
    let store = Arc::new(w.store(&format!("s3://{bucket}")).unwrap());
    Proxy::start(
        w.s3,
        Arc::new(move |seen: &s3::Seen<'_>, _| {
            for victim in victims {
                let path = format!("/{bucket}/{victim}");
                let on_victim = seen.target == path || seen.target.starts_with(&format!("{path}?"));
                let is_commit = (seen.method == "PUT" && !seen.target.contains("partNumber="))
                    || (seen.method == "POST" && seen.target.contains("uploadId="));
                if on_victim && is_commit {
                    store
                        .client()
                        .put(victim, b"someone else's new contents", Cond::Always)
                        .unwrap();
                }
            }
            Fault::Pass
        }),
    )
}

#[test]
fn an_object_changed_by_another_writer_is_left_alone_and_reported() {
    let Some(w) = s3::shared("an_object_changed_by_another_writer_is_left_alone_and_reported")
    else {
        return;
    };
    let keys = Keys::new();
    let store = w.bucket("writer", false);
    let objs = vec![
        make(&keys, "small.age", Kind::Age, 1000, 1),
        make(&keys, "large.age", Kind::Age, 6 << 20, 2),
        make(&keys, "other.age", Kind::Age, 1000, 3),
    ];
    put_all(&store, &objs);
    const VICTIMS: &[&str] = &["small.age", "large.age"];
    let proxy = writer_before_commit(w, "writer", VICTIMS);
    let report = keys.path("r.jsonl");
    let o = out(rewrap(
        w,
        proxy.port,
        &keys,
        &["--report", report.to_str().unwrap(), "s3://writer"],
    ));
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("changed under us 2"),
        "{}",
        text(&o)
    );
    let rep = report_lines(&std::fs::read(&report).unwrap());
    for victim in VICTIMS {
        let line = rep
            .iter()
            .find(|r| r["path"] == format!("s3://writer/{victim}"))
            .unwrap();
        assert_eq!(line["reason"], "changed_under_us", "{line}");
        // The other writer's contents won and stay.
        assert_eq!(
            w.filer_get("writer", victim).unwrap(),
            b"someone else's new contents"
        );
    }
    let (uploads, markers) = leftovers(&store);
    assert!(
        uploads.is_empty() && markers.is_empty(),
        "{uploads:?} {markers:?}"
    );
    assert_eq!(
        state(w.filer_get("writer", "other.age"), &objs[2], &keys, "other"),
        "new"
    );
}

fn sigkill(objects: usize, large: usize, runs: usize) {
    let Some(w) = s3::shared("sigkill_at_random_moments") else {
        return;
    };
    let keys = Keys::new();
    let bucket = format!("kill-{objects}");
    let store = w.bucket(&bucket, false);
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
    put_all(&store, &objs);
    // Somebody else's upload in progress under the prefix: never aborted.
    let foreign = store
        .client()
        .create_multipart("k/foreign", &Meta::default())
        .unwrap()
        .0;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut kills = 0;
    for run in 0..runs {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(150 + seed % 1500);
        let mut child = rewrap(w, w.s3, &keys, &["-j", "16", &format!("s3://{bucket}/k/")])
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
        states(w, &bucket, &objs, &keys, &format!("after kill {run}"));
    }
    // Another writer starts uploads of the large keys after the last kill (and after the
    // killed workers' marker writes, to the second): the resume must leave them alone, except
    // where a marker without an upload id (killed before CreateMultipartUpload answered)
    // leaves it unknowable whose an upload of that key is.
    std::thread::sleep(Duration::from_secs(3));
    let (_, markers) = leftovers(&store);
    let unnamed: Vec<String> = markers
        .iter()
        .filter_map(|m| store.object_head(m, 64 << 10).unwrap())
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .filter(|m| m["upload_id"].is_null())
        .filter_map(|m| m["key"].as_str().map(str::to_string))
        .collect();
    let later: Vec<(String, String)> = (0..large)
        .map(|i| {
            let key = format!("k/large-{i}");
            let id = store
                .client()
                .create_multipart(&key, &Meta::default())
                .unwrap()
                .0;
            (key, id)
        })
        .collect();
    // Well before the resume starts (its clock is the server's Date, to the second).
    std::thread::sleep(Duration::from_secs(2));
    let o = out(rewrap(w, w.s3, &keys, &[&format!("s3://{bucket}/k/")]));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let s = states(w, &bucket, &objs, &keys, "after the resume");
    assert_eq!(s["new"], objects + large, "{s:?}");
    let (uploads, markers) = leftovers(&store);
    assert!(markers.is_empty(), "{markers:?}");
    let mut expected: Vec<(String, String)> = later
        .iter()
        .filter(|(k, _)| !unnamed.contains(k))
        .cloned()
        .chain([("k/foreign".to_string(), foreign.clone())])
        .collect();
    let mut left: Vec<(String, String)> = uploads
        .into_iter()
        .filter(|(k, id)| !(unnamed.contains(k) && later.contains(&(k.clone(), id.clone()))))
        .collect();
    expected.sort();
    left.sort();
    assert_eq!(left, expected, "unnamed markers: {unnamed:?}");
    for (k, id) in later
        .iter()
        .chain([&("k/foreign".to_string(), foreign.clone())])
    {
        let _ = store.client().abort(k, id);
    }
    eprintln!(
        "sigkill: {kills} of {runs} runs killed; {} objects, 0 lost; {} of {} later uploads \
         by another writer left alone ({} keys with a marker but no upload id)",
        objs.len(),
        expected.len() - 1,
        later.len(),
        unnamed.len()
    );
    assert!(
        kills > 0,
        "no run was killed: the delays are too long for this machine"
    );
}

#[test]
fn sigkill_at_random_moments_loses_nothing_and_leaves_no_upload() {
    sigkill(300, 3, 8);
}

#[test]
#[ignore = "big: 3,000 objects, 40 kills (cargo test -- --ignored)"]
fn sigkill_at_random_moments_many_runs() {
    sigkill(3000, 10, 40);
}

#[test]
fn a_resumed_run_aborts_only_the_uploads_its_markers_account_for() {
    let Some(w) = s3::shared("a_resumed_run_aborts_only_the_uploads_its_markers_account_for")
    else {
        return;
    };
    let keys = Keys::new();
    let store = w.bucket("markers", false);
    let obj = make(&keys, "m/a.age", Kind::Age, 1000, 7);
    put_all(&store, std::slice::from_ref(&obj));
    let c = store.client();
    // What a killed run leaves, written the way its workers write it (server and test share
    // the clock: loopback).
    let marker = |key: &str, n: u32, id: Option<&str>, since: &jiff::Timestamp| {
        let name = format!(
            "m/.pqwrap-uploads/{:016x}-{n:016x}",
            pqwrap_rewrap::store::s3::shard_hash(key)
        );
        let body = serde_json::json!({
            "pqwrap": "pqwrap multipart upload",
            "key": key,
            "upload_id": id,
            "since": id.map(|_| since.to_string()),
        });
        c.put(&name, body.to_string().as_bytes(), Cond::Always)
            .unwrap();
    };
    let start = |key: &str| c.create_multipart(key, &Meta::default()).unwrap().0;
    // Killed between the marker and the answer to CreateMultipartUpload: the upload started
    // right after the marker is the killed worker's.
    let since = jiff::Timestamp::now();
    marker("m/big-1", 1, None, &since);
    let killed_1 = start("m/big-1");
    // Killed mid-upload, after a lost answer had made CreateMultipartUpload start two.
    let since = jiff::Timestamp::now();
    marker("m/big-2", 2, None, &since);
    let lost_2 = start("m/big-2");
    let named_2 = start("m/big-2");
    marker("m/big-2", 2, Some(&named_2), &since);
    // Later, another writer's upload of the same key, and one of a key no marker names.
    std::thread::sleep(Duration::from_secs(3));
    let foreign_2 = start("m/big-2");
    let foreign_3 = start("m/big-3");
    // Well before the run starts (its clock is the server's Date, to the second).
    std::thread::sleep(Duration::from_secs(2));

    let o = out(rewrap(w, w.s3, &keys, &["s3://markers/m/"]));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let (mut uploads, markers) = leftovers(&store);
    assert!(markers.is_empty(), "{markers:?}");
    uploads.sort();
    let mut expected = vec![
        ("m/big-2".to_string(), foreign_2.clone()),
        ("m/big-3".to_string(), foreign_3.clone()),
    ];
    expected.sort();
    assert_eq!(
        uploads, expected,
        "aborted should be {killed_1}, {lost_2} and {named_2}"
    );
    for (k, id) in expected {
        c.abort(&k, &id).unwrap();
    }
}

#[test]
fn the_server_restarted_in_the_middle_of_a_run() {
    let Some(mut w) = Weed::start("the_server_restarted_in_the_middle_of_a_run") else {
        return;
    };
    let keys = Keys::new();
    let store = w.bucket("restart", false);
    let objs: Vec<Obj> = (0..400)
        .map(|i| {
            make(
                &keys,
                &format!("r/{i:03}.age"),
                Kind::Age,
                2000 + i,
                i as u64,
            )
        })
        .collect();
    put_all(&store, &objs);
    drop(store);
    let mut child = rewrap(&w, w.s3, &keys, &["-j", "4", "s3://restart/r/"])
        .env("PQWRAP_S3_RETRIES", "16")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let was_running = child.try_wait().unwrap().is_none();
    w.restart();
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(
        was_running,
        "the run ended before the restart: make it bigger"
    );
    let s = states(&w, "restart", &objs, &keys, "after the run");
    assert_eq!(s["new"], 400, "{s:?}");
    w.stop();
}

#[test]
fn throttling_and_dropped_connections_are_retried() {
    let Some(w) = s3::shared("throttling_and_dropped_connections_are_retried") else {
        return;
    };
    let keys = Keys::new();
    let store = w.bucket("faults", false);
    let mut objs: Vec<Obj> = (0..120)
        .map(|i| {
            make(
                &keys,
                &format!("f/{i:03}.age"),
                Kind::Age,
                500 + i * 13,
                i as u64,
            )
        })
        .collect();
    objs.push(make(&keys, "f/large.age", Kind::Age, 7 << 20, 77));
    put_all(&store, &objs);
    let faults = Arc::new(std::sync::Mutex::new(BTreeMap::<&'static str, u64>::new()));
    let f2 = faults.clone();
    // Each ambiguous case at least once, whatever the order of requests: the answer to the
    // first CreateMultipartUpload, CompleteMultipartUpload and small PutObject is lost.
    let firsts = Arc::new(std::sync::Mutex::new(BTreeSet::<&'static str>::new()));
    let proxy = Proxy::start(
        w.s3,
        Arc::new(move |seen: &s3::Seen<'_>, i| {
            let kind = match seen.method {
                "POST" if seen.target.contains("uploadId=") => Some("complete"),
                "POST" if seen.target.contains("uploads") => Some("create"),
                "PUT"
                    if !seen.target.contains("partNumber=")
                        && !seen.target.contains(".pqwrap-uploads") =>
                {
                    Some("put")
                }
                _ => None,
            };
            if let Some(k) = kind
                && firsts.lock().unwrap().insert(k)
            {
                *f2.lock().unwrap().entry(k).or_default() += 1;
                return Fault::DropAfter;
            }
            let f = match i % 17 {
                3 | 11 => Fault::SlowDown,
                5 => Fault::DropBefore,
                // The write lands, the answer is lost: the retry's refusal must be recognised
                // as our own write.
                8 => Fault::DropAfter,
                _ => Fault::Pass,
            };
            if f != Fault::Pass {
                *f2.lock()
                    .unwrap()
                    .entry(format!("{f:?}").leak())
                    .or_default() += 1;
            }
            f
        }),
    );
    let o = out(rewrap(w, proxy.port, &keys, &["-j", "8", "s3://faults/f/"]));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let s = states(w, "faults", &objs, &keys, "after the run");
    assert_eq!(s["new"], objs.len(), "{s:?}");
    let seen = faults.lock().unwrap().clone();
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert!(
        ["DropAfter", "DropBefore", "SlowDown"]
            .iter()
            .all(|k| seen[k] > 3),
        "{seen:?}"
    );
    let (uploads, markers) = leftovers(&store);
    assert!(
        uploads.is_empty() && markers.is_empty(),
        "{uploads:?} {markers:?}"
    );
}

#[test]
fn four_shards_in_parallel_cover_the_bucket_exactly_once() {
    let Some(w) = s3::shared("four_shards_in_parallel_cover_the_bucket_exactly_once") else {
        return;
    };
    let keys = Keys::new();
    let store = w.bucket("shards", false);
    let objs: Vec<Obj> = (0..400)
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
    put_all(&store, &objs);
    let children: Vec<_> = (0..4)
        .map(|k| {
            let shard = format!("{k}/4");
            let report = format!("s3://shards/reports/shard-{k}.jsonl");
            rewrap(
                w,
                w.s3,
                &keys,
                &[
                    "-j",
                    "4",
                    "--shard",
                    &shard,
                    "--report",
                    &report,
                    "s3://shards/",
                ],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert_eq!(code(&o), 0, "{}", text(&o));
    }
    let mut seen = BTreeMap::<String, usize>::new();
    for k in 0..4 {
        let rep = w
            .filer_get("shards", &format!("reports/shard-{k}.jsonl"))
            .unwrap();
        let lines = report_lines(&rep);
        assert!(!lines.is_empty());
        for l in lines {
            assert_eq!(l["outcome"], "rewrapped", "{l}");
            *seen
                .entry(l["path"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert_eq!(seen.len(), 400);
    assert!(seen.values().all(|n| *n == 1));
    let s = states(w, "shards", &objs, &keys, "after the shards");
    assert_eq!(s["new"], 400);
}

#[test]
fn a_manifest_names_the_keys_plain_or_as_an_inventory() {
    let Some(w) = s3::shared("a_manifest_names_the_keys_plain_or_as_an_inventory") else {
        return;
    };
    let keys = Keys::new();
    let store = w.bucket("manifest", false);
    let objs: Vec<Obj> = (0..6)
        .map(|i| make(&keys, &format!("m/{i} x.age"), Kind::Age, 300, i as u64))
        .collect();
    put_all(&store, &objs);
    let plain = keys.path("keys.txt");
    std::fs::write(&plain, "m/0 x.age\n# a comment\n\nm/1 x.age\n").unwrap();
    let o = out(rewrap(
        w,
        w.s3,
        &keys,
        &["--manifest", plain.to_str().unwrap(), "s3://manifest/m/"],
    ));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let inventory = keys.path("inventory.csv");
    std::fs::write(
        &inventory,
        "\"manifest\",\"m/2+x.age\",\"300\"\n\"manifest\",\"m/2+x.age\",\"300\"\n\"manifest\",\"m/3%20x.age\",\"300\"\n",
    )
    .unwrap();
    let o = out(rewrap(
        w,
        w.s3,
        &keys,
        &[
            "--manifest",
            inventory.to_str().unwrap(),
            "s3://manifest/m/",
        ],
    ));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let got: Vec<&str> = objs
        .iter()
        .map(|o| state(w.filer_get("manifest", &o.key), o, &keys, "manifest"))
        .collect();
    assert_eq!(got, ["new", "new", "new", "new", "old", "old"]);
    // A key outside the prefix, or for another bucket, is an error naming the line.
    std::fs::write(&plain, "other/k\n").unwrap();
    let o = out(rewrap(
        w,
        w.s3,
        &keys,
        &["--manifest", plain.to_str().unwrap(), "s3://manifest/m/"],
    ));
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("line 1"),
        "{}",
        text(&o)
    );
}

#[test]
fn versioned_buckets_keep_or_purge_exactly_the_version_read() {
    let Some(w) = s3::shared("versioned_buckets_keep_or_purge_exactly_the_version_read") else {
        return;
    };
    for purge in [false, true] {
        let keys = Keys::new();
        let bucket = if purge {
            "versions-purge"
        } else {
            "versions-keep"
        };
        let store = w.bucket(bucket, true);
        let objs = vec![
            make(&keys, "v/a.age", Kind::Age, 1000, 1),
            make(&keys, "v/b.age", Kind::Age, 6 << 20, 2),
            make(&keys, "v/c.age", Kind::Age, 10, 3),
        ];
        // An older version of a.age under the current one: no run may delete it.
        let older = store
            .client()
            .put("v/a.age", b"an older version", Cond::Always)
            .unwrap()
            .0;
        put_all(&store, &objs);
        let versions = |key: &str| -> Vec<String> {
            let page = store.client().list_versions(key, None, None).unwrap();
            page.versions
                .into_iter()
                .filter(|v| v.key == key)
                .map(|v| v.version)
                .collect()
        };
        let before: Vec<Vec<String>> = objs.iter().map(|o| versions(&o.key)).collect();
        let mut args = vec!["s3://".to_string() + bucket + "/v/"];
        if purge {
            args.insert(0, "--purge-old-versions".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = out(rewrap(w, w.s3, &keys, &args));
        assert_eq!(code(&o), 0, "{}", text(&o));
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        // The filer shows a versioned bucket's versions as files of its own layout: read the
        // current versions through S3.
        for o in &objs {
            let now = store.client().get(&o.key, None, None).ok().map(|g| g.bytes);
            assert_eq!(state(now, o, &keys, "after the run"), "new");
        }
        for (o, before) in objs.iter().zip(&before) {
            let after = versions(&o.key);
            let replaced = before.first().unwrap();
            if purge {
                assert!(!after.contains(replaced), "{}: {after:?}", o.key);
                assert_eq!(
                    after.len(),
                    before.len(),
                    "{}: {before:?} -> {after:?}",
                    o.key
                );
            } else {
                assert!(after.contains(replaced), "{}: {after:?}", o.key);
                assert_eq!(after.len(), before.len() + 1, "{}", o.key);
            }
        }
        let a = versions("v/a.age");
        assert!(
            a.contains(older.version.as_ref().unwrap()),
            "the older version is kept: {a:?}"
        );
        let o2 = out(pqwrap().envs(w.env()).args([
            "scan",
            "--json",
            "--versions",
            &format!("s3://{bucket}/v/"),
        ]));
        assert_eq!(code(&o2), 0, "{}", text(&o2));
        let inv: serde_json::Value = serde_json::from_slice(&o2.stdout).unwrap();
        let classical = &inv["noncurrent_versions"]["by_protection"]["classical"]["files"];
        if purge {
            assert!(!stderr.contains("replaced version(s) remain"), "{stderr}");
            assert_eq!(*classical, 0, "{inv}");
        } else {
            assert!(stderr.contains("3 replaced version(s) remain"), "{stderr}");
            assert_eq!(*classical, 3, "{inv}");
        }
        assert_eq!(
            inv["noncurrent_versions"]["by_protection"]["not_encrypted"]["files"], 1,
            "{inv}"
        );
    }
}

#[test]
fn bad_credentials_and_a_missing_bucket_exit_2() {
    let Some(w) = s3::shared("bad_credentials_and_a_missing_bucket_exit_2") else {
        return;
    };
    let keys = Keys::new();
    w.bucket("creds", false);
    let o = out(rewrap(w, w.s3, &keys, &["s3://creds/"]).env("AWS_SECRET_ACCESS_KEY", "wrong"));
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("access denied"),
        "{}",
        text(&o)
    );
    let o = out(rewrap(w, w.s3, &keys, &["s3://no-such-bucket-here/"]));
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no such bucket"),
        "{}",
        text(&o)
    );
    let o = out(pqwrap()
        .envs(w.env())
        .env("AWS_ACCESS_KEY_ID", "nobody")
        .args(["scan", "s3://creds/"]));
    assert_eq!(code(&o), 2, "{}", text(&o));
    // Plain http without AWS_ALLOW_HTTP.
    let o = out(rewrap(w, w.s3, &keys, &["s3://creds/"]).env_remove("AWS_ALLOW_HTTP"));
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("AWS_ALLOW_HTTP"),
        "{}",
        text(&o)
    );
}
