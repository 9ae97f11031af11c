//! The keys and choices of a re-wrap job, shared by every format.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use pqwrap_core::keys::{Identity, Recipient};
pub use pqwrap_core::sops::PgpEntries;

use crate::error::JobError;

/// What a run does to each file's key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Wrap the existing file key to the new recipients; the payload is not touched.
    #[default]
    Rewrap,
    /// Decrypt and encrypt again under a fresh file key (for data whose old ciphertext may
    /// have leaked: re-wrapping keeps the file key that an old copy's wrap exposes).
    Reencrypt,
}

/// How much of the payload is authenticated before a commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PayloadCheck {
    /// The first chunk: proves the file key without reading the whole file.
    #[default]
    FirstChunk,
    /// Every chunk.
    AllChunks,
}

/// Whether classical (X25519) recipients may be among the new ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Classical {
    /// Refused: files wrapped to them stay exposed to a future quantum computer.
    #[default]
    Refuse,
    /// Allowed (e.g. during a transition where some readers lack post-quantum support).
    Allow,
}

/// The choices of a job, besides its keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobOptions {
    /// Re-wrap or re-encrypt.
    pub mode: Mode,
    /// How much payload to authenticate before committing.
    pub payload_check: PayloadCheck,
    /// Whether classical recipients are allowed.
    pub classical: Classical,
    /// SOPS files: whether PGP entries are kept in the key groups that get new age entries.
    pub pgp: PgpEntries,
}

/// New recipients decided file by file, one list per key group (SOPS creation rules): the
/// hook through which a `.sops.yaml` decides each SOPS file's recipients.
pub trait RecipientsFor: Send + Sync {
    /// The new recipients of each key group of the file the store names `name`: `None` when
    /// this source says nothing about such files, `Err` (for the report) when it should but
    /// cannot (no rule matches, a recipient does not parse).
    fn key_groups(&self, name: &Path) -> Option<Result<Vec<Vec<Recipient>>, String>>;
}

/// The keys of a job: the identities that open the files today (and, optionally, the new
/// ones, to verify files already done), and the recipients to wrap to.
///
/// ```
/// use pqwrap_core::keys::Identity;
/// use pqwrap_rewrap::{Job, JobOptions};
///
/// let old = Identity::generate_x25519()?;
/// let new = Identity::generate_hybrid()?;
/// let job = Job::new(vec![old], vec![new.to_recipient()], JobOptions::default())?;
/// assert_eq!(job.recipients().len(), 1);
/// // A classical target needs `Classical::Allow`.
/// let classical = Identity::generate_x25519()?.to_recipient();
/// assert!(Job::new(vec![], vec![classical], JobOptions::default()).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Job {
    identities: Vec<Identity>,
    target_identities: Vec<Identity>,
    recipients: Vec<Recipient>,
    target_types: BTreeMap<&'static str, usize>,
    options: JobOptions,
    per_file: Option<Arc<dyn RecipientsFor>>,
}

/// The stanza type age writes for a recipient.
pub(crate) fn stanza_type(r: &Recipient) -> &'static str {
    match r {
        Recipient::Hybrid(_) => "mlkem768x25519",
        Recipient::X25519(_) => "X25519",
    }
}

impl Job {
    /// A job wrapping to `recipients` (duplicates removed) the files that one of
    /// `identities` opens.
    pub fn new(
        identities: Vec<Identity>,
        recipients: Vec<Recipient>,
        options: JobOptions,
    ) -> Result<Job, JobError> {
        Self::build(identities, recipients, None, options)
    }

    /// A job whose SOPS files get the recipients `per_file` gives them; other files (and
    /// SOPS files it says nothing about) get `recipients`, which may then be empty: such
    /// files fail with a message saying that they have no recipients.
    pub fn with_recipients_for(
        identities: Vec<Identity>,
        recipients: Vec<Recipient>,
        per_file: Arc<dyn RecipientsFor>,
        options: JobOptions,
    ) -> Result<Job, JobError> {
        Self::build(identities, recipients, Some(per_file), options)
    }

    fn build(
        identities: Vec<Identity>,
        recipients: Vec<Recipient>,
        per_file: Option<Arc<dyn RecipientsFor>>,
        options: JobOptions,
    ) -> Result<Job, JobError> {
        let mut seen = std::collections::HashSet::new();
        let recipients: Vec<Recipient> = recipients
            .into_iter()
            .filter(|r| seen.insert(r.to_string()))
            .collect();
        if recipients.is_empty() && per_file.is_none() {
            return Err(JobError::NoRecipients);
        }
        if options.classical == Classical::Refuse
            && let Some(c) = recipients.iter().find(|r| !r.is_post_quantum())
        {
            return Err(JobError::Classical(c.to_string()));
        }
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
        Ok(Job {
            identities,
            target_identities,
            recipients,
            target_types,
            options,
            per_file,
        })
    }

    /// The per-file recipients of SOPS files, if the job has a source of them.
    pub fn recipients_for(&self, name: &Path) -> Option<Result<Vec<Vec<Recipient>>, String>> {
        self.per_file.as_ref().and_then(|p| p.key_groups(name))
    }

    /// Whether the job has a per-file source of recipients.
    pub fn has_recipients_for(&self) -> bool {
        self.per_file.is_some()
    }

    /// Every identity given.
    pub fn identities(&self) -> &[Identity] {
        &self.identities
    }

    /// The identities among [`Job::identities`] whose recipient is a target: a file they open
    /// and whose stanzas match the targets' is verifiably done.
    pub fn target_identities(&self) -> &[Identity] {
        &self.target_identities
    }

    /// The recipients to wrap to.
    pub fn recipients(&self) -> &[Recipient] {
        &self.recipients
    }

    /// The choices.
    pub fn options(&self) -> JobOptions {
        self.options
    }

    /// The stanza types the targets produce, for reports.
    pub fn new_stanza_types(&self) -> Vec<String> {
        self.recipients
            .iter()
            .map(|r| stanza_type(r).to_string())
            .collect()
    }

    /// Whether a multiset of stanza types is what the targets produce.
    pub(crate) fn shape_matches<'t>(&self, types: impl IntoIterator<Item = &'t str>) -> bool {
        let mut got: BTreeMap<&str, usize> = BTreeMap::new();
        for t in types {
            *got.entry(t).or_default() += 1;
        }
        got.len() == self.target_types.len()
            && self.target_types.iter().all(|(t, n)| got.get(t) == Some(n))
    }
}
