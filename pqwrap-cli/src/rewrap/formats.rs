//! The per-format work of `pqwrap rewrap` and `pqwrap scan`: age files (binary and armored)
//! and pqwrap native files. The cryptography and the parsing are `pqwrap_core`'s; this module
//! decides, per file, what the job does ([`FormatJob`]) or what the file is ([`Classifier`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::FileExt;

use pqwrap_core::age::{self, AgeError, FileKey, Header};
use pqwrap_core::envelope::{self, EnvelopeError};
use pqwrap_core::keys::{Identity, Recipient};

use super::commit::{Body, Source};
use super::inventory::{Class, Classify, Protection};
use super::report::Reason;
use super::{Info, Plan, sha256_hex};

/// Bytes read from the start of a file in one `pread`: enough to recognise its format and,
/// for the files the job usually sees, to hold the whole header (and, for small files, the
/// whole file). The readers that follow start where this read ended.
const HEAD_LEN: usize = 8 * 1024;

/// The stanza type age writes for a recipient.
fn stanza_type(r: &Recipient) -> &'static str {
    match r {
        Recipient::Hybrid(_) => "mlkem768x25519",
        Recipient::X25519(_) => "X25519",
    }
}

/// The re-wrap job over age and native files.
pub struct FormatJob {
    identities: Vec<Identity>,
    /// The identities among `identities` whose recipient is a target: a file they open and
    /// whose stanzas match the targets' is verifiably done.
    target_identities: Vec<Identity>,
    recipients: Vec<Recipient>,
    /// Multiset of the stanza types the targets produce.
    target_types: BTreeMap<&'static str, usize>,
    reencrypt: bool,
    verify_all_chunks: bool,
    allow_classical: bool,
}

impl FormatJob {
    /// A job re-wrapping (or, with `reencrypt`, re-encrypting) to `recipients` files that one
    /// of `identities` opens.
    pub fn new(
        identities: Vec<Identity>,
        recipients: Vec<Recipient>,
        reencrypt: bool,
        verify_all_chunks: bool,
        allow_classical: bool,
    ) -> FormatJob {
        let targets: Vec<String> = recipients.iter().map(ToString::to_string).collect();
        let target_identities = identities
            .iter()
            .filter(|id| targets.contains(&id.to_recipient().to_string()))
            .cloned()
            .collect();
        let mut target_types = BTreeMap::new();
        for r in &recipients {
            *target_types.entry(stanza_type(r)).or_default() += 1;
        }
        FormatJob {
            identities,
            target_identities,
            recipients,
            target_types,
            reencrypt,
            verify_all_chunks,
            allow_classical,
        }
    }

    fn new_types(&self) -> Vec<String> {
        self.recipients
            .iter()
            .map(|r| stanza_type(r).to_string())
            .collect()
    }

    /// Whether `header`'s stanzas are, by type and number, what the targets would produce.
    fn shape_matches(&self, header: &Header) -> bool {
        let mut types: BTreeMap<&str, usize> = BTreeMap::new();
        for t in header.stanza_types() {
            *types.entry(t).or_default() += 1;
        }
        types.len() == self.target_types.len()
            && self
                .target_types
                .iter()
                .all(|(t, n)| types.get(t) == Some(n))
    }

