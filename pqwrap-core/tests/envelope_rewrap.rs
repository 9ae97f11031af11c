//! Native envelope re-wrap on real files: in place (inode, links, mode, payload bytes stay;
//! old wrapping wiped), idempotence, refusal on a bad payload, and the atomic-rewrite
//! fallback when the new header does not fit.
// A failed unwrap in a test is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use pqwrap_core::envelope::{
    Encryptor, EnvelopeError, FileSlotIo, Header, RewrapAction, SlotIo, SlotStatus, decrypt_to,
    inspect_file, rewrap_in_place, rewrap_io, rewrap_path,
};
use pqwrap_core::kem;
use pqwrap_core::keys::{Identity, Recipient};

fn id(seed: u8) -> Identity {
    Identity::Hybrid(Box::new(kem::SecretKey::from_seed(&[seed; 32])))
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 253) as u8).collect()
}

fn write_file(path: &Path, recipients: &[Recipient], pt: &[u8]) {
    let mut enc = Encryptor::new(File::create(path).unwrap(), recipients).unwrap();
    enc.write_all(pt).unwrap();
    enc.finish().unwrap().sync_all().unwrap();
}

fn open_rw(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

fn decrypt(path: &Path, ids: &[Identity]) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = Vec::new();
    decrypt_to(File::open(path)?, ids, &mut out)?;
    Ok(out)
}

fn payload(path: &Path) -> Vec<u8> {
    let bytes = fs::read(path).unwrap();
    let off = Header::parse(&bytes).unwrap().payload_offset() as usize;
    bytes[off..].to_vec()
}

#[test]
fn in_place_rewrap_keeps_inode_links_mode_and_payload_and_wipes_the_old_slot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("archive.pqw");
    let link = dir.path().join("hardlink.pqw");
    let (old, new) = (id(1), id(2));
    let pt = pattern(200_000);
    write_file(&path, &[old.to_recipient()], &pt);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    fs::hard_link(&path, &link).unwrap();
    let before = fs::metadata(&path).unwrap();
    let payload_before = payload(&path);

    let out = rewrap_in_place(
        &mut open_rw(&path),
        std::slice::from_ref(&old),
        &[new.to_recipient()],
    )
    .unwrap();
    assert_eq!(out.action, RewrapAction::InPlace);
    assert_eq!(
        (out.old_slot, out.old_sequence, out.slot, out.sequence),
        (0, 1, 1, 2)
    );
    assert_eq!(out.bytes_written, 2 * 8192);
    assert!(!out.fell_back);
    assert_eq!(out.new_stanzas.len(), 1);

    let after = fs::metadata(&path).unwrap();
    assert_eq!(after.ino(), before.ino());
    assert_eq!(after.nlink(), 2);
    assert_eq!(after.mode(), before.mode());
    assert_eq!(after.len(), before.len());
    assert_eq!(payload(&path), payload_before, "payload bytes changed");
    // The old slot (which held the old wrapping) is all zero now.
    let bytes = fs::read(&path).unwrap();
    assert!(bytes[4096..4096 + 8192].iter().all(|&b| b == 0));
    assert_eq!(
        inspect_file(&File::open(&path).unwrap())
            .unwrap()
            .other_slot,
        SlotStatus::Empty
    );

    assert_eq!(decrypt(&path, std::slice::from_ref(&new)).unwrap(), pt);
    assert_eq!(decrypt(&link, std::slice::from_ref(&new)).unwrap(), pt);
    assert!(matches!(
        decrypt(&path, std::slice::from_ref(&old)),
        Err(EnvelopeError::NoMatch)
    ));

    // Idempotent: already wrapped to exactly these recipients.
    let again = rewrap_in_place(
        &mut open_rw(&path),
        std::slice::from_ref(&new),
        &[new.to_recipient()],
    )
    .unwrap();
    assert_eq!(again.action, RewrapAction::AlreadyWrapped);
    assert_eq!(again.bytes_written, 0);
    assert_eq!(fs::read(&path).unwrap(), bytes);

    // And back: slots alternate, sequence grows.
    let back = rewrap_in_place(
        &mut open_rw(&path),
        std::slice::from_ref(&new),
        &[old.to_recipient(), new.to_recipient()],
    )
    .unwrap();
    assert_eq!((back.slot, back.sequence), (0, 3));
    assert_eq!(decrypt(&path, std::slice::from_ref(&old)).unwrap(), pt);
    assert_eq!(decrypt(&path, std::slice::from_ref(&new)).unwrap(), pt);
    let u = Header::from_file(&File::open(&path).unwrap())
        .unwrap()
        .unlock(std::slice::from_ref(&old))
        .unwrap();
    assert!(u.is_wrapped_to(&[new.to_recipient(), old.to_recipient()]));
    assert!(!u.is_wrapped_to(&[new.to_recipient()]));
}

