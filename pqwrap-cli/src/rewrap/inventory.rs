//! `pqwrap scan`'s counting: files and bytes by format and by protection, over a streamed,
//! parallel walk, without any key. The per-file look at the header is a [`Classify`]
//! function; this module does the walking, the counting and the output (a table for people,
//! JSON for machines).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;

use rayon::iter::{ParallelBridge, ParallelIterator};
use serde::Serialize;

use super::walk::{self, Entry};

/// How a file's key is protected, from its header alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protection {
    /// Every recipient stanza is post-quantum (hybrid): nothing to migrate.
    PostQuantum,
    /// Every recipient stanza is classical (X25519): exposed to harvest-now-decrypt-later.
    Classical,
    /// Both: the classical stanzas still expose the file key.
    Mixed,
    /// Passphrase-wrapped (age scrypt): no public-key wrap for a quantum computer to break; as
    /// strong as the passphrase.
    Passphrase,
    /// Encrypted, but with stanza types pqwrap does not know, or a header it cannot parse.
    Unknown,
    /// Not an encrypted file pqwrap recognises.
    NotEncrypted,
}

impl Protection {
    /// All, in table order.
    pub const ALL: [Protection; 6] = [
        Protection::PostQuantum,
        Protection::Classical,
        Protection::Mixed,
        Protection::Passphrase,
        Protection::Unknown,
        Protection::NotEncrypted,
    ];

    /// Words for the table.
    pub fn describe(self) -> &'static str {
        match self {
            Protection::PostQuantum => "post-quantum only",
            Protection::Classical => "classical only",
            Protection::Mixed => "mixed",
            Protection::Passphrase => "passphrase",
            Protection::Unknown => "unknown",
            Protection::NotEncrypted => "not encrypted",
        }
    }
}

/// What a classifier says about one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Class {
    /// `age`, `age-armored`, `pqwrap`, or `None` when not encrypted.
    pub format: Option<&'static str>,
    /// The protection.
    pub protection: Protection,
}

/// Looks at one open regular file (and its size) and classifies it, without any key.
pub trait Classify: Sync {
    /// Classifies `file`. I/O errors are returned; malformed contents are a classification
    /// (`Unknown`), not an error.
    fn classify(&self, file: &File, size: u64) -> std::io::Result<Class>;
}

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
    /// (format, protection) -> tally. Format `None`: not encrypted.
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

    /// The table for people.
    pub fn render_table(&self) -> String {
        let mut s = format!(
            "{:<12} {:<18} {:>10} {:>12}\n",
            "FORMAT", "PROTECTION", "FILES", "BYTES"
        );
        for ((format, protection), t) in &self.rows {
            s.push_str(&format!(
                "{:<12} {:<18} {:>10} {:>12}\n",
                format.unwrap_or("-"),
                protection.describe(),
                t.files,
                indicatif::HumanBytes(t.bytes).to_string()
            ));
        }
        let total = self.total();
        s.push_str(&format!(
            "{:<12} {:<18} {:>10} {:>12}\n",
            "total",
            "",
            total.files,
            indicatif::HumanBytes(total.bytes).to_string()
        ));
        let by = self.by_protection();
        let encrypted: u64 = by
            .iter()
            .filter(|(p, _)| **p != Protection::NotEncrypted)
            .map(|(_, t)| t.files)
            .sum();
        let pq = by.get(&Protection::PostQuantum).map_or(0, |t| t.files);
        let todo = self.to_migrate();
        s.push_str(&format!(
            "\nencrypted files: {encrypted}; post-quantum only: {pq}; to re-wrap (classical \
             or mixed): {} ({})\n",
            todo.files,
            indicatif::HumanBytes(todo.bytes)
        ));
        if !self.skipped.is_empty() {
            let parts: Vec<String> = self
                .skipped
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            s.push_str(&format!("not scanned: {}\n", parts.join(", ")));
        }
        s
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
}