    fn plan_age<'a>(&'a self, src: &Source, head: &[u8], armored: bool) -> Plan<'a> {
        let format = if armored { "age-armored" } else { "age" };
        let mut info = Info {
            format: Some(format),
            ..Info::default()
        };
        // One reader for the header and, further down, the payload check.
        let input = BufReader::new(reader_after(head, &src.file, src.snap.size));
        let dec = match age::Decryptor::new(input) {
            Ok(d) => d,
            Err(e) => {
                return Plan::Fail {
                    info,
                    reason: Reason::Corrupt,
                    message: e.to_string(),
                };
            }
        };
        let header = dec.header().clone();
        info.old_stanzas = header
            .stanza_types()
            .iter()
            .map(|s| s.to_string())
            .collect();
        info.old_header_sha256 = Some(sha256_hex(header.as_bytes()));
        let fail = |info, reason, message: String| Plan::Fail {
            info,
            reason,
            message,
        };

        // Idempotency: a file whose stanzas are exactly what the targets produce is done if a
        // target identity opens it (verified), or if no identity we hold opens it (its
        // stanzas are not for the old keys: it was re-wrapped by an earlier run).
        if !self.reencrypt && self.shape_matches(&header) {
            info.new_stanzas = info.old_stanzas.clone();
            if !self.target_identities.is_empty() {
                match header.unwrap_file_key(
                    &self.target_identities,
                    &[],
                    age::DEFAULT_MAX_WORK_FACTOR,
                ) {
                    Ok(_) => return Plan::AlreadyDone { info },
                    Err(AgeError::NoMatch) => {}
                    Err(e) => return fail(info, reason_of(&e), e.to_string()),
                }
            }
            match header.unwrap_file_key(&self.identities, &[], age::DEFAULT_MAX_WORK_FACTOR) {
                // With a target's identity given, "unverified" is wrong: a file wrapped to
                // the targets has a stanza for each, so that identity would have opened it.
                Err(AgeError::NoMatch) if !self.target_identities.is_empty() => {
                    return fail(info, Reason::NoIdentity, not_the_targets());
                }
                Err(AgeError::NoMatch) => return unverified(info),
                // An old identity opens it: it still needs re-wrapping (e.g. a post-quantum
                // key being rotated).
                Ok(_) => {}
                Err(e) => return fail(info, reason_of(&e), e.to_string()),
            }
        }
        if header.protection() == age::Protection::Passphrase {
            // No public-key wrap for a quantum computer to break, and no identity opens it.
            return Plan::Skip {
                info,
                reason: Reason::Passphrase,
                message: "passphrase-encrypted (scrypt): not re-wrapped".into(),
            };
        }
        info.new_stanzas = self.new_types();
        let file_key =
            match header.unwrap_file_key(&self.identities, &[], age::DEFAULT_MAX_WORK_FACTOR) {
                Ok(k) => k,
                Err(AgeError::NoMatch) => {
                    let msg = "none of the given identities opens this file".to_string();
                    return fail(info, Reason::NoIdentity, msg);
                }
                Err(e) => return fail(info, reason_of(&e), e.to_string()),
            };
        // The payload must authenticate under the file key before anything is written (the
        // first chunk, or all of them with --verify-payload).
        let (_, payload) = dec.into_payload();
        if let Err(e) = age::stream::verify_payload(&file_key, payload, !self.verify_all_chunks) {
            return fail(info, Reason::Corrupt, format!("payload: {e}"));
        }
        if self.reencrypt {
            return self.plan_age_reencrypt(info, file_key, armored, src.snap.size);
        }
        let new_header = match Header::wrap(&file_key, &self.recipients, self.allow_classical) {
            Ok(h) => h,
            Err(e) => return fail(info, Reason::Io, e.to_string()),
        };
        let expected = new_header.as_bytes().to_vec();
        info.new_header_sha256 = Some(sha256_hex(&expected));
        let body = if armored {
            let new_header = new_header.clone();
            let size = src.snap.size;
            Body::Stream(Box::new(move |src: &File, out: &mut dyn Write| {
                // Decode the armor, replace the header, encode again: the payload bytes are
                // carried unchanged, only their base64 moves.
                let dec = age::Decryptor::new(BufReader::new(reader_at_start(src, size)))
                    .map_err(AgeError::into_io)?;
                let (_, mut payload) = dec.into_payload();
                let mut w = age::armor::ArmoredWriter::new(out)?;
                w.write_all(new_header.as_bytes())?;
                io::copy(&mut payload, &mut w)?;
                w.finish()?;
                Ok(())
            }))
        } else {
            Body::PrefixCopy {
                prefix: new_header.as_bytes().to_vec(),
                tail_offset: header.len() as u64,
            }
        };
        let all = self.verify_all_chunks;
        Plan::Replace {
            info,
            body,
            verify: Some(Box::new(move |temp: &File, len| {
                verify_written(temp, len, &expected, &file_key, armored, all)
            })),
        }
    }

    fn plan_age_reencrypt<'a>(
        &'a self,
        mut info: Info,
        old_key: FileKey,
        armored: bool,
        size: u64,
    ) -> Plan<'a> {
        let new_key = match FileKey::generate() {
            Ok(k) => k,
            Err(e) => {
                return Plan::Fail {
                    info,
                    reason: Reason::Io,
                    message: e.to_string(),
                };
            }
        };
        let new_header = match Header::wrap(&new_key, &self.recipients, self.allow_classical) {
            Ok(h) => h,
            Err(e) => {
                return Plan::Fail {
                    info,
                    reason: Reason::Io,
                    message: e.to_string(),
                };
            }
        };
        let expected = new_header.as_bytes().to_vec();
        info.new_header_sha256 = Some(sha256_hex(&expected));
        let key_for_body = new_key.clone();
        let body = Body::Stream(Box::new(move |src: &File, out: &mut dyn Write| {
            // Streaming: one chunk of plaintext in memory at a time; every old chunk is
            // authenticated as it is read, so a damaged payload fails the file.
            let dec = age::Decryptor::new(BufReader::new(reader_at_start(src, size)))
                .map_err(AgeError::into_io)?;
            let mut plain = dec
                .decrypt_with_file_key(&old_key)
                .map_err(AgeError::into_io)?;
            let mut w = age::encrypt_writer(out, &key_for_body, &new_header, armored)
                .map_err(AgeError::into_io)?;
            io::copy(&mut plain, &mut w)?;
            w.finish().map_err(AgeError::into_io)?;
            Ok(())
        }));
        let all = self.verify_all_chunks;
        Plan::Replace {
            info,
            body,
            verify: Some(Box::new(move |temp: &File, len| {
                verify_written(temp, len, &expected, &new_key, armored, all)
            })),
        }
    }
}

