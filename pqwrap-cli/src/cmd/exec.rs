//! `pqwrap exec`: runs a command under a token's capabilities, enforced by the kernel. The
//! work is in the `pqwrap-sandbox` crate; this is its command line.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use pqwrap_core::audit::AuditLog;
use pqwrap_core::ocsf::OcsfLog;
use pqwrap_core::token::{PublicKey, TrustSet};
use pqwrap_sandbox::{
    Enforcement, Exec, RevocationFile, RevocationSource, SandboxError, StatusListFile, SystemPaths,
    revocation,
};

use crate::cmd::io_util::open_append;
use crate::exit::Status;
use crate::keyfiles::read_to_string_bounded;

/// Run COMMAND with exactly the token's capabilities: files by Landlock, TCP only through an
/// egress proxy that allows the token's host:port grants, no display sockets without the
/// clipboard, and the whole process tree ended at the token's expiry or revocation.
///
/// Exit status: the command's own; 128+N if it died of signal N; 124 when the token expired,
/// 123 when it was revoked or its revocation status could no longer be established; 3 when
/// it was not admitted (bad or revoked token, a status list that cannot vouch for it,
/// command not granted); 1 when the sandbox could not be set up; 2 for bad usage.
#[derive(clap::Args)]
pub struct Args {
    /// Token file (the text form, as written by `pqwrap token issue`).
    #[arg(long, value_name = "TOKEN_FILE")]
    token: PathBuf,
    /// Trusted broker public key file (JWK or base64url COSE_Key); repeat for several.
    #[arg(long = "trust", value_name = "PUBKEY_FILE", required = true)]
    trust: Vec<PathBuf>,
    /// The audience this enforcement point is.
    #[arg(long)]
    aud: String,
    /// Revocation list (one hex cti per line): checked before the start and every second
    /// during the run; a listed token, or an unreadable list, ends the agent.
    #[arg(long, value_name = "FILE")]
    revoked: Option<PathBuf>,
    /// Token Status List (as `pqwrap broker serve --status-list` publishes it), verified
    /// with the --trust keys before the start and every second during the run: the token's
    /// own entry must be valid. A token without a status claim is refused; a list that is
    /// missing, does not verify, has no or a passed expiry, or is older than one already
    /// read keeps the agent from starting or ends it.
    #[arg(long, value_name = "FILE")]
    status_list: Option<PathBuf>,
    /// System paths the agent may read: `default` (see docs/SANDBOX.md), `none`, or a file
    /// of `ro PATH` / `rw PATH` lines.
    #[arg(long, value_name = "default|none|FILE", default_value = "default")]
    system_paths: String,
    /// Run even if this kernel cannot enforce every grant, printing what is not enforced.
    #[arg(long)]
    best_effort: bool,
    /// Append launch, proxy decisions, expiry/revocation and exit to this hash-chained log.
    #[arg(long, value_name = "FILE")]
    audit_log: Option<PathBuf>,
    /// Append the same events as OCSF 1.3.0 JSON lines to this file (see docs/SANDBOX.md).
    #[arg(long, value_name = "FILE")]
    ocsf: Option<PathBuf>,
    /// The command (a granted absolute path, or a name found on PATH) and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

/// Runs `pqwrap exec …` and returns the exit status (the command's, or pqwrap's own).
pub fn run(args: Args) -> ExitCode {
    match exec(args) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("pqwrap exec: {err:#}");
            let not_admitted = err
                .chain()
                .any(|c| matches!(c.downcast_ref(), Some(SandboxError::Admission(_))));
            if not_admitted {
                Status::Denied.into()
            } else {
                Status::Failure.into()
            }
        }
    }
}

fn exec(args: Args) -> Result<u8> {
    let token_text = read_small(&args.token)?;
    let mut trust = TrustSet::new();
    for p in &args.trust {
        let key = PublicKey::from_text(&read_small(p)?)
            .with_context(|| format!("cannot read public key file {}", p.display()))?;
        trust.add(key);
    }
    let system_paths = match args.system_paths.as_str() {
        "default" => SystemPaths::Default,
        "none" => SystemPaths::None,
        file => {
            let p = Path::new(file);
            SystemPaths::parse(&read_small(p)?)
                .with_context(|| format!("invalid --system-paths file {file}"))?
        }
    };
    let mut revocation: Vec<Box<dyn RevocationSource>> = Vec::new();
    if let Some(p) = &args.revoked {
        revocation.push(Box::new(
            RevocationFile::open(p, revocation::DEFAULT_POLL)
                .with_context(|| format!("invalid revocation list {}", p.display()))?,
        ));
    }
    if let Some(p) = &args.status_list {
        // Read at admission, so that a list that cannot be used is an audited refusal.
        revocation.push(Box::new(StatusListFile::new(
            p,
            trust.clone(),
            revocation::DEFAULT_POLL,
        )));
    }
    let audit = match &args.audit_log {
        Some(p) => {
            // Through the output-path resolver (no symlink followed), as `token issue` does.
            let file = open_append(p, 0o640)
                .with_context(|| format!("cannot open audit log {}", p.display()))?;
            Some(
                AuditLog::from_file(file)
                    .with_context(|| format!("cannot open audit log {}", p.display()))?,
            )
        }
        None => None,
    };
    let ocsf = match &args.ocsf {
        Some(p) => Some(OcsfLog::from_file(
            open_append(p, 0o640)
                .with_context(|| format!("cannot open OCSF stream {}", p.display()))?,
        )),
        None => None,
    };
    let mut command = args.command.into_iter();
    let program = command.next().context("no command given")?;
    let outcome = pqwrap_sandbox::run(Exec {
        token_text: token_text.to_string(),
        trust,
        audience: args.aud,
        system_paths,
        enforcement: if args.best_effort {
            Enforcement::BestEffort
        } else {
            Enforcement::Strict
        },
        revocation,
        audit,
        ocsf,
        command: program,
        args: command.collect(),
        say: Arc::new(|m| eprintln!("pqwrap exec: {m}")),
    })?;
    Ok(outcome.exit_code())
}

fn read_small(path: &Path) -> Result<zeroize::Zeroizing<String>> {
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    read_to_string_bounded(f).with_context(|| format!("cannot read {}", path.display()))
}
