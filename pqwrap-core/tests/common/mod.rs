//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The external vectors folder: `$PQWRAP_VECTORS`, or `../shared/vectors` beside the
/// repository root. Conformance is measured, not claimed: a missing folder is a failure.
pub fn vectors_dir() -> PathBuf {
    let dir = std::env::var_os("PQWRAP_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors"));
    assert!(
        dir.is_dir(),
        "external vectors not found at {} (set PQWRAP_VECTORS)",
        dir.display()
    );
    dir
}

/// Decodes lower-case hex from a vector file.
pub fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_else(|e| panic!("bad hex in vector: {e}"))
}