/// How reports name a native X-Wing stanza.
const NATIVE_XWING: &str = "xwing";

/// The stanza names of a native header, for reports.
fn native_stanza_types(h: &envelope::Header) -> Vec<String> {
    h.body()
        .stanzas()
        .iter()
        .map(|s| {
            if s.kem() == envelope::KEM_XWING {
                NATIVE_XWING.to_string()
            } else {
                format!("kem-{:#06x}", s.kem())
            }
        })
        .collect()
}

/// SHA-256 of a native file's whole header area (preamble and both slots).
fn native_area_hash(file: &File, header: &envelope::Header) -> Option<String> {
    let len = usize::try_from(header.payload_offset()).ok()?;
    let mut area = vec![0u8; len];
    file.read_exact_at(&mut area, 0).ok()?;
    Some(sha256_hex(&area))
}

fn native_reason(e: &EnvelopeError) -> Reason {
    match e {
        EnvelopeError::NoMatch => Reason::NoIdentity,
        EnvelopeError::Io(_) => Reason::Io,
        EnvelopeError::Verify(_) => Reason::ChangedUnderUs,
        _ => Reason::Corrupt,
    }
}

impl FormatJob {
    fn plan_native<'a>(&'a self, src: &Source, head: &[u8]) -> Plan<'a> {
        let mut info = Info {
            format: Some("pqwrap"),
            ..Info::default()
        };
        let fail = |info, reason, message: String| Plan::Fail {
            info,
            reason,
            message,
        };
        let mut input = BufReader::new(reader_after(head, &src.file, src.snap.size));
        let header = match envelope::Header::read_from(&mut input) {
            Ok(h) => h,
            Err(e) => return fail(info, native_reason(&e), e.to_string()),
        };
        info.old_stanzas = native_stanza_types(&header);
        info.old_header_sha256 = native_area_hash(&src.file, &header);
        if let Some(c) = self.recipients.iter().find(|r| !r.is_post_quantum()) {
            return fail(
                info,
                Reason::Io,
                format!("pqwrap native files take post-quantum recipients only, not {c}"),
            );
        }
        let unlocked = match header.unlock(&self.identities) {
            Ok(u) => u,
            Err(EnvelopeError::NoMatch) => {
                // Re-wrapped by an earlier run (no old identity opens it, and its stanzas are
                // what the targets produce), or not ours at all.
                let n = header.body().stanzas().len();
                let all_xwing = header
                    .body()
                    .stanzas()
                    .iter()
                    .all(|s| s.kem() == envelope::KEM_XWING);
                if !self.reencrypt && all_xwing && n == self.recipients.len() {
                    if !self.target_identities.is_empty() {
                        // As for age files: a target identity would have opened it.
                        return fail(info, Reason::NoIdentity, not_the_targets());
                    }
                    info.new_stanzas = info.old_stanzas.clone();
                    return unverified(info);
                }
                let msg = "none of the given identities opens this file".to_string();
                return fail(info, Reason::NoIdentity, msg);
            }
            Err(e) => return fail(info, native_reason(&e), e.to_string()),
        };
        if !self.reencrypt && unlocked.is_wrapped_to(&self.recipients) {
            info.new_stanzas = info.old_stanzas.clone();
            if header.other_slot() == envelope::SlotStatus::Empty {
                return Plan::AlreadyDone { info };
            }
            // A re-wrap stopped before wiping the old slot: the re-wrap below finishes it
            // (envelope::rewrap_io wipes the old slot and writes nothing else).
            info.note = Some("finished an interrupted re-wrap: wiped the old header slot".into());
        }
        info.new_stanzas = self
            .recipients
            .iter()
            .map(|_| NATIVE_XWING.to_string())
            .collect();
        // Every chunk, with --verify-payload (rewrap_in_place checks the first one itself).
        if self.verify_all_chunks || self.reencrypt {
            let f = reader_at_start(&src.file, src.snap.size);
            let res = envelope::decrypt_to(BufReader::new(f), &self.identities, io::sink());
            if let Err(e) = res {
                return fail(info, native_reason(&e), format!("payload: {e}"));
            }
        }
        if self.reencrypt {
            return self.plan_native_reencrypt(info, src.snap.size);
        }
        if !unlocked.fits_in_place(self.recipients.len()) {
            return self.plan_native_rewrite(info, &unlocked);
        }
        let snap = src.snap;
        Plan::InPlace {
            info,
            apply: Box::new(move |src: &Source| {
                let rw = src
                    .reopen_rw()
                    .map_err(|e| (Reason::Io, format!("cannot open for writing: {e}")))?;
                // Never the envelope module's own fallback rewrite: a header that no longer
                // fits was planned as a Replace, committed with this job's temporaries.
                let out = envelope::rewrap_io(
                    &mut envelope::FileSlotIo::new(&rw),
                    &self.identities,
                    &self.recipients,
                )
                .map_err(|e| (native_reason(&e), e.to_string()))?;
                if matches!(
                    out.action,
                    envelope::RewrapAction::InPlace | envelope::RewrapAction::WipedOldSlot
                ) {
                    // Writing the slots moved mtime; the contents did not change, so give it
                    // back (ctime cannot be).
                    let _ = super::commit::restore_times(&rw, &snap);
                }
                // For the audit log: the header area as it is now.
                let f = reader_at_start(&rw, snap.size);
                let header = envelope::Header::read_from(&mut BufReader::new(f));
                Ok(header.ok().and_then(|h| native_area_hash(&rw, &h)))
            }),
        }
    }

    /// More recipients than the file's slots were sized for: a new file with a larger header
    /// area (the envelope module builds it) and the payload bytes copied unchanged, committed
    /// like an age file — temporary, group sync, rename — so that hard links are refused, the
    /// metadata is carried over and a killed run's temporary is cleaned up by the next one.
    fn plan_native_rewrite<'a>(
        &'a self,
        mut info: Info,
        unlocked: &envelope::UnlockedHeader,
    ) -> Plan<'a> {
        let area = match unlocked.rewritten_area(&self.recipients) {
            Ok(a) => a,
            Err(e) => {
                return Plan::Fail {
                    info,
                    reason: native_reason(&e),
                    message: e.to_string(),
                };
            }
        };
        info.new_header_sha256 = Some(sha256_hex(&area));
        let expected = area.clone();
        let key = unlocked.file_key().clone();
        let all = self.verify_all_chunks;
        Plan::Replace {
            info,
            body: Body::PrefixCopy {
                prefix: area,
                tail_offset: unlocked.header().payload_offset(),
            },
            verify: Some(Box::new(move |temp: &File, len| {
                verify_native_written(temp, len, &expected, &key, all)
            })),
        }
    }

    fn plan_native_reencrypt<'a>(&'a self, info: Info, size: u64) -> Plan<'a> {
        let body = Body::Stream(Box::new(move |src: &File, out: &mut dyn Write| {
            let mut dec = envelope::Decryptor::new(
                BufReader::new(reader_at_start(src, size)),
                &self.identities,
            )
            .map_err(EnvelopeError::into_io)?;
            let mut enc =
                envelope::Encryptor::new(out, &self.recipients).map_err(EnvelopeError::into_io)?;
            io::copy(&mut dec, &mut enc)?;
            enc.finish().map_err(EnvelopeError::into_io)?;
            Ok(())
        }));
        let n = self.recipients.len();
        let targets = &self.target_identities;
        Plan::Replace {
            info,
            body,
            // The new file key is inside the new header only: with a target identity the
            // whole new file is decrypted; without one, its header is checked for shape.
            verify: Some(Box::new(move |temp: &File, len| {
                let f = reader_at_start(temp, len);
                if targets.is_empty() {
                    let h = envelope::Header::read_from(&mut BufReader::new(f))
                        .map_err(|e| format!("the new file does not parse: {e}"))?;
                    if h.body().stanzas().len() != n {
                        return Err("the new file's header has the wrong stanzas".into());
                    }
                    return Ok(());
                }
                envelope::decrypt_to(BufReader::new(f), targets, io::sink())
                    .map(|_| ())
                    .map_err(|e| format!("the new file does not decrypt: {e}"))
            })),
        }
    }
}

