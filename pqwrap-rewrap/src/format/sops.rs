//! SOPS files (YAML, JSON, dotenv, INI, binary): recognised by their metadata, which sops
//! writes at the end, so within a bounded whole-file read; re-wrapped by replacing only the
//! age entries of each key group (pqwrap-core's `sops` model), every other byte kept.
//!
//! The new recipients of each key group come from the job's per-file source (`.sops.yaml`
//! creation rules) or, for a file with one key group, from `-r/-R`.

use std::io::{self, Write};

use pqwrap_core::keys::{Identity, Recipient};
use pqwrap_core::sops::{
    self, KeyKind, MAX_FILE_LEN, PgpEntries, Protection as SopsProtection, SopsError, SopsFile,
    Targets,
};

use super::{Armor, Body, Detected, Format, FormatId, Info, Input, Plan, Protection, sha256_hex};
use crate::blob::{Blob, read_exact_at};
use crate::error::{Check, FileError, Skip, VerifyError};
use crate::job::{Classical, Job, Mode};

/// SOPS files, every type sops writes.
#[derive(Debug)]
pub struct Sops;

/// The format label of reports and `scan`.
const LABEL: &str = "sops";

/// The whole file, if it can be a SOPS file: text, at most [`MAX_FILE_LEN`] bytes.
fn whole(head: &[u8], blob: &dyn Blob) -> io::Result<Option<Vec<u8>>> {
    let len = blob.len();
    if len > MAX_FILE_LEN as u64 || looks_binary(head) {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| io::Error::other("file too large"))?;
    if len == head.len() {
        return Ok(Some(head.to_vec()));
    }
    let mut all = vec![0u8; len];
    read_exact_at(blob, &mut all, 0)?;
    Ok(Some(all))
}

/// A NUL or invalid UTF-8 in the first bytes: not a text file (a cut-off last character is
/// allowed).
fn looks_binary(head: &[u8]) -> bool {
    if head.contains(&0) {
        return true;
    }
    match std::str::from_utf8(head) {
        Ok(_) => false,
        Err(e) => e.error_len().is_some(),
    }
}

fn labels<'k>(keys: impl IntoIterator<Item = &'k sops::MasterKey>) -> Vec<String> {
    keys.into_iter().map(|k| k.label().to_string()).collect()
}

fn recipient_label(r: &Recipient) -> &'static str {
    if r.is_post_quantum() {
        "age/mlkem768x25519"
    } else {
        "age/X25519"
    }
}

impl Format for Sops {
    fn id(&self) -> FormatId {
        FormatId::Sops
    }

    fn name(&self) -> &'static str {
        "SOPS"
    }

    fn detect(&self, _head: &[u8]) -> Option<(&'static str, Armor)> {
        // The metadata is at the end: see detect_file.
        None
    }

    fn detect_file(
        &self,
        head: &[u8],
        blob: &dyn Blob,
    ) -> io::Result<Option<(&'static str, Armor)>> {
        Ok(whole(head, blob)?
            .and_then(|b| sops::detect(&b))
            .map(|_| (LABEL, Armor::Armored)))
    }

    fn classify(&self, _found: &Detected, input: &Input<'_>) -> io::Result<Protection> {
        let Some(bytes) = whole(input.head, input.blob)? else {
            return Ok(Protection::Unknown);
        };
        Ok(match SopsFile::parse(&bytes).map(|f| f.protection()) {
            Ok(SopsProtection::PostQuantum) => Protection::PostQuantum,
            Ok(SopsProtection::Classical) => Protection::Classical,
            Ok(SopsProtection::Mixed) => Protection::Mixed,
            Ok(SopsProtection::CloudKms) => Protection::CloudKms,
            Err(_) => Protection::Unknown,
        })
    }

    fn plan<'a>(&'a self, job: &'a Job, _found: &Detected, input: &Input<'_>) -> Plan<'a> {
        let info = Info::of(LABEL);
        let bytes = match whole(input.head, input.blob) {
            Ok(Some(b)) => b,
            Ok(None) => return Plan::fail(info, FileError::Sops(SopsError::TooLarge)),
            Err(e) => return Plan::fail(info, FileError::Unreadable(e)),
        };
        plan(job, input, bytes, info)
    }

    fn is_own_output(&self, head: &[u8]) -> bool {
        // A SOPS file starts with its values: what this format writes has an encrypted value
        // (or the start of one, cut off) in its first bytes. A leftover whose first key is
        // long or unencrypted is not recognised, and left alone.
        const ENC: &[u8] = b"ENC[AES256_GCM,";
        !looks_binary(head)
            && (head.windows(ENC.len()).any(|w| w == ENC)
                || (5..ENC.len()).any(|n| head.ends_with(ENC.get(..n).unwrap_or_default())))
    }
}

/// The new recipients of each key group of the file.
fn targets(job: &Job, input: &Input<'_>, file: &SopsFile<'_>) -> Result<Targets, FileError> {
    let n = file.groups().len();
    let groups = match job.recipients_for(input.name) {
        Some(Ok(g)) => {
            if g.len() != n {
                return Err(FileError::NoRecipients(format!(
                    "the creation rule for this file has {} key group(s), the file {n}: \
                     pqwrap re-wraps the groups the file has (sops updatekeys changes them)",
                    g.len()
                )));
            }
            g
        }
        Some(Err(msg)) => return Err(FileError::NoRecipients(msg)),
        None if n == 1 && !job.recipients().is_empty() => vec![job.recipients().to_vec()],
        None if n == 1 => return Err(FileError::no_recipients()),
        None => {
            return Err(FileError::NoRecipients(format!(
                "has {n} key groups (Shamir): -r/-R cannot say which group gets which \
                 recipient; pass --sops-config .sops.yaml"
            )));
        }
    };
    if job.options().classical == Classical::Refuse
        && let Some(c) = groups.iter().flatten().find(|r| !r.is_post_quantum())
    {
        return Err(FileError::NoRecipients(format!(
            "{c} is a classical (X25519) recipient: files wrapped to it stay exposed to a \
             future quantum computer; pass --allow-classical to use it anyway"
        )));
    }
    Ok(Targets {
        groups,
        pgp: job.options().pgp,
    })
}

