//! The candidates of a run, streamed page by page (memory does not grow with the object
//! count): the markers of a killed run's uploads first, then the objects under the prefix, or
//! the keys of a manifest, or the noncurrent versions; each filtered by shard.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use super::xml::{Object, Version};
use super::{Ctx, Selection, shard_hash};
use crate::store::Listed;
use crate::store::bucket::ManifestKeys;

/// One listed object (or marker).
#[derive(Clone, Debug)]
pub struct S3Entry {
    /// Its key.
    pub key: String,
    /// `s3://bucket/key`, for reports.
    pub name: PathBuf,
    /// Its size, when the listing said.
    pub size: Option<u64>,
    /// A version to read instead of the current one (`scan --versions`).
    pub version: Option<String>,
}

type Item = Listed<S3Entry>;

pub(crate) fn list<'a>(
    ctx: &'a Arc<Ctx>,
    selection: &'a Selection,
    exclude: &'a [String],
) -> Box<dyn Iterator<Item = Item> + Send + 'a> {
    let markers = Pages::objects(ctx, ctx.marker_prefix(), Kind::Markers, exclude);
    match selection {
        Selection::Prefix => Box::new(markers.chain(Pages::objects(
            ctx,
            ctx.location.prefix.clone(),
            Kind::Objects,
            exclude,
        ))),
        Selection::Manifest(path) => Box::new(
            markers.chain(
                ManifestKeys::open(
                    path.clone(),
                    &ctx.location,
                    ctx.shard,
                    Some(ctx.marker_prefix()),
                )
                .map(|k| manifest_item(ctx, k)),
            ),
        ),
        Selection::NoncurrentVersions => Box::new(Versions::new(ctx)),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Markers,
    Objects,
}

struct Pages<'a> {
    ctx: &'a Ctx,
    prefix: String,
    kind: Kind,
    exclude: &'a [String],
    token: Option<String>,
    buf: VecDeque<Object>,
    done: bool,
}

impl<'a> Pages<'a> {
    fn objects(ctx: &'a Ctx, prefix: String, kind: Kind, exclude: &'a [String]) -> Self {
        Pages {
            ctx,
            prefix,
            kind,
            exclude,
            token: None,
            buf: VecDeque::new(),
            done: false,
        }
    }

    /// The listing item for an object, or `None` if it is not this run's.
    fn item(&self, o: Object) -> Option<Item> {
        let marker_prefix = self.ctx.marker_prefix();
        let entry = |o: Object| S3Entry {
            name: self.ctx.name(&o.key),
            size: Some(o.size),
            key: o.key,
            version: None,
        };
        match self.kind {
            Kind::Markers => {
                // `<16 hex of the key's shard hash>-<random>`: the shard is in the name.
                let rest = o.key.strip_prefix(&marker_prefix)?;
                let hash = rest.get(..16).and_then(|h| u64::from_str_radix(h, 16).ok());
                match (self.ctx.shard, hash) {
                    (Some(s), Some(h)) if !s.takes_hash(h) => None,
                    _ => Some(Listed::Leftover(entry(o))),
                }
            }
            Kind::Objects => {
                if o.key.starts_with(&marker_prefix) || self.exclude.contains(&o.key) {
                    return None;
                }
                if o.key.ends_with('/') && o.size == 0 {
                    // A "folder" placeholder.
                    return None;
                }
                if let Some(s) = self.ctx.shard
                    && !s.takes(&o.key)
                {
                    return None;
                }
                Some(Listed::Candidate(entry(o)))
            }
        }
    }
}

impl Iterator for Pages<'_> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        loop {
            while let Some(o) = self.buf.pop_front() {
                if let Some(item) = self.item(o) {
                    return Some(item);
                }
            }
            if self.done {
                return None;
            }
            match self
                .ctx
                .client
                .list(&self.prefix, self.token.as_deref(), None)
            {
                Ok(page) => {
                    self.buf.extend(page.objects);
                    self.token = page.next.filter(|_| page.truncated);
                    self.done = self.token.is_none();
                }
                Err(e) => {
                    self.done = true;
                    return Some(Listed::Unreadable {
                        name: self.ctx.name(&self.prefix),
                        error: e.into_io(),
                    });
                }
            }
        }
    }
}

/// The keys of a manifest file, read line by line.
/// A manifest's key as a candidate whose size is not known (a missing one fails: it was asked
/// for), or its error.
fn manifest_item(ctx: &Ctx, key: Result<String, crate::store::bucket::ManifestError>) -> Item {
    match key {
        Ok(key) => Listed::Candidate(S3Entry {
            name: ctx.name(&key),
            key,
            size: None,
            version: None,
        }),
        Err(e) => Listed::Unreadable {
            name: e.path().to_path_buf(),
            error: e.into_io(),
        },
    }
}

struct Versions<'a> {
    ctx: &'a Ctx,
    key_marker: Option<String>,
    version_marker: Option<String>,
    buf: VecDeque<Version>,
    done: bool,
}

impl<'a> Versions<'a> {
    fn new(ctx: &'a Ctx) -> Self {
        Versions {
            ctx,
            key_marker: None,
            version_marker: None,
            buf: VecDeque::new(),
            done: false,
        }
    }
}

impl Iterator for Versions<'_> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        let marker_prefix = self.ctx.marker_prefix();
        loop {
            while let Some(v) = self.buf.pop_front() {
                if v.latest || v.key.starts_with(&marker_prefix) {
                    continue;
                }
                if let Some(s) = self.ctx.shard
                    && !s.takes(&v.key)
                {
                    continue;
                }
                let name = PathBuf::from(format!(
                    "{}?versionId={}",
                    self.ctx.location.url_of(&v.key),
                    v.version
                ));
                return Some(Listed::Candidate(S3Entry {
                    name,
                    key: v.key,
                    size: Some(v.size),
                    version: Some(v.version),
                }));
            }
            if self.done {
                return None;
            }
            let page = self.ctx.client.list_versions(
                &self.ctx.location.prefix,
                self.key_marker.as_deref(),
                self.version_marker.as_deref(),
            );
            match page {
                Ok(p) => {
                    self.buf.extend(p.versions);
                    self.done = !p.truncated || p.next_key_marker.is_none();
                    self.key_marker = p.next_key_marker;
                    self.version_marker = p.next_version_marker;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Listed::Unreadable {
                        name: self.ctx.name(&self.ctx.location.prefix),
                        error: e.into_io(),
                    });
                }
            }
        }
    }
}

/// The name of a new marker for `key`: its shard hash, then randomness.
pub(crate) fn marker_key(ctx: &Ctx, key: &str) -> Result<String, getrandom::Error> {
    let mut r = [0u8; 8];
    getrandom::fill(&mut r)?;
    Ok(format!(
        "{}{:016x}-{:016x}",
        ctx.marker_prefix(),
        shard_hash(key),
        u64::from_le_bytes(r)
    ))
}
