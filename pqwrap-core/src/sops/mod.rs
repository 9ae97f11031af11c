//! SOPS files (getsops/sops): YAML, JSON, dotenv, INI and binary files whose values are
//! encrypted under a 32-byte data key, with a `sops` metadata block that wraps the data key
//! (or, with several key groups, one Shamir share per group) to master keys: age recipients
//! (an armored age file with one recipient each), PGP keys, cloud KMS keys.
//!
//! This module reads such a file byte-exactly, recovers the data key with age identities,
//! verifies the MAC (SHA-512 over the decrypted values, encrypted under the data key with
//! `lastmodified` as associated data), and re-wraps: it replaces only the age entries of each
//! key group, leaving every other byte of the file as it was. With [`SopsFile::reencrypt`]
//! it rotates the data key instead, as `sops rotate` does. Bytes in, bytes out: no I/O.
//!
//! ```
//! use pqwrap_core::keys::Identity;
//! use pqwrap_core::sops::{FileType, SopsFile};
//!
//! let text = b"a: 1\n";
//! assert_eq!(pqwrap_core::sops::detect(text), None);
//! # let _ = (FileType::Yaml, Identity::generate_hybrid);
//! ```

mod doc;
mod emit;
mod flat;
mod json;
mod meta;
mod shamir;
mod value;
mod yaml;

pub mod config;

use std::io::{Read, Write};

use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::age::{self, AgeError, FileKey};
use crate::keys::{Identity, Recipient};

use self::doc::{Doc, Node, NodeId, plain_mac_bytes};
use self::meta::Metadata;
use self::value::{Encrypted, ValueType, looks_encrypted};

/// The largest SOPS file read: the metadata sits at the end, so a file is read whole.
pub const MAX_FILE_LEN: usize = 16 << 20;

/// The length of a SOPS data key.
pub const DATA_KEY_LEN: usize = 32;

/// Longest plaintext accepted from an age entry (a data key, or a Shamir share of one).
const MAX_SHARE_LEN: usize = 64;

/// Why a SOPS file could not be read, verified or rewritten. The messages name the part of the
/// file that is wrong, never a secret value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SopsError {
    /// Not a SOPS file after all.
    #[error("not a SOPS file: {0}")]
    NotSops(&'static str),
    /// Larger than [`MAX_FILE_LEN`].
    #[error("larger than {} MiB: not read as a SOPS file", MAX_FILE_LEN >> 20)]
    TooLarge,
    /// Not valid UTF-8 text.
    #[error("not UTF-8 text")]
    NotText,
    /// The file does not parse.
    #[error("{format} syntax error at line {line}: {msg}")]
    Syntax {
        /// YAML, JSON, dotenv or INI.
        format: &'static str,
        /// 1-based.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// A key appears twice in one mapping (sops refuses such files too).
    #[error("duplicate key {key:?} at line {line}")]
    DuplicateKey {
        /// 1-based.
        line: usize,
        /// The key.
        key: String,
    },
    /// The `sops` metadata block is incomplete or malformed.
    #[error("the sops metadata {0}")]
    Metadata(&'static str),
    /// A value is malformed.
    #[error("{0}")]
    Value(&'static str),
    /// A value does not decrypt under the data key (tampered, or moved to another key).
    #[error("a value does not decrypt under the data key at {path}")]
    ValueDecrypt {
        /// The key path of the value (`a:b:`).
        path: String,
    },
    /// AES-GCM refused a ciphertext.
    #[error("does not decrypt under the data key")]
    Decrypt,
    /// The MAC does not decrypt under the data key.
    #[error("the MAC does not decrypt under the data key (wrong key, or `lastmodified` changed)")]
    MacUndecryptable,
    /// The MAC does not match the values.
    #[error("MAC mismatch: the values do not match the MAC (the file was changed)")]
    MacMismatch,
    /// No age entry of a key group opens with the given identities.
    #[error("none of the given identities opens an age entry of key group {group} (of {groups})")]
    GroupLocked {
        /// 1-based.
        group: usize,
        /// How many groups the file has.
        groups: usize,
    },
    /// The only key group has no age entry (PGP or cloud KMS keys only): no identity given to
    /// pqwrap can open it.
    #[error(
        "key group {group} (of {groups}) has no age entry, only PGP or cloud KMS keys: pqwrap \
         opens age entries only (add an age recipient with sops first)"
    )]
    NoAgeEntry {
        /// 1-based.
        group: usize,
        /// How many groups the file has.
        groups: usize,
    },
    /// Fewer groups opened than the Shamir threshold needs.
    #[error("{opened} of {groups} key groups opened, {threshold} are needed for the data key")]
    BelowThreshold {
        /// Groups opened.
        opened: usize,
        /// Groups needed.
        threshold: usize,
        /// Groups in the file.
        groups: usize,
    },
    /// An age entry is malformed or does not authenticate.
    #[error("age entry {index} of key group {group}: {source}")]
    AgeEntry {
        /// 1-based.
        group: usize,
        /// 1-based, among the group's age entries.
        index: usize,
        /// What age said.
        #[source]
        source: AgeError,
    },
    /// Two age entries of a group wrap different secrets.
    #[error("the age entries of key group {0} wrap different keys")]
    Inconsistent(usize),
    /// Shamir combining or splitting failed.
    #[error("Shamir secret sharing: {0}")]
    Shamir(&'static str),
    /// The new recipients do not fit the file.
    #[error("{0}")]
    Plan(String),
    /// Something the file uses that this implementation does not handle.
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    /// Wrapping to a new recipient failed.
    #[error("cannot wrap the data key: {0}")]
    Wrap(#[source] AgeError),
    /// The rewritten file does not verify.
    #[error("the rewritten file does not verify: {0}")]
    Verify(&'static str),
    /// The operating system's random number generator failed.
    #[error("operating system random number generator failed")]
    Random,
}

/// The five kinds of SOPS files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileType {
    /// YAML (one or more documents).
    Yaml,
    /// JSON.
    Json,
    /// dotenv (`KEY=value`).
    Dotenv,
    /// INI.
    Ini,
    /// A binary file, stored by sops as JSON with one `data` value.
    Binary,
}

impl FileType {
    /// `yaml`, `json`, `dotenv`, `ini`, `binary`.
    pub fn as_str(self) -> &'static str {
        match self {
            FileType::Yaml => "yaml",
            FileType::Json => "json",
            FileType::Dotenv => "dotenv",
            FileType::Ini => "ini",
            FileType::Binary => "binary",
        }
    }
}

/// The kind of a master key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// An age recipient (X25519, `age1pq1…` post-quantum, SSH or plugin).
    Age,
    /// An OpenPGP key.
    Pgp,
    /// AWS KMS.
    Kms,
    /// Google Cloud KMS.
    GcpKms,
    /// Azure Key Vault.
    AzureKv,
    /// HashiCorp Vault transit.
    HcVault,
    /// Huawei Cloud KMS.
    HcKms,
}

impl KeyKind {
    /// The name of the metadata list (`age`, `pgp`, `kms`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Age => "age",
            KeyKind::Pgp => "pgp",
            KeyKind::Kms => "kms",
            KeyKind::GcpKms => "gcp_kms",
            KeyKind::AzureKv => "azure_kv",
            KeyKind::HcVault => "hc_vault",
            KeyKind::HcKms => "hckms",
        }
    }
}

