//! age v1 files, binary and armored: a new header (the file key wrapped to the targets, the
//! MAC recomputed) in front of the payload bytes, which are carried unchanged.

use std::io::{self, BufReader, Write};

use pqwrap_core::age::{self, AgeError, FileKey, Header, Mixing};

use super::{
    Armor, Body, Detected, Format, FormatId, Info, Input, Plan, Protection, Verify, sha256_hex,
    starts_like,
};
use crate::blob::{Blob, BlobReader, reader_after};
use crate::error::{Check, FileError, Skip, VerifyError};
use crate::job::{Classical, Job, Mode, PayloadCheck};

/// age v1 (C2SP), with X25519, scrypt and `mlkem768x25519` stanzas; ASCII armor in and out.
#[derive(Debug)]
pub struct Age;

const BINARY_START: &[u8] = b"age-encryption.org/v1\n";
const ARMOR_START: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";

fn label(armor: Armor) -> &'static str {
    match armor {
        Armor::Binary => "age",
        Armor::Armored => "age-armored",
    }
}

impl Format for Age {
    fn id(&self) -> FormatId {
        FormatId::Age
    }

    fn name(&self) -> &'static str {
        "age v1"
    }

    fn detect(&self, head: &[u8]) -> Option<(&'static str, Armor)> {
        let armor = age::is_age(head)?;
        Some((label(armor), armor))
    }

    fn classify(&self, _found: &Detected, input: &Input<'_>) -> io::Result<Protection> {
        // Header parsing is bounded by the core's MAX_HEADER_LEN.
        let header = age::Decryptor::new(BufReader::new(reader_after(input.head, input.blob)))
            .map(|d| d.header().clone());
        Ok(match header {
            Ok(h) => match h.protection() {
                age::Protection::PostQuantum => Protection::PostQuantum,
                age::Protection::Classical => Protection::Classical,
                age::Protection::Mixed => Protection::Mixed,
                age::Protection::Passphrase => Protection::Passphrase,
                _ => Protection::Unknown,
            },
            Err(AgeError::Io(e)) => return Err(e),
            Err(_) => Protection::Unknown,
        })
    }

    fn plan<'a>(&'a self, job: &'a Job, found: &Detected, input: &Input<'_>) -> Plan<'a> {
        if job.recipients().is_empty() {
            return Plan::fail(Info::of(found.label), FileError::no_recipients());
        }
        plan(job, found.armor, input)
    }

    fn is_own_output(&self, head: &[u8]) -> bool {
        starts_like(head, BINARY_START) || starts_like(head, ARMOR_START)
    }
}

fn unwrap(job: &Job, header: &Header, targets_only: bool) -> Result<FileKey, AgeError> {
    let ids = if targets_only {
        job.target_identities()
    } else {
        job.identities()
    };
    header.unwrap_file_key(ids, &[], age::DEFAULT_MAX_WORK_FACTOR)
}

fn plan<'a>(job: &'a Job, armor: Armor, input: &Input<'_>) -> Plan<'a> {
    let mut info = Info::of(label(armor));
    // One reader for the header and, further down, the payload check.
    let dec = match age::Decryptor::new(BufReader::new(reader_after(input.head, input.blob))) {
        Ok(d) => d,
        Err(e) => return Plan::fail(info, FileError::from_age(e)),
    };
    let header = dec.header().clone();
    info.old_stanzas = header
        .stanza_types()
        .iter()
        .map(|s| s.to_string())
        .collect();
    info.old_header_sha256 = Some(sha256_hex(header.as_bytes()));
    let opts = job.options();

    // Done only if an identity given to the run shows it: a target's identity opens a file
    // whose stanzas are what the targets produce. A file of that shape that only the old
    // identity opens is re-wrapped again (age stanzas cannot be checked against recipients
    // without their identities); one that nothing given opens is not counted as done.
    // The old identity's unwrap, kept when the shape check already did it: each unwrap of a
    // post-quantum stanza is a decapsulation, the costliest step of a rotation.
    let mut old_key = None;
    if opts.mode == Mode::Rewrap && job.shape_matches(header.stanza_types()) {
        info.new_stanzas = info.old_stanzas.clone();
        if !job.target_identities().is_empty() {
            match unwrap(job, &header, true) {
                Ok(_) => return Plan::AlreadyDone { info },
                Err(AgeError::NoMatch) => {}
                Err(e) => return Plan::fail(info, FileError::from_age(e)),
            }
        }
        match unwrap(job, &header, false) {
            // With a target's identity given, a file wrapped to the targets would have opened.
            Err(AgeError::NoMatch) if !job.target_identities().is_empty() => {
                return Plan::fail(info, FileError::NotTheTargets);
            }
            Err(AgeError::NoMatch) => return Plan::fail(info, FileError::Unverified),
            // An old identity opens it: re-wrap (e.g. a post-quantum key being rotated).
            Ok(k) => old_key = Some(k),
            Err(e) => return Plan::fail(info, FileError::from_age(e)),
        }
    }
    if header.protection() == age::Protection::Passphrase {
        // No public-key wrap for a quantum computer to break, and no identity opens it.
        return Plan::Skip {
            info,
            skip: Skip::Passphrase,
        };
    }
    info.new_stanzas = job.new_stanza_types();
    let file_key = match old_key.map_or_else(|| unwrap(job, &header, false), Ok) {
        Ok(k) => k,
        Err(e) => return Plan::fail(info, FileError::from_age(e)),
    };
    // The payload must authenticate under the file key before anything is written (the first
    // chunk, or all of them).
    let first_only = opts.payload_check == PayloadCheck::FirstChunk;
    let (_, payload) = dec.into_payload();
    if let Err(e) = age::stream::verify_payload(&file_key, payload, first_only) {
        return Plan::fail(info, FileError::AgePayload(e));
    }
    let mixing = match opts.classical {
        Classical::Allow => Mixing::Allow,
        Classical::Refuse => Mixing::Refuse,
    };
    match opts.mode {
        Mode::Reencrypt => reencrypt(job, info, file_key, armor, mixing),
        Mode::Rewrap => rewrap(job, info, file_key, armor, &header, mixing),
    }
}

