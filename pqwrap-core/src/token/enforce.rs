//! Enforcement: "is this request allowed by this verified token?"
//!
//! Default deny: a request is allowed only if a grant covers it. Paths and commands in
//! requests must be absolute and canonical — no `.`, `..` or empty (`//`) component, no
//! trailing `/` — or they are refused outright, never tidied up: resolving `..` on the
//! string is not what the kernel does when a component is a symlink (`/g/link/../x` is
//! `/g/x` on paper, but the kernel walks into the link's target first), so a string made
//! canonical here would not name the file or program the kernel reaches. File requests are
//! then compared with grants on component boundaries (`/a/Contracts2` is not under
//! `/a/Contracts`); commands must equal a granted command byte for byte.
//!
//! What is allowed comes back as the grant to use: a [`GrantedPath`] names the grant root and
//! the path below it, to open *beneath* that root (`openat2` with `RESOLVE_BENEATH`), so that
//! a symlink inside the grant cannot lead out of it; a [`GrantedCommand`] carries the
//! token's own string, which is what an enforcement point executes.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::manifest::{self, Capabilities, FileMode, ManifestError, ManifestProblem, PathProblem};
use super::verify::VerifiedToken;

/// A denied request: default deny, anything not granted. `Display` is `denied: ` and the
/// reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("denied: {0}")]
pub struct Denied(pub Reason);

/// Why a request is denied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Reason {
    /// A connection to a host and port no grant names.
    #[error("connection to {host}:{port} is not granted")]
    Connect {
        /// The host asked for, lowercased.
        host: String,
        /// The port.
        port: u16,
    },
    /// Clipboard access without a grant.
    #[error("clipboard access is not granted")]
    Clipboard,
    /// A file request whose path is not absolute and canonical.
    #[error("{access} {path:?} refused: {}; ask for the canonical path itself", problem.describe(path))]
    NonCanonicalPath {
        /// Read or write.
        access: Access,
        /// The path asked for.
        path: String,
        /// What is wrong with it.
        problem: PathProblem,
    },
    /// A file under a grant whose mode does not allow the access.
    #[error("{access} access to {path} is not granted (mode does not allow it)")]
    Mode {
        /// Read or write.
        access: Access,
        /// The path asked for.
        path: String,
    },
    /// A file under no grant.
    #[error("{path} is not under any granted path")]
    NotGranted {
        /// The path asked for.
        path: String,
    },
    /// Shell use without a shell grant.
    #[error("shell access is not granted")]
    Shell,
    /// A command path that is not absolute and canonical.
    #[error("command {command:?} refused: {}; ask for the granted path itself", problem.describe(command))]
    NonCanonicalCommand {
        /// The command asked for.
        command: String,
        /// What is wrong with it.
        problem: PathProblem,
    },
    /// Interactive use of a non-interactive shell grant.
    #[error("interactive shell use is not granted")]
    Interactive,
    /// A command not in `allowedCommands`.
    #[error("command {command} is not in allowedCommands")]
    Command {
        /// The command asked for.
        command: String,
    },
    /// A quantum job without a quantum grant.
    #[error("quantum job submission is not granted")]
    Quantum,
    /// A backend the grant does not list.
    #[error("backend {0:?} is not granted")]
    Backend(String),
    /// An algorithm the grant does not list.
    #[error("algorithm {0:?} is not granted")]
    Algorithm(String),
    /// More qubits than `maxQubits`.
    #[error("{asked} qubits exceeds maxQubits {max}")]
    Qubits {
        /// Asked for.
        asked: u64,
        /// Granted.
        max: u64,
    },
    /// More shots than `maxShots`.
    #[error("{asked} shots exceeds maxShots {max}")]
    Shots {
        /// Asked for.
        asked: u64,
        /// Granted.
        max: u64,
    },
    /// A longer runtime than `maxRuntime`.
    #[error("runtime {}s exceeds maxRuntime {max_secs}s", asked.as_secs_f64())]
    Runtime {
        /// Asked for.
        asked: Duration,
        /// Granted, in seconds.
        max_secs: u64,
    },
    /// The token's `maxJobs` are used up.
    #[error("job quota used up ({used} of maxJobs {max} for this token)")]
    Quota {
        /// Jobs already submitted.
        used: u64,
        /// The token's `maxJobs`.
        max: u64,
    },
    /// The token is expired or not yet valid at the time of the request.
    #[error("token is expired or not yet valid")]
    NotLive,
}

fn deny<T>(reason: Reason) -> Result<T, Denied> {
    Err(Denied(reason))
}

