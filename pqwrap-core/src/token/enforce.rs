//! Enforcement: "is this request allowed by this verified token?"
//!
//! Default deny: a request is allowed only if a grant covers it. Paths must be absolute; they
//! are lexically normalised (`.` and empty components dropped, `..` removes the previous
//! component and cannot go above `/`) and then compared on component boundaries, so
//! `/a/Contracts2` is not under `/a/Contracts` and `/a/Contracts/../../etc` is `/etc`.
//! Lexical checks cannot see symlinks: an enforcement point must open the path it checked
//! without following links it did not check (e.g. `openat2` with `RESOLVE_BENEATH`).

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::manifest::{self, Capabilities, ManifestError};
use super::verify::VerifiedToken;

/// A denial, with the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied(pub String);

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "denied: {}", self.0)
    }
}

impl std::error::Error for Denied {}

fn deny<T>(msg: impl Into<String>) -> Result<T, Denied> {
    Err(Denied(msg.into()))
}

/// A quantum job an agent wants to submit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuantumJob {
    /// Target backend.
    pub backend: String,
    /// Algorithm it runs.
    pub algorithm: String,
    /// Qubits used.
    pub qubits: u64,
    /// Shots requested.
    pub shots: u64,
    /// Maximum runtime asked for.
    pub runtime: Duration,
}

impl QuantumJob {
    /// Parses `{"backend": "…", "algorithm": "…", "qubits": N, "shots": N, "runtime": "60s"}`
    /// (unknown fields are errors).
    pub fn from_json(text: &str) -> Result<QuantumJob, ManifestError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            backend: String,
            algorithm: String,
            qubits: u64,
            shots: u64,
            runtime: String,
        }
        if text.len() > manifest::MAX_MANIFEST_LEN {
            return Err(ManifestError("job: too long".into()));
        }
        let de = &mut serde_json::Deserializer::from_str(text);
        let r: Raw = serde_path_to_error::deserialize(de)
            .map_err(|e| ManifestError(format!("job.{}: {}", e.path(), e.inner())))?;
        Ok(QuantumJob {
            runtime: manifest::parse_duration("job.runtime", &r.runtime)?,
            backend: r.backend,
            algorithm: r.algorithm,
            qubits: r.qubits,
            shots: r.shots,
        })
    }
}

