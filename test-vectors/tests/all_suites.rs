//! Every suite `check-all` runs passes, with the expected number of vectors (so a suite that
//! silently lost its files fails here).

use pqwrap_test_vectors::suites;

#[test]
fn every_suite_passes_with_its_full_count() {
    let tallies = suites::all();
    for t in &tallies {
        println!("{}", t.line());
        assert!(t.failures.is_empty(), "{}: {:#?}", t.suite, t.failures);
        assert_eq!(t.failed, 0);
    }
    let counts: Vec<(usize, usize)> = tallies.iter().map(|t| (t.passed, t.skipped)).collect();
    // native 31 files; X-Wing 3; HPKE-PQ 2 of 13 (the X-Wing KEM ones); CCTV all known; RFC 9964 2.
    assert_eq!(counts[0], (31, 0), "native");
    assert_eq!(counts[1], (3, 0), "X-Wing");
    assert_eq!(counts[2], (2, 11), "HPKE-PQ");
    assert!(counts[3].0 >= 90, "CCTV: {:?}", counts[3]);
    assert_eq!(counts[4], (2, 0), "RFC 9964");
}
