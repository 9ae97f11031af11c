//! What every object store shares, whatever the service: the URL of a bucket and prefix, the
//! shard a worker takes, which objects a run selects, and the manifest of keys.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::PathBuf;
use std::str::FromStr;

/// Which service a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scheme {
    /// `s3://`: Amazon S3 or an S3-compatible service (`AWS_ENDPOINT_URL`).
    S3,
    /// `gs://`: Google Cloud Storage.
    Gcs,
    /// `az://`: Azure Blob Storage (the "bucket" is a container).
    Azure,
}

impl Scheme {
    /// How its URLs start.
    pub fn prefix(self) -> &'static str {
        match self {
            Scheme::S3 => "s3://",
            Scheme::Gcs => "gs://",
            Scheme::Azure => "az://",
        }
    }

    /// What the service calls a bucket.
    pub fn bucket_word(self) -> &'static str {
        match self {
            Scheme::S3 | Scheme::Gcs => "bucket",
            Scheme::Azure => "container",
        }
    }

    /// Whether `name` is a bucket (container) name the service allows.
    fn allows(self, name: &str) -> bool {
        let charset_ok = |extra: &[u8]| {
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || extra.contains(&b))
        };
        let ends_ok = name
            .bytes()
            .next()
            .zip(name.bytes().last())
            .is_some_and(|(a, z)| a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
        let len_ok = (3..=63).contains(&name.len());
        match self {
            Scheme::S3 => len_ok && ends_ok && charset_ok(b".-"),
            // Names with dots may be up to 222 characters, in parts of at most 63.
            Scheme::Gcs => {
                let dotted = name.contains('.');
                (len_ok || (dotted && (3..=222).contains(&name.len())))
                    && name.split('.').all(|p| !p.is_empty() && p.len() <= 63)
                    && ends_ok
                    && charset_ok(b".-_")
            }
            Scheme::Azure => len_ok && ends_ok && charset_ok(b"-") && !name.contains("--"),
        }
    }

    fn rule(self) -> &'static str {
        match self {
            Scheme::S3 => "3 to 63 characters of a-z, 0-9, '.' and '-'",
            Scheme::Gcs => "3 to 63 characters of a-z, 0-9, '.', '-' and '_'",
            Scheme::Azure => "3 to 63 characters of a-z, 0-9 and single '-'",
        }
    }
}

/// A bucket (or container) and a key prefix: `s3://bucket/prefix`, `gs://bucket/prefix`,
/// `az://container/prefix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The service.
    pub scheme: Scheme,
    /// The bucket.
    pub bucket: String,
    /// The key prefix (may be empty).
    pub prefix: String,
}

/// Why a URL is not an object-store location.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    /// Not a URL of a service pqwrap reaches.
    #[error("{0}: not an object-store URL (s3://, gs:// or az://BUCKET[/PREFIX])")]
    Scheme(String),
    /// No bucket, or a bucket name the service does not allow.
    #[error("{url}: the {word} name must be {rule}")]
    Bucket {
        /// The URL.
        url: String,
        /// "bucket" or "container".
        word: &'static str,
        /// The service's rule.
        rule: &'static str,
    },
}

