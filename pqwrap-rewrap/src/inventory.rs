//! `scan`'s counting: files and bytes by format and by protection, over a store's streamed
//! listing, in parallel, without any key. Each file's header is classified by its format
//! ([`crate::Format::classify`]).

use std::collections::BTreeMap;

use rayon::iter::{ParallelBridge, ParallelIterator};
use serde::Serialize;

use crate::blob::read_head;
use crate::error::{RewrapError, Skip};
use crate::format::{self, Format, HEAD_LEN, Input, Protection};
use crate::store::{Listed, OpenError, Purpose, Source, Store};

/// Files and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Number of files.
    pub files: u64,
    /// Their total size.
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.files += other.files;
        self.bytes += other.bytes;
    }
}

/// The inventory of a scan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    /// (format label, protection) -> tally. Format `None`: not encrypted.
    pub rows: BTreeMap<(Option<&'static str>, Protection), Tally>,
    /// Entries not classified, by kind (symlink, special file, unreadable, pqwrap temporary).
    pub skipped: BTreeMap<&'static str, u64>,
}

impl Inventory {
    fn merge(mut self, other: Inventory) -> Inventory {
        for (k, t) in other.rows {
            self.rows.entry(k).or_default().add(t);
        }
        for (k, n) in other.skipped {
            *self.skipped.entry(k).or_default() += n;
        }
        self
    }

    /// Totals by protection.
    pub fn by_protection(&self) -> BTreeMap<Protection, Tally> {
        let mut m = BTreeMap::new();
        for ((_, p), t) in &self.rows {
            m.entry(*p).or_insert_with(Tally::default).add(*t);
        }
        m
    }

    /// Total over all classified files.
    pub fn total(&self) -> Tally {
        let mut t = Tally::default();
        for v in self.rows.values() {
            t.add(*v);
        }
        t
    }

    /// Encrypted files still exposed (classical only or mixed): what `rewrap` is for.
    pub fn to_migrate(&self) -> Tally {
        let by = self.by_protection();
        let mut t = Tally::default();
        for p in [Protection::Classical, Protection::Mixed] {
            if let Some(v) = by.get(&p) {
                t.add(*v);
            }
        }
        t
    }

    /// The JSON document for machines.
    pub fn to_json(&self) -> serde_json::Value {
        #[derive(Serialize)]
        struct Row {
            format: Option<&'static str>,
            protection: Protection,
            files: u64,
            bytes: u64,
        }
        let rows: Vec<Row> = self
            .rows
            .iter()
            .map(|((format, protection), t)| Row {
                format: *format,
                protection: *protection,
                files: t.files,
                bytes: t.bytes,
            })
            .collect();
        let by: BTreeMap<Protection, Tally> = Protection::ALL
            .iter()
            .map(|p| (*p, self.by_protection().get(p).copied().unwrap_or_default()))
            .collect();
        serde_json::json!({
            "total": self.total(),
            "to_rewrap": self.to_migrate(),
            "by_protection": by,
            "rows": rows,
            "not_scanned": self.skipped,
        })
    }

    fn skip(&mut self, kind: &'static str) {
        *self.skipped.entry(kind).or_default() += 1;
    }
}

fn skip_kind(skip: &Skip) -> &'static str {
    match skip {
        Skip::Symlink => "symlink",
        Skip::SpecialFile => "special file",
        Skip::MountPoint => "mount point",
        _ => "pqwrap temporary",
    }
}

/// Scans every entry of `store` with `jobs` threads, classifying with `formats`.
pub fn scan<S: Store>(
    store: &S,
    formats: &[&'static dyn Format],
    jobs: usize,
) -> Result<Inventory, RewrapError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs.max(1))
        .build()
        .map_err(|e| RewrapError::Threads(Box::new(e)))?;
    Ok(pool.install(|| {
        store
            .list()
            .par_bridge()
            .fold(Inventory::default, |mut inv, item| {
                match item {
                    Listed::Candidate(entry) => match store.open(entry, Purpose::Inspect) {
                        Ok(src) => match classify(&src, formats) {
                            Ok((format, protection)) => {
                                let t = inv.rows.entry((format, protection)).or_default();
                                t.files += 1;
                                t.bytes += src.blob().len();
                            }
                            Err(_) => inv.skip("unreadable"),
                        },
                        Err(OpenError::Skip(s)) => inv.skip(skip_kind(&s)),
                        Err(OpenError::Fail(_)) => inv.skip("unreadable"),
                        Err(OpenError::Gone | OpenError::DoneThisRun) => {}
                    },
                    Listed::Leftover(_) => inv.skip("pqwrap temporary"),
                    Listed::Skipped { skip, .. } => inv.skip(skip_kind(&skip)),
                    Listed::Unreadable { .. } => inv.skip("unreadable"),
                }
                inv
            })
            .reduce(Inventory::default, Inventory::merge)
    }))
}

/// The format label and protection of one open file.
fn classify(
    src: &dyn Source,
    formats: &[&'static dyn Format],
) -> std::io::Result<(Option<&'static str>, Protection)> {
    let mut head = vec![0u8; HEAD_LEN];
    let n = read_head(src.blob(), &mut head)?;
    head.truncate(n);
    let Some(found) = format::detect_file_in(formats, &head, src.blob())? else {
        return Ok((None, Protection::NotEncrypted));
    };
    let input = Input {
        name: src.name(),
        blob: src.blob(),
        head: &head,
        in_place: crate::format::InPlace::Unsupported,
    };
    Ok((Some(found.label), found.format.classify(&found, &input)?))
}