impl super::Job for FormatJob {
    fn is_own_output(&self, head: &[u8]) -> bool {
        // Every file this job writes starts with one of these (a header, or armor).
        const STARTS: [&[u8]; 3] = [
            b"age-encryption.org/v1\n",
            b"-----BEGIN AGE ENCRYPTED FILE-----",
            &envelope::MAGIC,
        ];
        head.is_empty()
            || STARTS
                .iter()
                .any(|m| m.starts_with(head) || head.starts_with(m))
    }

    fn plan<'a>(&'a self, src: &Source) -> Plan<'a> {
        let mut head = [0u8; HEAD_LEN];
        let n = match read_head(&src.file, src.snap.size, &mut head) {
            Ok(n) => n,
            Err(e) => {
                return Plan::Fail {
                    info: Info::default(),
                    reason: Reason::Unreadable,
                    message: e.to_string(),
                };
            }
        };
        let head = head.get(..n).unwrap_or_default();
        if let Some(age::Armored(armored)) = age::is_age(head) {
            return self.plan_age(src, head, armored);
        }
        if envelope::is_native(head) {
            return self.plan_native(src, head);
        }
        Plan::Skip {
            info: Info::default(),
            reason: Reason::NotEncrypted,
            message: String::new(),
        }
    }
}

/// A file no given identity opens, whose stanzas are what the targets produce: most likely
/// re-wrapped by an earlier run, but only an identity of the targets can tell it from a file
/// for somebody else's key (e.g. an old post-quantum key whose identity was not given).
fn unverified<'a>(info: Info) -> Plan<'a> {
    Plan::Skip {
        info,
        reason: Reason::Unverified,
        message: "no given identity opens it and its stanzas match the target recipients: \
                  probably re-wrapped by an earlier run; pass the new identity with -i to \
                  verify"
            .into(),
    }
}

