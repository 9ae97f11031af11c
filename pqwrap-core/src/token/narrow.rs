//! Narrowing (attenuation): minting a child token that can do no more, for no longer, than a
//! verified parent.
//!
//! The child keeps the parent's audience, issuer and holder key (`cnf`), its lifetime lies
//! inside the parent's, and its capabilities are a subset: each file grant lies at or below a
//! parent grant whose mode includes it, each network grant is one of the parent's, clipboard
//! and shell and quantum only if the parent has them, with command, backend and algorithm
//! sets included and every quota no larger. The child records the ctis of all its ancestors,
//! so a verifier that revokes any of them refuses the child.
//!
//! "No larger" bounds each child on its own, not the children together: `maxJobs` is a
//! per-token [`super::JobCeiling`], and two children of a parent allowed 5 jobs may each
//! submit 5. The parent's total is enforced by the broker, which counts every job against
//! the child and each of its ancestors ([`super::Claims::quota_accounts`]).

use std::time::Duration;

use super::claims::{Claims, MAX_ANCESTORS};
use super::enforce::is_within;
use super::manifest::{Capabilities, FileMode, Manifest};
use super::status::StatusRef;
use super::verify::ParentToken;
use super::{IssuedToken, Issuer, TokenError, new_cti};

/// Why a narrowed child would be wider than its parent: the first capability (by its path in
/// the manifest) that the parent does not cover, or a lifetime outside the parent's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Widening {
    /// A file grant not within any parent grant whose mode includes it.
    #[error("capabilities.fileAccess[{index}]: {path} ({}) is not within a parent grant", mode.name())]
    FileAccess {
        /// The grant's index in the child's manifest.
        index: usize,
        /// Its path.
        path: String,
        /// Its mode.
        mode: FileMode,
    },
    /// A network grant the parent does not have.
    #[error("capabilities.network[{index}]: {host}:{port} is not granted to the parent")]
    Network {
        /// The grant's index.
        index: usize,
        /// Its host.
        host: String,
        /// Its port.
        port: u16,
    },
    /// Clipboard access the parent lacks.
    #[error("capabilities.clipboard: the parent has no clipboard access")]
    Clipboard,
    /// Shell access the parent lacks.
    #[error("capabilities.shell: the parent has no shell access")]
    Shell,
    /// Interactive use the parent's shell grant lacks.
    #[error("capabilities.shell.interactive: the parent is not interactive")]
    Interactive,
    /// A command the parent may not run.
    #[error("capabilities.shell.allowedCommands[{index}]: {command} is not allowed to the parent")]
    Command {
        /// Its index.
        index: usize,
        /// The command.
        command: String,
    },
    /// Quantum access the parent lacks.
    #[error("capabilities.quantum: the parent has no quantum access")]
    Quantum,
    /// A quantum backend the parent lacks.
    #[error("capabilities.quantum.backends[{index}]: {backend} is not granted to the parent")]
    Backend {
        /// Its index.
        index: usize,
        /// The backend.
        backend: String,
    },
    /// A quantum algorithm the parent lacks.
    #[error("capabilities.quantum.algorithms[{index}]: {algorithm} is not granted to the parent")]
    Algorithm {
        /// Its index.
        index: usize,
        /// The algorithm.
        algorithm: String,
    },
    /// A quantum quota above the parent's.
    #[error("capabilities.quantum.{limit}: {child} exceeds the parent's {parent}")]
    Limit {
        /// `maxQubits`, `maxShots`, `maxJobs` or `maxRuntime`.
        limit: &'static str,
        /// The child's value.
        child: u64,
        /// The parent's.
        parent: u64,
    },
    /// The parent already has the most ancestors a token may have.
    #[error("the parent is already {MAX_ANCESTORS} narrowings deep")]
    TooDeep,
    /// The child would outlive its parent.
    #[error("the child would expire at {exp}, after its parent ({parent_exp})")]
    OutlivesParent {
        /// The child's `exp`.
        exp: u64,
        /// The parent's.
        parent_exp: u64,
    },
    /// The child's lifetime would be empty (`exp` not after `nbf`).
    #[error("the child's lifetime is empty")]
    EmptyLifetime,
}

