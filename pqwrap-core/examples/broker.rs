//! How a broker and an enforcement point link pqwrap-core.
//!
//! `cargo run -p pqwrap-core --example broker [KEYFILE]`
//!
//! The broker loads its ML-DSA signing key once (from KEYFILE, a private JWK written by
//! `pqwrap token keygen`, or a fresh key if none is given), checks each agent's request
//! against its issuance policy, mints a token and appends an audit record. The enforcement
//! point pins the broker's public key, verifies the token once, and then asks it about each
//! request; long-lived enforcement points re-check liveness with `check_at`.
// The example shows refusals with `unwrap_err`: the refusal is the point.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use pqwrap_core::audit::{self, AuditLog};
use pqwrap_core::token::{
    Algorithm, Allowed, IssuancePolicy, IssuedToken, Issuer, Manifest, Request, RevocationList,
    SigningKey, TrustSet, Verifier, unix_now,
};

/// The broker: one signing key, one policy, one audit log, for its whole life.
struct Broker {
    issuer: Issuer,
    policy: IssuancePolicy,
    log: AuditLog,
}

impl Broker {
    /// Handles an agent's request: validate the manifest, apply the policy, mint, audit.
    fn grant(
        &mut self,
        manifest_json: &str,
        audience: &str,
    ) -> Result<IssuedToken, Box<dyn std::error::Error>> {
        let manifest = Manifest::from_json(manifest_json)?;
        let ttl = manifest.ttl.unwrap_or(Duration::from_secs(900));
        self.policy.check(&manifest, ttl)?;
        let token = self
            .issuer
            .issue(&manifest, audience, ttl, unix_now(), None)?;
        // An issued token that cannot be logged must not be handed out.
        self.log
            .append(&token.audit_record())
            .map_err(|e| format!("audit log: {e}"))?;
        Ok(token)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = match std::env::args().nth(1) {
        Some(path) => SigningKey::from_jwk_private(&std::fs::read_to_string(path)?)?,
        None => SigningKey::generate(Algorithm::MlDsa65)?,
    };
    // What enforcement points are configured with: the broker's public key (as a JWK here).
    let broker_public_jwk = key.public_key().to_jwk();

    let dir = tempfile::tempdir()?;
    let log_path = dir.path().join("issued.jsonl");
    let mut broker = Broker {
        issuer: Issuer::new(key).with_iss("example-broker"),
        policy: IssuancePolicy {
            max_ttl: Duration::from_secs(3600),
            allowed_roots: vec!["/home/user/Documents".into()],
        },
        log: AuditLog::open(&log_path)?,
    };

    // 1. A request inside the policy is granted.
    let request = r#"{"agent": "cowork-session-1234",
        "capabilities": {
          "fileAccess": [{"path": "/home/user/Documents/Contracts", "mode": "read"}],
          "network": [{"host": "internal-api.company.local", "port": 443}],
          "shell": {"allowedCommands": ["/usr/bin/less"], "interactive": false}},
        "ttl": "1800s"}"#;
    let token = broker.grant(request, "files.local")?;
    let text = token.to_text();
    println!(
        "minted {} bytes ({} chars of base64url)",
        token.bytes.len(),
        text.len()
    );

    // 2. Requests outside the policy are refused, with the reason.
    let too_long = request.replace("1800s", "7200s");
    println!(
        "refused: {}",
        broker.grant(&too_long, "files.local").unwrap_err()
    );
    let outside = request.replace("/home/user/Documents/Contracts", "/etc");
    println!(
        "refused: {}",
        broker.grant(&outside, "files.local").unwrap_err()
    );

    // 3. The enforcement point: pin the key, verify once, check each request.
    let trust: TrustSet = [pqwrap_core::token::PublicKey::from_text(
        &broker_public_jwk,
    )?]
    .into_iter()
    .collect();
    let verifier = Verifier::new(trust, "files.local").with_revocations(RevocationList::new());
    let verified = verifier.verify_text(&text, unix_now())?;
    for req in [
        Request::Read("/home/user/Documents/Contracts/nda.pdf"),
        Request::Read("/home/user/Documents/Contracts2/nda.pdf"),
        // Not canonical: refused outright, never resolved on the string.
        Request::Read("/home/user/Documents/Contracts/../Taxes/2024.pdf"),
        Request::Write("/home/user/Documents/Contracts/nda.pdf"),
        Request::Connect {
            host: "internal-api.company.local",
            port: 443,
        },
        Request::Exec {
            command: "/usr/bin/less",
            interactive: false,
        },
        Request::Exec {
            command: "/bin/sh",
            interactive: true,
        },
        Request::Clipboard,
    ] {
        match verified.check_at(&req, unix_now()) {
            // What to use is the grant's: open beneath its root, execute its path.
            Ok(Allowed::Read(g) | Allowed::Write(g)) => {
                println!("allowed: open {:?} beneath {}", g.relative(), g.root())
            }
            Ok(Allowed::Exec(c)) => println!("allowed: execute {}", c.path()),
            Ok(_) => println!("allowed {req:?}"),
            Err(d) => println!("{d} ({req:?})"),
        }
    }

    // 4. An enforcement point for another audience refuses the token outright.
    let other = Verifier::new(
        [pqwrap_core::token::PublicKey::from_text(
            &broker_public_jwk,
        )?]
        .into_iter()
        .collect(),
        "clipboard.local",
    );
    println!(
        "other audience: {}",
        other.verify_text(&text, unix_now()).unwrap_err()
    );

    // 5. The audit log holds one record per issued token and verifies.
    let summary = audit::verify(&log_path)?;
    println!(
        "audit log: {} line(s), head {}",
        summary.lines, summary.head
    );
    Ok(())
}
