//! Runs every vector suite — the project's own and the external ones — and prints a tally
//! per suite: `cargo run -p pqwrap-test-vectors --bin check-all` (`-v` lists what was skipped
//! and where each suite was read from). Exit status 0 only if no vector failed.

use std::process::ExitCode;

fn main() -> ExitCode {
    let verbose = std::env::args()
        .skip(1)
        .any(|a| a == "-v" || a == "--verbose");
    let mut failed = 0;
    let mut passed = 0;
    for t in pqwrap_test_vectors::suites::all() {
        println!("{}", t.line());
        for f in &t.failures {
            println!("    FAILED {f}");
        }
        if verbose {
            for n in &t.notes {
                println!("    {n}");
            }
        }
        failed += t.failed;
        passed += t.passed;
    }
    println!("total: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