/// Checks `child ⊆ parent`; the error names the first capability that is wider.
pub fn check_subset(child: &Capabilities, parent: &Capabilities) -> Result<(), Widening> {
    for (i, g) in child.file_access.iter().enumerate() {
        if !parent
            .file_access
            .iter()
            .any(|p| is_within(&g.path, &p.path) && g.mode.within(p.mode))
        {
            return Err(Widening::FileAccess {
                index: i,
                path: g.path.clone(),
                mode: g.mode,
            });
        }
    }
    for (i, n) in child.network.iter().enumerate() {
        if !parent.network.contains(n) {
            return Err(Widening::Network {
                index: i,
                host: n.host.clone(),
                port: n.port,
            });
        }
    }
    if child.clipboard && !parent.clipboard {
        return Err(Widening::Clipboard);
    }
    if let Some(cs) = &child.shell {
        let Some(ps) = &parent.shell else {
            return Err(Widening::Shell);
        };
        if cs.interactive && !ps.interactive {
            return Err(Widening::Interactive);
        }
        for (i, c) in cs.allowed_commands.iter().enumerate() {
            if !ps.allowed_commands.contains(c) {
                return Err(Widening::Command {
                    index: i,
                    command: c.clone(),
                });
            }
        }
    }
    if let Some(cq) = &child.quantum {
        let Some(pq) = &parent.quantum else {
            return Err(Widening::Quantum);
        };
        for (i, b) in cq.backends.iter().enumerate() {
            if !pq.backends.contains(b) {
                return Err(Widening::Backend {
                    index: i,
                    backend: b.clone(),
                });
            }
        }
        for (i, a) in cq.algorithms.iter().enumerate() {
            if !pq.algorithms.contains(a) {
                return Err(Widening::Algorithm {
                    index: i,
                    algorithm: a.clone(),
                });
            }
        }
        for (limit, c, p) in [
            ("maxQubits", cq.max_qubits, pq.max_qubits),
            ("maxShots", cq.max_shots, pq.max_shots),
            ("maxJobs", cq.max_jobs.get(), pq.max_jobs.get()),
            ("maxRuntime", cq.max_runtime_secs, pq.max_runtime_secs),
        ] {
            if c > p {
                return Err(Widening::Limit {
                    limit,
                    child: c,
                    parent: p,
                });
            }
        }
    }
    Ok(())
}

impl Issuer {
    /// Mints a child of `parent` (from a [`super::NarrowingVerifier`], or a [`super::VerifiedToken`]
    /// turned `.into()` one) with the capabilities of `child` (its agent becomes the
    /// child's `sub`), starting at `now`. The lifetime is `ttl`, else the manifest's `ttl`,
    /// else whatever remains of the parent's; a child that would outlive its parent, or that
    /// asks for anything the parent lacks, is refused with the reason.
    ///
    /// The child shares its parent's `status` entry (if it has one), so that revoking the
    /// parent in the status list revokes the child too; a broker that tracks children gives
    /// each its own entry with [`Issuer::narrow_with_status`].
    pub fn narrow(
        &self,
        parent: &ParentToken,
        child: &Manifest,
        ttl: Option<Duration>,
        now: u64,
    ) -> Result<IssuedToken, TokenError> {
        let claims = narrow_claims(parent, child, ttl, now)?;
        self.sign_claims(claims)
    }

    /// [`Issuer::narrow`], with the child's own `status` entry. The issuer must then mark the
    /// child revoked whenever it revokes the parent: verifiers holding only the status list
    /// see the child's entry, not the parent's.
    pub fn narrow_with_status(
        &self,
        parent: &ParentToken,
        child: &Manifest,
        ttl: Option<Duration>,
        now: u64,
        status: StatusRef,
    ) -> Result<IssuedToken, TokenError> {
        let mut claims = narrow_claims(parent, child, ttl, now)?;
        claims.status = Some(status);
        self.sign_claims(claims)
    }
}

fn narrow_claims(
    parent: &ParentToken,
    child: &Manifest,
    ttl: Option<Duration>,
    now: u64,
) -> Result<Claims, TokenError> {
    let p = parent.claims();
    check_subset(&child.capabilities, &p.capabilities).map_err(TokenError::Wider)?;
    if p.ancestors.len() >= MAX_ANCESTORS {
        return Err(TokenError::Wider(Widening::TooDeep));
    }
    let nbf = now.max(p.nbf);
    let exp = match ttl.or(child.ttl) {
        Some(t) => now.saturating_add(t.as_secs()),
        None => p.exp,
    };
    if exp > p.exp {
        return Err(TokenError::Wider(Widening::OutlivesParent {
            exp,
            parent_exp: p.exp,
        }));
    }
    if exp <= nbf {
        return Err(TokenError::Wider(Widening::EmptyLifetime));
    }
    let mut ancestors = p.ancestors.clone();
    ancestors.push(p.cti);
    let claims = Claims {
        iss: p.iss.clone(),
        sub: child.agent.clone(),
        aud: p.aud.clone(),
        iat: now,
        nbf,
        exp,
        cti: new_cti()?,
        cnf: p.cnf.clone(),
        capabilities: child.capabilities.clone(),
        ancestors,
        status: p.status.clone(),
    };
    Ok(claims)
}
