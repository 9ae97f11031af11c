//! `pqwrap token`: ML-DSA capability tokens — keys, issuing, verifying, checking, narrowing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use pqwrap_core::audit::AuditLog;
use pqwrap_core::token::keys::hex_lower;
use pqwrap_core::token::{
    Algorithm, Allowed, IssuancePolicy, Issuer, Manifest, PublicKey, QuantumJob, Request,
    RevocationList, SigningKey, TrustSet, Verifier, unix_now,
};

use crate::cmd::io_util::{Content, Existing, HostPort, Output, decimal, host_port, open_append};
use crate::exit::Status;
use crate::keyfiles::read_to_string_bounded;

/// Capability tokens: keys, issue, verify, check, narrow.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Box<Sub>,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Generate an ML-DSA signing key (private JWK, written with mode 0600).
    Keygen {
        /// ML-DSA-44, ML-DSA-65 or ML-DSA-87.
        #[arg(long, default_value = "ML-DSA-65")]
        alg: String,
        /// Key file to create (never overwritten).
        #[arg(short, long, value_name = "KEYFILE")]
        output: PathBuf,
    },
    /// Print the public key of a signing key: base64url COSE_Key (default) or JWK.
    Pubkey {
        /// Print an RFC 9964 AKP JWK instead of a COSE_Key.
        #[arg(long)]
        jwk: bool,
        /// The signing key file.
        #[arg(value_name = "KEYFILE")]
        key: PathBuf,
    },
    /// Mint a token for a manifest.
    Issue {
        /// Signing key file.
        #[arg(long, value_name = "KEYFILE")]
        key: PathBuf,
        /// Manifest JSON.
        #[arg(long, value_name = "FILE")]
        manifest: PathBuf,
        /// Audience (the enforcement point).
        #[arg(long)]
        aud: String,
        /// Issuer name put in `iss`.
        #[arg(long)]
        iss: Option<String>,
        /// Lifetime, e.g. 3600s or 15m (default: the manifest's ttl).
        #[arg(long, value_name = "DUR")]
        ttl: Option<String>,
        /// Longest lifetime this command will grant.
        #[arg(long, value_name = "DUR", default_value = "24h")]
        max_ttl: String,
        /// Bind the token to a holder public key (cnf), given as a public key file.
        #[arg(long, value_name = "PUBKEY_FILE")]
        cnf: Option<PathBuf>,
        /// Append an issuance record to this hash-chained audit log.
        #[arg(long, value_name = "FILE")]
        audit_log: Option<PathBuf>,
        /// Write the token here (mode 0600) instead of standard output.
        #[arg(short, long, value_name = "OUT")]
        output: Option<PathBuf>,
    },
    /// Verify a token and print its claims as JSON; exit 0 only when valid.
    Verify {
        #[command(flatten)]
        v: VerifyArgs,
        /// Token file (default: standard input).
        #[arg(value_name = "TOKEN_FILE")]
        token: Option<PathBuf>,
    },
    /// Verify a token and check one request: exit 0 allowed, 3 denied (with the reason).
    Check {
        #[command(flatten)]
        v: VerifyArgs,
        /// Token file.
        #[arg(value_name = "TOKEN_FILE")]
        token: PathBuf,
        #[command(flatten)]
        req: RequestArgs,
        /// With --quantum: jobs already counted against this token (for its own maxJobs
        /// ceiling; totals across narrowed tokens are the broker's to count).
        #[arg(long, value_name = "N", default_value_t = 0, value_parser = decimal::<u64>)]
        jobs_submitted: u64,
    },
    /// Ask a running broker for a token (`pqwrap broker serve`): it attests this process,
    /// applies its policy, and may ask for consent. Exit 3 when refused.
    Request {
        /// The broker's socket.
        #[arg(long, value_name = "PATH")]
        socket: PathBuf,
        /// Manifest JSON.
        #[arg(long, value_name = "MANIFEST.json")]
        manifest: PathBuf,
        /// Audience (the enforcement point).
        #[arg(long)]
        aud: String,
        /// Lifetime, e.g. 30m (default: the manifest's ttl, else the broker's default).
        #[arg(long, value_name = "DUR")]
        ttl: Option<String>,
        /// Narrow this token (issued by the same broker) instead of asking for a new one.
        #[arg(long, value_name = "TOKEN_FILE")]
        parent: Option<PathBuf>,
        /// Write the token here (mode 0600) instead of standard output.
        #[arg(short, long, value_name = "TOKEN")]
        output: Option<PathBuf>,
    },
    /// Mint a child token with fewer capabilities and no longer a lifetime than its parent.
    Narrow {
        /// Signing key file (its public key must have signed the parent).
        #[arg(long, value_name = "KEYFILE")]
        key: PathBuf,
        /// Parent token file.
        #[arg(long, value_name = "TOKEN_FILE")]
        parent: PathBuf,
        /// The child's manifest JSON.
        #[arg(long, value_name = "FILE")]
        manifest: PathBuf,
        /// Child lifetime (default: the manifest's ttl, else what remains of the parent's).
        #[arg(long, value_name = "DUR")]
        ttl: Option<String>,
        /// Refuse to narrow a parent revoked here.
        #[arg(long, value_name = "FILE")]
        revoked: Option<PathBuf>,
        /// Append an issuance record to this hash-chained audit log.
        #[arg(long, value_name = "FILE")]
        audit_log: Option<PathBuf>,
        /// Write the child token here (mode 0600).
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
    },
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// Trusted public key file (JWK or base64url COSE_Key); repeat for several.
    #[arg(long = "trust", value_name = "PUBKEY_FILE", required = true, num_args = 1..)]
    trust: Vec<PathBuf>,
    /// The audience this verifier is.
    #[arg(long)]
    aud: String,
    /// Revocation list: one hex cti per line.
    #[arg(long, value_name = "FILE")]
    revoked: Option<PathBuf>,
    /// Token Status List (a signed status list token, as `pqwrap broker serve --status-list`
    /// publishes it), verified with the --trust keys: tokens it marks revoked are refused.
    #[arg(long, value_name = "FILE")]
    status_list: Option<PathBuf>,
    /// Verify as of this time (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
    /// Clock leeway in seconds (at most 300).
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = decimal::<u64>)]
    leeway: u64,
}