/// A file shaped like the targets' output that neither an old identity nor a given target
/// identity opens: not re-wrapped to the targets (damaged, or for somebody else's key).
fn not_the_targets() -> String {
    "none of the given identities opens this file, not even the target recipients' own: it is \
     not wrapped to them (damaged, or for somebody else's key)"
        .into()
}

fn reason_of(e: &AgeError) -> Reason {
    match e {
        AgeError::NoMatch => Reason::NoIdentity,
        AgeError::Io(_) => Reason::Unreadable,
        _ => Reason::Corrupt,
    }
}

/// Reads the first `min(size, buf.len())` bytes of a file of `size` bytes (fewer only if it
/// shrank). Trusting the size saves the read that would find the end of a small file.
fn read_head(file: &File, size: u64, buf: &mut [u8]) -> io::Result<usize> {
    let want = usize::try_from(size).map_or(buf.len(), |s| s.min(buf.len()));
    let mut got = 0;
    while got < want {
        let n = file.read_at(buf.get_mut(got..want).unwrap_or_default(), got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

/// A reader over the first `end` bytes of `file` (its size when it was snapshotted, or the
/// bytes written to a temporary), by positioned reads: independent of the file's cursor and of
/// other readers, no descriptor to duplicate, and no read to find the end. Bytes appended
/// after the snapshot are not read; the commit's check sees the size change and leaves the
/// file alone.
fn reader_at_start(file: &File, end: u64) -> ReadAt<'_> {
    ReadAt { file, pos: 0, end }
}

/// [`read_head`]'s bytes, then the rest of `file` up to `end` (its size when read).
fn reader_after<'a>(head: &'a [u8], file: &'a File, end: u64) -> io::Chain<&'a [u8], ReadAt<'a>> {
    let rest = ReadAt {
        file,
        pos: head.len() as u64,
        end,
    };
    head.chain(rest)
}

/// See [`reader_at_start`].
struct ReadAt<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end.saturating_sub(self.pos)).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self
            .file
            .read_at(buf.get_mut(..want).unwrap_or_default(), self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// The check of a written temporary: it parses as an age file (armored as the original),
/// its header is exactly the one we built, the header MAC verifies under the file key, and
/// the payload authenticates under it (the first chunk, or every chunk).
fn verify_written(
    temp: &File,
    len: u64,
    expected_header: &[u8],
    key: &FileKey,
    armored: bool,
    all_chunks: bool,
) -> Result<(), String> {
    let dec = age::Decryptor::new(BufReader::new(reader_at_start(temp, len)))
        .map_err(|e| format!("the new file does not parse: {e}"))?;
    if dec.is_armored() != armored {
        return Err("the new file's armor does not match the original's".into());
    }
    if dec.header().as_bytes() != expected_header {
        return Err("the new file's header is not the one built".into());
    }
    dec.header()
        .verify_mac(key)
        .map_err(|e| format!("the new header does not carry the file key: {e}"))?;
    let (_, payload) = dec.into_payload();
    age::stream::verify_payload(key, payload, !all_chunks)
        .map_err(|e| format!("the new file's payload does not authenticate: {e}"))?;
    Ok(())
}

/// Reads a native file rewritten by [`FormatJob::plan_native_rewrite`] back: the header area
/// is the one built, it carries the file key, and the payload authenticates under it (the
/// first chunk, or every chunk).
fn verify_native_written(
    temp: &File,
    len: u64,
    expected_area: &[u8],
    key: &envelope::FileKey,
    all_chunks: bool,
) -> Result<(), String> {
    let mut area = vec![0u8; expected_area.len()];
    temp.read_exact_at(&mut area, 0)
        .map_err(|e| format!("cannot read the new file back: {e}"))?;
    if area != expected_area {
        return Err("the new file's header area is not the one built".into());
    }
    let header =
        envelope::Header::parse(&area).map_err(|e| format!("the new file does not parse: {e}"))?;
    let unlocked = header
        .unlock_with_key(key.clone(), None)
        .map_err(|e| format!("the new header does not carry the file key: {e}"))?;
    let payload = ReadAt {
        file: temp,
        pos: header.payload_offset(),
        end: len,
    };
    let mut dec = envelope::Decryptor::from_unlocked(BufReader::new(payload), unlocked);
    let res = if all_chunks {
        io::copy(&mut dec, &mut io::sink()).map(drop)
    } else {
        // One byte of plaintext is released only after the whole first chunk verified.
        dec.read(&mut [0u8; 1]).map(drop)
    };
    res.map_err(|e| format!("the new file's payload does not authenticate: {e}"))
}

/// `pqwrap scan`'s classifier: format and protection from the header alone, without keys.
pub struct Classifier;

impl Classify for Classifier {
    fn classify(&self, file: &File, size: u64) -> io::Result<Class> {
        let mut head = [0u8; HEAD_LEN];
        let n = read_head(file, size, &mut head)?;
        let head = head.get(..n).unwrap_or_default();
        if let Some(age::Armored(armored)) = age::is_age(head) {
            let format = Some(if armored { "age-armored" } else { "age" });
            // Header parsing is bounded by `MAX_HEADER_LEN`.
            let header = age::Decryptor::new(BufReader::new(reader_after(head, file, size)))
                .map(|d| d.header().clone());
            let protection = match header {
                Ok(h) => match h.protection() {
                    age::Protection::PostQuantum => Protection::PostQuantum,
                    age::Protection::Classical => Protection::Classical,
                    age::Protection::Mixed => Protection::Mixed,
                    age::Protection::Passphrase => Protection::Passphrase,
                    age::Protection::Unknown => Protection::Unknown,
                },
                Err(AgeError::Io(e)) => return Err(e),
                Err(_) => Protection::Unknown,
            };
            return Ok(Class { format, protection });
        }
        if envelope::is_native(head) {
            let protection = match envelope::inspect_file(file) {
                Ok(i) if i.is_post_quantum() => Protection::PostQuantum,
                Ok(i) if i.stanzas.iter().all(|s| s.kem_name.is_none()) => Protection::Unknown,
                Ok(_) => Protection::Mixed,
                Err(EnvelopeError::Io(e)) => return Err(e),
                Err(_) => Protection::Unknown,
            };
            return Ok(Class {
                format: Some("pqwrap"),
                protection,
            });
        }
        Ok(Class {
            format: None,
            protection: Protection::NotEncrypted,
        })
    }
}

/// Reads an age file's plaintext (for the demo and tests).
pub fn decrypt_age_file(path: &std::path::Path, ids: &[Identity]) -> anyhow::Result<Vec<u8>> {
    let f = File::open(path)?;
    let dec = age::Decryptor::new(BufReader::new(f))?;
    let mut r = dec.decrypt(ids, &[])?;
    let mut out = Vec::new();
    r.read_to_end(&mut out)?;
    Ok(out)
}
