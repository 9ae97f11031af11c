//! `pqwrap exec`: runs a command under the capabilities of a verified pqwrap token, enforced
//! by the kernel. The design, what is and is not enforced, and the tests' results are in
//! docs/SANDBOX.md.
//!
//! The order of [`run`]:
//! 1. admission ([`admission::admit`]): the token verifies against the pinned key for this
//!    audience, is live and not revoked, and the command resolves to a granted command;
//! 2. the egress proxy ([`proxy::EgressProxy`]) starts on loopback, outside the sandbox;
//! 3. the plan ([`policy::Plan`]): Landlock file, TCP and scope rules and a seccomp socket
//!    filter, refused if the kernel cannot enforce it (unless best effort);
//! 4. a dedicated thread drops every capability, restricts itself (`no_new_privs`,
//!    Landlock, seccomp — all per thread) and spawns the command, which inherits that;
//! 5. the supervisor (a child subreaper, see [`tree`]) waits for the command, the token's
//!    `exp`, a revocation or a signal, then ends the whole process tree;
//! 6. every step is written to the hash-chained audit log and, if asked, as an OCSF event.

pub mod admission;
pub mod error;
mod events;
pub mod policy;
pub mod proxy;
pub mod revocation;
pub mod tree;

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pqwrap_core::audit::AuditLog;
use pqwrap_core::ocsf::OcsfLog;
use pqwrap_core::token::{TrustSet, Verifier, unix_now};
use rustix::process::{Pid, Signal, WaitStatus};

use events::{Cause, Event, Journal};

pub use admission::{Admitted, Terminal};
pub use error::{AdmissionError, SandboxError, StatusListProblem};
pub use policy::{Enforcement, Kernel, Plan, SystemPaths};
pub use revocation::{RevocationFile, RevocationSource, StatusListFile};

/// How often the supervisor looks at the clock and its signal flags; the command's exit
/// wakes it at once (through a pidfd).
pub const TICK: Duration = Duration::from_millis(20);

/// Exit status when the token's `exp` ended the agent.
pub const EXIT_EXPIRED: u8 = 124;
/// Exit status when a revocation ended the agent (or a revocation source failed).
pub const EXIT_REVOKED: u8 = 123;

/// Where the supervisor's messages go (the CLI prints them to stderr).
pub type Say = Arc<dyn Fn(&str) + Send + Sync>;

/// One `pqwrap exec` run.
pub struct Exec {
    /// The token's text form.
    pub token_text: String,
    /// The pinned broker keys.
    pub trust: TrustSet,
    /// This enforcement point's audience.
    pub audience: String,
    /// The system paths the sandbox may read.
    pub system_paths: SystemPaths,
    /// Whether to refuse when the kernel cannot enforce everything.
    pub enforcement: Enforcement,
    /// Asked before the start and polled during the run; each must say "valid".
    pub revocation: Vec<Box<dyn RevocationSource>>,
    /// The hash-chained audit log, if any.
    pub audit: Option<AuditLog>,
    /// The OCSF stream, if any: the same steps as the audit log, as OCSF 1.x events.
    pub ocsf: Option<OcsfLog>,
    /// The command as given.
    pub command: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Where messages go.
    pub say: Say,
}

/// How the run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The command exited with this status.
    Exited(i32),
    /// The command was killed by this signal, not sent by pqwrap.
    Signaled(i32),
    /// The token's `exp` was reached and the tree was ended.
    Expired,
    /// The token was revoked (or its revocation source failed) and the tree was ended.
    Revoked(String),
    /// pqwrap received this signal (SIGINT, SIGTERM, SIGHUP) and ended the tree.
    Interrupted(i32),
}

impl Outcome {
    /// The exit status `pqwrap exec` ends with: the command's own, 128 + a signal's number,
    /// [`EXIT_EXPIRED`] or [`EXIT_REVOKED`].
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Exited(c) => u8::try_from(*c).unwrap_or(1),
            Outcome::Signaled(s) | Outcome::Interrupted(s) => u8::try_from(128 + *s).unwrap_or(255),
            Outcome::Expired => EXIT_EXPIRED,
            Outcome::Revoked(_) => EXIT_REVOKED,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Outcome::Exited(_) => "exited",
            Outcome::Signaled(_) => "signaled",
            Outcome::Expired => "expired",
            Outcome::Revoked(_) => "revoked",
            Outcome::Interrupted(_) => "interrupted",
        }
    }
}

/// Why the supervisor stopped waiting.
enum Stop {
    Exited(WaitStatus),
    Expired,
    Revoked(String),
    /// A revocation source could not answer: failing closed.
    Unknown(String),
    Interrupted(i32),
}