#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct RequestArgs {
    /// May the token read PATH?
    #[arg(long, value_name = "PATH")]
    read: Option<String>,
    /// May the token write PATH?
    #[arg(long, value_name = "PATH")]
    write: Option<String>,
    /// May the token connect to HOST:PORT (the port in decimal)?
    #[arg(long, value_name = "HOST:PORT", value_parser = host_port)]
    connect: Option<HostPort>,
    /// May the token run CMD? It must be, byte for byte, a command the token grants (an
    /// absolute canonical path); on success the path to execute is printed.
    #[arg(long, value_name = "CMD")]
    exec: Option<String>,
    /// May the token use the clipboard?
    #[arg(long)]
    clipboard: bool,
    /// May the token submit the quantum job in JOB.json?
    #[arg(long, value_name = "JOB.json")]
    quantum: Option<PathBuf>,
}

/// Runs `pqwrap token …`.
pub fn run(args: Args) -> Result<Status> {
    match *args.command {
        Sub::Keygen { alg, output } => keygen(&alg, &output),
        Sub::Pubkey { jwk, key } => {
            let k = load_key(&key)?;
            if jwk {
                println!("{}", k.public_key().to_jwk());
            } else {
                println!(
                    "{}",
                    pqwrap_core::token::encode_text(&k.public_key().to_cose_key())
                );
            }
            Ok(Status::Success)
        }
        Sub::Issue {
            key,
            manifest,
            aud,
            iss,
            ttl,
            max_ttl,
            cnf,
            audit_log,
            output,
        } => {
            let k = load_key(&key)?;
            let m = load_manifest(&manifest)?;
            let ttl = match ttl.as_deref() {
                Some(t) => parse_dur("--ttl", t)?,
                None => m
                    .ttl
                    .context("no lifetime: give --ttl or put \"ttl\" in the manifest")?,
            };
            let policy = IssuancePolicy {
                max_ttl: parse_dur("--max-ttl", &max_ttl)?,
                allowed_roots: Vec::new(),
            };
            policy.check(&m, ttl)?;
            let cnf = cnf.map(|p| load_public(&p)).transpose()?;
            let mut issuer = Issuer::new(k);
            if let Some(iss) = iss {
                issuer = issuer.with_iss(iss);
            }
            // Open the log and the output before minting, so that a token is never issued
            // unlogged, nor logged as issued when it cannot be written.
            let mut log = audit_log.as_deref().map(open_log).transpose()?;
            let out = open_token_output(output.as_deref())?;
            let t = issuer.issue(&m, &aud, ttl, unix_now(), cnf)?;
            if let Some(log) = log.as_mut() {
                log.append(&t.audit_record())?;
            }
            write_token(out, &t.to_text())?;
            eprintln!(
                "token {} for {} ({} bytes), expires {}",
                hex_lower(&t.claims.cti),
                t.claims.sub,
                t.bytes.len(),
                fmt_time(t.claims.exp)
            );
            Ok(Status::Success)
        }
        Sub::Verify { v, token } => {
            let (verifier, now) = build_verifier(&v)?;
            let (text, name) = match &token {
                Some(p) => (read_small(p)?, p.display().to_string()),
                None => (
                    read_to_string_bounded(std::io::stdin().lock())
                        .context("cannot read standard input")?
                        .to_string(),
                    "standard input".to_owned(),
                ),
            };
            match verifier.verify_text(&text, now) {
                Ok(vt) => {
                    let mut j = vt.claims().to_json();
                    if let Some(m) = j.as_object_mut() {
                        m.insert("kid".into(), hex_lower(vt.kid()).into());
                        m.insert("alg".into(), vt.algorithm().name().into());
                    }
                    println!("{}", serde_json::to_string_pretty(&j)?);
                    Ok(Status::Success)
                }
                Err(e) => {
                    eprintln!("pqwrap: {name}: invalid token: {e}");
                    Ok(Status::Failure)
                }
            }
        }
        Sub::Check {
            v,
            token,
            req,
            jobs_submitted,
        } => check(&v, &token, &req, jobs_submitted),
        Sub::Request {
            socket,
            manifest,
            aud,
            ttl,
            parent,
            output,
        } => request(
            &socket,
            &manifest,
            aud,
            ttl,
            parent.as_deref(),
            output.as_deref(),
        ),
        Sub::Narrow {
            key,
            parent,
            manifest,
            ttl,
            revoked,
            audit_log,
            output,
        } => {
            let k = load_key(&key)?;
            let trust: TrustSet = [k.public_key().clone()].into_iter().collect();
            let mut verifier = Verifier::for_narrowing(trust);
            if let Some(r) = revoked {
                verifier = verifier.with_revocations(load_revocations(&r)?);
            }
            let now = unix_now();
            let parent_token = verifier
                .verify_text(&read_small(&parent)?, now)
                .context("the parent token does not verify under this key")?;
            let m = load_manifest(&manifest)?;
            let ttl = ttl.as_deref().map(|t| parse_dur("--ttl", t)).transpose()?;
            let mut log = audit_log.as_deref().map(open_log).transpose()?;
            let out = open_token_output(Some(&output))?;
            let t = Issuer::new(k).narrow(&parent_token, &m, ttl, now)?;
            if let Some(log) = log.as_mut() {
                log.append(&t.audit_record())?;
            }
            write_token(out, &t.to_text())?;
            eprintln!(
                "child token {} of {}, expires {}",
                hex_lower(&t.claims.cti),
                hex_lower(&parent_token.claims().cti),
                fmt_time(t.claims.exp)
            );
            Ok(Status::Success)
        }
    }
}

