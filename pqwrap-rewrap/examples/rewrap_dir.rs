//! Re-wraps a directory with the engine, without the `pqwrap` command.
//!
//! ```sh
//! # On a directory of your own (identities that open the files, recipients to wrap to):
//! cargo run -p pqwrap-rewrap --example rewrap_dir -- DIR OLD_IDENTITY_FILE NEW_RECIPIENTS_FILE
//! # Or on a small sample it makes in a temporary directory:
//! cargo run -p pqwrap-rewrap --example rewrap_dir
//! ```

use std::io::Write;
use std::path::PathBuf;

use pqwrap_core::age::{self, FileKey, Header};
use pqwrap_core::keys::{self, Identity};
use pqwrap_rewrap::events::{Events, Outcome, Record};
use pqwrap_rewrap::format::FORMATS;
use pqwrap_rewrap::store::fs::{Durability, FsStore};
use pqwrap_rewrap::{Job, JobOptions, Options};

/// Prints one line per file that did not end re-wrapped or already done.
struct Print;

impl Events for Print {
    fn record(&self, rec: &Record<'_>) {
        if !matches!(rec.outcome, Outcome::Rewrapped | Outcome::AlreadyDone) {
            println!(
                "{}: {:?} {}",
                rec.path,
                rec.outcome,
                rec.error.as_deref().unwrap_or("")
            );
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let _sample; // keeps a sample directory alive until the end
    let (dir, old, recipients) = match args.as_slice() {
        [dir, ids, rcpts] => (
            PathBuf::from(dir),
            keys::parse_identities(&std::fs::read_to_string(ids)?)?,
            keys::parse_recipients(&std::fs::read_to_string(rcpts)?)?,
        ),
        [] => {
            // A sample: ten age files for a classical key, to re-wrap to a new hybrid one.
            let tmp = tempfile::tempdir()?;
            let old = Identity::generate_x25519()?;
            for i in 0..10 {
                let key = FileKey::generate()?;
                let header = Header::wrap(&key, &[old.to_recipient()], age::Mixing::Refuse)?;
                let file = std::fs::File::create(tmp.path().join(format!("{i}.age")))?;
                let mut w = age::encrypt_writer(file, &key, &header, age::Armor::Binary)?;
                w.write_all(format!("secret number {i}").as_bytes())?;
                w.finish()?;
            }
            let new = Identity::generate_hybrid()?;
            let dir = tmp.path().to_path_buf();
            _sample = tmp;
            (dir, vec![old], vec![new.to_recipient()])
        }
        _ => return Err("usage: rewrap_dir [DIR OLD_IDENTITY_FILE NEW_RECIPIENTS_FILE]".into()),
    };
    let job = Job::new(old, recipients, JobOptions::default())?;
    let store = FsStore::new(vec![dir.clone()], Durability::Group);
    let summary = pqwrap_rewrap::run(&store, FORMATS, &job, &Options::default(), &Print)?;
    println!(
        "{}: {} re-wrapped, {} already done, {} failed",
        dir.display(),
        summary.count(Outcome::Rewrapped),
        summary.count(Outcome::AlreadyDone),
        summary.count(Outcome::Failed)
    );
    if !summary.all_ok() {
        std::process::exit(1);
    }
    Ok(())
}