/// Counts every byte read and written, to show that a re-wrap reads at most the header area
/// and one chunk, and writes only inside the header area.
struct Counting<'a> {
    inner: FileSlotIo<'a>,
    read: u64,
    max_write_end: u64,
}

impl SlotIo for Counting<'_> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.read += buf.len() as u64;
        self.inner.read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.max_write_end = self.max_write_end.max(offset + buf.len() as u64);
        self.inner.write_at(offset, buf)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.inner.sync()
    }
    fn len(&mut self) -> io::Result<u64> {
        self.inner.len()
    }
}

#[test]
fn rewrap_never_writes_the_payload_and_reads_only_its_first_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.pqw");
    let (old, new) = (id(3), id(4));
    write_file(&path, &[old.to_recipient()], &pattern(2_000_000));
    let f = open_rw(&path);
    let mut io = Counting {
        inner: FileSlotIo::new(&f),
        read: 0,
        max_write_end: 0,
    };
    rewrap_io(&mut io, &[old], &[new.to_recipient()]).unwrap();
    let area = 4096 + 2 * 8192u64;
    assert!(io.max_write_end <= area, "wrote up to {}", io.max_write_end);
    // Three reads of the header area (parse, re-check before writing, verify after) and one
    // payload chunk — never the 2 MB payload.
    assert!(io.read <= 3 * area + 65552, "read {} bytes", io.read);
    assert_eq!(decrypt(&path, &[new]).unwrap(), pattern(2_000_000));
}

#[test]
fn rewrap_refuses_a_file_whose_first_chunk_does_not_authenticate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.pqw");
    let (old, new) = (id(5), id(6));
    write_file(&path, &[old.to_recipient()], b"payload");
    let mut bytes = fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let err = rewrap_in_place(&mut open_rw(&path), &[old], &[new.to_recipient()]).unwrap_err();
    assert!(
        matches!(err, EnvelopeError::PayloadAuth { chunk: 0 }),
        "{err:?}"
    );
    assert_eq!(fs::read(&path).unwrap(), bytes, "nothing may be written");
    // Wrong identity: nothing written either.
    let err = rewrap_in_place(&mut open_rw(&path), &[id(7)], &[new.to_recipient()]).unwrap_err();
    assert!(matches!(err, EnvelopeError::NoMatch));
    // Classical target recipients are refused before writing.
    let x = Identity::generate_x25519().unwrap().to_recipient();
    write_file(&path, &[id(5).to_recipient()], b"payload");
    let before = fs::read(&path).unwrap();
    let err = rewrap_in_place(&mut open_rw(&path), &[id(5)], &[x]).unwrap_err();
    assert!(matches!(err, EnvelopeError::ClassicalRecipient));
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn a_header_that_does_not_fit_falls_back_to_an_atomic_rewrite_with_a_larger_area() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grow.pqw");
    let old = id(10);
    let pt = pattern(150_000);
    write_file(&path, &[old.to_recipient()], &pt);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let payload_before = payload(&path);
    let before = fs::read(&path).unwrap();
    let targets: Vec<Identity> = (20..30).map(id).collect();
    let rs: Vec<Recipient> = targets.iter().map(Identity::to_recipient).collect();

    // In place is impossible (ten stanzas need 12 KiB, the slot has 8 KiB). Without a path
    // (an unlinked file) that is a typed error and nothing is written.
    let mut unlinked = tempfile::tempfile().unwrap();
    unlinked.write_all(&before).unwrap();
    let err = rewrap_in_place(&mut unlinked, std::slice::from_ref(&old), &rs).unwrap_err();
    assert!(
        matches!(
            err,
            EnvelopeError::HeaderAreaTooSmall {
                available: 8192,
                ..
            }
        ),
        "{err:?}"
    );
    let mut check = Vec::new();
    unlinked.seek(io::SeekFrom::Start(0)).unwrap();
    unlinked.read_to_end(&mut check).unwrap();
    assert_eq!(check, before);

    // With a path: the atomic rewrite, and the handle now refers to the new file.
    let mut file = open_rw(&path);
    let ino_before = file.metadata().unwrap().ino();
    let out = rewrap_in_place(&mut file, std::slice::from_ref(&old), &rs).unwrap();
    assert_eq!(out.action, RewrapAction::Rewritten);
    assert!(out.fell_back);
    assert_eq!((out.slot, out.sequence), (0, 2));
    // 48 + 100 + 10 * 1188 = 12028 bytes; twice that, rounded up to 4 KiB: 24576.
    assert_eq!(out.header_area_len, 4096 + 2 * 24576);
    assert_ne!(file.metadata().unwrap().ino(), ino_before);
    assert_eq!(
        file.metadata().unwrap().ino(),
        fs::metadata(&path).unwrap().ino()
    );
    assert_eq!(
        Header::from_file(&file).unwrap().payload_offset(),
        out.header_area_len
    );
    assert_eq!(
        payload(&path),
        payload_before,
        "payload bytes must be copied unchanged"
    );
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    for t in &targets {
        assert_eq!(decrypt(&path, std::slice::from_ref(t)).unwrap(), pt);
    }
    assert!(matches!(
        decrypt(&path, std::slice::from_ref(&old)),
        Err(EnvelopeError::NoMatch)
    ));
    // rewrap_path falls back the same way.
    let more: Vec<Recipient> = (20..45).map(|s| id(s).to_recipient()).collect();
    let out = rewrap_path(&path, &targets[..1], &more).unwrap();
    assert!(out.fell_back);
    assert_eq!(decrypt(&path, &[id(44)]).unwrap(), pt);
    // No temporary file left behind.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    // Later re-wraps fit in place again.
    let again = rewrap_path(&path, &[id(44)], &rs[..3]).unwrap();
    assert_eq!(again.action, RewrapAction::InPlace);
}