/// Read or write, in a [`Reason`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A read request.
    Read,
    /// A write request.
    Write,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Read => "read",
            Access::Write => "write",
        })
    }
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
            return Err(ManifestError {
                field: "job".into(),
                problem: ManifestProblem::TooLong(manifest::MAX_MANIFEST_LEN),
            });
        }
        let de = &mut serde_json::Deserializer::from_str(text);
        let r: Raw = serde_path_to_error::deserialize(de).map_err(|e| ManifestError {
            field: format!("job.{}", e.path()),
            problem: ManifestProblem::Json(e.inner().to_string()),
        })?;
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
    /// Read a file or list a directory (an absolute canonical path).
    Read(&'a str),
    /// Create, modify or delete a file (an absolute canonical path).
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
        /// Absolute canonical path of the executable, byte for byte as granted.
        command: &'a str,
        /// Whether an interactive session (a terminal) is asked for.
        interactive: bool,
    },
    /// Use the clipboard.
    Clipboard,
    /// Submit a quantum job, given how many jobs were already counted against this token.
    Submit {
        /// The job.
        job: &'a QuantumJob,
        /// Jobs already counted against this token's own `cti` (the enforcement point keeps
        /// the count). Totals across narrowed children are the broker's: see
        /// [`super::manifest::JobCeiling`].
        already_submitted: u64,
    },
}

/// An allowed file request: the grant that covers it and the path below that grant.
///
/// Open [`GrantedPath::relative`] beneath a descriptor of [`GrantedPath::root`] without
/// leaving it (`openat2(root_fd, relative, …, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`):
/// the check saw a string, and a symlink below the root (which the agent may have made) can
/// point anywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantedPath<'a> {
    root: &'a str,
    path: &'a str,
    mode: FileMode,
}

impl<'a> GrantedPath<'a> {
    /// The grant's path, from the token.
    pub fn root(&self) -> &'a str {
        self.root
    }

    /// The requested path below [`GrantedPath::root`], without a leading `/`; `.` when the
    /// request is the root itself.
    pub fn relative(&self) -> &'a str {
        let rest = self.path.get(self.root.len()..).unwrap_or_default();
        match rest.strip_prefix('/').unwrap_or(rest) {
            "" => ".",
            r => r,
        }
    }

    /// The whole requested path (canonical, at or below the root).
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// What the covering grant allows.
    pub fn mode(&self) -> FileMode {
        self.mode
    }
}

/// An allowed command: the path to execute, taken from the token's `allowedCommands`.
///
/// Execute [`GrantedCommand::path`] and nothing else. It is byte-for-byte equal to what
/// the request asked for, but it is the token's string: a caller that builds, edits or
/// reuses a request buffer cannot make the program run differ from the one granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "execute the granted path, not the request's string"]
pub struct GrantedCommand<'a> {
    path: &'a str,
}

impl<'a> GrantedCommand<'a> {
    /// The absolute canonical path to execute.
    pub fn path(&self) -> &'a str {
        self.path
    }
}

/// What an allowed request may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Allowed<'a> {
    /// Read beneath this grant.
    Read(GrantedPath<'a>),
    /// Write beneath this grant.
    Write(GrantedPath<'a>),
    /// Connect to the host and port asked for.
    Connect,
    /// Execute this path.
    Exec(GrantedCommand<'a>),
    /// Use the clipboard.
    Clipboard,
    /// Submit the job (count it against every account of `Claims::quota_accounts`).
    Submit,
}

/// Whether canonical `path` is `root` or lies below it, on component boundaries. Both must
/// be absolute and canonical (see [`super::manifest::validate_abs_path`]); no `..` or `.`
/// is interpreted.
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
    /// Checks `req` against the token's capabilities: what may be used if allowed, otherwise
    /// the reason.
    pub fn check<'a>(&'a self, req: &Request<'a>) -> Result<Allowed<'a>, Denied> {
        self.claims().capabilities.check(req)
    }
}

impl Capabilities {
    /// Whether these capabilities allow `req` (default deny). Enforcement points normally
    /// call this through a [`VerifiedToken`]; it is public so that policies can be tested
    /// and compared without signing.
    pub fn check<'a>(&'a self, req: &Request<'a>) -> Result<Allowed<'a>, Denied> {
        match req {
            Request::Read(p) => self.check_path(p, FileMode::Read).map(Allowed::Read),
            Request::Write(p) => self.check_path(p, FileMode::Write).map(Allowed::Write),
            Request::Connect { host, port } => {
                let h = host.to_ascii_lowercase();
                if self.network.iter().any(|g| g.host == h && g.port == *port) {
                    Ok(Allowed::Connect)
                } else {
                    deny(Reason::Connect {
                        host: h,
                        port: *port,
                    })
                }
            }
            Request::Exec {
                command,
                interactive,
            } => self.check_exec(command, *interactive).map(Allowed::Exec),
            Request::Clipboard => {
                if self.clipboard {
                    Ok(Allowed::Clipboard)
                } else {
                    deny(Reason::Clipboard)
                }
            }
            Request::Submit {
                job,
                already_submitted,
            } => self
                .check_submit(job, *already_submitted)
                .map(|()| Allowed::Submit),
        }
    }

    /// A read (`want` = [`FileMode::Read`]) or write request for `p`.
    fn check_path<'a>(&'a self, p: &'a str, want: FileMode) -> Result<GrantedPath<'a>, Denied> {
        let access = if want.can_write() {
            Access::Write
        } else {
            Access::Read
        };
        if let Some(problem) = manifest::path_problem(p) {
            return deny(Reason::NonCanonicalPath {
                access,
                path: p.to_owned(),
                problem,
            });
        }
        let mut under_any = false;
        for g in &self.file_access {
            if is_within(p, &g.path) {
                under_any = true;
                if want.within(g.mode) {
                    return Ok(GrantedPath {
                        root: &g.path,
                        path: p,
                        mode: g.mode,
                    });
                }
            }
        }
        if under_any {
            deny(Reason::Mode {
                access,
                path: p.to_owned(),
            })
        } else {
            deny(Reason::NotGranted { path: p.to_owned() })
        }
    }

    fn check_exec(&self, command: &str, interactive: bool) -> Result<GrantedCommand<'_>, Denied> {
        let Some(shell) = &self.shell else {
            return deny(Reason::Shell);
        };
        if let Some(problem) = manifest::path_problem(command) {
            return deny(Reason::NonCanonicalCommand {
                command: command.to_owned(),
                problem,
            });
        }
        if interactive && !shell.interactive {
            return deny(Reason::Interactive);
        }
        match shell
            .allowed_commands
            .iter()
            .find(|c| c.as_str() == command)
        {
            Some(granted) => Ok(GrantedCommand { path: granted }),
            None => deny(Reason::Command {
                command: command.to_owned(),
            }),
        }
    }

    fn check_submit(&self, job: &QuantumJob, already_submitted: u64) -> Result<(), Denied> {
        let Some(q) = &self.quantum else {
            return deny(Reason::Quantum);
        };
        if !q.backends.contains(&job.backend) {
            return deny(Reason::Backend(job.backend.clone()));
        }
        if !q.algorithms.contains(&job.algorithm) {
            return deny(Reason::Algorithm(job.algorithm.clone()));
        }
        if job.qubits > q.max_qubits {
            return deny(Reason::Qubits {
                asked: job.qubits,
                max: q.max_qubits,
            });
        }
        if job.shots > q.max_shots {
            return deny(Reason::Shots {
                asked: job.shots,
                max: q.max_shots,
            });
        }
        if job.runtime.as_secs() > q.max_runtime_secs
            || (job.runtime.as_secs() == q.max_runtime_secs && job.runtime.subsec_nanos() > 0)
        {
            return deny(Reason::Runtime {
                asked: job.runtime,
                max_secs: q.max_runtime_secs,
            });
        }
        if !q.max_jobs.allows_another(already_submitted) {
            return deny(Reason::Quota {
                used: already_submitted,
                max: q.max_jobs.get(),
            });
        }
        Ok(())
    }
}

