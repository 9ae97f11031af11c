//! The candidates of a run, streamed page by page (memory does not grow with the object
//! count): the markers of a killed run's uploads first, then the objects under the prefix, or
//! the keys of a manifest, or the noncurrent versions; each filtered by shard.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::PathBuf;
use std::sync::Arc;

use super::xml::{Object, Version};
use super::{Ctx, Selection, shard_hash};
use crate::store::Listed;

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

/// Why a manifest cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The file could not be read.
    #[error("manifest {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// A line is not a key nor an S3 Inventory CSV row.
    #[error("manifest {path}, line {line}: {what}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        what: String,
    },
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
        Selection::Manifest(path) => Box::new(markers.chain(Manifest::open(ctx, path.clone()))),
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
struct Manifest<'a> {
    ctx: &'a Ctx,
    path: PathBuf,
    lines: Option<io::Lines<BufReader<File>>>,
    line: u64,
    last: Option<String>,
    failed: bool,
}

impl<'a> Manifest<'a> {
    fn open(ctx: &'a Ctx, path: PathBuf) -> Self {
        let lines = File::open(&path).map(|f| BufReader::new(f).lines());
        let (lines, failed) = match lines {
            Ok(l) => (Some(l), false),
            Err(_) => (None, false),
        };
        Manifest {
            ctx,
            path,
            lines,
            line: 0,
            last: None,
            failed,
        }
    }

    fn bad(&mut self, what: String) -> Item {
        Listed::Unreadable {
            name: self.path.clone(),
            error: io::Error::new(
                io::ErrorKind::InvalidData,
                ManifestError::Line {
                    path: self.path.clone(),
                    line: self.line,
                    what,
                },
            ),
        }
    }
}

impl Iterator for Manifest<'_> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        if self.failed {
            return None;
        }
        let Some(lines) = self.lines.as_mut() else {
            self.failed = true;
            let e = File::open(&self.path)
                .err()
                .unwrap_or_else(|| io::Error::other("cannot open"));
            return Some(Listed::Unreadable {
                name: self.path.clone(),
                error: io::Error::new(
                    e.kind(),
                    ManifestError::Io {
                        path: self.path.clone(),
                        source: e,
                    },
                ),
            });
        };
        loop {
            let line = match lines.next()? {
                Ok(l) => l,
                Err(e) => {
                    self.failed = true;
                    return Some(Listed::Unreadable {
                        name: self.path.clone(),
                        error: e,
                    });
                }
            };
            self.line += 1;
            let key = match manifest_key(&line, &self.ctx.location.bucket) {
                Ok(Some(k)) => k,
                Ok(None) => continue,
                Err(what) => return Some(self.bad(what)),
            };
            // An inventory of all versions lists a key once per version, one after another.
            if self.last.as_deref() == Some(key.as_str()) {
                continue;
            }
            self.last = Some(key.clone());
            if !key.starts_with(&self.ctx.location.prefix) {
                return Some(self.bad(format!(
                    "key {key:?} is not under the prefix {:?}",
                    self.ctx.location.prefix
                )));
            }
            if key.starts_with(&self.ctx.marker_prefix()) {
                continue;
            }
            if let Some(s) = self.ctx.shard
                && !s.takes(&key)
            {
                continue;
            }
            return Some(Listed::Candidate(S3Entry {
                name: self.ctx.name(&key),
                key,
                size: None,
                version: None,
            }));
        }
    }
}

/// The key of one manifest line: `None` for a blank line or a `#` comment. A line starting
/// with `"` is an S3 Inventory CSV row (`"bucket","key",...`, the key URL-encoded); any other
/// line is a key as it is.
pub(crate) fn manifest_key(line: &str, bucket: &str) -> Result<Option<String>, String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.trim().is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    if !line.starts_with('"') {
        return Ok(Some(line.to_string()));
    }
    let fields = csv_fields(line).ok_or("not a well-formed CSV row")?;
    let (b, k) = match fields.as_slice() {
        [b, k, ..] => (b, k),
        _ => return Err("an inventory row needs the bucket and key columns".into()),
    };
    if b != bucket {
        return Err(format!("the row is for bucket {b:?}, not {bucket:?}"));
    }
    // Inventory keys are form-URL-encoded: `+` is a space.
    let plus = k.replace('+', " ");
    let key = percent_encoding::percent_decode_str(&plus)
        .decode_utf8()
        .map_err(|_| "the key is not UTF-8 once decoded".to_string())?
        .into_owned();
    if key.is_empty() {
        return Err("empty key".into());
    }
    Ok(Some(key))
}

/// The fields of a CSV row whose every field is quoted (as S3 Inventory writes them).
fn csv_fields(line: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        if chars.next()? != '"' {
            return None;
        }
        let mut field = String::new();
        loop {
            match chars.next()? {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => break,
                c => field.push(c),
            }
        }
        out.push(field);
        match chars.next() {
            None => return Some(out),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

/// The noncurrent versions under the prefix (not delete markers), page by page.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_lines_plain_and_inventory() {
        assert_eq!(
            manifest_key("a/b c.age", "bk"),
            Ok(Some("a/b c.age".into()))
        );
        assert_eq!(manifest_key("", "bk"), Ok(None));
        assert_eq!(manifest_key("# comment", "bk"), Ok(None));
        assert_eq!(manifest_key("x\r", "bk"), Ok(Some("x".into())));
        assert_eq!(
            manifest_key(
                r#""bk","dir/my+file%2B1.age","123","2026-01-01T00:00:00.000Z""#,
                "bk"
            ),
            Ok(Some("dir/my file+1.age".into()))
        );
        assert_eq!(
            manifest_key(r#""bk","a""b""#, "bk"),
            Ok(Some("a\"b".into()))
        );
        assert!(
            manifest_key(r#""other","k""#, "bk")
                .unwrap_err()
                .contains("other")
        );
        assert!(manifest_key(r#""bk""#, "bk").is_err());
        assert!(manifest_key(r#""bk","k"x"#, "bk").is_err());
        assert!(manifest_key(r#""bk","%FF""#, "bk").is_err());
    }
}
