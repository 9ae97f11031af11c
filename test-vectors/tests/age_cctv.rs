//! C2SP CCTV conformance: every vector in `$PQWRAP_VECTORS/cctv-age` (default
//! `../shared/vectors` beside the repository) must succeed with the given plaintext hash
//! and file key, or fail as exactly the kind of failure it names (`cctv::check` lists
//! everything compared). None may be skipped. Prints a tally per expected outcome
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
