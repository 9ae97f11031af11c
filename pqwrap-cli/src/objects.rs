//! Object stores on the command line: a URL where a path goes (`s3://bucket/prefix`,
//! `gs://bucket/prefix`, `az://container/prefix`), and the
//! options that only make sense there. This is the one place that picks a store by scheme.

use std::path::PathBuf;

use anyhow::{Result, bail};

/// Options of `rewrap` for object stores.
#[derive(clap::Args, Debug, Default)]
#[command(next_help_heading = "Object stores (s3://, gs://, az://BUCKET[/PREFIX])")]
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
    /// id, once the new version is verified): until then it still holds the old wrapping
    /// (s3:// only).
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
    #[cfg(any(feature = "s3", feature = "cloud"))]
    Object(pqwrap_rewrap::store::bucket::Location),
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

#[cfg(any(feature = "s3", feature = "cloud"))]
fn object_target(url: &str) -> Result<Target> {
    use pqwrap_rewrap::store::bucket::{Location, Scheme};
    let location = Location::parse(url)?;
    let (built, feature) = match location.scheme {
        Scheme::S3 => (cfg!(feature = "s3"), "s3"),
        _ => (cfg!(feature = "cloud"), "cloud"),
    };
    if !built {
        bail!("{url}: this pqwrap was built without support for it (cargo feature `{feature}`)");
    }
    Ok(Target::Object(location))
}

#[cfg(not(any(feature = "s3", feature = "cloud")))]
fn object_target(url: &str) -> Result<Target> {
    bail!(
        "{url}: this pqwrap was built without object-store support (cargo features `s3`, `cloud`)"
    )
}

/// Requests in flight per process when the operand is an object store: object stores answer
/// each request in milliseconds, so many are needed to keep one busy.
pub const DEFAULT_JOBS: usize = 32;

#[cfg(any(feature = "s3", feature = "cloud"))]
pub use store::*;

#[cfg(any(feature = "s3", feature = "cloud"))]
mod store {
    use std::collections::HashMap;
    use std::fs::File;
    use std::io::{Read, Seek};

    use anyhow::{Context, Result, anyhow, bail};
    use pqwrap_rewrap::Store;
    use pqwrap_rewrap::store::bucket::{Location, Scheme, Selection, Shard};

    use super::RewrapArgs;
    use crate::outputs::ReportFile;

    /// The process environment, where credentials and the endpoint are found.
    pub fn env() -> HashMap<String, String> {
        std::env::vars().collect()
    }

    /// What a command does with the store it gets, whichever store that is.
    pub trait WithStore {
        /// What it returns.
        type Out;
        /// Does it.
        fn with<S: Store>(self, store: &S) -> Self::Out;
    }