fn check(v: &VerifyArgs, token: &Path, req: &RequestArgs, jobs_submitted: u64) -> Result<Status> {
    let (verifier, now) = build_verifier(v)?;
    let text = read_small(token)?;
    let job;
    let request = if let Some(p) = &req.read {
        Request::Read(p)
    } else if let Some(p) = &req.write {
        Request::Write(p)
    } else if let Some(hp) = &req.connect {
        Request::Connect {
            host: &hp.host,
            port: hp.port,
        }
    } else if let Some(c) = &req.exec {
        Request::Exec {
            command: c,
            interactive: false,
        }
    } else if req.clipboard {
        Request::Clipboard
    } else if let Some(j) = &req.quantum {
        job = QuantumJob::from_json(&read_small(j)?)
            .with_context(|| format!("invalid quantum job {}", j.display()))?;
        Request::Submit {
            job: &job,
            already_submitted: jobs_submitted,
        }
    } else {
        bail!("no request given");
    };
    // An invalid token denies every request; the reason says why.
    let vt = match verifier.verify_text(&text, now) {
        Ok(vt) => vt,
        Err(e) => {
            println!("denied: invalid token: {e}");
            return Ok(Status::Denied);
        }
    };
    match vt.check(&request) {
        Ok(allowed) => {
            println!("allowed");
            // What to use is the grant's, not the request's: say it.
            match allowed {
                Allowed::Read(g) | Allowed::Write(g) => {
                    println!("open {} beneath {}", g.relative(), g.root())
                }
                Allowed::Exec(c) => println!("execute {}", c.path()),
                Allowed::Submit => {
                    let accounts: Vec<_> =
                        vt.claims().quota_accounts().map(|c| hex_lower(c)).collect();
                    println!("count against {}", accounts.join(" "));
                }
                _ => {}
            }
            Ok(Status::Success)
        }
        Err(d) => {
            println!("{d}");
            Ok(Status::Denied)
        }
    }
}

