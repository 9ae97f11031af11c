//! The counts of a run, by outcome and reason.

use std::collections::BTreeMap;

use super::{Outcome, Reason, Record};

/// Counts by outcome and reason, and the bytes re-wrapped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// (outcome, reason) -> number of entries.
    pub counts: BTreeMap<(Outcome, Option<Reason>), u64>,
    /// Bytes of the files re-wrapped (or that would be).
    pub bytes_rewrapped: u64,
    /// Bytes that crossed the network (object stores).
    pub bytes_transferred: u64,
    /// Replaced versions that remain readable (versioned buckets, without purging).
    pub versions_kept: u64,
    /// Files re-wrapped (or that would be) that still carry a classical wrap (a SOPS file's
    /// PGP entries kept): they end mixed.
    pub still_classical: u64,
}

/// Wraps a file can still carry after a re-wrap that a quantum computer breaks.
const CLASSICAL_WRAPS: [&str; 4] = ["pgp", "age/X25519", "age/ssh", "age/plugin"];

impl Summary {
    /// Counts one record.
    pub fn add(&mut self, rec: &Record<'_>) {
        *self.counts.entry((rec.outcome, rec.reason)).or_default() += 1;
        if matches!(rec.outcome, Outcome::Rewrapped | Outcome::WouldRewrap) {
            self.bytes_rewrapped += rec.bytes.unwrap_or(0);
            if rec
                .new_stanzas
                .iter()
                .any(|s| CLASSICAL_WRAPS.contains(&s.as_str()))
            {
                self.still_classical += 1;
            }
        }
        self.bytes_transferred += rec.transferred.unwrap_or(0);
        if rec.old_version_kept.is_some() && rec.outcome == Outcome::Rewrapped {
            self.versions_kept += 1;
        }
    }

    /// Entries with this outcome, whatever the reason.
    pub fn count(&self, outcome: Outcome) -> u64 {
        self.counts
            .iter()
            .filter(|((o, _), _)| *o == outcome)
            .map(|(_, n)| n)
            .sum()
    }

    /// Entries with this outcome and reason.
    pub fn count_of(&self, outcome: Outcome, reason: Reason) -> u64 {
        self.counts
            .get(&(outcome, Some(reason)))
            .copied()
            .unwrap_or(0)
    }

    /// True when every candidate ended re-wrapped (or would be) or verified done.
    pub fn all_ok(&self) -> bool {
        self.count(Outcome::Failed) == 0
    }

    /// True when candidates failed for want of an identity and none was opened by any: the
    /// identities given are probably not the ones the files are wrapped to.
    pub fn no_identity_opened_any(&self) -> bool {
        let refused = self.count_of(Outcome::Failed, Reason::NoIdentity)
            + self.count_of(Outcome::Failed, Reason::Unverified);
        let opened = self.count(Outcome::Rewrapped)
            + self.count(Outcome::WouldRewrap)
            + self.count(Outcome::AlreadyDone);
        refused > 0 && opened == 0
    }

    /// `(reason, count)` for one outcome, in reason order.
    pub fn by_reason(&self, outcome: Outcome) -> Vec<(Option<Reason>, u64)> {
        self.counts
            .iter()
            .filter(|((o, _), _)| *o == outcome)
            .map(|((_, r), n)| (*r, *n))
            .collect()
    }
}
