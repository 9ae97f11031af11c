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

    /// Also count the noncurrent versions of a versioned bucket by protection: a re-wrapped
    /// object's replaced version still holds its old wrapping (s3:// only).
    #[arg(long)]
    versions: bool,

    /// Files and directories to scan (directories recursively; symlinks not followed), or
    /// one object-store URL (`s3://BUCKET[/PREFIX]`, `gs://BUCKET[/PREFIX]`,
    /// `az://CONTAINER[/PREFIX]`).
    #[arg(value_name = "PATH|URL", required = true)]
    paths: Vec<PathBuf>,
}

/// The inventory of `paths` on the local filesystem.
pub fn scan_paths(paths: &[PathBuf], jobs: usize) -> Result<inventory::Inventory> {
    let store = FsStore::new(paths.to_vec(), Durability::Group);
    Ok(inventory::scan(&store, FORMATS, jobs)?)
}

/// Runs `pqwrap scan`.
pub fn run(args: Args) -> Result<Status> {
    let target = match crate::objects::target(&args.paths) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("pqwrap scan: {e:#}");
            return Ok(Status::Usage);
        }
    };
    #[cfg(any(feature = "s3", feature = "cloud"))]
    if let crate::objects::Target::Object(location) = target {
        return scan_objects(location, &args);
    }
    if args.versions {
        eprintln!("pqwrap scan: --versions applies to s3:// buckets, not to local paths");
        return Ok(Status::Usage);
    }
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

/// `scan s3://...` (`gs://`, `az://`): the inventory of the objects under the prefix, and with `--versions` that
/// of the noncurrent versions too.
#[cfg(any(feature = "s3", feature = "cloud"))]
fn scan_objects(location: pqwrap_rewrap::store::bucket::Location, args: &Args) -> Result<Status> {
    use pqwrap_rewrap::store::bucket::Selection;

    /// The inventory of whichever store the URL names.
    struct Scan(usize);
    impl crate::objects::WithStore for Scan {
        type Out = Result<inventory::Inventory>;
        fn with<S: pqwrap_rewrap::Store>(self, store: &S) -> Self::Out {
            Ok(inventory::scan(store, FORMATS, self.0)?)
        }
    }

    if args.versions && location.scheme != pqwrap_rewrap::store::bucket::Scheme::S3 {
        eprintln!(
            "pqwrap scan: {}: --versions is supported on s3:// only",
            location.url_of(&location.prefix)
        );
        return Ok(Status::Usage);
    }
    let jobs = args.jobs.map_or(crate::objects::DEFAULT_JOBS, |n| n.get());
    let no_options = crate::objects::RewrapArgs::default();
    let scan = |selection| {
        let request = crate::objects::Request {
            selection,
            args: &no_options,
            exclude: Vec::new(),
            jobs,
        };
        crate::objects::connect(location.clone(), request, Scan(jobs))
    };
    let inv = match scan(Selection::Prefix) {
        Ok(inv) => inv?,
        Err(e) => {
            eprintln!("pqwrap scan: {e:#}");
            return Ok(Status::Usage);
        }
    };
    let versions = if args.versions {
        match scan(Selection::NoncurrentVersions) {
            Ok(inv) => Some(inv?),
            Err(e) => {
                eprintln!("pqwrap scan: {e:#}");
                return Ok(Status::Usage);
            }
        }
    } else {
        None
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut doc = inv.to_json();
        if let (Some(v), Some(map)) = (&versions, doc.as_object_mut()) {
            map.insert("noncurrent_versions".into(), v.to_json());
        }
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
    } else {
        out.write_all(crate::render::inventory(&inv).as_bytes())?;
        if let Some(v) = &versions {
            writeln!(out, "\nnoncurrent versions (replaced, still readable):")?;
            out.write_all(crate::render::inventory(v).as_bytes())?;
        }
    }
    out.flush()?;
    Ok(Status::Success)
}