    /// What a store needs besides its location.
    pub struct Request<'a> {
        /// Which objects.
        pub selection: Selection,
        /// `--shard`, `--manifest`, `--purge-old-versions`.
        pub args: &'a RewrapArgs,
        /// Keys never taken (the run's report object).
        pub exclude: Vec<String>,
        /// Requests in flight (the S3 store's connection pool; object_store sizes its own).
        #[cfg_attr(not(feature = "s3"), allow(dead_code))]
        pub jobs: usize,
    }

    /// Connects to the bucket or container and hands the store to `what`. The error is for
    /// people (bad credentials, missing bucket, an option the service lacks...): a usage
    /// error; `what`'s own result is returned as it is.
    pub fn connect<W: WithStore>(location: Location, req: Request<'_>, what: W) -> Result<W::Out> {
        let shard = match &req.args.shard {
            Some(s) => Some(s.parse::<Shard>()?),
            None => None,
        };
        match location.scheme {
            #[cfg(feature = "s3")]
            Scheme::S3 => {
                use pqwrap_rewrap::store::s3::{OldVersions, S3Config, S3Store};
                let config = S3Config {
                    location,
                    selection: req.selection,
                    shard,
                    old_versions: if req.args.purge_old_versions {
                        OldVersions::Purge
                    } else {
                        OldVersions::Keep
                    },
                    exclude: req.exclude,
                    connections: req.jobs,
                    retry: s3_retry(),
                };
                Ok(what.with(&S3Store::connect(config, &env())?))
            }
            #[cfg(feature = "cloud")]
            Scheme::Gcs | Scheme::Azure => {
                use pqwrap_rewrap::store::cloud::{CloudConfig, CloudStore};
                let url = location.url_of(&location.prefix);
                if req.args.purge_old_versions {
                    bail!(
                        "{url}: --purge-old-versions is supported on s3:// only: this store \
                         does not delete versions"
                    );
                }
                if req.selection == Selection::NoncurrentVersions {
                    bail!("{url}: --versions is supported on s3:// only");
                }
                let config = CloudConfig {
                    location,
                    selection: req.selection,
                    shard,
                    exclude: req.exclude,
                    attempts: attempts().unwrap_or(10),
                };
                Ok(what.with(&CloudStore::connect(config, &env())?))
            }
            #[allow(unreachable_patterns)]
            _ => Err(anyhow!(
                "{}: this pqwrap was built without support for it",
                location.url_of(&location.prefix)
            )),
        }
    }

    /// `PQWRAP_S3_RETRIES` (attempts, the first included) overrides the default patience of
    /// every object store.
    fn attempts() -> Option<u32> {
        std::env::var("PQWRAP_S3_RETRIES")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|n| *n > 0)
    }

    #[cfg(feature = "s3")]
    fn s3_retry() -> pqwrap_rewrap::store::s3::Retry {
        let mut r = pqwrap_rewrap::store::s3::Retry::default();
        if let Some(n) = attempts() {
            r.attempts = n;
        }
        r
    }

    /// Reads and writes whole objects: the run's report.
    trait Objects: Send {
        fn head(&self, key: &str, len: u64) -> Result<Option<Vec<u8>>>;
        fn put(&self, key: &str, body: &[u8]) -> Result<()>;
    }

    #[cfg(feature = "s3")]
    impl Objects for pqwrap_rewrap::store::s3::S3Store {
        fn head(&self, key: &str, len: u64) -> Result<Option<Vec<u8>>> {
            Ok(self.object_head(key, len)?)
        }
        fn put(&self, key: &str, body: &[u8]) -> Result<()> {
            Ok(self.put_object(key, body)?)
        }
    }

    #[cfg(feature = "cloud")]
    impl Objects for pqwrap_rewrap::store::cloud::CloudStore {
        fn head(&self, key: &str, len: u64) -> Result<Option<Vec<u8>>> {
            Ok(self.object_head(key, len)?)
        }
        fn put(&self, key: &str, body: &[u8]) -> Result<()> {
            Ok(self.put_object(key, body)?)
        }
    }

    fn report_store(loc: &Location, jobs: usize) -> Result<Box<dyn Objects>> {
        match loc.scheme {
            #[cfg(feature = "s3")]
            Scheme::S3 => {
                use pqwrap_rewrap::store::s3::{OldVersions, S3Config, S3Store};
                Ok(Box::new(S3Store::connect(
                    S3Config {
                        location: loc.clone(),
                        selection: Selection::Prefix,
                        shard: None,
                        old_versions: OldVersions::Keep,
                        exclude: Vec::new(),
                        connections: jobs.min(4),
                        retry: s3_retry(),
                    },
                    &env(),
                )?))
            }
            #[cfg(feature = "cloud")]
            Scheme::Gcs | Scheme::Azure => {
                use pqwrap_rewrap::store::cloud::{CloudConfig, CloudStore};
                let _ = jobs;
                Ok(Box::new(CloudStore::connect(
                    CloudConfig {
                        location: loc.clone(),
                        selection: Selection::Prefix,
                        shard: None,
                        exclude: Vec::new(),
                        attempts: attempts().unwrap_or(10),
                    },
                    &env(),
                )?))
            }
            #[allow(unreachable_patterns)]
            _ => bail!("this pqwrap was built without support for it"),
        }
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
        let store = report_store(&loc, jobs).with_context(|| format!("--report {url}"))?;
        if let Some(head) = store
            .head(&key, 64 << 10)
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
                .put(&key, &body)
                .with_context(|| format!("cannot write the report {url}"))
        });
        Ok((ReportFile::Upload(file, Some(upload)), loc))
    }
}
