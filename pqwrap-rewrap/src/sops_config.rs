//! `--sops-config`: a `.sops.yaml` whose creation rules decide each SOPS file's new age
//! recipients, matched as `sops updatekeys` matches them (the file's absolute path, relative
//! to the configuration file's directory when it lies below it).

use std::path::{Path, PathBuf};

use pqwrap_core::keys::Recipient;
use pqwrap_core::sops::SopsError;
use pqwrap_core::sops::config::CreationRules;

use crate::job::RecipientsFor;

/// Why a `.sops.yaml` could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SopsConfigError {
    /// It could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It does not parse as creation rules.
    #[error("{}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: SopsError,
    },
}

/// The creation rules of a `.sops.yaml`, as a per-file source of recipients.
#[derive(Debug)]
pub struct SopsConfig {
    rules: CreationRules,
    dir: PathBuf,
    path: PathBuf,
}

impl SopsConfig {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<SopsConfig, SopsConfigError> {
        let read = |e| SopsConfigError::Read {
            path: path.to_path_buf(),
            source: e,
        };
        let text = std::fs::read(path).map_err(read)?;
        let rules = CreationRules::parse(&text).map_err(|e| SopsConfigError::Parse {
            path: path.to_path_buf(),
            source: e,
        })?;
        let abs = std::path::absolute(path).map_err(read)?;
        let dir = abs.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(SopsConfig {
            rules,
            dir,
            path: path.to_path_buf(),
        })
    }

    /// The path a rule's `path_regex` is matched against, for a file named `name`.
    fn rule_path(&self, name: &Path) -> String {
        let abs = std::path::absolute(name).unwrap_or_else(|_| name.to_path_buf());
        let rel = abs.strip_prefix(&self.dir).unwrap_or(&abs);
        rel.to_string_lossy().into_owned()
    }
}

impl RecipientsFor for SopsConfig {
    fn key_groups(&self, name: &Path) -> Option<Result<Vec<Vec<Recipient>>, String>> {
        let rel = self.rule_path(name);
        let Some(groups) = self.rules.recipients_for(&rel) else {
            return Some(Err(format!(
                "no creation rule of {} matches {rel}",
                self.path.display()
            )));
        };
        let parsed = groups
            .iter()
            .map(|g| {
                g.iter()
                    .map(|r| {
                        r.parse::<Recipient>().map_err(|_| {
                            format!(
                                "{}: {r:.40} is not an age recipient pqwrap can wrap to \
                                 (X25519 or age1pq1)",
                                self.path.display()
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>();
        Some(parsed)
    }
}