impl Location {
    /// Whether `s` is written like an object-store URL (`scheme://...`), as opposed to a path.
    pub fn looks_like_url(s: &str) -> bool {
        s.split_once("://").is_some_and(|(scheme, _)| {
            !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric())
        })
    }

    /// Parses `s3://bucket[/prefix]`, `gs://bucket[/prefix]` or `az://container[/prefix]`.
    ///
    /// ```
    /// use pqwrap_rewrap::store::bucket::{Location, Scheme};
    /// let l = Location::parse("s3://backups/2024/").unwrap();
    /// assert_eq!((l.bucket.as_str(), l.prefix.as_str()), ("backups", "2024/"));
    /// assert_eq!(Location::parse("az://exports").unwrap().scheme, Scheme::Azure);
    /// assert!(Location::parse("s3://B!/x").is_err());
    /// assert!(Location::parse("/archive").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Location, UrlError> {
        let (scheme, rest) = [Scheme::S3, Scheme::Gcs, Scheme::Azure]
            .into_iter()
            .find_map(|sc| s.strip_prefix(sc.prefix()).map(|r| (sc, r)))
            .ok_or_else(|| UrlError::Scheme(s.to_string()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if !scheme.allows(bucket) {
            return Err(UrlError::Bucket {
                url: s.to_string(),
                word: scheme.bucket_word(),
                rule: scheme.rule(),
            });
        }
        Ok(Location {
            scheme,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// `s3://bucket/key` (or `gs://`, `az://`), for reports.
    pub fn url_of(&self, key: &str) -> String {
        format!("{}{}/{key}", self.scheme.prefix(), self.bucket)
    }
}

/// `K/N`: this worker's share of a bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This worker's index, `0..count`.
    pub index: u64,
    /// How many workers share the bucket.
    pub count: u64,
}

/// Why `--shard` is not `K/N`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?}: a shard is K/N with N at least 1 and K from 0 to N-1")]
pub struct ShardError(String);

impl FromStr for Shard {
    type Err = ShardError;

    fn from_str(s: &str) -> Result<Shard, ShardError> {
        let err = || ShardError(s.to_string());
        let (k, n) = s.split_once('/').ok_or_else(err)?;
        let index: u64 = k.trim().parse().map_err(|_| err())?;
        let count: u64 = n.trim().parse().map_err(|_| err())?;
        if count == 0 || index >= count {
            return Err(err());
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// Whether `key` belongs to this shard.
    pub fn takes(&self, key: &str) -> bool {
        shard_hash(key) % self.count == self.index
    }

    /// Whether a key of this [`shard_hash`] belongs to this shard.
    pub fn takes_hash(&self, hash: u64) -> bool {
        hash % self.count == self.index
    }
}

/// The stable hash that assigns keys to shards: the first 8 bytes of SHA-256 of the key's
/// UTF-8 bytes, as a big-endian integer. The same key lands in the same shard on every
/// machine, in every version of pqwrap, for every service.
///
/// ```
/// // Shard K/N takes the keys with shard_hash(key) % N == K.
/// let h = pqwrap_rewrap::store::bucket::shard_hash("backups/a.age");
/// assert_eq!(h, pqwrap_rewrap::store::bucket::shard_hash("backups/a.age"));
/// ```
pub fn shard_hash(key: &str) -> u64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(key.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(d.get(..8).unwrap_or(&[0; 8]));
    u64::from_be_bytes(b)
}

/// Which objects a run takes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Selection {
    /// Every object under the prefix.
    Prefix,
    /// The keys named by a manifest file: a key per line, or an S3 Inventory CSV.
    Manifest(PathBuf),
    /// The noncurrent versions under the prefix (for `scan --versions`; read only).
    NoncurrentVersions,
}

/// What becomes of the version a re-wrap replaced, in a versioned bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OldVersions {
    /// Kept, and reported: it still holds the old wrapping.
    #[default]
    Keep,
    /// Deleted (exactly the version read) once the new version is verified.
    Purge,
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

impl ManifestError {
    /// The manifest file.
    pub fn path(&self) -> &std::path::Path {
        match self {
            ManifestError::Io { path, .. } | ManifestError::Line { path, .. } => path,
        }
    }

    /// As the `io::Error` a listing reports.
    pub(crate) fn into_io(self) -> io::Error {
        let kind = match &self {
            ManifestError::Io { source, .. } => source.kind(),
            ManifestError::Line { .. } => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, self)
    }
}

/// The keys a manifest names, streamed: each under the location's prefix (else an error
/// naming the line), consecutive duplicates once, those of other shards and those starting
/// with `hidden` (a store's own objects) left out. Stops after an error that ends the file.
pub(crate) struct ManifestKeys {
    path: PathBuf,
    lines: Option<io::Lines<BufReader<File>>>,
    line: u64,
    last: Option<String>,
    done: bool,
    location: Location,
    shard: Option<Shard>,
    hidden: Option<String>,
}

impl ManifestKeys {
    pub(crate) fn open(
        path: PathBuf,
        location: &Location,
        shard: Option<Shard>,
        hidden: Option<String>,
    ) -> Self {
        ManifestKeys {
            lines: None,
            path,
            line: 0,
            last: None,
            done: false,
            location: location.clone(),
            shard,
            hidden,
        }
    }

    fn bad(&self, what: String) -> ManifestError {
        ManifestError::Line {
            path: self.path.clone(),
            line: self.line,
            what,
        }
    }
}

impl Iterator for ManifestKeys {
    type Item = Result<String, ManifestError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.lines.is_none() {
            match File::open(&self.path) {
                Ok(f) => self.lines = Some(BufReader::new(f).lines()),
                Err(source) => {
                    self.done = true;
                    return Some(Err(ManifestError::Io {
                        path: self.path.clone(),
                        source,
                    }));
                }
            }
        }
        loop {
            let line = match self.lines.as_mut()?.next()? {
                Ok(l) => l,
                Err(source) => {
                    self.done = true;
                    return Some(Err(ManifestError::Io {
                        path: self.path.clone(),
                        source,
                    }));
                }
            };
            self.line += 1;
            let key = match manifest_key(&line, &self.location.bucket) {
                Ok(Some(k)) => k,
                Ok(None) => continue,
                Err(what) => return Some(Err(self.bad(what))),
            };
            if self.last.as_deref() == Some(key.as_str()) {
                continue;
            }
            self.last = Some(key.clone());
            if !key.starts_with(&self.location.prefix) {
                return Some(Err(self.bad(format!(
                    "key {key:?} is not under the prefix {:?}",
                    self.location.prefix
                ))));
            }
            if self.hidden.as_ref().is_some_and(|h| key.starts_with(h)) {
                continue;
            }
            if let Some(s) = self.shard
                && !s.takes(&key)
            {
                continue;
            }
            return Some(Ok(key));
        }
    }
}

/// The key of one manifest line: the line itself, or the (URL-encoded) key column of an S3
/// Inventory CSV row for `bucket`. `None` for blank lines and `#` comments.
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

/// What an object store answers to `Store::write_in_place`: objects are replaced, never
/// edited (formats plan a replacement when the store says in-place is unsupported).
pub(crate) fn no_in_place() -> crate::error::FileError {
    crate::error::FileError::io(
        crate::error::Step::WriteInPlace,
        io::Error::new(
            io::ErrorKind::Unsupported,
            "objects cannot be written in place",
        ),
    )
}

/// The bytes of an object last fetched, and where they start: reads inside them cost no
/// request, and a read outside fetches at least `ahead` bytes from where it starts, so that a
/// header and its first payload chunk come in one request.
#[derive(Debug)]
pub(crate) struct ReadAhead {
    window: std::sync::Mutex<(u64, Vec<u8>)>,
    len: u64,
    ahead: u64,
}

impl ReadAhead {
    /// A window over an object of `len` bytes, holding `first` from its start.
    pub(crate) fn new(len: u64, ahead: u64, first: Vec<u8>) -> Self {
        ReadAhead {
            window: std::sync::Mutex::new((0, first)),
            len,
            ahead,
        }
    }

    /// Whether every byte of the object is in the window.
    #[cfg_attr(not(feature = "s3"), allow(dead_code))]
    pub(crate) fn is_whole(&self) -> bool {
        let w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        w.0 == 0 && w.1.len() as u64 >= self.len
    }

    /// `Blob::read_at`, with `fetch(start, end)` for the bytes the window lacks.
    pub(crate) fn read_at(
        &self,
        buf: &mut [u8],
        offset: u64,
        fetch: impl FnOnce(u64, u64) -> io::Result<Vec<u8>>,
    ) -> io::Result<usize> {
        if offset >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let in_window = offset >= w.0 && offset < w.0 + w.1.len() as u64;
        if !in_window {
            let want = (buf.len() as u64).max(self.ahead);
            let fetched = fetch(offset, (offset + want).min(self.len))?;
            if fetched.is_empty() {
                return Ok(0);
            }
            *w = (offset, fetched);
        }
        let at = usize::try_from(offset - w.0).unwrap_or(usize::MAX);
        let src = w.1.get(at..).unwrap_or_default();
        let n = src.len().min(buf.len());
        buf.get_mut(..n)
            .unwrap_or_default()
            .copy_from_slice(src.get(..n).unwrap_or_default());
        Ok(n)
    }

    /// `start..end` if the window holds all of it.
    #[cfg_attr(not(feature = "cloud"), allow(dead_code))]
    pub(crate) fn copy_if_held(&self, out: &mut Vec<u8>, start: u64, end: u64) -> bool {
        let w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if start >= w.0 && end <= w.0 + w.1.len() as u64 {
            let from = usize::try_from(start - w.0).unwrap_or(usize::MAX);
            let to = usize::try_from(end - w.0).unwrap_or(usize::MAX);
            out.extend_from_slice(w.1.get(from..to).unwrap_or_default());
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_shards_and_hashes() {
        let l = Location::parse("s3://my-bucket").unwrap();
        assert_eq!((l.bucket.as_str(), l.prefix.as_str()), ("my-bucket", ""));
        assert_eq!(l.url_of("a/b"), "s3://my-bucket/a/b");
        assert!(matches!(
            Location::parse("s3://ab/x"),
            Err(UrlError::Bucket { .. })
        ));
        let g = Location::parse("gs://my_bucket/p/").unwrap();
        assert_eq!(
            (g.scheme, g.url_of("k")),
            (Scheme::Gcs, "gs://my_bucket/k".into())
        );
        assert!(Location::parse("s3://my_bucket").is_err());
        let a = Location::parse("az://exports-2024/x").unwrap();
        assert_eq!((a.scheme, a.prefix.as_str()), (Scheme::Azure, "x"));
        assert!(Location::parse("az://two--dashes").is_err());
        assert!(Location::parse("az://with.dot").is_err());
        assert!(matches!(
            Location::parse("ftp://abc/x"),
            Err(UrlError::Scheme(_))
        ));
        assert!(Location::looks_like_url("s3://x"));
        assert!(!Location::looks_like_url("./s3:/x"));
        assert!(!Location::looks_like_url("dir/a://b"));

        assert_eq!(
            "3/4".parse::<Shard>().unwrap(),
            Shard { index: 3, count: 4 }
        );
        for bad in ["4/4", "1", "a/2", "0/0", "-1/3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        // The documented hash, pinned: SHA-256("a") starts ca978112ca1bbdca.
        assert_eq!(shard_hash("a"), 0xca97_8112_ca1b_bdca);
        // Every key in exactly one shard.
        let shards: Vec<Shard> = (0..4).map(|i| Shard { index: i, count: 4 }).collect();
        for k in 0..1000 {
            let key = format!("k{k}");
            assert_eq!(shards.iter().filter(|s| s.takes(&key)).count(), 1);
        }
    }

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

    #[test]
    fn a_read_ahead_window_fetches_only_what_it_lacks() {
        let object: Vec<u8> = (0..=255).collect();
        let w = ReadAhead::new(256, 100, object[..10].to_vec());
        let fetched = std::cell::RefCell::new(Vec::new());
        let fetch = |s: u64, e: u64| {
            fetched.borrow_mut().push((s, e));
            Ok(object[s as usize..e as usize].to_vec())
        };
        let mut buf = [0u8; 8];
        assert_eq!(w.read_at(&mut buf, 2, fetch).unwrap(), 8);
        assert_eq!(buf, [2, 3, 4, 5, 6, 7, 8, 9]);
        assert!(fetched.borrow().is_empty());
        assert_eq!(w.read_at(&mut buf, 200, fetch).unwrap(), 8);
        assert_eq!(buf[0], 200);
        assert_eq!(*fetched.borrow(), vec![(200, 256)]);
        assert_eq!(w.read_at(&mut buf, 256, fetch).unwrap(), 0);
        let mut out = Vec::new();
        assert!(w.copy_if_held(&mut out, 250, 256) && out == object[250..]);
        assert!(!w.copy_if_held(&mut out, 0, 10) && !w.is_whole());
    }

    #[test]
    fn manifests_stream_keys_under_the_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.txt");
        std::fs::write(&path, "p/a\np/a\n\n# c\np/.hidden/x\np/b\nq/c\np/d\n").unwrap();
        let loc = Location::parse("s3://bkt/p/").unwrap();
        let got: Vec<Result<String, String>> =
            ManifestKeys::open(path, &loc, None, Some("p/.hidden/".into()))
                .map(|r| r.map_err(|e| e.to_string()))
                .collect();
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[0], Ok("p/a".into()));
        assert_eq!(got[1], Ok("p/b".into()));
        assert!(got[2].as_ref().unwrap_err().contains("line 7"), "{got:?}");
        assert_eq!(got[3], Ok("p/d".into()));
        let missing = dir.path().join("none.txt");
        let mut it = ManifestKeys::open(missing, &loc, None, None);
        assert!(matches!(it.next(), Some(Err(ManifestError::Io { .. }))));
        assert!(it.next().is_none());
    }
}
