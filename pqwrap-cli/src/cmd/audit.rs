//! `pqwrap audit verify LOG`: check a hash-chained audit log.

use std::path::PathBuf;

use anyhow::Result;
use pqwrap_core::audit::{self, AuditError};

use crate::exit::Status;

/// Audit logs.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Verify every line's hash and link; name the first edited, removed, reordered or
    /// inserted line. Exit 0 only if the whole chain holds.
    Verify {
        /// The JSON-lines log.
        #[arg(value_name = "LOG")]
        log: PathBuf,
    },
}

/// Runs `pqwrap audit …`.
pub fn run(args: Args) -> Result<Status> {
    match args.command {
        Sub::Verify { log } => match audit::verify(&log) {
            Ok(s) => {
                println!("ok: {} lines, head {}", s.lines, s.head);
                Ok(Status::Success)
            }
            Err(e @ (AuditError::Broken { .. } | AuditError::TornTail { .. })) => {
                println!("{}: {e}", log.display());
                Ok(Status::Failure)
            }
            Err(e) => {
                Err(anyhow::Error::from(e).context(format!("cannot verify {}", log.display())))
            }
        },
    }
}
