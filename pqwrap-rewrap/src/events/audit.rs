//! The audit log as [`Events`]: one hash-chained line per file committed.

use std::sync::Mutex;

use pqwrap_core::audit::AuditLog;

use super::{Committed, Durable, Events};
use crate::error::BoxError;

/// An [`Events`] appending one line per committed file to a hash-chained audit log
/// (`pqwrap audit verify` checks it), with one sync per batch. A `file.rewrap` line is
/// appended only once the file's replacement is durable; a file whose new contents are in
/// place but whose directory sync failed gets a `file.rewrap.unsynced` line instead (it may
/// or may not survive a power cut, and a later run, finding it done, would not log it).
pub struct AuditTrail {
    log: Mutex<AuditLog>,
}

impl AuditTrail {
    /// Appends to `log`.
    pub fn new(log: AuditLog) -> Self {
        AuditTrail {
            log: Mutex::new(log),
        }
    }
}

/// The audit record of a committed file.
fn record(c: &Committed<'_>) -> serde_json::Value {
    let time = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let event = match c.durable {
        Durable::Confirmed => "file.rewrap",
        Durable::Unconfirmed => "file.rewrap.unsynced",
    };
    serde_json::json!({
        "event": event,
        "path": c.name.to_string_lossy(),
        "format": c.info.format,
        "old_header_sha256": c.info.old_header_sha256,
        "new_header_sha256": c.new_header_sha256.or(c.info.new_header_sha256.as_deref()),
        "old_stanzas": c.info.old_stanzas,
        "new_stanzas": c.info.new_stanzas,
        "time": time,
    })
}

impl Events for AuditTrail {
    fn committed(&self, files: &[Committed<'_>]) -> Result<(), BoxError> {
        if files.is_empty() {
            return Ok(());
        }
        let records: Vec<_> = files.iter().map(record).collect();
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.append_all(&records).map(|_| ()).map_err(BoxError::from)
    }
}
