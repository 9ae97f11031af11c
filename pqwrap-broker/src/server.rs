//! The service loop: the listening socket, one thread per connection (bounded), timeouts,
//! signals (`SIGHUP` reloads the policy, `SIGTERM`/`SIGINT` stop) and periodic work.

use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, poll};

use crate::peer::attest;
use crate::proto::{self, ErrorCode, Kind, ProtoError, Response};
use crate::service::Broker;

/// Connections handled at once; more are answered `busy` and closed.
pub const MAX_CONNECTIONS: usize = 256;
/// Time a client has to send a whole request frame (from when the broker starts waiting).
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to take a response.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests served on one connection before the broker closes it.
pub const MAX_REQUESTS_PER_CONNECTION: usize = 64;

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The socket path is in use by a live broker, or is not a socket.
    #[error("socket {path}: {what}")]
    Socket {
        /// The path.
        path: std::path::PathBuf,
        /// What is wrong.
        what: String,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// A systemd-activated listener (`LISTEN_FDS`), if the broker was started that way.
pub fn activated_listener() -> Result<Option<UnixListener>, std::io::Error> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    fds.take_unix_listener(0)
}

/// Creates the listening socket at `path` with `mode` and (if given) group `gid`. A stale
/// socket left by a dead broker is replaced; a live one, or a path that is not a socket, is an
/// error.
pub fn bind(path: &Path, mode: u32, gid: Option<u32>) -> Result<UnixListener, ServeError> {
    let err = |what: String| ServeError::Socket {
        path: path.to_owned(),
        what,
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(err("another broker is listening on it".into()));
            }
            std::fs::remove_file(path)
                .map_err(|e| err(format!("cannot remove the stale socket: {e}")))?;
        }
        Ok(_) => return Err(err("exists and is not a socket".into())),
        Err(_) => {}
    }
    // Created owner-only, then opened up to the policy's mode: never wider in between.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let l = UnixListener::bind(path);
    rustix::process::umask(old);
    let l = l.map_err(|e| err(format!("cannot bind: {e}")))?;
    apply_mode(path, mode, gid).map_err(|e| err(e.to_string()))?;
    Ok(l)
}

/// Sets the socket's mode and group (again after a policy reload).
pub fn apply_mode(path: &Path, mode: u32, gid: Option<u32>) -> std::io::Result<()> {
    if let Some(g) = gid {
        rustix::fs::chown(path, None, Some(rustix::fs::Gid::from_raw(g)))?;
    }
    rustix::fs::chmod(path, rustix::fs::Mode::from_raw_mode(mode))?;
    Ok(())
}

/// Reads with an overall deadline: each read gets the time that is left.
struct Deadline<'a> {
    s: &'a UnixStream,
    until: Instant,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.s.set_read_timeout(Some(left))?;
        let mut s = self.s;
        s.read(buf)
    }
}

fn send(s: &UnixStream, r: &Response) {
    let mut w = s;
    let _ = w.write_all(&proto::encode_response(r));
    let _ = w.flush();
}

fn code_of(e: &ProtoError) -> ErrorCode {
    match e {
        ProtoError::Version(_) => ErrorCode::Version,
        _ => ErrorCode::BadRequest,
    }
}