#[test]
fn the_fallback_keeps_extended_attributes_and_set_id_bits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tagged.pqw");
    let old = id(12);
    write_file(&path, &[old.to_recipient()], b"tagged");
    let set = rustix::fs::setxattr(
        &path,
        "user.pqwrap-test",
        b"kept",
        rustix::fs::XattrFlags::empty(),
    );
    if let Err(e) = set {
        // Some filesystems (older tmpfs) take no user attributes: nothing to test there.
        eprintln!("SKIPPED: no user xattrs in {}: {e}", dir.path().display());
        return;
    }
    // Set-user-ID survives only if the mode is set after the owner (chown clears it).
    fs::set_permissions(&path, fs::Permissions::from_mode(0o4750)).unwrap();
    let rs: Vec<Recipient> = (50..60).map(|s| id(s).to_recipient()).collect();
    let out = rewrap_path(&path, std::slice::from_ref(&old), &rs).unwrap();
    assert!(out.fell_back);
    let mut v = [0u8; 16];
    let n = rustix::fs::getxattr(&path, "user.pqwrap-test", &mut v[..]).unwrap();
    assert_eq!(&v[..n], b"kept");
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o4750);
    assert_eq!(decrypt(&path, &[id(55)]).unwrap(), b"tagged");
}

#[test]
fn a_rerun_wipes_the_old_slot_left_by_an_interrupted_rewrap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("interrupted.pqw");
    let (old, new) = (id(13), id(14));
    write_file(&path, &[old.to_recipient()], b"contents");
    let before = fs::read(&path).unwrap();
    let h = Header::parse(&before).unwrap();
    let (pre, old_slot) = (*h.preamble(), h.active_slot());
    let range = |slot: u8| {
        let at = pre.slot_offset(slot) as usize;
        at..at + pre.slot_size() as usize
    };
    let out = rewrap_path(&path, std::slice::from_ref(&old), &[new.to_recipient()]).unwrap();
    assert_eq!(out.action, RewrapAction::InPlace);
    // As if the job had died after syncing the new slot and before the wipe: the old slot,
    // with the old key's wrapping of the unchanged file key, is back.
    let mut torn = fs::read(&path).unwrap();
    torn[range(old_slot)].copy_from_slice(&before[range(old_slot)]);
    fs::write(&path, &torn).unwrap();
    assert!(matches!(
        inspect_file(&File::open(&path).unwrap())
            .unwrap()
            .other_slot,
        SlotStatus::Valid { .. }
    ));

    let out = rewrap_path(&path, std::slice::from_ref(&new), &[new.to_recipient()]).unwrap();
    assert_eq!(out.action, RewrapAction::WipedOldSlot);
    let now = fs::read(&path).unwrap();
    assert!(
        now[range(old_slot)].iter().all(|&b| b == 0),
        "old slot wiped"
    );
    assert_eq!(
        decrypt(&path, std::slice::from_ref(&new)).unwrap(),
        b"contents"
    );
    // And then the job is done: a further run writes nothing.
    let out = rewrap_path(&path, std::slice::from_ref(&new), &[new.to_recipient()]).unwrap();
    assert_eq!(
        (out.action, out.bytes_written),
        (RewrapAction::AlreadyWrapped, 0)
    );
}