fn request(
    socket: &Path,
    manifest: &Path,
    aud: String,
    ttl: Option<String>,
    parent: Option<&Path>,
    output: Option<&Path>,
) -> Result<Status> {
    use pqwrap_broker::proto::{IssueRequest, Request as BrokerRequest, Response};
    // Checked here too, so that a mistake is reported against the file, before the broker
    // (which parses it again, strictly) is asked.
    load_manifest(manifest)?;
    // The output is opened before asking, so that a token is not minted for nowhere.
    let out = open_token_output(output)?;
    let req = BrokerRequest::Issue(IssueRequest {
        manifest: read_small(manifest)?,
        aud,
        ttl,
        parent: parent
            .map(read_small)
            .transpose()?
            .map(|t| t.trim().to_owned()),
    });
    match crate::cmd::broker::call(socket, &req)? {
        Response::Issued(i) => {
            write_token(out, &i.token)?;
            eprintln!("token {} expires {}", i.cti, fmt_time(i.exp));
            for n in &i.narrowed {
                eprintln!("narrowed: {n}");
            }
            Ok(Status::Success)
        }
        other => crate::cmd::broker::answer(socket, other),
    }
}

fn keygen(alg: &str, output: &Path) -> Result<Status> {
    let alg: Algorithm = alg.parse()?;
    let k = SigningKey::generate(alg)?;
    // A new 0600 file that appears, complete, only if the name is still free.
    let mut f = Output::open(Some(output), Content::Text, Existing::Refuse)
        .with_context(|| format!("cannot create key file {}", output.display()))?;
    let jwk = k.to_jwk_private();
    f.write_all(jwk.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .with_context(|| format!("cannot write key file {}", output.display()))?;
    f.commit()
        .with_context(|| format!("cannot create key file {}", output.display()))?;
    eprintln!("{} key, kid {}", alg, hex_lower(k.public_key().kid()));
    Ok(Status::Success)
}

fn load_key(path: &Path) -> Result<SigningKey> {
    let f = std::fs::File::open(path)
        .with_context(|| format!("cannot open key file {}", path.display()))?;
    let text = read_to_string_bounded(f)?;
    SigningKey::from_jwk_private(&text)
        .with_context(|| format!("cannot read key file {}", path.display()))
}

fn load_public(path: &Path) -> Result<PublicKey> {
    PublicKey::from_text(&read_small(path)?)
        .with_context(|| format!("cannot read public key file {}", path.display()))
}

fn load_manifest(path: &Path) -> Result<Manifest> {
    Manifest::from_json(&read_small(path)?)
        .with_context(|| format!("invalid manifest {}", path.display()))
}

fn load_revocations(path: &Path) -> Result<RevocationList> {
    RevocationList::parse(&read_small(path)?)
        .with_context(|| format!("invalid revocation list {}", path.display()))
}

/// Reads and verifies a Status List Token file against the trusted keys.
pub(crate) fn load_status_list(
    path: &Path,
    trust: &TrustSet,
    now: u64,
) -> Result<pqwrap_core::token::status::VerifiedStatusList> {
    use std::io::Read;
    let limit = pqwrap_core::token::status::MAX_STATUS_TOKEN_LEN as u64 * 2;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit).read_to_end(&mut bytes))
        .with_context(|| format!("cannot read status list {}", path.display()))?;
    pqwrap_core::token::status::verify(trust, &bytes, now)
        .with_context(|| format!("invalid status list {}", path.display()))
}