fn connection(broker: &Broker, s: UnixStream) {
    let _ = s.set_write_timeout(Some(WRITE_TIMEOUT));
    let peer = match attest(&s, &broker.cache) {
        Ok(p) => p,
        Err(e) => {
            let reason = format!("peer attestation failed: {e}");
            broker.audit_rejected(None, ErrorCode::Attestation, &reason);
            send(&s, &Response::error(ErrorCode::Attestation, reason));
            return;
        }
    };
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        let mut r = Deadline {
            s: &s,
            until: Instant::now() + FRAME_TIMEOUT,
        };
        let body = match proto::read_frame(&mut r, Kind::Request) {
            Ok(b) => b,
            Err(ProtoError::Closed) => return,
            Err(e) => {
                // After a bad frame the stream cannot be re-synchronised: answer and close.
                let reason = e.to_string();
                broker.audit_rejected(Some(&peer), code_of(&e), &reason);
                send(&s, &Response::error(code_of(&e), reason));
                return;
            }
        };
        let req = match std::str::from_utf8(&body)
            .map_err(|_| "not UTF-8".to_string())
            .and_then(|t| serde_json::from_str::<proto::Request>(t).map_err(|e| e.to_string()))
        {
            Ok(r) => r,
            Err(e) => {
                let reason = format!("malformed request: {e}");
                broker.audit_rejected(Some(&peer), ErrorCode::BadRequest, &reason);
                send(&s, &Response::error(ErrorCode::BadRequest, reason));
                return;
            }
        };
        if !broker.admit(&peer) {
            let reason = "too many requests from this process identity (uid and executable); try again later";
            broker.audit_rejected(Some(&peer), ErrorCode::RateLimited, reason);
            send(&s, &Response::error(ErrorCode::RateLimited, reason));
            continue;
        }
        let resp = broker.handle(&peer, req);
        send(&s, &resp);
    }
}

fn log(msg: &str) {
    eprintln!("pqwrap broker: {msg}");
}

/// Serves on `listener` until `SIGTERM` or `SIGINT`. `socket` is the path to re-apply the
/// policy's mode and group to after `SIGHUP` (none when systemd owns the socket).
pub fn serve(
    broker: Arc<Broker>,
    listener: UnixListener,
    socket: Option<&Path>,
) -> Result<(), ServeError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGTERM, SIGINT])
        .map_err(ServeError::Signals)?;
    let handle = signals.handle();
    {
        let broker = broker.clone();
        let stop = stop.clone();
        let socket = socket.map(Path::to_owned);
        std::thread::spawn(move || {
            for sig in signals.forever() {
                if sig == SIGHUP {
                    match broker.reload_policy() {
                        Ok(()) => {
                            let p = broker.policy();
                            log(&format!("policy reloaded ({} rule(s))", p.rules.len()));
                            if let Some(path) = &socket
                                && let Err(e) = apply_mode(path, p.socket_mode, p.socket_group)
                            {
                                log(&format!("cannot apply the socket mode: {e}"));
                            }
                        }
                        Err(e) => log(&format!("policy NOT reloaded, keeping the old one: {e}")),
                    }
                } else {
                    stop.store(true, Ordering::SeqCst);
                    break;
                }
            }
        });
    }
    {
        let broker = broker.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut last = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(200));
                if last.elapsed() >= broker.tick_interval() {
                    last = Instant::now();
                    if let Err(e) = broker.tick() {
                        log(&format!("periodic work failed: {e}"));
                    }
                }
            }
        });
    }
    let active = Arc::new(AtomicUsize::new(0));
    let _ = listener.set_nonblocking(true);
    while !stop.load(Ordering::SeqCst) {
        let mut fds = [PollFd::new(&listener, PollFlags::IN)];
        let t = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 250_000_000,
        };
        match poll(&mut fds, Some(&t)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                log(&format!("poll on the socket failed: {e}"));
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        }
        let s = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                // Out of descriptors or memory: back off instead of spinning.
                log(&format!("accept failed: {e}"));
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let _ = s.set_nonblocking(false);
        if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            let _ = s.set_write_timeout(Some(Duration::from_millis(100)));
            send(
                &s,
                &Response::error(ErrorCode::Busy, "too many connections; try again"),
            );
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let broker = broker.clone();
        let active2 = active.clone();
        let spawned = std::thread::Builder::new()
            .name("pqwrap-conn".into())
            .spawn(move || {
                connection(&broker, s);
                active2.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::SeqCst);
            log("cannot start a connection thread");
        }
    }
    handle.close();
    // Let connections in flight finish their current request.
    let until = Instant::now() + Duration::from_secs(5);
    while active.load(Ordering::SeqCst) > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    log("stopped");
    Ok(())
}