/// The identities given whose recipient is among the targets.
fn target_identities(job: &Job, t: &Targets) -> Vec<Identity> {
    let names: Vec<String> = t.groups.iter().flatten().map(ToString::to_string).collect();
    job.identities()
        .iter()
        .filter(|id| names.contains(&id.to_recipient().to_string()))
        .cloned()
        .collect()
}

fn locked(e: &SopsError) -> bool {
    matches!(
        e,
        SopsError::GroupLocked { .. } | SopsError::BelowThreshold { .. }
    )
}

fn plan<'a>(job: &'a Job, input: &Input<'_>, bytes: Vec<u8>, mut info: Info) -> Plan<'a> {
    let file = match SopsFile::parse(&bytes) {
        Ok(f) => f,
        Err(e) => return Plan::fail(info, FileError::Sops(e)),
    };
    info.old_stanzas = labels(file.groups().iter().flatten());
    info.old_header_sha256 = Some(sha256_hex(&bytes));
    if file.protection() == SopsProtection::CloudKms {
        return Plan::Skip {
            info,
            skip: Skip::CloudKmsOnly,
        };
    }
    let t = match targets(job, input, &file) {
        Ok(t) => t,
        Err(e) => return Plan::fail(info, e),
    };
    let opts = job.options();
    let targets_ids = target_identities(job, &t);
    // Done only if an identity given to the run shows it: the targets' identities alone
    // recover the data key and the MAC verifies under it.
    if opts.mode == Mode::Rewrap && file.has_shape(&t) {
        info.new_stanzas = info.old_stanzas.clone();
        if !targets_ids.is_empty() {
            match file
                .data_key(&targets_ids)
                .and_then(|k| file.verify_mac(&k))
            {
                Ok(()) => return Plan::AlreadyDone { info },
                // One group: a target's identity would have opened it. Several: the
                // identities given may cover too few groups to tell.
                Err(e) if locked(&e) && file.groups().len() == 1 => {
                    return Plan::fail(info, FileError::NotTheTargets);
                }
                Err(e) if locked(&e) => return Plan::fail(info, FileError::Unverified),
                Err(e) => return Plan::fail(info, FileError::Sops(e)),
            }
        }
        return Plan::fail(info, FileError::Unverified);
    }
    let key = match file.data_key(job.identities()) {
        Ok(k) => k,
        Err(e) => return Plan::fail(info, FileError::Sops(e)),
    };
    if let Err(e) = file.verify_mac(&key) {
        return Plan::fail(info, FileError::Sops(e));
    }
    let out = match opts.mode {
        Mode::Rewrap => file.rewrap(&key, &t),
        Mode::Reencrypt => {
            let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
            file.reencrypt(&key, &t, &now)
        }
    };
    let out = match out {
        Ok(o) => o,
        Err(e) => return Plan::fail(info, FileError::Sops(e)),
    };
    if let Err(e) = out.verify(&out.bytes) {
        return Plan::fail(info, FileError::Sops(e));
    }
    // What the file holds now: the kept master keys, then the new age entries.
    let parsed = SopsFile::parse_as(&out.bytes, file.file_type());
    info.new_stanzas = match &parsed {
        Ok(p) => labels(p.groups().iter().flatten()),
        Err(_) => t
            .groups
            .iter()
            .flatten()
            .map(|r| recipient_label(r).to_string())
            .collect(),
    };
    let pgp_left = parsed
        .as_ref()
        .is_ok_and(|p| p.groups().iter().flatten().any(|k| k.kind == KeyKind::Pgp));
    if pgp_left && t.pgp == PgpEntries::Keep {
        info.note = Some(
            "PGP entries kept: they still wrap the data key classically, so the file stays \
             mixed (--remove-pgp drops them)"
                .into(),
        );
    }
    drop(parsed);
    info.new_header_sha256 = Some(sha256_hex(&out.bytes));
    let new_bytes = out.bytes.clone();
    let expected_len = new_bytes.len() as u64;
    let body = Body::Stream(Box::new(move |_src: &dyn Blob, w: &mut dyn Write| {
        w.write_all(&new_bytes)
    }));
    let ftype = file.file_type();
    let verify = Box::new(move |blob: &dyn Blob| -> Result<(), VerifyError> {
        if blob.len() != expected_len {
            return Err(VerifyError::new(Check::HeaderAsBuilt));
        }
        let mut got = vec![0u8; out.bytes.len()];
        read_exact_at(blob, &mut got, 0).map_err(|e| VerifyError::because(Check::ReadBack, e))?;
        if got != out.bytes {
            return Err(VerifyError::new(Check::HeaderAsBuilt));
        }
        out.verify(&got)
            .map_err(|e| VerifyError::because(Check::CarriesFileKey, e))?;
        // With a target's identity given, the new file also opens with it.
        if !targets_ids.is_empty() {
            let f = SopsFile::parse_as(&got, ftype)
                .map_err(|e| VerifyError::because(Check::Parses, e))?;
            f.data_key(&targets_ids)
                .and_then(|k| f.verify_mac(&k))
                .map_err(|e| VerifyError::because(Check::Decrypts, e))?;
        }
        Ok(())
    });
    Plan::Replace { info, body, verify }
}
