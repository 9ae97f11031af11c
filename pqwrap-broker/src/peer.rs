//! Peer attestation: who is at the other end of a Unix socket connection.
//!
//! The kernel says, through `SO_PEERCRED`, which process connected and with which effective
//! uid and gid. The broker then pins that process with a pidfd and reads what `/proc` says
//! about it: its executable (the path `/proc/PID/exe` links to, and the SHA-256 of the file
//! it maps, read through that link so a replaced or deleted file is hashed as it was
//! executed), its start time and its credentials. Finally it re-checks, through the pidfd,
//! that the process is still alive and is the one it read about (same start time, same
//! credentials as at connect time). A PID that was reused in between belongs to a process
//! that the pidfd does not refer to, so what was read cannot be attributed to the peer.
//!
//! What this does *not* prove is documented in docs/BROKER.md ("What attestation proves").

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::linux::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Mutex;

use rustix::event::{PollFd, PollFlags, poll};
use rustix::process::{PidfdFlags, pidfd_open};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Why a peer could not be attested.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AttestError {
    /// `SO_PEERCRED` failed.
    #[error("cannot read the peer's credentials (SO_PEERCRED): {0}")]
    PeerCred(std::io::Error),
    /// The peer has no PID in this namespace (e.g. it lives in another PID namespace).
    #[error("the peer's process is not visible in this PID namespace")]
    NoPid,
    /// The peer process is gone (exited before or during attestation).
    #[error("the peer process {0} exited before it could be attested")]
    Gone(i32),
    /// What `/proc` says no longer matches the connection's credentials.
    #[error("the peer process {pid} changed identity during attestation ({what})")]
    Changed {
        /// The PID.
        pid: i32,
        /// What changed.
        what: &'static str,
    },
    /// `/proc/PID/…` could not be read.
    #[error("cannot read /proc/{pid}/{file}: {source}{}", if source.kind() == std::io::ErrorKind::PermissionDenied {
        " (attesting another user's process needs CAP_SYS_PTRACE)"
    } else { "" })]
    Proc {
        /// The PID.
        pid: i32,
        /// The file under `/proc/PID`.
        file: &'static str,
        /// Why.
        source: std::io::Error,
    },
}

/// An attested peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Process id (in the broker's PID namespace).
    pub pid: i32,
    /// Effective uid at connect time.
    pub uid: u32,
    /// Effective gid at connect time.
    pub gid: u32,
    /// The executable's path, as `/proc/PID/exe` names it (may end in ` (deleted)`).
    pub exe: PathBuf,
    /// SHA-256 of the executable file the process runs.
    pub exe_sha256: [u8; 32],
}

impl Peer {
    /// The executable's SHA-256 in hex.
    pub fn exe_sha256_hex(&self) -> String {
        pqwrap_core::token::keys::hex_lower(&self.exe_sha256)
    }

    /// The identity rate limits are kept per: uid and executable hash.
    pub fn identity(&self) -> (u32, [u8; 32]) {
        (self.uid, self.exe_sha256)
    }

    /// The peer as JSON, for audit records.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "pid": self.pid, "uid": self.uid, "gid": self.gid,
            "exe": self.exe.to_string_lossy(), "exe_sha256": self.exe_sha256_hex(),
        })
    }
}

/// SHA-256 of executables, keyed by what identifies a file's content on this machine
/// (device, inode, size, modification and change times), so each binary is read once.
#[derive(Default)]
pub struct HashCache {
    map: Mutex<HashMap<FileStamp, [u8; 32]>>,
    /// Held while a file is hashed: many connections from a new executable arriving at once
    /// wait for one hash instead of each reading the whole file (a 50 MB binary hashed by 60
    /// threads at once kept well-behaved clients waiting for seconds).
    hashing: Mutex<()>,
}

/// Device, inode, size, mtime (s, ns), ctime (s, ns).
type FileStamp = (u64, u64, u64, i64, i64, i64, i64);

/// Most executables remembered; past that the cache starts again (it is only a speed-up).
const CACHE_MAX: usize = 4096;

impl HashCache {
    fn hash(&self, f: &mut File, pid: i32) -> Result<[u8; 32], AttestError> {
        let proc_err = |source| AttestError::Proc {
            pid,
            file: "exe",
            source,
        };
        let m = f.metadata().map_err(proc_err)?;
        let key = (
            m.st_dev(),
            m.st_ino(),
            m.st_size(),
            m.st_mtime(),
            m.st_mtime_nsec(),
            m.st_ctime(),
            m.st_ctime_nsec(),
        );
        let cached = |c: &HashCache| c.map.lock().ok().and_then(|m| m.get(&key).copied());
        if let Some(h) = cached(self) {
            return Ok(h);
        }
        let _one_at_a_time = self.hashing.lock();
        if let Some(h) = cached(self) {
            return Ok(h);
        }
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f.read(&mut buf).map_err(proc_err)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let h: [u8; 32] = hasher.finalize().into();
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= CACHE_MAX {
                map.clear();
            }
            map.insert(key, h);
        }
        Ok(h)
    }
}

