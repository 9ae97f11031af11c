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
use super::manifest::{Capabilities, Manifest};
use super::status::StatusRef;
use super::verify::ParentToken;
use super::{IssuedToken, Issuer, TokenError, new_cti};

/// Checks `child ⊆ parent`; the error names the first capability that is wider.
pub fn check_subset(child: &Capabilities, parent: &Capabilities) -> Result<(), String> {
    for (i, g) in child.file_access.iter().enumerate() {
        if !parent
            .file_access
            .iter()
            .any(|p| is_within(&g.path, &p.path) && g.mode.within(p.mode))
        {
            return Err(format!(
                "capabilities.fileAccess[{i}]: {} ({}) is not within a parent grant",
                g.path,
                g.mode.name()
            ));
        }
    }
    for (i, n) in child.network.iter().enumerate() {
        if !parent.network.contains(n) {
            return Err(format!(
                "capabilities.network[{i}]: {}:{} is not granted to the parent",
                n.host, n.port
            ));
        }
    }
    if child.clipboard && !parent.clipboard {
        return Err("capabilities.clipboard: the parent has no clipboard access".into());
    }
    if let Some(cs) = &child.shell {
        let Some(ps) = &parent.shell else {
            return Err("capabilities.shell: the parent has no shell access".into());
        };
        if cs.interactive && !ps.interactive {
            return Err("capabilities.shell.interactive: the parent is not interactive".into());
        }
        for (i, c) in cs.allowed_commands.iter().enumerate() {
            if !ps.allowed_commands.contains(c) {
                return Err(format!(
                    "capabilities.shell.allowedCommands[{i}]: {c} is not allowed to the parent"
                ));
            }
        }
    }
    if let Some(cq) = &child.quantum {
        let Some(pq) = &parent.quantum else {
            return Err("capabilities.quantum: the parent has no quantum access".into());
        };
        for (i, b) in cq.backends.iter().enumerate() {
            if !pq.backends.contains(b) {
                return Err(format!(
                    "capabilities.quantum.backends[{i}]: {b} is not granted to the parent"
                ));
            }
        }
        for (i, a) in cq.algorithms.iter().enumerate() {
            if !pq.algorithms.contains(a) {
                return Err(format!(
                    "capabilities.quantum.algorithms[{i}]: {a} is not granted to the parent"
                ));
            }
        }
        for (name, c, p) in [
            ("maxQubits", cq.max_qubits, pq.max_qubits),
            ("maxShots", cq.max_shots, pq.max_shots),
            ("maxJobs", cq.max_jobs.get(), pq.max_jobs.get()),
            ("maxRuntime", cq.max_runtime_secs, pq.max_runtime_secs),
        ] {
            if c > p {
                return Err(format!(
                    "capabilities.quantum.{name}: {c} exceeds the parent's {p}"
                ));
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
        return Err(TokenError::Wider(format!(
            "the parent is already {MAX_ANCESTORS} narrowings deep"
        )));
    }
    let nbf = now.max(p.nbf);
    let exp = match ttl.or(child.ttl) {
        Some(t) => now.saturating_add(t.as_secs()),
        None => p.exp,
    };
    if exp > p.exp {
        return Err(TokenError::Wider(format!(
            "the child would expire at {exp}, after its parent ({})",
            p.exp
        )));
    }
    if exp <= nbf {
        return Err(TokenError::Wider("the child's lifetime is empty".into()));
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