/// Scans `roots` with `jobs` threads.
pub fn scan(roots: &[PathBuf], classify: &dyn Classify, jobs: usize) -> anyhow::Result<Inventory> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs.max(1))
        .build()?;
    Ok(pool.install(|| {
        walk::walk(roots)
            .par_bridge()
            .fold(Inventory::default, |mut inv, entry| {
                let skip = match entry {
                    Entry::File(path) => match classify_path(&path, classify) {
                        Ok((class, size)) => {
                            let t = inv
                                .rows
                                .entry((class.format, class.protection))
                                .or_default();
                            t.files += 1;
                            t.bytes += size;
                            None
                        }
                        Err(_) => Some("unreadable"),
                    },
                    Entry::Symlink(_) => Some("symlink"),
                    Entry::Special(_) => Some("special file"),
                    Entry::Temporary(_) | Entry::TemporaryDir(_) => Some("pqwrap temporary"),
                    Entry::Unreadable { .. } => Some("unreadable"),
                };
                if let Some(k) = skip {
                    *inv.skipped.entry(k).or_default() += 1;
                }
                inv
            })
            .reduce(Inventory::default, Inventory::merge)
    }))
}

fn classify_path(path: &std::path::Path, classify: &dyn Classify) -> std::io::Result<(Class, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    // No FIFO can block us (O_NONBLOCK), no symlink is followed (O_NOFOLLOW).
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok((classify.classify(&file, meta.len())?, meta.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test classifier: the first byte names the class.
    struct FirstByte;
    impl Classify for FirstByte {
        fn classify(&self, file: &File, _size: u64) -> std::io::Result<Class> {
            use std::os::unix::fs::FileExt;
            let mut b = [0u8; 1];
            let n = file.read_at(&mut b, 0)?;
            let (format, protection) = match (n, b[0]) {
                (1, b'q') => (Some("age"), Protection::PostQuantum),
                (1, b'c') => (Some("age"), Protection::Classical),
                (1, b'm') => (Some("age-armored"), Protection::Mixed),
                (1, b'n') => (Some("pqwrap"), Protection::PostQuantum),
                _ => (None, Protection::NotEncrypted),
            };
            Ok(Class { format, protection })
        }
    }

    #[test]
    fn counts_files_and_bytes_by_format_and_protection() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("x/y")).unwrap();
        for (name, content) in [
            ("a", &b"q123"[..]),
            ("x/b", b"q1"),
            ("x/y/c", b"c12345"),
            ("x/y/d", b"c"),
            ("m", b"m1234567"),
            ("n", b"n"),
            ("plain", b"hello"),
            ("empty", b""),
        ] {
            std::fs::write(r.join(name), content).unwrap();
        }
        std::os::unix::fs::symlink(r.join("a"), r.join("link")).unwrap();
        std::fs::write(r.join(".a.pqwrap-tmp-0123456789abcdef"), b"c").unwrap();

        let inv = scan(&[r.to_path_buf()], &FirstByte, 2).unwrap();
        let t = |f: Option<&'static str>, p| inv.rows.get(&(f, p)).copied().unwrap_or_default();
        assert_eq!(
            t(Some("age"), Protection::PostQuantum),
            Tally { files: 2, bytes: 6 }
        );
        assert_eq!(
            t(Some("age"), Protection::Classical),
            Tally { files: 2, bytes: 7 }
        );
        assert_eq!(
            t(Some("age-armored"), Protection::Mixed),
            Tally { files: 1, bytes: 8 }
        );
        assert_eq!(
            t(Some("pqwrap"), Protection::PostQuantum),
            Tally { files: 1, bytes: 1 }
        );
        assert_eq!(
            t(None, Protection::NotEncrypted),
            Tally { files: 2, bytes: 5 }
        );
        assert_eq!(
            inv.total(),
            Tally {
                files: 8,
                bytes: 27
            }
        );
        assert_eq!(
            inv.to_migrate(),
            Tally {
                files: 3,
                bytes: 15
            }
        );
        assert_eq!(inv.skipped.get("symlink"), Some(&1));
        assert_eq!(inv.skipped.get("pqwrap temporary"), Some(&1));

        let table = inv.render_table();
        assert!(
            table.contains("to re-wrap (classical or mixed): 3 (15 B)"),
            "{table}"
        );
        assert!(table.contains("post-quantum only: 3"), "{table}");
        let j = inv.to_json();
        assert_eq!(j["total"]["files"], 8);
        assert_eq!(j["by_protection"]["classical"]["bytes"], 7);
        assert_eq!(j["by_protection"]["unknown"]["files"], 0);
        assert_eq!(j["to_rewrap"]["files"], 3);
        assert_eq!(j["not_scanned"]["symlink"], 1);
    }
}