/// One master key of a key group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterKey {
    /// Its kind.
    pub kind: KeyKind,
    /// What names it: the age recipient, the PGP fingerprint, the KMS ARN, ...
    pub id: String,
    /// The wrapped data key (or share), as stored.
    enc: String,
}

/// How a master key protects the data key against a future quantum computer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyProtection {
    /// An `age1pq1…` (or `age1tagpq1…`) recipient.
    PostQuantum,
    /// age X25519, SSH or plugin recipients, and PGP: public-key wraps that Shor's algorithm
    /// breaks.
    Classical,
    /// A cloud or Vault key: the wrap is done by a service, not with a public key in the file.
    Service,
}

impl MasterKey {
    /// How this key protects the data key.
    pub fn protection(&self) -> KeyProtection {
        match self.kind {
            KeyKind::Age if is_pq_recipient(&self.id) => KeyProtection::PostQuantum,
            KeyKind::Age | KeyKind::Pgp => KeyProtection::Classical,
            _ => KeyProtection::Service,
        }
    }

    /// A short name for reports: `age/mlkem768x25519`, `age/X25519`, `pgp`, `kms`, ...
    pub fn label(&self) -> &'static str {
        match (self.kind, self.protection()) {
            (KeyKind::Age, KeyProtection::PostQuantum) => "age/mlkem768x25519",
            (KeyKind::Age, _) if self.id.starts_with("ssh-") => "age/ssh",
            // `age1` and 58 more characters: an X25519 key; longer ones name a plugin.
            (KeyKind::Age, _) if self.id.starts_with("age1") && self.id.len() == 62 => "age/X25519",
            (KeyKind::Age, _) => "age/plugin",
            (k, _) => k.as_str(),
        }
    }
}

fn is_pq_recipient(r: &str) -> bool {
    r.starts_with("age1pq1") || r.starts_with("age1tagpq1")
}

/// How a whole file is protected, counting every master key of every key group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protection {
    /// Post-quantum wraps only (and perhaps cloud keys).
    PostQuantum,
    /// Classical wraps only (and perhaps cloud keys).
    Classical,
    /// Both: the classical wrap still exposes the data key (or its share).
    Mixed,
    /// Cloud or Vault keys only.
    CloudKms,
}

/// Whether PGP entries are kept in the groups that get new age entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PgpEntries {
    /// Kept: they still wrap the data key classically.
    #[default]
    Keep,
    /// Removed from every group that gets new age entries.
    Remove,
}

