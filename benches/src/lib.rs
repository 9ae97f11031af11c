//! Criterion benchmarks for pqwrap live in `benches/benches/`; run them with
//! `cargo bench -p pqwrap-benches` (or `--bench NAME` for one). This library is empty.
