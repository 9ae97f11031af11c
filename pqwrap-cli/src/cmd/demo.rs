//! `pqwrap demo`: builds a sample archive of classical age files in a temporary directory,
//! scans it, re-wraps it to a fresh post-quantum key, shows that the contents are unchanged,
//! and scans again. Everything is left in place for the user to look at.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use pqwrap_core::age::{self, FileKey, Header};
use pqwrap_core::envelope;
use pqwrap_core::keys::Identity;

use crate::exit::Status;

/// Build a sample archive in a temporary directory, scan it, re-wrap it to a new
/// post-quantum key, check a sample, and scan again.
#[derive(clap::Args)]
pub struct Args {
    /// Number of age files in the sample archive.
    #[arg(long, default_value_t = 400, value_name = "N", value_parser = super::io_util::decimal::<usize>)]
    files: usize,

    /// Create the demo directory under DIR (default: the system's temporary directory).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Deterministic sample contents for file `i`: text-like, `len` bytes.
fn plaintext(i: usize, len: usize) -> Vec<u8> {
    let words = [
        "invoice",
        "contract",
        "backup",
        "secret",
        "password",
        "archive",
        "quarterly",
        "report",
        "token",
        "key",
        "ledger",
        "draft",
        "final",
        "notes",
        "minutes",
        "budget",
    ];
    let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % words.len() as u64) as usize].as_bytes());
        out.push(if x.is_multiple_of(11) { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

/// The size of sample file `i`: mostly small, some around the 64 KiB chunk boundary, a few
/// of several MiB.
fn size_of(i: usize) -> usize {
    match i % 50 {
        0 => 0,
        1 => 65_536,
        2 => 65_537,
        3 => 3 * 1024 * 1024 + 1,
        4..=9 => 64 * 1024 + i * 97 % 200_000,
        _ => 100 + i * 7_919 % 16_384,
    }
}

/// pqwrap native files in the demo.
const NATIVE_FILES: usize = 5;

fn native_size(j: usize) -> usize {
    [0, 1_000, 65_536, 500_000, 4 * 1024 * 1024][j % 5]
}

fn native_path(archive: &Path, j: usize) -> PathBuf {
    archive.join("vault").join(format!("backup-{j}.pqw"))
}

fn sample_path(archive: &Path, i: usize, armored: bool) -> PathBuf {
    let teams = ["finance", "legal", "ops", "hr"];
    let dir = archive
        .join(teams[i % teams.len()])
        .join(format!("{}", 2019 + i % 6));
    let ext = if armored { "age.asc" } else { "age" };
    dir.join(format!("doc-{i:04}.{ext}"))
}

fn write_keys(path: &Path, ids: &[&Identity]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    for id in ids {
        f.write_all(id.to_file_contents(&created).as_bytes())?;
    }
    Ok(())
}

fn encrypt_to(path: &Path, id: &Identity, data: &[u8], armored: bool) -> Result<()> {
    let fk = FileKey::generate()?;
    let header = Header::wrap(&fk, &[id.to_recipient()], age::Mixing::Refuse)?;
    let f =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = age::encrypt_writer(
        std::io::BufWriter::new(f),
        &fk,
        &header,
        if armored {
            age::Armor::Armored
        } else {
            age::Armor::Binary
        },
    )?;
    w.write_all(data)?;
    w.finish()?.flush()?;
    Ok(())
}

fn scan_table(archive: &Path) -> Result<String> {
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let inv = super::scan::scan_paths(&[archive.to_path_buf()], jobs)?;
    Ok(crate::render::inventory(&inv))
}

/// Reads an age file's plaintext.
fn decrypt_age_file(path: &Path, ids: &[Identity]) -> Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    let dec = age::Decryptor::new(std::io::BufReader::new(f))?;
    let mut r = dec.decrypt(ids, &[])?;
    let mut out = Vec::new();
    r.read_to_end(&mut out)?;
    Ok(out)
}

/// Runs `pqwrap demo`.
pub fn run(args: Args) -> Result<Status> {
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let mut rnd = [0u8; 4];
    getrandom::fill(&mut rnd).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    let root = base.join(format!("pqwrap-demo-{}", hex4(&rnd)));
    let archive = root.join("archive");
    std::fs::create_dir_all(&archive)
        .with_context(|| format!("cannot create {}", root.display()))?;

    println!("== 1. A sample archive of classical age files\n");
    let old = Identity::generate_x25519()?;
    let new = Identity::generate_hybrid()?;
    // The native files were made for an older post-quantum key, being rotated.
    let old_pq = Identity::generate_hybrid()?;
    let old_key = root.join("old-keys.txt");
    let new_key = root.join("new-key.txt");
    write_keys(&old_key, &[&old, &old_pq])?;
    write_keys(&new_key, &[&new])?;
    let new_pub = root.join("new-recipient.txt");
    std::fs::write(&new_pub, format!("{}\n", new.to_recipient()))?;
    let mut bytes = 0usize;
    let mut armored_count = 0;
    for i in 0..args.files {
        let armored = i % 7 == 3;
        armored_count += usize::from(armored);
        let p = sample_path(&archive, i, armored);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let data = plaintext(i, size_of(i));
        bytes += data.len();
        encrypt_to(&p, &old, &data, armored)?;
    }
    // A few files already half-migrated (a post-quantum and a classical stanza), and one
    // passphrase-encrypted file, which has no public-key wrap to replace.
    let mixed_dir = archive.join("legal").join("shared");
    std::fs::create_dir_all(&mixed_dir)?;
    for j in 0..3 {
        let fk = FileKey::generate()?;
        let other = Identity::generate_hybrid()?;
        let header = Header::wrap(
            &fk,
            &[old.to_recipient(), other.to_recipient()],
            age::Mixing::Allow,
        )?;
        let f = std::fs::File::create(mixed_dir.join(format!("mixed-{j}.age")))?;
        let mut w =
            age::encrypt_writer(std::io::BufWriter::new(f), &fk, &header, age::Armor::Binary)?;
        w.write_all(&plaintext(10_000 + j, 5_000))?;
        w.finish()?.flush()?;
    }
    {
        let fk = FileKey::generate()?;
        let pass = age::Passphrase::new("correct horse battery staple".into());
        // A low work factor: this is a demo, not a real passphrase file.
        let header = Header::wrap_passphrase(&fk, &pass, 10)?;
        let f = std::fs::File::create(archive.join("hr").join("passphrase.age"))?;
        let mut w =
            age::encrypt_writer(std::io::BufWriter::new(f), &fk, &header, age::Armor::Binary)?;
        w.write_all(b"a passphrase-encrypted note")?;
        w.finish()?.flush()?;
    }
    let native_dir = archive.join("vault");
    std::fs::create_dir_all(&native_dir)?;
    for j in 0..NATIVE_FILES {
        let mut enc = envelope::Encryptor::new(
            std::io::BufWriter::new(std::fs::File::create(native_path(&archive, j))?),
            &[old_pq.to_recipient()],
        )?;
        enc.write_all(&plaintext(20_000 + j, native_size(j)))?;
        enc.finish()?.flush()?;
    }
    std::fs::write(
        archive.join("README.txt"),
        b"Not encrypted: scan counts it, rewrap skips it.\n",
    )?;
    std::os::unix::fs::symlink("finance", archive.join("latest"))?;
    println!(
        "{} age files ({} armored, {} of plaintext) for the X25519 recipient\n  {}\n\
         plus 3 files for it and another post-quantum key (mixed), {NATIVE_FILES} pqwrap native \
         files for an\nolder post-quantum key (being rotated), one passphrase file and one plain \
         file, in {}\n",
        args.files,
        armored_count,
        indicatif::HumanBytes(bytes as u64),
        old.to_recipient(),
        archive.display()
    );

    println!("== 2. pqwrap scan {}\n", archive.display());
    println!("{}", scan_table(&archive)?);

    println!(
        "== 3. pqwrap rewrap -i {} -R {} --report ... --audit-log ... {}\n",
        old_key.display(),
        new_pub.display(),
        archive.display()
    );
    let report_path = root.join("report.jsonl");
    let audit_path = root.join("audit.jsonl");
    let guard = crate::outputs::Guard::new(std::slice::from_ref(&archive), &[]);
    let (audit_file, audit) = crate::outputs::open_audit_log(&audit_path, &guard)?;
    let report = crate::outputs::ReportFile::create(&report_path, &guard)?;
    let job = pqwrap_rewrap::Job::new(
        vec![old.clone(), old_pq.clone()],
        vec![new.to_recipient()],
        pqwrap_rewrap::JobOptions::default(),
    )?;
    let store = pqwrap_rewrap::store::fs::FsStore::new(
        vec![archive.clone()],
        pqwrap_rewrap::store::fs::Durability::Group,
    )
    .exclude(&audit_file)?
    .exclude(report.file())?;
    let outputs = super::rewrap::Outputs {
        report: Some(report),
        stdout_report: false,
        audit: Some(pqwrap_rewrap::events::AuditTrail::new(audit)),
    };
    let summary = super::rewrap::execute(
        &store,
        &job,
        &pqwrap_rewrap::Options::default(),
        outputs,
        true,
    )?;
    println!();

    println!("== 4. A sample decrypted with the new post-quantum key only\n");
    let mut checked = 0;
    // Sizes 0, 64 KiB, 64 KiB + 1, 3 MiB + 1, and ordinary ones; armored and not.
    for i in [0, 1, 2, 3, 5, 10, 17, 24, 101, 213, 352] {
        if i >= args.files {
            continue;
        }
        let p = sample_path(&archive, i, i % 7 == 3);
        let got = decrypt_age_file(&p, std::slice::from_ref(&new))
            .with_context(|| format!("{} does not open with the new key", p.display()))?;
        if got != plaintext(i, size_of(i)) {
            bail!("{}: contents differ after the re-wrap", p.display());
        }
        if decrypt_age_file(&p, &[old.clone(), old_pq.clone()]).is_ok() {
            bail!("{}: still opens with the old classical key", p.display());
        }
        println!(
            "  ok  {:>10}  {}",
            indicatif::HumanBytes(got.len() as u64).to_string(),
            p.strip_prefix(&root).unwrap_or(&p).display()
        );
        checked += 1;
    }
    for j in 0..NATIVE_FILES {
        let p = native_path(&archive, j);
        let mut got = Vec::new();
        envelope::decrypt_to(
            std::io::BufReader::new(std::fs::File::open(&p)?),
            std::slice::from_ref(&new),
            &mut got,
        )
        .with_context(|| format!("{} does not open with the new key", p.display()))?;
        if got != plaintext(20_000 + j, native_size(j)) {
            bail!("{}: contents differ after the re-wrap", p.display());
        }
        println!(
            "  ok  {:>10}  {}  (native: re-wrapped in place, same inode)",
            indicatif::HumanBytes(got.len() as u64).to_string(),
            p.strip_prefix(&root).unwrap_or(&p).display()
        );
        checked += 1;
    }
    println!("{checked} files: same contents, and the old keys no longer open them\n");

    println!("== 5. pqwrap scan again\n");
    println!("{}", scan_table(&archive)?);

    println!("== Where everything is\n");
    println!("  archive      {}", archive.display());
    println!(
        "  old keys     {}  (classical X25519 + an older post-quantum key)",
        old_key.display()
    );
    println!(
        "  new key      {}  (post-quantum hybrid)",
        new_key.display()
    );
    println!("  recipient    {}", new_pub.display());
    println!(
        "  report       {}  (one JSON object per file)",
        report_path.display()
    );
    println!(
        "  audit log    {}  (check it: pqwrap audit verify {})",
        audit_path.display(),
        audit_path.display()
    );
    println!(
        "\nTry: pqwrap rewrap -i {} -i {} -R {} {}",
        old_key.display(),
        new_key.display(),
        new_pub.display(),
        archive.display()
    );
    println!("     (a second run changes nothing and says so)");
    println!("Remove it all with: rm -r {}", root.display());
    Ok(if summary.all_ok() {
        Status::Success
    } else {
        Status::Failure
    })
}

fn hex4(b: &[u8; 4]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