/// A data key, and the share of each key group that was opened.
pub struct DataKey {
    key: Zeroizing<[u8; DATA_KEY_LEN]>,
    shares: Vec<Option<Zeroizing<Vec<u8>>>>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// Cheap recognition of a SOPS file by its content: the file type, if `bytes` look like one
/// (the metadata keys are there). [`SopsFile::parse`] decides for sure.
pub fn detect(bytes: &[u8]) -> Option<FileType> {
    let first = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))?;
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    // A value or the MAC (`ENC[...]`), or `lastmodified`: so that a file cut short (whose
    // metadata lost its end) is still recognised, and then fails clearly.
    let sopsish = contains(b"lastmodified") || contains(b"ENC[AES256_GCM,");
    if bytes.get(first) == Some(&b'{') {
        if !(contains(b"\"sops\"") && sopsish) {
            return None;
        }
        let text = std::str::from_utf8(bytes).ok()?;
        // Binary files are `{"data": ..., "sops": ...}` and nothing else.
        return Some(match json::parse(text.as_bytes()) {
            Ok(doc) if is_binary_layout(&doc) => FileType::Binary,
            _ => FileType::Json,
        });
    }
    let line_starts = |prefix: &[u8]| {
        bytes.starts_with(prefix)
            || bytes
                .windows(prefix.len() + 1)
                .any(|w| w.first() == Some(&b'\n') && w.get(1..) == Some(prefix))
    };
    let dotenv_meta = [
        "lastmodified=",
        "mac=",
        "age__",
        "key_groups__",
        "pgp__",
        "version=",
    ];
    if dotenv_meta
        .iter()
        .any(|k| line_starts(format!("sops_{k}").as_bytes()))
        && sopsish
    {
        return Some(FileType::Dotenv);
    }
    if line_starts(b"[sops]") {
        return Some(FileType::Ini);
    }
    if (line_starts(b"sops:") || line_starts(b"\"sops\":") || line_starts(b"'sops':")) && sopsish {
        return Some(FileType::Yaml);
    }
    None
}

fn is_binary_layout(doc: &Doc) -> bool {
    let Some(Some(root)) = doc.roots.first() else {
        return false;
    };
    let keys: Vec<&str> = doc
        .entries(*root)
        .unwrap_or_default()
        .iter()
        .map(|e| e.key.as_str())
        .collect();
    keys.len() == 2 && keys.contains(&"data") && keys.contains(&"sops")
}

/// A parsed SOPS file: its bytes, the values with where they are, and the metadata.
pub struct SopsFile<'a> {
    bytes: &'a [u8],
    ftype: FileType,
    doc: Doc,
    comments: Vec<std::ops::Range<usize>>,
    meta: Metadata,
}

impl std::fmt::Debug for SopsFile<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SopsFile")
            .field("type", &self.ftype)
            .field("groups", &self.meta.groups.len())
            .finish_non_exhaustive()
    }
}

/// An age entry written by a re-wrap, and the file key that made it (to check it).
struct NewEntry {
    group: usize,
    recipient: String,
    enc: String,
    file_key: FileKey,
}

/// A re-wrapped (or re-encrypted) file: its new bytes, and what [`Rewritten::verify`] checks.
pub struct Rewritten {
    /// The new contents.
    pub bytes: Vec<u8>,
    ftype: FileType,
    key: Zeroizing<[u8; DATA_KEY_LEN]>,
    shares: Vec<Zeroizing<Vec<u8>>>,
    entries: Vec<NewEntry>,
    groups: Vec<Vec<MasterKey>>,
}

impl std::fmt::Debug for Rewritten {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rewritten")
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// Reads age's plaintext (a data key or share) from an armored age file: `None` if it is
/// longer than any data key or share.
fn open_age(enc: &str, ids: &[Identity]) -> Result<Option<Zeroizing<Vec<u8>>>, AgeError> {
    let dec = age::Decryptor::new(enc.as_bytes())?;
    let r = dec.decrypt(ids, &[])?;
    read_bounded(r)
}

/// At most [`MAX_SHARE_LEN`] bytes of `r`: `None` if it holds more.
fn read_bounded(r: impl Read) -> Result<Option<Zeroizing<Vec<u8>>>, AgeError> {
    let mut out = Zeroizing::new(Vec::new());
    r.take(MAX_SHARE_LEN as u64 + 1)
        .read_to_end(&mut out)
        .map_err(AgeError::from_io)?;
    Ok((out.len() <= MAX_SHARE_LEN).then_some(out))
}

/// Wraps `secret` to one recipient as sops does: an armored age file.
fn seal_age(secret: &[u8], r: &Recipient) -> Result<(String, FileKey), AgeError> {
    let (fk, header) = age::new_header(std::slice::from_ref(r), age::Mixing::Refuse)?;
    let mut w = age::encrypt_writer(Vec::new(), &fk, &header, age::Armor::Armored)?;
    w.write_all(secret).map_err(AgeError::from_io)?;
    let out = w.finish()?;
    // Armor is ASCII: this cannot fail, but is not assumed.
    let text = String::from_utf8(out)
        .map_err(|e| AgeError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    Ok((text, fk))
}

/// sops's `lastmodified` as associated data: parsed as RFC 3339 and formatted again, which
/// drops fractional seconds.
fn lastmodified_aad(s: &str) -> Result<String, SopsError> {
    let bad = SopsError::Metadata("has a `lastmodified` that is not an RFC 3339 time");
    let b = s.as_bytes();
    let shape = b.len() >= 20
        && b.iter().take(4).all(u8::is_ascii_digit)
        && b.get(4) == Some(&b'-')
        && b.get(7) == Some(&b'-')
        && matches!(b.get(10), Some(b'T' | b't'))
        && b.get(13) == Some(&b':')
        && b.get(16) == Some(&b':');
    if !shape {
        return Err(bad);
    }
    let (head, mut rest) = s.split_at(19);
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return Err(bad);
        }
        rest = frac.get(n..).unwrap_or_default();
    }
    let zone_ok = matches!(rest, "Z" | "z")
        || (rest.len() == 6
            && matches!(rest.as_bytes().first(), Some(b'+' | b'-'))
            && rest.as_bytes().get(3) == Some(&b':'));
    if !zone_ok {
        return Err(bad);
    }
    let zone = if rest == "z" { "Z" } else { rest };
    Ok(format!(
        "{}T{}{zone}",
        head.get(..10).unwrap_or_default(),
        head.get(11..).unwrap_or_default()
    ))
}

