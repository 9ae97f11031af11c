//! Text for people: the summary of a re-wrap and the inventory of a scan.

use indicatif::HumanBytes;
use pqwrap_rewrap::events::{Outcome, Reason, Summary};
use pqwrap_rewrap::format::Protection;
use pqwrap_rewrap::inventory::Inventory;

fn by_reason(summary: &Summary, outcome: Outcome) -> String {
    let parts: Vec<String> = summary
        .by_reason(outcome)
        .into_iter()
        .map(|(r, n)| format!("{} {n}", r.map_or("other", Reason::describe)))
        .collect();
    parts.join(", ")
}

/// The summary of a re-wrap run; `report_error` is what went wrong writing the report.
pub fn summary(s: &Summary, dry_run: bool, report_error: Option<&str>) -> String {
    let mut out = String::new();
    if s.no_identity_opened_any() {
        out.push_str(
            "none of the given identities opened any file: check -i (the old identity that \
             opens the files today, and the new one to verify files already re-wrapped)\n",
        );
    }
    let (done_word, n) = if dry_run {
        ("would re-wrap", s.count(Outcome::WouldRewrap))
    } else {
        ("re-wrapped", s.count(Outcome::Rewrapped))
    };
    out.push_str(&format!(
        "{done_word:<14}{n} ({})\n",
        HumanBytes(s.bytes_rewrapped)
    ));
    out.push_str(&format!(
        "{:<14}{}\n",
        "already done",
        s.count(Outcome::AlreadyDone)
    ));
    for (word, outcome) in [("skipped", Outcome::Skipped), ("failed", Outcome::Failed)] {
        let k = s.count(outcome);
        if k == 0 {
            out.push_str(&format!("{word:<14}0\n"));
        } else {
            out.push_str(&format!("{word:<14}{k} ({})\n", by_reason(s, outcome)));
        }
    }
    if s.still_classical > 0 {
        out.push_str(&format!(
            "{} file(s) still carry classical wraps besides the new ones (a SOPS file's PGP \
             entries): they stay mixed; --remove-pgp drops PGP entries\n",
            s.still_classical
        ));
    }
    let unverified = s.count_of(Outcome::Failed, Reason::Unverified);
    if unverified > 0 {
        out.push_str(&format!(
            "{unverified} file(s) that no given identity opens look re-wrapped already: they \
             are not counted as done; add the new identity (-i) to verify them\n"
        ));
    }
    if n == 0 && s.count(Outcome::Failed) == 0 {
        out.push_str("nothing to change\n");
    }
    let cleaned = s.count(Outcome::Cleaned);
    if cleaned > 0 {
        let word = if dry_run {
            "leftover temporaries (would remove)"
        } else {
            "leftover temporaries removed"
        };
        out.push_str(&format!("{word}: {cleaned}\n"));
    }
    if s.versions_kept > 0 {
        out.push_str(&format!(
            "{} replaced version(s) remain in the bucket and still hold the old wrapping: \
             delete them with --purge-old-versions (`pqwrap scan --versions` counts them)\n",
            s.versions_kept
        ));
    }
    if s.bytes_transferred > 0 {
        out.push_str(&format!(
            "transferred   {}\n",
            HumanBytes(s.bytes_transferred)
        ));
    }
    if let Some(e) = report_error {
        out.push_str(&format!("report: {e}\n"));
    }
    out
}

/// The inventory table of a scan.
pub fn inventory(inv: &Inventory) -> String {
    let mut s = format!(
        "{:<16} {:<18} {:>10} {:>12}\n",
        "FORMAT", "PROTECTION", "FILES", "BYTES"
    );
    for ((format, protection), t) in &inv.rows {
        s.push_str(&format!(
            "{:<16} {:<18} {:>10} {:>12}\n",
            format.unwrap_or("-"),
            protection.describe(),
            t.files,
            HumanBytes(t.bytes).to_string()
        ));
    }
    let total = inv.total();
    s.push_str(&format!(
        "{:<16} {:<18} {:>10} {:>12}\n",
        "total",
        "",
        total.files,
        HumanBytes(total.bytes).to_string()
    ));
    let by = inv.by_protection();
    let encrypted: u64 = by
        .iter()
        .filter(|(p, _)| **p != Protection::NotEncrypted)
        .map(|(_, t)| t.files)
        .sum();
    let pq = by.get(&Protection::PostQuantum).map_or(0, |t| t.files);
    let todo = inv.to_migrate();
    s.push_str(&format!(
        "\nencrypted files: {encrypted}; post-quantum only: {pq}; to re-wrap (classical or \
         mixed): {} ({})\n",
        todo.files,
        HumanBytes(todo.bytes)
    ));
    let unsupported: u64 = inv
        .rows
        .iter()
        .filter(|((f, _), _)| f.is_some_and(|f| f.starts_with("openpgp")))
        .map(|(_, t)| t.files)
        .sum();
    if unsupported > 0 {
        s.push_str(&format!(
            "OpenPGP (not supported by pqwrap): {unsupported} file(s), migrate them with \
             another tool\n"
        ));
    }
    if !inv.skipped.is_empty() {
        let parts: Vec<String> = inv
            .skipped
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        s.push_str(&format!("not scanned: {}\n", parts.join(", ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use pqwrap_rewrap::events::Record;
    use std::path::Path;

    #[test]
    fn the_summary_counts_by_reason_and_says_when_no_identity_opened_anything() {
        let mut s = Summary::default();
        let mut rec = Record::new(Path::new("a"), Outcome::Rewrapped);
        rec.bytes = Some(10);
        s.add(&rec);
        s.add(&Record::new(Path::new("l"), Outcome::Skipped).because(Reason::Symlink, ""));
        s.add(&Record::new(Path::new("h"), Outcome::Failed).because(Reason::HardLinked, "x"));
        let text = summary(&s, false, None);
        assert!(text.contains("failed        1 (hard-linked 1)"), "{text}");
        assert!(text.contains("skipped       1 (symlink 1)"), "{text}");
        assert!(!text.contains("none of the given identities"), "{text}");

        let mut s = Summary::default();
        s.add(&Record::new(Path::new("u"), Outcome::Failed).because(Reason::Unverified, "x"));
        s.add(&Record::new(Path::new("n"), Outcome::Failed).because(Reason::NoIdentity, "x"));
        let text = summary(&s, false, None);
        assert!(
            text.starts_with("none of the given identities opened any file"),
            "{text}"
        );
        assert!(text.contains("not counted as done"), "{text}");
    }
}