impl VerifiedToken {
    /// [`VerifiedToken::check`], after checking that the token is still live at `now`.
    pub fn check_at<'a>(&'a self, req: &Request<'a>, now: u64) -> Result<Allowed<'a>, Denied> {
        if !self.is_live_at(now) {
            return deny(Reason::NotLive);
        }
        self.check(req)
    }

    /// May the agent read `path`? If so, the grant to open it beneath.
    pub fn may_read<'a>(&'a self, path: &'a str) -> Result<GrantedPath<'a>, Denied> {
        self.claims().capabilities.check_path(path, FileMode::Read)
    }

    /// May the agent write `path`? If so, the grant to open it beneath.
    pub fn may_write<'a>(&'a self, path: &'a str) -> Result<GrantedPath<'a>, Denied> {
        self.claims().capabilities.check_path(path, FileMode::Write)
    }

    /// May the agent connect to `host:port`?
    pub fn may_connect(&self, host: &str, port: u16) -> Result<(), Denied> {
        self.check(&Request::Connect { host, port }).map(|_| ())
    }

    /// May the agent run `command` (non-interactively)? If so, the path to execute.
    pub fn may_exec(&self, command: &str) -> Result<GrantedCommand<'_>, Denied> {
        self.claims().capabilities.check_exec(command, false)
    }

    /// May the agent use the clipboard?
    pub fn may_use_clipboard(&self) -> Result<(), Denied> {
        self.check(&Request::Clipboard).map(|_| ())
    }

    /// May the agent submit `job`, with `already_submitted` jobs already counted against
    /// this token? Totals across narrowed tokens are the broker's to enforce
    /// ([`super::manifest::JobCeiling`]).
    pub fn may_submit(&self, job: &QuantumJob, already_submitted: u64) -> Result<(), Denied> {
        self.claims()
            .capabilities
            .check_submit(job, already_submitted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_and_relative_parts() {
        assert!(is_within("/a/Contracts/x", "/a/Contracts"));
        assert!(is_within("/a/Contracts", "/a/Contracts"));
        assert!(!is_within("/a/Contracts2", "/a/Contracts"));
        assert!(is_within("/etc", "/"));
        let g = |root, path| GrantedPath {
            root,
            path,
            mode: FileMode::Read,
        };
        assert_eq!(g("/a", "/a").relative(), ".");
        assert_eq!(g("/a", "/a/b/c").relative(), "b/c");
        assert_eq!(g("/", "/").relative(), ".");
        assert_eq!(g("/", "/etc/x").relative(), "etc/x");
    }
}