impl<'a> SopsFile<'a> {
    /// Parses a SOPS file of any type, detected by its content.
    pub fn parse(bytes: &'a [u8]) -> Result<SopsFile<'a>, SopsError> {
        if bytes.len() > MAX_FILE_LEN {
            return Err(SopsError::TooLarge);
        }
        let ftype = detect(bytes).ok_or(SopsError::NotSops("no sops metadata found"))?;
        Self::parse_as(bytes, ftype)
    }

    /// Parses `bytes` as a SOPS file of type `ftype`.
    pub fn parse_as(bytes: &'a [u8], ftype: FileType) -> Result<SopsFile<'a>, SopsError> {
        if bytes.len() > MAX_FILE_LEN {
            return Err(SopsError::TooLarge);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| SopsError::NotText)?;
        let (doc, comments) = match ftype {
            FileType::Yaml => (yaml::parse(text)?, Vec::new()),
            FileType::Json | FileType::Binary => (json::parse(bytes)?, Vec::new()),
            FileType::Dotenv => flat::parse_dotenv(bytes)?,
            FileType::Ini => flat::parse_ini(bytes)?,
        };
        let meta = match ftype {
            FileType::Yaml | FileType::Json | FileType::Binary => meta::from_tree(&doc)?,
            FileType::Dotenv | FileType::Ini => {
                meta::from_flat(meta::flat_lines(bytes, &doc, ftype), ftype)?
            }
        };
        if ftype == FileType::Binary && !is_binary_layout(&doc) {
            return Err(SopsError::NotSops(
                "a binary file holds `data` and `sops` only",
            ));
        }
        Ok(SopsFile {
            bytes,
            ftype,
            doc,
            comments,
            meta,
        })
    }

    /// The file type.
    pub fn file_type(&self) -> FileType {
        self.ftype
    }

    /// The master keys of each key group.
    pub fn groups(&self) -> &[Vec<MasterKey>] {
        &self.meta.groups
    }

    /// How many key groups are needed to recover the data key (1 without Shamir).
    pub fn threshold(&self) -> usize {
        self.meta.threshold
    }

    /// The `lastmodified` value, as written.
    pub fn lastmodified(&self) -> &str {
        &self.meta.lastmodified
    }

    /// The protection of the data key, counting every master key of every group.
    pub fn protection(&self) -> Protection {
        let all = self.meta.groups.iter().flatten().map(MasterKey::protection);
        let (mut pq, mut cl) = (false, false);
        for p in all {
            pq |= p == KeyProtection::PostQuantum;
            cl |= p == KeyProtection::Classical;
        }
        match (pq, cl) {
            (true, false) => Protection::PostQuantum,
            (true, true) => Protection::Mixed,
            (false, true) => Protection::Classical,
            (false, false) => Protection::CloudKms,
        }
    }

    /// Opens what `identities` open: each group's share (the data key itself for one group),
    /// then the data key, combining shares if there are several groups. Every age entry an
    /// identity opens must hold the same secret as the group's other opened entries.
    pub fn data_key(&self, identities: &[Identity]) -> Result<DataKey, SopsError> {
        let ngroups = self.meta.groups.len();
        let mut shares: Vec<Option<Zeroizing<Vec<u8>>>> = Vec::with_capacity(ngroups);
        for (gi, group) in self.meta.groups.iter().enumerate() {
            let mut found: Option<Zeroizing<Vec<u8>>> = None;
            for (ai, key) in group.iter().filter(|k| k.kind == KeyKind::Age).enumerate() {
                let secret = match open_age(&key.enc, identities) {
                    Ok(Some(s)) => s,
                    Ok(None) => {
                        return Err(SopsError::Value(
                            "an age entry holds more than a data key or a Shamir share",
                        ));
                    }
                    Err(AgeError::NoMatch) => continue,
                    Err(source) => {
                        return Err(SopsError::AgeEntry {
                            group: gi + 1,
                            index: ai + 1,
                            source,
                        });
                    }
                };
                match &found {
                    Some(f) if !bool::from(f.ct_eq(&secret)) => {
                        return Err(SopsError::Inconsistent(gi + 1));
                    }
                    Some(_) => {}
                    None => found = Some(secret),
                }
            }
            shares.push(found);
        }
        let opened: Vec<Zeroizing<Vec<u8>>> = shares.iter().flatten().cloned().collect();
        let key: Zeroizing<[u8; DATA_KEY_LEN]> = if ngroups == 1 {
            let no_age = self
                .meta
                .groups
                .iter()
                .flatten()
                .all(|k| k.kind != KeyKind::Age);
            let k = opened.first().ok_or(if no_age {
                SopsError::NoAgeEntry {
                    group: 1,
                    groups: 1,
                }
            } else {
                SopsError::GroupLocked {
                    group: 1,
                    groups: 1,
                }
            })?;
            Zeroizing::new(
                k.as_slice()
                    .try_into()
                    .map_err(|_| SopsError::Value("the data key is not 32 bytes"))?,
            )
        } else {
            if opened.len() < self.meta.threshold {
                return Err(SopsError::BelowThreshold {
                    opened: opened.len(),
                    threshold: self.meta.threshold,
                    groups: ngroups,
                });
            }
            let k = shamir::combine(&opened)?;
            Zeroizing::new(
                k.as_slice()
                    .try_into()
                    .map_err(|_| SopsError::Value("the data key is not 32 bytes"))?,
            )
        };
        Ok(DataKey { key, shares })
    }

    /// Verifies the MAC under `key`: every value decrypts, and the SHA-512 of the values
    /// (as sops computes it) equals the MAC stored encrypted with `lastmodified`.
    pub fn verify_mac(&self, key: &DataKey) -> Result<(), SopsError> {
        let computed = self.compute_mac(&key.key)?;
        let aad = lastmodified_aad(&self.meta.lastmodified)?;
        let stored = Encrypted::parse(&self.meta.mac)
            .map_err(|_| SopsError::Metadata("has a malformed `mac`"))?
            .decrypt(&key.key, aad.as_bytes())
            .map_err(|_| SopsError::MacUndecryptable)?;
        if bool::from(stored.as_slice().ct_eq(computed.as_bytes())) {
            Ok(())
        } else {
            Err(SopsError::MacMismatch)
        }
    }

    /// The roots of the values: every document, without its `sops` block.
    fn value_entries(&self) -> Vec<&doc::Entry> {
        let mut out = Vec::new();
        for root in self.doc.roots.iter().flatten() {
            for e in self.doc.entries(*root).unwrap_or_default() {
                let meta = match self.ftype {
                    FileType::Dotenv => e.key.starts_with("sops_"),
                    _ => e.key == "sops",
                };
                if !meta {
                    out.push(e);
                }
            }
        }
        out
    }

    /// Walks every value as sops's tree walk does: `f` gets each scalar with its path and
    /// whether the rules say it is encrypted.
    fn walk(&self, f: &mut OnValue<'_>) -> Result<(), SopsError> {
        // Aliases are walked again where they are (as yaml.v3 expands them): bounded, so an
        // alias bomb is refused, not expanded.
        let mut budget: usize = 4 * self.doc.nodes.len() + 1024;
        let mut path: Vec<&str> = Vec::new();
        for e in self.value_entries() {
            path.push(&e.key);
            self.walk_node(e.value, &mut path, &mut budget, 0, f)?;
            path.pop();
        }
        Ok(())
    }

    fn walk_node<'s>(
        &'s self,
        id: NodeId,
        path: &mut Vec<&'s str>,
        budget: &mut usize,
        depth: usize,
        f: &mut OnValue<'_>,
    ) -> Result<(), SopsError> {
        *budget = budget
            .checked_sub(1)
            .ok_or(SopsError::Unsupported("aliases that expand too far"))?;
        if depth > doc::MAX_DEPTH {
            return Err(SopsError::Unsupported("values nested too deeply"));
        }
        match self.doc.node(id) {
            Some(Node::Map { entries, .. }) => {
                for e in entries {
                    path.push(&e.key);
                    self.walk_node(e.value, path, budget, depth + 1, f)?;
                    path.pop();
                }
            }
            Some(Node::Seq { items, .. }) => {
                for i in items {
                    self.walk_node(*i, path, budget, depth + 1, f)?;
                }
            }
            Some(Node::Alias(t)) => self.walk_node(*t, path, budget, depth + 1, f)?,
            Some(Node::Scalar(s)) => {
                let enc = if self.meta.rules.by_comment {
                    looks_encrypted(&s.text)
                } else {
                    self.meta.rules.encrypted(path)
                };
                f(s, path, enc)?;
            }
            None => return Err(SopsError::Value("a dangling node")),
        }
        Ok(())
    }

    fn compute_mac(&self, key: &[u8; DATA_KEY_LEN]) -> Result<String, SopsError> {
        let mut h = Sha512::new();
        if self.meta.rules.mac_only_encrypted {
            // sops starts such MACs with SHA-256("sops"), so they never equal the other kind.
            h.update(sha2::Sha256::digest(b"sops"));
        }
        self.walk(&mut |s, path, enc| {
            if s.value == doc::Value::Null {
                return Ok(());
            }
            if enc {
                if s.text.is_empty() && s.value == doc::Value::Str {
                    return Ok(());
                }
                let aad = aad(path);
                let text = std::str::from_utf8(&s.text)
                    .ok()
                    .filter(|_| s.value == doc::Value::Str)
                    .ok_or(SopsError::Value("a value that should be encrypted is not"))?;
                let e = Encrypted::parse(text)?;
                let plain = e
                    .decrypt(key, aad.as_bytes())
                    .map_err(|_| SopsError::ValueDecrypt { path: aad.clone() })?;
                h.update(value::mac_bytes(e.ty, &plain)?);
            } else if !self.meta.rules.mac_only_encrypted
                && let Some(b) = plain_mac_bytes(s)?
            {
                h.update(b);
            }
            Ok(())
        })?;
        Ok(hex_upper(&h.finalize()))
    }
}

/// What a walk calls for each value: the scalar, its key path, whether it is encrypted.
type OnValue<'f> = dyn FnMut(&doc::Scalar, &[&str], bool) -> Result<(), SopsError> + 'f;

fn aad(path: &[&str]) -> String {
    let mut s = path.join(":");
    s.push(':');
    s
}

fn hex_upper(b: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02X}");
    }
    s
}

