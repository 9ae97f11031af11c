//! The pqwrap re-wrap engine: re-wraps every file key of an encrypted archive to new
//! (post-quantum) recipients, in parallel, crash-safe, without touching the payloads — as a
//! library, so that a program can run a migration without the `pqwrap` command.
//!
//! Three seams, each a trait with one job:
//! - a [`Store`] lists candidates, opens one (its bytes and a snapshot that detects change),
//!   stages a replacement, commits staged replacements durably, and may re-write in place;
//! - a [`Format`] recognises a file from its first bytes, classifies it without keys, and
//!   plans its re-wrap with them;
//! - [`Events`] receive one record per entry, and the files committed (the report, the audit
//!   log, a progress bar).
//!
//! **To add a format**: a module in `format/` with a unit struct implementing [`Format`], and
//! its name in [`format::FORMATS`]. **To add a store**: a module in `store/` implementing
//! [`Store`] (list, open, stage, commit; say whether it can write in place and how it wants to
//! be committed), and a line where the caller picks a store for a path or URL.
//!
//! ```no_run
//! use pqwrap_core::keys::{self, Identity};
//! use pqwrap_rewrap::events::JsonLines;
//! use pqwrap_rewrap::store::fs::{Durability, FsStore};
//! use pqwrap_rewrap::{Job, JobOptions, Options, format::FORMATS};
//!
//! let old = keys::parse_identities(&std::fs::read_to_string("old-key.txt")?)?;
//! let new = Identity::generate_hybrid()?;
//! let job = Job::new(old, vec![new.to_recipient()], JobOptions::default())?;
//! let store = FsStore::new(vec!["/archive".into()], Durability::Group);
//! let report = JsonLines::new(Box::new(std::fs::File::create("report.jsonl")?));
//! let summary = pqwrap_rewrap::run(&store, FORMATS, &job, &Options::default(), &report)?;
//! report.finish()?;
//! println!("{} re-wrapped", summary.count(pqwrap_rewrap::events::Outcome::Rewrapped));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod blob;
mod engine;
pub mod error;
pub mod events;
pub mod format;
pub mod inventory;
mod job;
pub mod sops_config;
pub mod store;

pub use engine::{Options, RunMode, run};
pub use error::{FileError, JobError, RewrapError, Skip};
pub use events::{Events, Summary};
pub use format::Format;
pub use job::{Classical, Job, JobOptions, Mode, PayloadCheck, PgpEntries, RecipientsFor};
pub use store::Store;