fn rewrap<'a>(
    job: &'a Job,
    mut info: Info,
    file_key: FileKey,
    armor: Armor,
    header: &Header,
    mixing: Mixing,
) -> Plan<'a> {
    let new_header = match Header::wrap(&file_key, job.recipients(), mixing) {
        Ok(h) => h,
        Err(e) => return Plan::fail(info, FileError::Wrap(Box::new(e))),
    };
    let expected = new_header.as_bytes().to_vec();
    info.new_header_sha256 = Some(sha256_hex(&expected));
    let body = match armor {
        Armor::Armored => {
            let new_header = new_header.clone();
            Body::Stream(Box::new(move |src: &dyn Blob, out: &mut dyn Write| {
                // Decode the armor, replace the header, encode again: the payload bytes are
                // carried unchanged, only their base64 moves.
                let dec = age::Decryptor::new(BufReader::new(BlobReader::new(src)))
                    .map_err(AgeError::into_io)?;
                let (_, mut payload) = dec.into_payload();
                let mut w = age::armor::ArmoredWriter::new(out)?;
                w.write_all(new_header.as_bytes())?;
                io::copy(&mut payload, &mut w)?;
                w.finish()?;
                Ok(())
            }))
        }
        Armor::Binary => Body::PrefixCopy {
            prefix: new_header.as_bytes().to_vec(),
            tail_offset: header.len() as u64,
        },
    };
    let check = job.options().payload_check;
    Plan::Replace {
        info,
        body,
        verify: verifier(expected, file_key, armor, check),
    }
}

fn reencrypt<'a>(
    job: &'a Job,
    mut info: Info,
    old_key: FileKey,
    armor: Armor,
    mixing: Mixing,
) -> Plan<'a> {
    let new_key = match FileKey::generate() {
        Ok(k) => k,
        Err(e) => return Plan::fail(info, FileError::Wrap(Box::new(e))),
    };
    let new_header = match Header::wrap(&new_key, job.recipients(), mixing) {
        Ok(h) => h,
        Err(e) => return Plan::fail(info, FileError::Wrap(Box::new(e))),
    };
    let expected = new_header.as_bytes().to_vec();
    info.new_header_sha256 = Some(sha256_hex(&expected));
    let key_for_body = new_key.clone();
    let body = Body::Stream(Box::new(move |src: &dyn Blob, out: &mut dyn Write| {
        // Streaming: one chunk of plaintext in memory at a time; every old chunk is
        // authenticated as it is read, so a damaged payload fails the file.
        let dec =
            age::Decryptor::new(BufReader::new(BlobReader::new(src))).map_err(AgeError::into_io)?;
        let mut plain = dec
            .decrypt_with_file_key(&old_key)
            .map_err(AgeError::into_io)?;
        let mut w = age::encrypt_writer(out, &key_for_body, &new_header, armor)
            .map_err(AgeError::into_io)?;
        io::copy(&mut plain, &mut w)?;
        w.finish().map_err(AgeError::into_io)?;
        Ok(())
    }));
    let check = job.options().payload_check;
    Plan::Replace {
        info,
        body,
        verify: verifier(expected, new_key, armor, check),
    }
}

/// The check of new contents: they parse as an age file (armored as the original), the header
/// is exactly the one built, its MAC verifies under the file key, and the payload
/// authenticates under it (the first chunk, or every chunk).
fn verifier<'a>(
    expected_header: Vec<u8>,
    key: FileKey,
    armor: Armor,
    check: PayloadCheck,
) -> Verify<'a> {
    Box::new(move |new: &dyn Blob| {
        let dec = age::Decryptor::new(BufReader::new(BlobReader::new(new)))
            .map_err(|e| VerifyError::because(Check::Parses, e))?;
        if dec.armor() != armor {
            return Err(VerifyError::new(Check::SameArmor));
        }
        if dec.header().as_bytes() != expected_header.as_slice() {
            return Err(VerifyError::new(Check::HeaderAsBuilt));
        }
        dec.header()
            .verify_mac(&key)
            .map_err(|e| VerifyError::because(Check::CarriesFileKey, e))?;
        let (_, payload) = dec.into_payload();
        age::stream::verify_payload(&key, payload, check == PayloadCheck::FirstChunk)
            .map_err(|e| VerifyError::because(Check::PayloadAuthenticates, e))?;
        Ok(())
    })
}
