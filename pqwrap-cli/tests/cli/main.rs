//! The `pqwrap` binary end to end: one test binary for the commands people run, sharing the
//! helpers in `../common` (running the binary, keys, real age and native files, reports).
//!
//! Where a test belongs:
//! - `age`, `native`: `encrypt`, `decrypt` and `inspect` on good files of each format;
//! - `keygen`: identities and recipients;
//! - `rewrap`: `rewrap` and `scan` on healthy trees, every outcome a file can have;
//! - `rewrap_faults`: `rewrap` on filesystems that fail (full, read-only, no permission);
//! - `bad_input`: malformed input to every command, and the outside review's findings;
//! - `sops`: SOPS files — scan, rewrap, `--sops-config`, checked with the real `sops`;
//! - `typage`: interop with typage, a second post-quantum age (Node);
//! - `token_status`: `token verify|check --status-list`;
//! - `completions_man`: `completions`, `man` and `--version`.
//!
//! Tests that need a process of their own stay separate binaries: `rewrap_sigkill` (it
//! calibrates kill times against a quiet machine), `powerloss` (a FUSE filesystem per case),
//! `exec_sandbox` (Landlock and timing of revocation), `broker_service` and `broker_robust`
//! (a broker server and its load figures), `rewrap_s3` (a SeaweedFS server per test, and
//! SIGKILLs of runs against it).

// A failed unwrap in a test is a failed test, with its message.
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod age;
mod bad_input;
mod completions_man;
mod keygen;
mod native;
mod rewrap;
mod rewrap_faults;
mod sops;
mod token_status;
mod typage;