#[test]
fn the_fallback_refuses_hard_linked_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("linked.pqw");
    let old = id(11);
    write_file(&path, &[old.to_recipient()], b"x");
    fs::hard_link(&path, dir.path().join("other")).unwrap();
    let before = fs::read(&path).unwrap();
    let rs: Vec<Recipient> = (30..40).map(|s| id(s).to_recipient()).collect();
    let err = rewrap_path(&path, std::slice::from_ref(&old), &rs).unwrap_err();
    assert!(matches!(err, EnvelopeError::HardLinked(2)), "{err:?}");
    assert_eq!(fs::read(&path).unwrap(), before);
    // In place is fine for hard-linked files: every link sees the new header.
    let out = rewrap_path(&path, &[old], &rs[..2]).unwrap();
    assert_eq!(out.action, RewrapAction::InPlace);
    assert_eq!(decrypt(&dir.path().join("other"), &[id(31)]).unwrap(), b"x");
}

#[test]
fn rewrap_path_refuses_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("real.pqw");
    write_file(&path, &[id(12).to_recipient()], b"x");
    let sym = dir.path().join("sym.pqw");
    std::os::unix::fs::symlink(&path, &sym).unwrap();
    let err = rewrap_path(&sym, &[id(12)], &[id(13).to_recipient()]).unwrap_err();
    assert_eq!(err.code(), "not_regular_file", "{err:?}");
}

#[test]
fn fits_in_place_predicts_the_in_place_rewrap_and_rewritten_area_makes_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let old = id(50);
    let pt = pattern(70_000); // two chunks
    let targets: Vec<Identity> = (51..60).map(id).collect();
    let rs: Vec<Recipient> = targets.iter().map(Identity::to_recipient).collect();
    for n in 1..=rs.len() {
        let path = dir.path().join(format!("f{n}.pqw"));
        write_file(&path, &[old.to_recipient()], &pt);
        let bytes = fs::read(&path).unwrap();
        let header = Header::parse(&bytes).unwrap();
        let unlocked = header.unlock(std::slice::from_ref(&old)).unwrap();
        let fits = unlocked.fits_in_place(n);

        // What the caller-written copy looks like: the grown area, then the payload bytes.
        let mut copy = unlocked.rewritten_area(&rs[..n]).unwrap();
        let area_len = copy.len() as u64;
        copy.extend_from_slice(&bytes[header.payload_offset() as usize..]);
        let new_header = Header::parse(&copy).unwrap();
        assert_eq!(new_header.payload_offset(), area_len);
        assert!(area_len > header.payload_offset() || fits);
        assert_eq!(new_header.sequence(), header.sequence() + 1);
        for t in &targets[..n] {
            let mut out = Vec::new();
            decrypt_to(&copy[..], std::slice::from_ref(t), &mut out).unwrap();
            assert_eq!(out, pt);
        }
        assert!(matches!(
            decrypt_to(&copy[..], std::slice::from_ref(&old), io::sink()),
            Err(EnvelopeError::NoMatch)
        ));

        // The prediction is what the in-place re-wrap finds.
        let res = rewrap_io(
            &mut FileSlotIo::new(&open_rw(&path)),
            std::slice::from_ref(&old),
            &rs[..n],
        );
        match res {
            Ok(out) => {
                assert!(
                    fits,
                    "{n} recipients fitted in place but were predicted not to"
                );
                assert_eq!(out.action, RewrapAction::InPlace);
            }
            Err(EnvelopeError::HeaderAreaTooSmall { .. }) => {
                assert!(!fits, "{n} recipients were predicted to fit");
                assert_eq!(fs::read(&path).unwrap(), bytes, "nothing written");
            }
            Err(e) => panic!("{n}: {e}"),
        }
    }
    // The default slot holds six X-Wing stanzas.
    let fresh = dir.path().join("fresh.pqw");
    write_file(&fresh, &[old.to_recipient()], b"x");
    let bytes = fs::read(&fresh).unwrap();
    let u = Header::parse(&bytes).unwrap().unlock(&[old]).unwrap();
    assert!(u.fits_in_place(6) && !u.fits_in_place(7));
}
