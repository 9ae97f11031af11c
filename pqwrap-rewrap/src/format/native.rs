//! pqwrap's native envelope: re-wrapped in place through its two header slots where the store
//! can write in place and the new header fits; otherwise a new file with a larger header
//! area in front of the payload bytes, carried unchanged.

use std::io::{self, BufReader, Read, Write};

use pqwrap_core::envelope::{self, EnvelopeError, RewrapAction, SlotStatus};

use super::{
    Armor, Body, Detected, Format, FormatId, InPlace, Info, Input, Plan, Protection, Verify,
    sha256_hex, starts_like,
};
use crate::blob::{Blob, BlobReader, read_exact_at, reader_after};
use crate::error::{Check, FileError, VerifyError};
use crate::job::{Job, Mode, PayloadCheck};

/// pqwrap's native envelope (docs/FORMAT.md): AES-256-GCM, X-Wing recipients, two header
/// slots.
#[derive(Debug)]
pub struct Native;

const LABEL: &str = "pqwrap";
/// How reports name a native X-Wing stanza.
const XWING: &str = "xwing";

impl Format for Native {
    fn id(&self) -> FormatId {
        FormatId::Native
    }

    fn name(&self) -> &'static str {
        "pqwrap envelope v1"
    }

    fn detect(&self, head: &[u8]) -> Option<(&'static str, Armor)> {
        envelope::is_native(head).then_some((LABEL, Armor::Binary))
    }

    fn classify(&self, _found: &Detected, input: &Input<'_>) -> io::Result<Protection> {
        let header =
            envelope::Header::read_from(&mut BufReader::new(reader_after(input.head, input.blob)));
        Ok(match header {
            Ok(h) => {
                let kems: Vec<u16> = h.body().stanzas().iter().map(|s| s.kem()).collect();
                if kems.iter().all(|k| *k == envelope::KEM_XWING) {
                    Protection::PostQuantum
                } else if kems.iter().all(|k| envelope::kem_name(*k).is_none()) {
                    Protection::Unknown
                } else {
                    Protection::Mixed
                }
            }
            Err(EnvelopeError::Io(e)) => return Err(e),
            Err(_) => Protection::Unknown,
        })
    }

    fn plan<'a>(&'a self, job: &'a Job, _found: &Detected, input: &Input<'_>) -> Plan<'a> {
        if job.recipients().is_empty() {
            return Plan::fail(Info::of(LABEL), FileError::no_recipients());
        }
        plan(job, input)
    }

    fn is_own_output(&self, head: &[u8]) -> bool {
        starts_like(head, &envelope::MAGIC)
    }
}

/// The stanza names of a native header, for reports.
fn stanza_types(h: &envelope::Header) -> Vec<String> {
    h.body()
        .stanzas()
        .iter()
        .map(|s| {
            if s.kem() == envelope::KEM_XWING {
                XWING.to_string()
            } else {
                format!("kem-{:#06x}", s.kem())
            }
        })
        .collect()
}

/// The whole header area (preamble and both slots).
fn read_area(blob: &dyn Blob, header: &envelope::Header) -> io::Result<Vec<u8>> {
    let len = usize::try_from(header.payload_offset())
        .map_err(|_| io::Error::other("header area too large"))?;
    let mut area = vec![0u8; len];
    read_exact_at(blob, &mut area, 0)?;
    Ok(area)
}

fn plan<'a>(job: &'a Job, input: &Input<'_>) -> Plan<'a> {
    let mut info = Info::of(LABEL);
    let mut reader = BufReader::new(reader_after(input.head, input.blob));
    let header = match envelope::Header::read_from(&mut reader) {
        Ok(h) => h,
        Err(e) => return Plan::fail(info, FileError::from_native(e)),
    };
    info.old_stanzas = stanza_types(&header);
    info.old_header_sha256 = read_area(input.blob, &header).ok().map(|a| sha256_hex(&a));
    if let Some(c) = job.recipients().iter().find(|r| !r.is_post_quantum()) {
        return Plan::fail(info, FileError::ClassicalForNative(c.to_string()));
    }
    let opts = job.options();
    let unlocked = match header.unlock(job.identities()) {
        Ok(u) => u,
        Err(EnvelopeError::NoMatch) => {
            // Shaped like the targets' output and opened by nothing given: not counted as
            // done (only an identity the run was given can tell a re-wrapped file from one
            // for somebody else's key).
            let stanzas = header.body().stanzas();
            let all_xwing = stanzas.iter().all(|s| s.kem() == envelope::KEM_XWING);
            if opts.mode == Mode::Rewrap && all_xwing && stanzas.len() == job.recipients().len() {
                info.new_stanzas = info.old_stanzas.clone();
                let error = if job.target_identities().is_empty() {
                    FileError::Unverified
                } else {
                    FileError::NotTheTargets
                };
                return Plan::fail(info, error);
            }
            return Plan::fail(info, FileError::NoIdentity);
        }
        Err(e) => return Plan::fail(info, FileError::from_native(e)),
    };
    if opts.mode == Mode::Rewrap && unlocked.is_wrapped_to(job.recipients()) {
        // The file key checks every stanza's recipient tag: verifiably wrapped exactly to the
        // targets.
        info.new_stanzas = info.old_stanzas.clone();
        if header.other_slot() == SlotStatus::Empty {
            return Plan::AlreadyDone { info };
        }
        // A re-wrap stopped before wiping the old slot: the re-wrap below finishes it (the
        // core wipes the old slot and writes nothing else).
        info.note = Some("finished an interrupted re-wrap: wiped the old header slot".into());
        if input.in_place == InPlace::Unsupported {
            return Plan::AlreadyDone { info };
        }
    }
    info.new_stanzas = job.recipients().iter().map(|_| XWING.to_string()).collect();
    if opts.payload_check == PayloadCheck::AllChunks || opts.mode == Mode::Reencrypt {
        let res = envelope::decrypt_to(
            BufReader::new(BlobReader::new(input.blob)),
            job.identities(),
            io::sink(),
        );
        if let Err(e) = res {
            return Plan::fail(info, FileError::NativePayload(e));
        }
    }
    if opts.mode == Mode::Reencrypt {
        return reencrypt(job, info);
    }
    if input.in_place == InPlace::Unsupported || !unlocked.fits_in_place(job.recipients().len()) {
        return rewrite(job, info, &unlocked);
    }
    Plan::InPlace {
        info,
        apply: Box::new(move |io: &mut dyn envelope::SlotIo| {
            // Never the core's own fallback rewrite: a header that does not fit was planned
            // as a Replace, committed with the store's temporaries.
            let out = envelope::rewrap_io(io, job.identities(), job.recipients())
                .map_err(FileError::from_native)?;
            let hash = match out.action {
                RewrapAction::AlreadyWrapped => None,
                _ => {
                    let len = usize::try_from(out.header_area_len).ok();
                    len.and_then(|len| {
                        let mut area = vec![0u8; len];
                        io.read_at(0, &mut area).ok().map(|()| sha256_hex(&area))
                    })
                }
            };
            Ok(hash)
        }),
    }
}

