//! C2SP CCTV conformance: every vector in `$PQWRAP_VECTORS/cctv-age` (default
//! `test-vectors/external/cctv-age`, carried in the repository) must succeed with the given plaintext hash
//! and file key, or fail as exactly the kind of failure it names (`cctv::check` lists
//! everything compared). A vector with a header key the checker does not know is skipped,
//! as the vectors' README asks, and printed; no other skip is allowed. Prints a tally per
//! expected outcome
//! (`cargo test -p pqwrap-test-vectors --test age_cctv -- --nocapture`).

use pqwrap_test_vectors::cctv;

#[test]
fn cctv_age_conformance() {
    let dir = cctv::dir();
    let run = cctv::run(&dir);
    println!("{}", run.report(&dir));
    let t = &run.tally;
    assert!(
        t.failures.is_empty(),
        "CCTV failures:\n{}",
        t.failures.join("\n")
    );
    assert_eq!(t.failed, 0);
    // Every identity in today's vectors is of a type pqwrap implements (X25519 and
    // mlkem768x25519): a skip would mean one stopped parsing, not an unsupported type.
    assert!(
        run.skipped.is_empty(),
        "CCTV vectors skipped (identity did not parse): {}",
        run.skipped.join(", ")
    );
    assert!(
        run.total() > 50,
        "expected the CCTV vectors in {} (found {})",
        dir.display(),
        run.total()
    );
    assert!(t.passed > 0);
}

#[test]
fn an_unknown_vector_key_is_skipped_and_a_malformed_vector_fails() {
    let v = b"expect: success\nfuture feature: yes\n\nage-encryption.org/v1\n";
    assert_eq!(
        cctv::parse(v).unwrap_err(),
        cctv::ParseError::UnknownKey("future feature".into())
    );
    let v = b"expect: success\ncompressed: zstd\n\n";
    assert!(matches!(
        cctv::parse(v).unwrap_err(),
        cctv::ParseError::Malformed(_)
    ));
    assert!(matches!(
        cctv::parse(b"expect success\n\n").unwrap_err(),
        cctv::ParseError::Malformed(_)
    ));

    // Through the runner: one vector with a new key (skipped), one malformed (failed).
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("future"),
        b"expect: success\nfuture feature: yes\n\nx",
    )
    .unwrap();
    std::fs::write(dir.path().join("broken"), b"no blank line").unwrap();
    let run = cctv::run(dir.path());
    assert_eq!(run.unknown_keys, ["future: future feature"]);
    assert_eq!((run.tally.skipped, run.tally.failed), (1, 1));
}