/// A request to check against a token.
#[derive(Clone, Debug)]
pub enum Request<'a> {
    /// Read a file or list a directory.
    Read(&'a str),
    /// Create, modify or delete a file.
    Write(&'a str),
    /// Open a connection.
    Connect {
        /// Host name or address.
        host: &'a str,
        /// Port.
        port: u16,
    },
    /// Run a command.
    Exec {
        /// Absolute path of the executable.
        command: &'a str,
        /// Whether an interactive session (a terminal) is asked for.
        interactive: bool,
    },
    /// Use the clipboard.
    Clipboard,
    /// Submit a quantum job, given how many jobs were already submitted under this token.
    Submit {
        /// The job.
        job: &'a QuantumJob,
        /// Jobs already submitted under this token (the enforcement point keeps the count).
        already_submitted: u64,
    },
}

/// Lexically normalises an absolute path; `None` for relative paths or paths containing NUL.
pub fn normalize(path: &str) -> Option<String> {
    if !path.starts_with('/') || path.contains('\0') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = String::with_capacity(path.len());
    for p in &parts {
        out.push('/');
        out.push_str(p);
    }
    if out.is_empty() {
        out.push('/');
    }
    Some(out)
}

/// Whether normalised `path` is `root` or lies below it, on component boundaries.
pub fn is_within(path: &str, root: &str) -> bool {
    if root == "/" {
        return path.starts_with('/');
    }
    path == root
        || (path.len() > root.len()
            && path.starts_with(root)
            && path.as_bytes().get(root.len()) == Some(&b'/'))
}

impl VerifiedToken {
    /// Checks `req` against the token's capabilities; `Ok(())` means allowed, otherwise the
    /// reason.
    pub fn check(&self, req: &Request<'_>) -> Result<(), Denied> {
        self.claims().capabilities.check(req)
    }
}

impl Capabilities {
    /// Whether these capabilities allow `req` (default deny). Enforcement points normally
    /// call this through a [`VerifiedToken`]; it is public so that policies can be tested
    /// and compared without signing.
    pub fn check(&self, req: &Request<'_>) -> Result<(), Denied> {
        let caps = self;
        match req {
            Request::Read(p) | Request::Write(p) => {
                let write = matches!(req, Request::Write(_));
                let what = if write { "write" } else { "read" };
                let Some(n) = normalize(p) else {
                    return deny(format!("{p:?} is not an absolute path"));
                };
                let mut under_any = false;
                for g in &caps.file_access {
                    if is_within(&n, &g.path) {
                        under_any = true;
                        if (write && g.mode.can_write()) || (!write && g.mode.can_read()) {
                            return Ok(());
                        }
                    }
                }
                if under_any {
                    deny(format!(
                        "{what} access to {n} is not granted (mode does not allow it)"
                    ))
                } else {
                    deny(format!("{n} is not under any granted path"))
                }
            }
            Request::Connect { host, port } => {
                let h = host.to_ascii_lowercase();
                if caps.network.iter().any(|g| g.host == h && g.port == *port) {
                    Ok(())
                } else {
                    deny(format!("connection to {h}:{port} is not granted"))
                }
            }
            Request::Exec {
                command,
                interactive,
            } => {
                let Some(shell) = &caps.shell else {
                    return deny("shell access is not granted");
                };
                let Some(n) = normalize(command) else {
                    return deny(format!("command {command:?} is not an absolute path"));
                };
                if *interactive && !shell.interactive {
                    return deny("interactive shell use is not granted");
                }
                if shell.allowed_commands.contains(&n) {
                    Ok(())
                } else {
                    deny(format!("command {n} is not in allowedCommands"))
                }
            }
            Request::Clipboard => {
                if caps.clipboard {
                    Ok(())
                } else {
                    deny("clipboard access is not granted")
                }
            }
            Request::Submit {
                job,
                already_submitted,
            } => {
                let Some(q) = &caps.quantum else {
                    return deny("quantum job submission is not granted");
                };
                if !q.backends.contains(&job.backend) {
                    return deny(format!("backend {:?} is not granted", job.backend));
                }
                if !q.algorithms.contains(&job.algorithm) {
                    return deny(format!("algorithm {:?} is not granted", job.algorithm));
                }
                if job.qubits > q.max_qubits {
                    return deny(format!(
                        "{} qubits exceeds maxQubits {}",
                        job.qubits, q.max_qubits
                    ));
                }
                if job.shots > q.max_shots {
                    return deny(format!(
                        "{} shots exceeds maxShots {}",
                        job.shots, q.max_shots
                    ));
                }
                if job.runtime.as_secs() > q.max_runtime_secs
                    || (job.runtime.as_secs() == q.max_runtime_secs
                        && job.runtime.subsec_nanos() > 0)
                {
                    return deny(format!(
                        "runtime {}s exceeds maxRuntime {}s",
                        job.runtime.as_secs_f64(),
                        q.max_runtime_secs
                    ));
                }
                if *already_submitted >= q.max_jobs {
                    return deny(format!(
                        "job quota used up ({already_submitted} of maxJobs {})",
                        q.max_jobs
                    ));
                }
                Ok(())
            }
        }
    }
}

impl VerifiedToken {
    /// [`VerifiedToken::check`], after checking that the token is still live at `now`.
    pub fn check_at(&self, req: &Request<'_>, now: u64) -> Result<(), Denied> {
        if !self.is_live_at(now) {
            return deny("token is expired or not yet valid");
        }
        self.check(req)
    }

    /// May the agent read `path`?
    pub fn may_read(&self, path: &str) -> Result<(), Denied> {
        self.check(&Request::Read(path))
    }

    /// May the agent write `path`?
    pub fn may_write(&self, path: &str) -> Result<(), Denied> {
        self.check(&Request::Write(path))
    }

    /// May the agent connect to `host:port`?
    pub fn may_connect(&self, host: &str, port: u16) -> Result<(), Denied> {
        self.check(&Request::Connect { host, port })
    }

    /// May the agent run `command` (non-interactively)?
    pub fn may_exec(&self, command: &str) -> Result<(), Denied> {
        self.check(&Request::Exec {
            command,
            interactive: false,
        })
    }

    /// May the agent use the clipboard?
    pub fn may_use_clipboard(&self) -> Result<(), Denied> {
        self.check(&Request::Clipboard)
    }

    /// May the agent submit `job`, having already submitted `already_submitted` jobs?
    pub fn may_submit(&self, job: &QuantumJob, already_submitted: u64) -> Result<(), Denied> {
        self.check(&Request::Submit {
            job,
            already_submitted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_and_boundaries() {
        assert_eq!(normalize("/a/./b//c/").as_deref(), Some("/a/b/c"));
        assert_eq!(normalize("/a/../../..").as_deref(), Some("/"));
        assert_eq!(normalize("a/b"), None);
        assert!(is_within("/a/Contracts/x", "/a/Contracts"));
        assert!(is_within("/a/Contracts", "/a/Contracts"));
        assert!(!is_within("/a/Contracts2", "/a/Contracts"));
        assert!(is_within("/etc", "/"));
    }
}
