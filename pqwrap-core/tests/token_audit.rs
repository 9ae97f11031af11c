//! The hash-chained audit log: issuance records, and detection of edited, removed,
//! reordered and inserted lines, each naming the line.
// A failed unwrap in a test is a failed test, with its message.
#![allow(clippy::unwrap_used)]

mod token_support;

use std::time::Duration;

use pqwrap_core::audit::{self, AuditError, AuditLog};
use pqwrap_core::token::{Algorithm, Issuer};
use sha2::Digest;
use token_support::*;

fn write_log(dir: &tempfile::TempDir, n: usize) -> (std::path::PathBuf, Vec<String>) {
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path).unwrap();
    let issuer = Issuer::new(key(Algorithm::MlDsa65, 4)).with_iss("broker");
    for i in 0..n {
        let t = issuer
            .issue(
                &design(),
                AUD,
                Duration::from_secs(60 + i as u64),
                NOW,
                None,
            )
            .unwrap();
        log.append(&t.audit_record()).unwrap();
    }
    drop(log);
    let lines = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    (path, lines)
}

fn broken_line(path: &std::path::Path, lines: &[String]) -> (u64, String) {
    std::fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    match audit::verify(path) {
        Err(AuditError::Broken { line, what }) => (line, what),
        other => panic!("not detected: {other:?}"),
    }
}

#[test]
fn issuance_records_chain_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (path, lines) = write_log(&dir, 4);
    let s = audit::verify(&path).unwrap();
    assert_eq!(s.lines, 4);
    let rec: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    let r = &rec["record"];
    for field in ["cti", "sub", "aud", "iat", "exp", "manifest_sha256", "kid"] {
        assert!(!r[field].is_null(), "record lacks {field}");
    }
    assert_eq!(rec["prev"], audit::GENESIS);
    // Reopening continues the chain.
    let mut log = AuditLog::open(&path).unwrap();
    assert_eq!(log.len(), 4);
    log.append(&serde_json::json!({"event": "rewrap", "file": "/a/b.age"}))
        .unwrap();
    drop(log);
    assert_eq!(audit::verify(&path).unwrap().lines, 5);
    let mut log = AuditLog::open(&path).unwrap();
    assert!(matches!(
        log.append(&serde_json::json!([1])),
        Err(AuditError::NotAnObject)
    ));
}

#[test]
fn edited_line_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut lines) = write_log(&dir, 4);
    lines[2] = lines[2].replace("cowork-session-1234", "cowork-session-9999");
    let (n, what) = broken_line(&path, &lines);
    assert_eq!(n, 3);
    assert!(what.contains("edited"), "{what}");
}

#[test]
fn edited_line_with_recomputed_hash_is_detected_at_the_next_line() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut lines) = write_log(&dir, 4);
    // Rewrite line 2 consistently (valid own hash), as an attacker without the anchor could.
    let l = lines[1].replace("cowork-session-1234", "cowork-session-9999");
    let cut = l.len() - 75;
    let prefix = &l[..cut];
    let hash = pqwrap_core::token::keys::hex_lower(&sha2::Sha256::digest(prefix.as_bytes()));
    lines[1] = format!("{prefix},\"hash\":\"{hash}\"}}");
    let (n, what) = broken_line(&path, &lines);
    assert_eq!(n, 3);
    assert!(what.contains("chain"), "{what}");
}

#[test]
fn removed_line_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut lines) = write_log(&dir, 4);
    lines.remove(1);
    let (n, what) = broken_line(&path, &lines);
    assert_eq!(n, 2);
    assert!(what.contains("removed"), "{what}");
}

#[test]
fn reordered_lines_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut lines) = write_log(&dir, 4);
    lines.swap(1, 2);
    let (n, what) = broken_line(&path, &lines);
    assert_eq!(n, 2);
    assert!(what.contains("reordered"), "{what}");
}

#[test]
fn inserted_line_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut lines) = write_log(&dir, 4);
    // A copy of a genuine line, and a forged one.
    let copy = lines[0].clone();
    lines.insert(2, copy);
    let (n, _) = broken_line(&path, &lines);
    assert_eq!(n, 3);
    lines.remove(2);
    lines.insert(
        1,
        "{\"seq\":2,\"prev\":\"00\",\"record\":{},\"hash\":\"00\"}".into(),
    );
    let (n, what) = broken_line(&path, &lines);
    assert_eq!(n, 2);
    assert!(
        what.contains("edited") || what.contains("inserted"),
        "{what}"
    );
}

#[test]
fn torn_last_line_is_reported_and_cut_off_by_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let (path, lines) = write_log(&dir, 2);
    let valid: String = lines.iter().map(|l| format!("{l}\n")).collect();
    // What a power cut during an unsynced append leaves: part of a line, or a line whose
    // middle sector never reached the disk (zeros) but whose end did.
    let mut zeroed = lines[1].clone().into_bytes();
    zeroed[10..20].fill(0);
    zeroed.push(b'\n');
    for tail in [b"{\"seq\":3,".to_vec(), zeroed, vec![0u8; 700]] {
        let mut bytes = valid.clone().into_bytes();
        bytes.extend_from_slice(&tail);
        std::fs::write(&path, &bytes).unwrap();
        match audit::verify(&path) {
            Err(AuditError::TornTail {
                lines: 2,
                valid_len,
                torn,
            }) => {
                assert_eq!(valid_len, valid.len() as u64);
                assert_eq!(torn, tail.len() as u64);
            }
            other => panic!("torn tail not recognised: {other:?}"),
        }
        let mut log = AuditLog::open(&path).unwrap();
        assert_eq!(log.len(), 2);
        log.append(&serde_json::json!({"event": "after"})).unwrap();
        drop(log);
        assert_eq!(audit::verify(&path).unwrap().lines, 3);
        assert!(std::fs::read_to_string(&path).unwrap().starts_with(&valid));
    }
}

#[test]
fn a_complete_line_that_does_not_verify_is_an_edit_even_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let (path, lines) = write_log(&dir, 2);
    let mut text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    text.push_str("{\"seq\":3}\n");
    std::fs::write(&path, text).unwrap();
    assert!(matches!(
        audit::verify(&path),
        Err(AuditError::Broken { line: 3, .. })
    ));
    assert!(AuditLog::open(&path).is_err());
}

#[test]
fn append_all_chains_like_append_and_writes_nothing_on_a_bad_record() {
    let dir = tempfile::tempdir().unwrap();
    let (one, batch) = (dir.path().join("one.jsonl"), dir.path().join("batch.jsonl"));
    let records: Vec<_> = (0..5)
        .map(|i| serde_json::json!({"event": "file.rewrap", "n": i}))
        .collect();
    let mut a = AuditLog::open(&one).unwrap();
    let singles: Vec<String> = records.iter().map(|r| a.append(r).unwrap()).collect();
    let mut b = AuditLog::open(&batch).unwrap();
    assert_eq!(b.append_all(&records).unwrap(), singles);
    assert_eq!(b.head(), a.head());
    assert_eq!(audit::verify(&batch).unwrap().lines, 5);

    // A non-object anywhere in the batch: an error, and neither the file nor the chain moves.
    let before = std::fs::read(&batch).unwrap();
    let bad = [serde_json::json!({"ok": 1}), serde_json::json!([1, 2])];
    assert!(matches!(b.append_all(&bad), Err(AuditError::NotAnObject)));
    assert_eq!(std::fs::read(&batch).unwrap(), before);
    assert_eq!(b.len(), 5);
    b.append_all(&records[..1]).unwrap();
    assert_eq!(audit::verify(&batch).unwrap().lines, 6);
}
