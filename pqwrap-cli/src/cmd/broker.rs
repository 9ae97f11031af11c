//! `pqwrap broker`: the token broker service and its administration commands.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use pqwrap_broker::client;
use pqwrap_broker::proto::{ConsumeRequest, Empty, ErrorCode, Request, Response, RevokeTarget};
use pqwrap_broker::{Broker, Config};

use crate::exit::Status;

/// How long a command waits for the broker.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// The token broker: serve, and administer a running one.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Box<Sub>,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Serve token requests on a Unix socket (or a systemd-activated one).
    Serve {
        /// The socket to create (ignored when systemd passes one: LISTEN_FDS).
        #[arg(long, value_name = "PATH")]
        socket: PathBuf,
        /// Signing key (private JWK from `pqwrap token keygen`).
        #[arg(long, value_name = "BROKER.key")]
        key: PathBuf,
        /// Policy file (TOML; see docs/BROKER.md). SIGHUP re-reads it.
        #[arg(long, value_name = "POLICY.toml")]
        policy: PathBuf,
        /// State directory: journal, rotated keys, the published trust set.
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        /// Hash-chained audit log (default: DIR/audit.log).
        #[arg(long, value_name = "FILE")]
        audit_log: Option<PathBuf>,
        /// Also write every decision as OCSF 1.x JSON lines here.
        #[arg(long, value_name = "FILE")]
        ocsf: Option<PathBuf>,
        /// Publish the signed Token Status List here (issued tokens then carry its status
        /// claim).
        #[arg(long, value_name = "FILE")]
        status_list: Option<PathBuf>,
    },
    /// Revoke a token (and every token narrowed from it), or an agent session.
    Revoke {
        /// The broker's socket.
        #[arg(long, value_name = "PATH")]
        socket: PathBuf,
        /// The token id in hex, as `pqwrap token verify` prints it.
        #[arg(
            value_name = "CTI",
            required_unless_present = "agent",
            conflicts_with = "agent"
        )]
        cti: Option<String>,
        /// Revoke every token of this agent session, and refuse it new ones.
        #[arg(long, value_name = "SESSION")]
        agent: Option<String>,
    },
    /// Charge one quantum job to a token: exit 0 allowed (and counted), 3 refused.
    Consume {
        /// The broker's socket.
        #[arg(long, value_name = "PATH")]
        socket: PathBuf,
        /// The token file.
        #[arg(long, value_name = "TOKEN")]
        token: PathBuf,
        /// The job: {"backend", "algorithm", "qubits", "shots", "runtime"}.
        #[arg(long, value_name = "JOB.json")]
        quantum_job: PathBuf,
    },
    /// Start signing with a new key; the trust set keeps the old one while its tokens live.
    RotateKey {
        /// The broker's socket.
        #[arg(long, value_name = "PATH")]
        socket: PathBuf,
    },
}

/// Runs `pqwrap broker …`.
pub fn run(args: Args) -> Result<Status> {
    match *args.command {
        Sub::Serve {
            socket,
            key,
            policy,
            state,
            audit_log,
            ocsf,
            status_list,
        } => serve(
            Config {
                key,
                policy,
                state,
                audit_log,
                ocsf,
                status_list,
            },
            &socket,
        ),
        Sub::Revoke { socket, cti, agent } => {
            let target = match (cti, agent) {
                (Some(c), None) => RevokeTarget::Cti(c.to_ascii_lowercase()),
                (None, Some(a)) => RevokeTarget::Agent(a),
                _ => bail!("give a CTI or --agent SESSION"),
            };
            answer(&socket, call(&socket, &Request::Revoke(target))?)
        }
        Sub::Consume {
            socket,
            token,
            quantum_job,
        } => {
            let job = read(&quantum_job)?;
            pqwrap_core::token::QuantumJob::from_json(&job)
                .with_context(|| format!("invalid quantum job {}", quantum_job.display()))?;
            let req = Request::Consume(ConsumeRequest {
                token: read(&token)?.trim().to_owned(),
                job,
            });
            answer(&socket, call(&socket, &req)?)
        }
        Sub::RotateKey { socket } => answer(&socket, call(&socket, &Request::RotateKey(Empty {}))?),
    }
}

fn serve(cfg: Config, socket: &Path) -> Result<Status> {
    let broker = Arc::new(Broker::open(cfg).context("cannot start the broker")?);
    let policy = broker.policy();
    let (listener, owned) = match pqwrap_broker::server::activated_listener()
        .context("cannot take the socket systemd passed (LISTEN_FDS)")?
    {
        Some(l) => (l, None),
        None => (
            pqwrap_broker::server::bind(socket, policy.socket_mode, policy.socket_group)?,
            Some(socket),
        ),
    };
    eprintln!(
        "pqwrap broker: listening on {}{}, signing with {}, {} policy rule(s)",
        socket.display(),
        if owned.is_none() {
            " (socket activation)"
        } else {
            ""
        },
        broker.current_kid(),
        policy.rules.len()
    );
    pqwrap_broker::server::serve(broker, listener, owned)?;
    if let Some(p) = owned {
        let _ = std::fs::remove_file(p);
    }
    Ok(Status::Success)
}

/// Sends one request.
pub fn call(socket: &Path, req: &Request) -> Result<Response> {
    Ok(client::call(socket, req, CALL_TIMEOUT)?)
}

fn read(path: &Path) -> Result<String> {
    crate::cmd::token::read_small(path)
}

/// Prints a response the way every broker command does: results on standard output,
/// refusals (exit 3) and errors (exit 1, or 2 for a request the broker calls malformed) on
/// standard error.
pub fn answer(socket: &Path, r: Response) -> Result<Status> {
    match r {
        Response::Issued(i) => {
            println!("{}", i.token);
            Ok(Status::Success)
        }
        Response::Revoked(r) => {
            for c in &r.ctis {
                println!("{c}");
            }
            eprintln!("revoked {} token(s)", r.ctis.len());
            Ok(Status::Success)
        }
        Response::Consumed(u) => {
            println!("allowed: job {} of {}", u.jobs_used, u.jobs_max);
            Ok(Status::Success)
        }
        Response::Rotated(r) => {
            println!("{}", r.kid);
            eprintln!(
                "now signing with {}; trusted: {}",
                r.kid,
                r.trusted.join(", ")
            );
            Ok(Status::Success)
        }
        Response::TrustSet(t) => {
            for k in &t.keys {
                println!("{k}");
            }
            Ok(Status::Success)
        }
        Response::Refused(r) => {
            eprintln!("pqwrap: refused: {}", r.reason);
            Ok(Status::Denied)
        }
        Response::Error(e) => {
            eprintln!("pqwrap: broker at {}: {}", socket.display(), e.message);
            Ok(if e.code == ErrorCode::BadRequest {
                Status::Usage
            } else {
                Status::Failure
            })
        }
    }
}