fn read_proc(pid: i32, file: &'static str) -> Result<String, AttestError> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}")).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            AttestError::Gone(pid)
        } else {
            AttestError::Proc { pid, file, source }
        }
    })
}

/// The start time (field 22 of `/proc/PID/stat`, clock ticks since boot).
fn start_time(pid: i32) -> Result<u64, AttestError> {
    let stat = read_proc(pid, "stat")?;
    // The command name (field 2) is in parentheses and may contain anything, so fields are
    // counted after its last ')'.
    let after = stat
        .rsplit_once(')')
        .map(|(_, a)| a)
        .ok_or(AttestError::Changed {
            pid,
            what: "unreadable stat",
        })?;
    after
        .split_whitespace()
        .nth(19)
        .and_then(|s| s.parse().ok())
        .ok_or(AttestError::Changed {
            pid,
            what: "unreadable stat",
        })
}

/// The effective uid and gid from `/proc/PID/status`.
fn effective_ids(pid: i32) -> Result<(u32, u32), AttestError> {
    let status = read_proc(pid, "status")?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok())
    };
    match (field("Uid:"), field("Gid:")) {
        (Some(u), Some(g)) => Ok((u, g)),
        _ => Err(AttestError::Changed {
            pid,
            what: "unreadable status",
        }),
    }
}

/// Whether the process a pidfd refers to has exited (its pidfd becomes readable then).
fn exited(pidfd: &impl AsFd) -> bool {
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match poll(&mut fds, Some(&zero)) {
        Ok(0) => false,
        // Readable (exited) or an error: either way it cannot vouch for the process.
        _ => true,
    }
}

/// Attests the peer of `sock`.
pub fn attest(sock: &UnixStream, cache: &HashCache) -> Result<Peer, AttestError> {
    let cred =
        rustix::net::sockopt::socket_peercred(sock).map_err(|e| AttestError::PeerCred(e.into()))?;
    let pid = cred.pid.as_raw_nonzero().get();
    if pid <= 0 {
        return Err(AttestError::NoPid);
    }
    let (uid, gid) = (cred.uid.as_raw(), cred.gid.as_raw());
    let pidfd = pidfd_open(cred.pid, PidfdFlags::empty()).map_err(|e| {
        if e == rustix::io::Errno::SRCH {
            AttestError::Gone(pid)
        } else {
            AttestError::Proc {
                pid,
                file: "(pidfd_open)",
                source: e.into(),
            }
        }
    })?;
    let started = start_time(pid)?;
    if effective_ids(pid)? != (uid, gid) {
        // Either the process changed its credentials since it connected, or the PID now
        // belongs to another process: neither may speak for the connection.
        return Err(AttestError::Changed {
            pid,
            what: "credentials differ from the connection's",
        });
    }
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            AttestError::Gone(pid)
        } else {
            AttestError::Proc {
                pid,
                file: "exe",
                source,
            }
        }
    })?;
    let mut f = File::open(format!("/proc/{pid}/exe")).map_err(|source| AttestError::Proc {
        pid,
        file: "exe",
        source,
    })?;
    let exe_sha256 = cache.hash(&mut f, pid)?;
    // Re-check through the pidfd: the process it pins is still alive, so the PID still names
    // it, and it is the process read above (same start time, same credentials).
    if exited(&pidfd) {
        return Err(AttestError::Gone(pid));
    }
    if start_time(pid)? != started {
        return Err(AttestError::Changed {
            pid,
            what: "start time",
        });
    }
    if effective_ids(pid)? != (uid, gid) {
        return Err(AttestError::Changed {
            pid,
            what: "credentials differ from the connection's",
        });
    }
    if std::fs::read_link(format!("/proc/{pid}/exe")).ok().as_ref() != Some(&exe) {
        return Err(AttestError::Changed {
            pid,
            what: "executable",
        });
    }
    Ok(Peer {
        pid,
        uid,
        gid,
        exe,
        exe_sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attests_its_own_process() {
        let (a, b) = UnixStream::pair().unwrap();
        let cache = HashCache::default();
        let p = attest(&a, &cache).unwrap();
        assert_eq!(p.pid as u32, std::process::id());
        assert_eq!(p.uid, rustix::process::geteuid().as_raw());
        assert_eq!(p.exe, std::env::current_exe().unwrap());
        let want: [u8; 32] = Sha256::digest(std::fs::read(&p.exe).unwrap()).into();
        assert_eq!(p.exe_sha256, want);
        // Second time from the cache, same answer.
        assert_eq!(attest(&b, &cache).unwrap(), p);
    }

    #[test]
    fn stat_fields_survive_odd_command_names() {
        // Our own stat parses; the name in parentheses cannot shift the fields.
        assert!(start_time(std::process::id() as i32).unwrap() > 0);
    }
}