/// Runs `e` to its end.
pub fn run(mut e: Exec) -> Result<Outcome, SandboxError> {
    let now = unix_now();
    let cwd = std::env::current_dir()
        .map_err(|err| SandboxError::process("read the current directory", err))?;
    let path_env = std::env::var_os("PATH");
    let trust = std::mem::take(&mut e.trust);
    let admitted = admission::admit(
        admission::Candidate {
            token_text: &e.token_text,
            trust: trust.clone(),
            audience: &e.audience,
            now,
            command: &e.command,
            path_env: path_env.as_deref(),
            cwd: &cwd,
        },
        &mut e.revocation,
    );
    let journal = Journal::new(e.audit.take(), e.ocsf.take(), e.say.clone());
    let admitted = match admitted {
        Ok(a) => a,
        Err(err) => {
            // A token that verified but was refused (revoked, command not granted) is named
            // in the record; verifying it again costs one signature check, on this path only.
            let journal = match Verifier::new(trust, &e.audience).verify_text(&e.token_text, now) {
                Ok(t) => journal.for_token(t.claims()),
                Err(_) => journal,
            };
            journal.record(&Event::Refused {
                command: &e.command.to_string_lossy(),
                reason: &err.to_string(),
            });
            return Err(err.into());
        }
    };
    let claims = admitted.token.claims().clone();
    let journal = Arc::new(journal.for_token(&claims));
    let refuse = |journal: &Journal, err: SandboxError| {
        journal.record(&Event::Refused {
            command: &admitted.command,
            reason: &err.to_string(),
        });
        err
    };

    let kernel = Kernel::probe();
    let j = journal.clone();
    let proxy =
        proxy::EgressProxy::start(claims.capabilities.clone(), Arc::new(move |d| j.proxy(d)))
            .map_err(SandboxError::Proxy)?;
    let terminal = admitted.terminal();
    let display_files = display_files();
    let plan = Plan::new(
        kernel,
        policy::PlanInput {
            caps: &claims.capabilities,
            system: &e.system_paths,
            proxy_port: proxy.addr().port(),
            interactive: terminal == Terminal::Interactive,
            display_files: &display_files,
        },
    );
    let plan = match plan.and_then(|p| p.check(e.enforcement).map(|()| p)) {
        Ok(p) => p,
        Err(err) => return Err(refuse(&journal, err)),
    };
    for w in &plan.not_enforced {
        journal.say(&format!("best effort: NOT ENFORCED: {w}"));
    }
    let built = plan
        .landlock()
        .and_then(|(r, skipped)| Ok((r, skipped, plan.seccomp()?)));
    let (ruleset, skipped, bpf) = match built {
        Ok(b) => b,
        Err(err) => return Err(refuse(&journal, err)),
    };
    for s in &skipped {
        journal.say(s);
    }

    let mut cmd = Command::new(&admitted.command);
    cmd.args(&e.args);
    let url = format!("http://{}", proxy.addr());
    for k in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        cmd.env(k, &url);
    }
    for k in ["NO_PROXY", "no_proxy"] {
        cmd.env_remove(k);
    }
    if plan.display == policy::Display::Denied {
        for k in ["DISPLAY", "WAYLAND_DISPLAY", "WAYLAND_SOCKET", "XAUTHORITY"] {
            cmd.env_remove(k);
        }
    }
    if terminal == Terminal::Detached {
        // Opened here: the confined thread could not open it under `--system-paths none`.
        let null =
            File::open("/dev/null").map_err(|err| SandboxError::process("open /dev/null", err))?;
        cmd.stdin(Stdio::from(null));
    }
    before_exec(&mut cmd, terminal);

    let me = rustix::process::getpid();
    rustix::process::set_child_subreaper(Some(me))
        .map_err(|err| SandboxError::process("become a child subreaper", err))?;
    let signals = Signals::register()?;

    let (spawned_tx, spawned_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let command_name = admitted.command.clone();
    let spawner = std::thread::Builder::new()
        .name("sandbox-spawn".into())
        .spawn(move || {
            let r = confine(ruleset, &bpf).and_then(|()| {
                cmd.spawn()
                    .map(|c| c.id())
                    .map_err(|source| SandboxError::Spawn {
                        command: command_name,
                        source,
                    })
            });
            let _ = spawned_tx.send(r);
            // The child's parent-death signal is tied to this thread: it stays until the end.
            let _ = release_rx.recv();
        })
        .map_err(|err| SandboxError::process("start the confining thread", err))?;
    let child = spawned_rx
        .recv()
        .map_err(|_| SandboxError::process("confine", std::io::Error::other("thread ended")))
        .and_then(|r| r);
    let child = match child.and_then(|id| {
        i32::try_from(id)
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| SandboxError::process("start", std::io::Error::other("bad pid")))
    }) {
        Ok(pid) => pid,
        Err(err) => {
            let _ = release_tx.send(());
            let _ = spawner.join();
            drop(signals);
            let _ = rustix::process::set_child_subreaper(None);
            return Err(refuse(&journal, err));
        }
    };

    journal.say(&format!(
        "started {} (pid {}) until {} under {}; proxy {}",
        admitted.command,
        child.as_raw_nonzero(),
        claims.exp,
        kernel,
        proxy.addr()
    ));
    journal.record(&Event::Launch(events::Launch {
        claims: &claims,
        command: &admitted.command,
        args: e
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        pid: child.as_raw_nonzero().get().unsigned_abs(),
        landlock: kernel.to_string(),
        enforcement: match e.enforcement {
            Enforcement::Strict => "strict",
            Enforcement::BestEffort => "best-effort",
        },
        not_enforced: &plan.not_enforced,
        proxy: proxy.addr().to_string(),
        terminal: match terminal {
            Terminal::Detached => "none",
            Terminal::Interactive => "inherited",
        },
    }));

    let deadline = UNIX_EPOCH + Duration::from_secs(claims.exp);
    let pidfd = rustix::process::pidfd_open(child, rustix::process::PidfdFlags::empty()).ok();
    let mut sources: Vec<(Box<dyn RevocationSource>, Instant)> = std::mem::take(&mut e.revocation)
        .into_iter()
        .map(|r| {
            let at = Instant::now() + r.poll_interval();
            (r, at)
        })
        .collect();
    let stop = 'wait: loop {
        if let Some(st) = tree::reap(child) {
            break Stop::Exited(st);
        }
        if let Some(sig) = signals.received() {
            break Stop::Interrupted(sig);
        }
        if SystemTime::now() >= deadline {
            break Stop::Expired;
        }
        for (r, at) in &mut sources {
            if Instant::now() < *at {
                continue;
            }
            match r.check(&admitted.token) {
                Ok(revocation::Status::Valid) => {}
                Ok(revocation::Status::Revoked(why)) => break 'wait Stop::Revoked(why),
                Ok(revocation::Status::Unknown(why)) => break 'wait Stop::Unknown(why),
                Err(err) => break 'wait Stop::Unknown(format!("cannot be checked: {err}")),
            }
            *at = Instant::now() + r.poll_interval();
        }
        wait_a_tick(pidfd.as_ref());
    };

    let ended = tree::end_all(me, child);
    let outcome = match &stop {
        Stop::Exited(st) => from_status(*st),
        Stop::Expired => Outcome::Expired,
        Stop::Revoked(why) | Stop::Unknown(why) => Outcome::Revoked(why.clone()),
        Stop::Interrupted(sig) => Outcome::Interrupted(*sig),
    };
    let why = match &stop {
        Stop::Exited(_) => None,
        Stop::Expired => Some((
            Cause::Expired,
            format!("the token expired at {}", claims.exp),
        )),
        Stop::Revoked(w) => Some((Cause::Revoked, format!("the token is revoked: {w}"))),
        Stop::Unknown(w) => Some((
            Cause::Revoked,
            format!("the token's revocation status is unknown, failing closed: {w}"),
        )),
        Stop::Interrupted(s) => Some((Cause::Interrupted, format!("pqwrap received signal {s}"))),
    };
    if let Some((cause, text)) = &why {
        journal.say(&format!(
            "{text}: ended {} process(es) (SIGTERM, SIGKILL after {} ms)",
            ended.signalled,
            tree::GRACE.as_millis()
        ));
        journal.record(&Event::Ended {
            cause: *cause,
            reason: text,
            signalled: ended.signalled,
            survivors: ended.survivors,
        });
    } else if ended.signalled > 0 {
        journal.say(&format!(
            "the command exited; ended {} process(es) it left behind",
            ended.signalled
        ));
    }
    if ended.survivors > 0 {
        journal.say(&format!(
            "WARNING: {} process(es) still alive after {} s of SIGKILL",
            ended.survivors,
            tree::KILL_PATIENCE.as_secs()
        ));
    }
    journal.record(&Event::Exit {
        outcome: &outcome,
        left_behind: if why.is_none() { ended.signalled } else { 0 },
    });
    let _ = release_tx.send(());
    let _ = spawner.join();
    proxy.stop();
    drop(signals);
    let _ = rustix::process::set_child_subreaper(None);
    Ok(outcome)
}