/// The audit log, opened as an output path is (never through a planted link), mode 0640.
fn open_log(path: &Path) -> Result<AuditLog> {
    let file = open_append(path, 0o640)
        .with_context(|| format!("cannot open audit log {}", path.display()))?;
    AuditLog::from_file(file).with_context(|| format!("cannot open audit log {}", path.display()))
}

pub(crate) fn read_small(path: &Path) -> Result<String> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(read_to_string_bounded(f)
        .with_context(|| format!("cannot read {}", path.display()))?
        .to_string())
}

fn parse_dur(what: &str, s: &str) -> Result<Duration> {
    Ok(pqwrap_core::token::manifest::parse_duration(what, s)?)
}

fn fmt_time(t: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t.min(253_402_300_799)))
        .to_string()
}

fn build_verifier(v: &VerifyArgs) -> Result<(Verifier, u64)> {
    let mut trust = TrustSet::new();
    for p in &v.trust {
        trust.add(load_public(p)?);
    }
    let now = match &v.at {
        Some(s) => humantime::parse_rfc3339(s)
            .with_context(|| format!("--at: {s:?} is not an RFC 3339 time"))?
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        None => unix_now(),
    };
    let status = v
        .status_list
        .as_deref()
        .map(|p| load_status_list(p, &trust, now))
        .transpose()?;
    let mut verifier = Verifier::new(trust, v.aud.clone()).with_leeway(v.leeway)?;
    if let Some(r) = &v.revoked {
        verifier = verifier.with_revocations(load_revocations(r)?);
    }
    if let Some(list) = status {
        verifier = verifier.with_status_list(list);
    }
    Ok((verifier, now))
}

/// Where a token goes: `-o FILE` or standard output. Tokens are bearer credentials: a file
/// is a new 0600 file renamed into place, so an existing file's wider mode is not kept (and
/// nothing is left half-written).
fn open_token_output(output: Option<&Path>) -> Result<Output> {
    Output::open(output, Content::Text, Existing::Replace)
}

fn write_token(mut out: Output, text: &str) -> Result<()> {
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")?;
    out.commit()
}
