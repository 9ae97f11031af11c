//! Object stores on the command line: a URL where a path goes (`s3://bucket/prefix`), and the
//! options that only make sense there. This is the one place that picks a store by scheme.

use std::path::PathBuf;

use anyhow::{Result, bail};

/// Options of `rewrap` for object stores.
#[derive(clap::Args, Debug, Default)]
#[command(next_help_heading = "Object stores (s3://BUCKET[/PREFIX])")]
pub struct RewrapArgs {
    /// Take only the objects whose key hashes to shard K of N (0-based): N workers, each given
    /// its own K, cover the bucket exactly once. The hash is the first 8 bytes of SHA-256 of
    /// the key, big-endian, modulo N.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,

    /// Take only the keys listed in FILE: one key per line, or an S3 Inventory CSV report
    /// (bucket and key columns first, keys URL-encoded).
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,

    /// In a versioned bucket, delete the version each re-wrap replaced (exactly that version
    /// id, once the new version is verified): until then it still holds the old wrapping.
    #[arg(long)]
    pub purge_old_versions: bool,
}

impl RewrapArgs {
    /// Whether any object-store option was given.
    pub fn any(&self) -> bool {
        self.shard.is_some() || self.manifest.is_some() || self.purge_old_versions
    }
}

/// What a run works on.
pub enum Target {
    /// Local files and directories.
    Local,
    /// An object store.
    #[cfg(feature = "s3")]
    Object(pqwrap_rewrap::store::s3::Location),
}

/// Picks the store for the operands: all paths, or exactly one URL.
pub fn target(paths: &[PathBuf]) -> Result<Target> {
    let urls: Vec<&str> = paths
        .iter()
        .filter_map(|p| p.to_str())
        .filter(|p| looks_like_url(p))
        .collect();
    match urls.as_slice() {
        [] => Ok(Target::Local),
        [url] if paths.len() == 1 => object_target(url),
        _ => bail!("give either local paths or one object-store URL, not both or several URLs"),
    }
}

fn looks_like_url(s: &str) -> bool {
    s.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric())
    })
}

#[cfg(feature = "s3")]
fn object_target(url: &str) -> Result<Target> {
    Ok(Target::Object(pqwrap_rewrap::store::s3::Location::parse(
        url,
    )?))
}

#[cfg(not(feature = "s3"))]
fn object_target(url: &str) -> Result<Target> {
    bail!("{url}: this pqwrap was built without object-store support (cargo feature `s3`)")
}

/// Requests in flight per process when the operand is an object store: object stores answer
/// each request in milliseconds, so many are needed to keep one busy.
pub const DEFAULT_JOBS: usize = 32;

#[cfg(feature = "s3")]
pub use store::*;

#[cfg(feature = "s3")]
mod store {
    use std::collections::HashMap;
    use std::fs::File;
    use std::io::{Read, Seek};

    use anyhow::{Context, Result, bail};
    use pqwrap_rewrap::store::s3::{
        Location, OldVersions, Retry, S3Config, S3Store, Selection, Shard,
    };

    use super::RewrapArgs;
    use crate::outputs::ReportFile;

    /// The process environment, where credentials and the endpoint are found.
    pub fn env() -> HashMap<String, String> {
        std::env::vars().collect()
    }

    /// Connects to the bucket; the error is for people (bad credentials, missing bucket...).
    pub fn connect(
        location: Location,
        selection: Selection,
        args: &RewrapArgs,
        exclude: Vec<String>,
        jobs: usize,
    ) -> Result<S3Store> {
        let shard = match &args.shard {
            Some(s) => Some(s.parse::<Shard>()?),
            None => None,
        };
        let config = S3Config {
            location,
            selection,
            shard,
            old_versions: if args.purge_old_versions {
                OldVersions::Purge
            } else {
                OldVersions::Keep
            },
            exclude,
            connections: jobs,
            retry: retry_from_env(),
        };
        Ok(S3Store::connect(config, &env())?)
    }

    /// `PQWRAP_S3_RETRIES` (attempts, the first included) overrides the default patience.
    fn retry_from_env() -> Retry {
        let mut r = Retry::default();
        if let Some(n) = std::env::var("PQWRAP_S3_RETRIES")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|n| *n > 0)
        {
            r.attempts = n;
        }
        r
    }

    /// A report written to an object at the end of the run (`--report s3://bucket/key`): the
    /// records go to a local temporary file, uploaded when the run ends. An existing object
    /// there must be an earlier pqwrap report.
    pub fn report_object(url: &str, jobs: usize) -> Result<(ReportFile, Location)> {
        let loc = Location::parse(url)?;
        if loc.prefix.is_empty() || loc.prefix.ends_with('/') {
            bail!("--report {url}: name an object (s3://BUCKET/KEY), not a prefix");
        }
        let key = loc.prefix.clone();
        let store = S3Store::connect(
            S3Config {
                location: Location {
                    prefix: key.clone(),
                    ..loc.clone()
                },
                selection: Selection::Prefix,
                shard: None,
                old_versions: OldVersions::Keep,
                exclude: Vec::new(),
                connections: jobs.min(4),
                retry: retry_from_env(),
            },
            &env(),
        )
        .with_context(|| format!("--report {url}"))?;
        if let Some(head) = store
            .object_head(&key, 64 << 10)
            .with_context(|| format!("--report {url}"))?
            && !crate::outputs::is_report_bytes(&head)
        {
            bail!(
                "the report {url} exists and is not a pqwrap report: refusing to overwrite it \
                 (remove it, or choose another name)"
            );
        }
        let file = tempfile::tempfile().context("cannot create a temporary file for the report")?;
        let url = url.to_string();
        let upload = Box::new(move |mut f: File| -> Result<()> {
            f.rewind()?;
            let mut body = Vec::new();
            f.read_to_end(&mut body)?;
            store
                .put_object(&key, &body)
                .with_context(|| format!("cannot write the report {url}"))
        });
        Ok((ReportFile::Upload(file, Some(upload)), loc))
    }
}