/// Sleeps for [`TICK`], or less if the command exits meanwhile.
fn wait_a_tick(pidfd: Option<&std::os::fd::OwnedFd>) {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let Some(fd) = pidfd else {
        std::thread::sleep(TICK);
        return;
    };
    let tick = Timespec {
        tv_sec: 0,
        tv_nsec: i64::from(TICK.subsec_nanos()),
    };
    // An interruption by a signal is fine: its flag is looked at next.
    let _ = poll(&mut [PollFd::new(fd, PollFlags::IN)], Some(&tick));
}

fn from_status(st: WaitStatus) -> Outcome {
    if let Some(code) = st.exit_status() {
        Outcome::Exited(code)
    } else if let Some(sig) = st.terminating_signal() {
        Outcome::Signaled(sig)
    } else {
        Outcome::Exited(1)
    }
}

/// The X11 socket of `DISPLAY`, the Wayland socket and the X authority file, as far as the
/// environment names them (only used when the token grants the clipboard).
fn display_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(d) = std::env::var_os("DISPLAY").and_then(|d| d.into_string().ok())
        && let Some(n) = d
            .strip_prefix(':')
            .map(|r| r.split('.').next().unwrap_or(""))
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
    {
        out.push(PathBuf::from(format!("/tmp/.X11-unix/X{n}")));
    }
    if let Some(a) = std::env::var_os("XAUTHORITY") {
        out.push(PathBuf::from(a));
    }
    if let (Some(dir), Some(w)) = (
        std::env::var_os("XDG_RUNTIME_DIR"),
        std::env::var_os("WAYLAND_DISPLAY"),
    ) {
        out.push(PathBuf::from(dir).join(w));
    }
    out.retain(|p| p.is_absolute());
    out
}

