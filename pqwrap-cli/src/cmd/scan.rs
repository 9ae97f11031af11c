//! `pqwrap scan`: the migration-readiness inventory, without any key.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;

use crate::exit::Status;
use crate::rewrap::{formats::Classifier, inventory};

/// Count files and bytes by format and protection (post-quantum, classical, mixed, ...),
/// without any key.
#[derive(clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,

    /// Worker threads (default: the number of CPUs).
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    jobs: Option<std::num::NonZeroUsize>,

    /// Files and directories to scan (directories recursively; symlinks not followed).
    #[arg(value_name = "PATH", required = true)]
    paths: Vec<PathBuf>,
}

/// Runs `pqwrap scan`.
pub fn run(args: Args) -> Result<Status> {
    for p in &args.paths {
        // The real reason: "no such file" would be wrong for a path we may not reach.
        if let Err(e) = std::fs::symlink_metadata(p) {
            eprintln!("pqwrap scan: {}: {e}", p.display());
            return Ok(Status::Usage);
        }
    }
    let jobs = args.jobs.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |n| n.get(),
    );
    let inv = inventory::scan(&args.paths, &Classifier, jobs)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &inv.to_json())?;
        writeln!(out)?;
    } else {
        out.write_all(inv.render_table().as_bytes())?;
    }
    out.flush()?;
    Ok(Status::Success)
}