/// A new file: a larger header area (the core builds it) and the payload bytes copied
/// unchanged, committed like an age file (so hard links are refused, metadata carried over,
/// and a killed run's temporary cleaned up by the next one).
fn rewrite<'a>(job: &'a Job, mut info: Info, unlocked: &envelope::UnlockedHeader) -> Plan<'a> {
    let area = match unlocked.rewritten_area(job.recipients()) {
        Ok(a) => a,
        Err(e) => return Plan::fail(info, FileError::from_native(e)),
    };
    info.new_header_sha256 = Some(sha256_hex(&area));
    let expected = area.clone();
    let key = unlocked.file_key().clone();
    let all = job.options().payload_check == PayloadCheck::AllChunks;
    Plan::Replace {
        info,
        body: Body::PrefixCopy {
            prefix: area,
            tail_offset: unlocked.header().payload_offset(),
        },
        verify: Box::new(move |new: &dyn Blob| verify_rewritten(new, &expected, &key, all)),
    }
}

fn reencrypt(job: &Job, info: Info) -> Plan<'_> {
    let body = Body::Stream(Box::new(move |src: &dyn Blob, out: &mut dyn Write| {
        let mut dec =
            envelope::Decryptor::new(BufReader::new(BlobReader::new(src)), job.identities())
                .map_err(EnvelopeError::into_io)?;
        let mut enc =
            envelope::Encryptor::new(out, job.recipients()).map_err(EnvelopeError::into_io)?;
        io::copy(&mut dec, &mut enc)?;
        enc.finish().map_err(EnvelopeError::into_io)?;
        Ok(())
    }));
    let n = job.recipients().len();
    let targets = job.target_identities();
    let verify: Verify<'_> = Box::new(move |new: &dyn Blob| {
        // The new file key is inside the new header only: with a target identity the whole
        // new file is decrypted; without one, its header is checked for shape.
        let r = BufReader::new(BlobReader::new(new));
        if targets.is_empty() {
            let h = envelope::Header::read_from(&mut { r })
                .map_err(|e| VerifyError::because(Check::Parses, e))?;
            if h.body().stanzas().len() != n {
                return Err(VerifyError::new(Check::Shape));
            }
            return Ok(());
        }
        envelope::decrypt_to(r, targets, io::sink())
            .map(|_| ())
            .map_err(|e| VerifyError::because(Check::Decrypts, e))
    });
    Plan::Replace { info, body, verify }
}

/// Reads a rewritten native file back: the header area is the one built, it carries the file
/// key, and the payload authenticates under it (the first chunk, or every chunk).
fn verify_rewritten(
    new: &dyn Blob,
    expected_area: &[u8],
    key: &envelope::FileKey,
    all_chunks: bool,
) -> Result<(), VerifyError> {
    let mut area = vec![0u8; expected_area.len()];
    read_exact_at(new, &mut area, 0).map_err(|e| VerifyError::because(Check::ReadBack, e))?;
    if area != expected_area {
        return Err(VerifyError::new(Check::HeaderAsBuilt));
    }
    let header =
        envelope::Header::parse(&area).map_err(|e| VerifyError::because(Check::Parses, e))?;
    let unlocked = header
        .unlock_with_key(key.clone(), None)
        .map_err(|e| VerifyError::because(Check::CarriesFileKey, e))?;
    let payload = BlobReader::at(new, header.payload_offset());
    let mut dec = envelope::Decryptor::from_unlocked(BufReader::new(payload), unlocked);
    let res = if all_chunks {
        io::copy(&mut dec, &mut io::sink()).map(drop)
    } else {
        // One byte of plaintext is released only after the whole first chunk verified.
        dec.read(&mut [0u8; 1]).map(drop)
    };
    res.map_err(|e| VerifyError::because(Check::PayloadAuthenticates, e))
}