/// A rewrite's instructions: the new age recipients of each key group.
#[derive(Clone, Debug)]
pub struct Targets {
    /// One list per key group, in the file's group order.
    pub groups: Vec<Vec<Recipient>>,
    /// What happens to PGP entries of the groups that get new age entries.
    pub pgp: PgpEntries,
}

impl SopsFile<'_> {
    /// Whether the age entries of every group are exactly `targets` (as recipient strings,
    /// in any order) and no PGP entry is left where `targets` removes them.
    pub fn has_shape(&self, targets: &Targets) -> bool {
        self.meta.groups.len() == targets.groups.len()
            && self
                .meta
                .groups
                .iter()
                .zip(&targets.groups)
                .all(|(g, t)| !self.group_changes(g, t, targets.pgp))
    }

    fn group_changes(&self, group: &[MasterKey], targets: &[Recipient], pgp: PgpEntries) -> bool {
        let mut have: Vec<&str> = group
            .iter()
            .filter(|k| k.kind == KeyKind::Age)
            .map(|k| k.id.as_str())
            .collect();
        let want_s: Vec<String> = targets.iter().map(ToString::to_string).collect();
        let mut want: Vec<&str> = want_s.iter().map(String::as_str).collect();
        have.sort_unstable();
        want.sort_unstable();
        want.dedup();
        have != want || (pgp == PgpEntries::Remove && group.iter().any(|k| k.kind == KeyKind::Pgp))
    }

    fn check_targets(&self, targets: &Targets) -> Result<(), SopsError> {
        let n = self.meta.groups.len();
        if targets.groups.len() != n {
            return Err(SopsError::Plan(format!(
                "the file has {n} key group(s), the new recipients are for {}",
                targets.groups.len()
            )));
        }
        for (i, (g, t)) in self.meta.groups.iter().zip(&targets.groups).enumerate() {
            if t.is_empty() && g.iter().any(|k| k.kind == KeyKind::Age) {
                return Err(SopsError::Plan(format!(
                    "no new age recipient for key group {}, which has age entries: pqwrap \
                     re-wraps age entries, it does not remove them",
                    i + 1
                )));
            }
        }
        Ok(())
    }

    /// Re-wraps: in every group whose age entries are not already exactly the targets, the age
    /// entries are replaced by one entry per target (the group's share, or the data key,
    /// wrapped to it), and PGP entries removed if asked. Nothing else changes.
    pub fn rewrap(&self, key: &DataKey, targets: &Targets) -> Result<Rewritten, SopsError> {
        self.check_targets(targets)?;
        let mut shares = Vec::new();
        let mut edits = emit::Edits::default();
        let mut entries = Vec::new();
        let mut groups = self.meta.groups.clone();
        for (gi, (group, t)) in self.meta.groups.iter().zip(&targets.groups).enumerate() {
            let share = match key.shares.get(gi).and_then(Option::as_ref) {
                Some(s) => s.clone(),
                None if !self.group_changes(group, t, targets.pgp) => {
                    shares.push(Zeroizing::new(Vec::new()));
                    continue;
                }
                None => {
                    return Err(SopsError::GroupLocked {
                        group: gi + 1,
                        groups: self.meta.groups.len(),
                    });
                }
            };
            if self.group_changes(group, t, targets.pgp) {
                let new = self.wrap_group(gi, &share, t, &mut entries)?;
                let keep_pgp = targets.pgp == PgpEntries::Keep;
                emit::replace_group(self, gi, &new, keep_pgp, &mut edits)?;
                if let Some(g) = groups.get_mut(gi) {
                    g.retain(|k| k.kind != KeyKind::Age && (keep_pgp || k.kind != KeyKind::Pgp));
                    g.extend(new.iter().map(|(r, enc)| MasterKey {
                        kind: KeyKind::Age,
                        id: r.clone(),
                        enc: enc.clone(),
                    }));
                }
            }
            shares.push(share);
        }
        let bytes = edits.apply(self.bytes)?;
        Ok(Rewritten {
            bytes,
            ftype: self.ftype,
            key: key.key.clone(),
            shares,
            entries,
            groups,
        })
    }

    fn wrap_group(
        &self,
        gi: usize,
        share: &[u8],
        targets: &[Recipient],
        entries: &mut Vec<NewEntry>,
    ) -> Result<Vec<(String, String)>, SopsError> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for r in targets {
            let name = r.to_string();
            if !seen.insert(name.clone()) {
                continue;
            }
            let (enc, file_key) = seal_age(share, r).map_err(SopsError::Wrap)?;
            out.push((name.clone(), enc.clone()));
            entries.push(NewEntry {
                group: gi,
                recipient: name,
                enc,
                file_key,
            });
        }
        Ok(out)
    }

    /// Rotates the data key, as `sops rotate` does: every value (and encrypted comment) is
    /// encrypted again under a fresh data key at the same key path, the MAC is recomputed
    /// with `lastmodified` set to `now` (RFC 3339), and every group's age entries wrap the new
    /// key (or its new share). Master keys that cannot be refreshed without their own keys
    /// (PGP unless removed, cloud KMS) make it fail: they would still wrap the old key.
    pub fn reencrypt(
        &self,
        old: &DataKey,
        targets: &Targets,
        now: &str,
    ) -> Result<Rewritten, SopsError> {
        self.check_targets(targets)?;
        if targets.groups.iter().any(Vec::is_empty) {
            return Err(SopsError::Plan(
                "re-encrypting needs an age recipient for every key group".into(),
            ));
        }
        for g in &self.meta.groups {
            for k in g {
                match k.kind {
                    KeyKind::Age => {}
                    KeyKind::Pgp if targets.pgp == PgpEntries::Remove => {}
                    KeyKind::Pgp => {
                        return Err(SopsError::Plan(
                            "re-encrypting would leave the PGP entries wrapping the old data \
                             key: remove them (--remove-pgp) or rotate with sops"
                                .into(),
                        ));
                    }
                    _ => {
                        return Err(SopsError::Plan(format!(
                            "re-encrypting would leave the {} entries wrapping the old data \
                             key: rotate this file with sops",
                            k.kind.as_str()
                        )));
                    }
                }
            }
        }
        self.verify_mac(old)?;
        let aad_now = lastmodified_aad(now)?;
        let mut new_key = Zeroizing::new([0u8; DATA_KEY_LEN]);
        getrandom::fill(&mut new_key[..]).map_err(|_| SopsError::Random)?;
        let ngroups = self.meta.groups.len();
        let shares: Vec<Zeroizing<Vec<u8>>> = if ngroups == 1 {
            vec![Zeroizing::new(new_key.to_vec())]
        } else {
            shamir::split(&new_key[..], ngroups, self.meta.threshold)?
        };
        let mut edits = emit::Edits::default();
        // Every encrypted value, again under the new key at its own path.
        let mut err = None;
        self.walk(&mut |s, path, enc| {
            if !enc || s.value != doc::Value::Str || !looks_encrypted(&s.text) {
                return Ok(());
            }
            let aad = aad(path);
            let text = std::str::from_utf8(&s.text).map_err(|_| SopsError::NotText)?;
            let e = Encrypted::parse(text)?;
            let plain = e
                .decrypt(&old.key, aad.as_bytes())
                .map_err(|_| SopsError::ValueDecrypt { path: aad.clone() })?;
            let sealed = Encrypted::seal(&new_key, aad.as_bytes(), &plain, e.ty)?;
            if let Err(e) = emit::replace_value(self, s, &sealed, &mut edits) {
                err = Some(e);
            }
            Ok(())
        })?;
        if let Some(e) = err {
            return Err(e);
        }
        self.reencrypt_comments(&old.key, &new_key, &mut edits)?;
        // The new MAC, over the same plaintexts.
        let mac = self.compute_mac(&old.key)?;
        let sealed_mac =
            Encrypted::seal(&new_key, aad_now.as_bytes(), mac.as_bytes(), ValueType::Str)?;
        for span in &self.meta.mac_spans {
            emit::replace_scalar_text(self, span.clone(), &sealed_mac, &mut edits)?;
        }
        for span in &self.meta.lastmodified_spans {
            emit::replace_scalar_text(self, span.clone(), now, &mut edits)?;
        }
        let mut entries = Vec::new();
        let mut groups = Vec::new();
        for (gi, t) in targets.groups.iter().enumerate() {
            let share = shares.get(gi).ok_or(SopsError::Shamir("split"))?;
            let new = self.wrap_group(gi, share, t, &mut entries)?;
            emit::replace_group(self, gi, &new, false, &mut edits)?;
            groups.push(
                new.iter()
                    .map(|(r, enc)| MasterKey {
                        kind: KeyKind::Age,
                        id: r.clone(),
                        enc: enc.clone(),
                    })
                    .collect(),
            );
        }
        let bytes = edits.apply(self.bytes)?;
        Ok(Rewritten {
            bytes,
            ftype: self.ftype,
            key: new_key,
            shares,
            entries,
            groups,
        })
    }

    /// Encrypted comments (`#ENC[...,type:comment]`) again under the new key. Their key path
    /// is that of the mapping or list they sit in, which the parse does not keep: each is
    /// tried with the paths of the values around it.
    fn reencrypt_comments(
        &self,
        old: &[u8; DATA_KEY_LEN],
        new: &[u8; DATA_KEY_LEN],
        edits: &mut emit::Edits,
    ) -> Result<(), SopsError> {
        let comments = emit::encrypted_comments(self);
        if comments.is_empty() {
            return Ok(());
        }
        let mut paths: Vec<(usize, String)> = Vec::new();
        self.walk(&mut |s, path, _| {
            for n in 0..=path.len() {
                paths.push((s.span.start, aad(path.get(..n).unwrap_or_default())));
            }
            Ok(())
        })?;
        for span in comments {
            let text = std::str::from_utf8(self.bytes.get(span.clone()).unwrap_or_default())
                .map_err(|_| SopsError::NotText)?;
            let e = Encrypted::parse(text)?;
            // The values nearest after the comment first, then the rest.
            let top = ":".to_string();
            let near = paths.iter().filter(|(p, _)| *p >= span.end).take(64);
            let mut found = None;
            for a in near
                .map(|(_, a)| a)
                .chain(std::iter::once(&top))
                .chain(paths.iter().map(|(_, a)| a))
            {
                if let Ok(p) = e.decrypt(old, a.as_bytes()) {
                    found = Some((p, a.clone()));
                    break;
                }
            }
            let (plain, a) = found.ok_or(SopsError::Unsupported(
                "an encrypted comment that does not decrypt at any key path around it",
            ))?;
            let sealed = Encrypted::seal(new, a.as_bytes(), &plain, e.ty)?;
            edits.replace(span, sealed.into_bytes());
        }
        Ok(())
    }
}

