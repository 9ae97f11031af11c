//! pqwrap's own known-answer vectors: generation (the `regen` binary) and checking (the
//! crate's tests). See README.md.

pub mod cctv;
pub mod native;
pub mod suites;