/// Drops every capability of this thread (all sets and the bounding set, so that even a
/// root-owned program run by root gains none), then applies `no_new_privs`, the Landlock
/// ruleset and the seccomp filter to this thread only. Whatever it spawns inherits all four.
fn confine(
    ruleset: landlock::RulesetCreated,
    bpf: &seccompiler::BpfProgram,
) -> Result<(), SandboxError> {
    use rustix::thread::{CapabilitySet, CapabilitySets};
    rustix::thread::set_no_new_privs(true)
        .map_err(|err| SandboxError::process("set no_new_privs", err))?;
    let has_setpcap = rustix::thread::capabilities(None)
        .is_ok_and(|c| c.effective.contains(CapabilitySet::SETPCAP));
    if has_setpcap {
        for bit in 0..64 {
            let cap = CapabilitySet::from_bits_retain(1 << bit);
            match rustix::thread::capability_is_in_bounding_set(cap) {
                Ok(true) => rustix::thread::remove_capability_from_bounding_set(cap)
                    .map_err(|err| SandboxError::process("drop a bounding capability", err))?,
                Ok(false) => {}
                Err(_) => break, // past the kernel's last capability
            }
        }
    }
    rustix::thread::clear_ambient_capability_set()
        .map_err(|err| SandboxError::process("clear the ambient capabilities", err))?;
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: CapabilitySet::empty(),
            permitted: CapabilitySet::empty(),
            inheritable: CapabilitySet::empty(),
        },
    )
    .map_err(|err| SandboxError::process("drop capabilities", err))?;
    ruleset.restrict_self()?;
    seccompiler::apply_filter(bpf)?;
    Ok(())
}

/// What the child does between fork and exec: a new session without a controlling terminal
/// (unless interactive), and SIGKILL if the thread that spawned it dies (so a supervisor
/// killed with SIGKILL takes the command with it).
#[allow(unsafe_code)]
fn before_exec(cmd: &mut Command, terminal: Terminal) {
    let detach = terminal == Terminal::Detached;
    // SAFETY: the closure runs in the forked child before exec. It only makes the setsid(2)
    // and prctl(2) system calls through rustix, which are async-signal-safe: no allocation,
    // no lock, nothing shared with other threads of the parent.
    unsafe {
        cmd.pre_exec(move || {
            if detach {
                rustix::process::setsid()?;
            }
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            Ok(())
        });
    }
}

/// SIGINT, SIGTERM and SIGHUP set flags instead of killing the supervisor (which would leave
/// the tree without its expiry).
struct Signals {
    flags: Vec<(i32, Arc<AtomicBool>, signal_hook::SigId)>,
}

impl Signals {
    fn register() -> Result<Signals, SandboxError> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut flags = Vec::new();
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            let flag = Arc::new(AtomicBool::new(false));
            let id = signal_hook::flag::register(sig, flag.clone())
                .map_err(|err| SandboxError::process("install signal handlers", err))?;
            flags.push((sig, flag, id));
        }
        Ok(Signals { flags })
    }

    fn received(&self) -> Option<i32> {
        self.flags
            .iter()
            .find(|(_, f, _)| f.load(Ordering::SeqCst))
            .map(|(s, _, _)| *s)
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for (_, _, id) in &self.flags {
            signal_hook::low_level::unregister(*id);
        }
    }
}