impl Rewritten {
    /// Checks `bytes` (the new file as written, or as read back): it parses as a SOPS file of
    /// the same type; its groups hold exactly the master keys planned; every new age entry is
    /// the one built and carries the group's share (its header MAC and payload authenticate
    /// under the file key used); the data key recombines; and the MAC verifies under it.
    pub fn verify(&self, bytes: &[u8]) -> Result<(), SopsError> {
        let f = SopsFile::parse_as(bytes, self.ftype)?;
        if f.meta.groups.len() != self.groups.len() {
            return Err(SopsError::Verify("the key groups changed"));
        }
        for (have, want) in f.meta.groups.iter().zip(&self.groups) {
            let mut h: Vec<(KeyKind, &str, &str)> = have
                .iter()
                .map(|k| (k.kind, k.id.as_str(), k.enc.as_str()))
                .collect();
            let mut w: Vec<(KeyKind, &str, &str)> = want
                .iter()
                .map(|k| (k.kind, k.id.as_str(), k.enc.as_str()))
                .collect();
            h.sort_unstable_by_key(|(k, i, e)| (k.as_str(), *i, *e));
            w.sort_unstable_by_key(|(k, i, e)| (k.as_str(), *i, *e));
            if h != w {
                return Err(SopsError::Verify(
                    "the master keys are not the ones planned",
                ));
            }
        }
        for e in &self.entries {
            let dec = age::Decryptor::new(e.enc.as_bytes())
                .map_err(|_| SopsError::Verify("a new age entry does not parse"))?;
            let r = dec
                .decrypt_with_file_key(&e.file_key)
                .map_err(|_| SopsError::Verify("a new age entry does not carry its file key"))?;
            let got = read_bounded(r)
                .ok()
                .flatten()
                .ok_or(SopsError::Verify("a new age entry"))?;
            let want = self
                .shares
                .get(e.group)
                .ok_or(SopsError::Verify("a new age entry"))?;
            if !bool::from(got.ct_eq(want)) {
                return Err(SopsError::Verify("a new age entry wraps another key"));
            }
            let listed = f
                .meta
                .groups
                .get(e.group)
                .is_some_and(|g| g.iter().any(|k| k.id == e.recipient && k.enc == e.enc));
            if !listed {
                return Err(SopsError::Verify("a new age entry is missing"));
            }
        }
        let key = DataKey {
            key: self.key.clone(),
            shares: Vec::new(),
        };
        f.verify_mac(&key)
            .map_err(|_| SopsError::Verify("the MAC does not verify under the data key"))
    }

