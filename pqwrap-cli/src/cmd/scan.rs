//! `pqwrap scan`: the migration-readiness inventory, without any key.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use pqwrap_rewrap::format::FORMATS;
use pqwrap_rewrap::inventory;
use pqwrap_rewrap::store::fs::{Durability, FsStore};

use crate::exit::Status;

/// Count files and bytes by format and protection (post-quantum, classical, mixed, ...),
/// without any key.
#[derive(clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,

    /// Worker threads (default: the number of CPUs).
    #[arg(short = 'j', long = "jobs", value_name = "N", value_parser = super::io_util::nonzero)]
    jobs: Option<std::num::NonZeroUsize>,

    /// Files and directories to scan (directories recursively; symlinks not followed).
    #[arg(value_name = "PATH", required = true)]
    paths: Vec<PathBuf>,
}

/// The inventory of `paths` on the local filesystem.
pub fn scan_paths(paths: &[PathBuf], jobs: usize) -> Result<inventory::Inventory> {
    let store = FsStore::new(paths.to_vec(), Durability::Group);
    Ok(inventory::scan(&store, FORMATS, jobs)?)
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
    let inv = scan_paths(&args.paths, jobs)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &inv.to_json())?;
        writeln!(out)?;
    } else {
        out.write_all(crate::render::inventory(&inv).as_bytes())?;
    }
    out.flush()?;
    Ok(Status::Success)
}