    /// The age recipients written, per group (for reports).
    pub fn new_recipients(&self) -> Vec<(usize, &str)> {
        self.entries
            .iter()
            .map(|e| (e.group, e.recipient.as_str()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lastmodified_as_associated_data() {
        assert_eq!(
            lastmodified_aad("2024-01-02T03:04:05Z").unwrap(),
            "2024-01-02T03:04:05Z"
        );
        assert_eq!(
            lastmodified_aad("2024-01-02T03:04:05.123456Z").unwrap(),
            "2024-01-02T03:04:05Z"
        );
        assert_eq!(
            lastmodified_aad("2024-01-02T03:04:05+02:00").unwrap(),
            "2024-01-02T03:04:05+02:00"
        );
        assert!(lastmodified_aad("yesterday").is_err());
    }

    #[test]
    fn detection_by_content() {
        assert_eq!(
            detect(b"a: 1\nsops:\n    lastmodified: x\n"),
            Some(FileType::Yaml)
        );
        assert_eq!(
            detect(b"A=1\nsops_mac=ENC[AES256_GCM,x]\n"),
            Some(FileType::Dotenv)
        );
        assert_eq!(
            detect(b"A=ENC[AES256_GCM,x]\nsops_age__list_0__map_enc=-----"),
            Some(FileType::Dotenv)
        );
        assert_eq!(detect(b"sops_x=1\n"), None);
        assert_eq!(
            detect(b"[a]\nb = 1\n[sops]\nmac = x\n"),
            Some(FileType::Ini)
        );
        assert_eq!(
            detect(b"{\"data\": \"x\", \"sops\": {\"lastmodified\": \"y\"}}"),
            Some(FileType::Binary)
        );
        assert_eq!(
            detect(b"{\"a\": \"x\", \"sops\": {\"lastmodified\": \"y\"}}"),
            Some(FileType::Json)
        );
        assert_eq!(detect(b"provider: sops\n"), None);
        assert_eq!(detect(b""), None);
    }
}
