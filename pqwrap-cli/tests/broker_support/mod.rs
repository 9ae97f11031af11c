//! A real `pqwrap broker serve` process for tests: its own temporary directory, key,
//! policy, state, audit log, OCSF stream and status list; stopped (by its pid) on drop.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use crate::common::{BIN, pqwrap};

pub use pqwrap_core::token::manifest::DESIGN_EXAMPLE;

/// Whether tests may switch users (root with setpriv); the reason when not.
pub fn can_switch_users() -> Result<(), String> {
    if rustix::process::geteuid().as_raw() != 0 {
        return Err("the test is not running as root".into());
    }
    match Command::new("setpriv").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => Err("setpriv (util-linux) is not installed".into()),
    }
}

/// `pqwrap …` as uid/gid `id` (no supplementary groups), via setpriv.
pub fn pqwrap_as(id: u32) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        &format!("--reuid={id}"),
        &format!("--regid={id}"),
        "--clear-groups",
        BIN,
    ]);
    c
}

pub fn out(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A running broker.
pub struct Broker {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    /// Run the broker as this uid (with CAP_SYS_PTRACE to read other users' /proc/PID/exe).
    pub user: Option<u32>,
    /// Started through systemd-socket-activate.
    pub activated: bool,
}

impl Broker {
    /// Writes `policy` and a fresh key into a new directory (owned by `user`, if given) and
    /// starts the broker.
    pub fn start(policy: &str, user: Option<u32>) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let o = pqwrap()
            .args(["token", "keygen", "-o"])
            .arg(dir.path().join("broker.key"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", out(&o));
        std::fs::write(dir.path().join("policy.toml"), policy).unwrap();
        std::fs::write(dir.path().join("manifest.json"), DESIGN_EXAMPLE).unwrap();
        if let Some(u) = user {
            for p in ["", "broker.key", "policy.toml"] {
                rustix::fs::chown(
                    dir.path().join(p),
                    Some(rustix::fs::Uid::from_raw(u)),
                    Some(rustix::fs::Gid::from_raw(u)),
                )
                .unwrap();
            }
        }
        let mut b = Broker {
            dir,
            child: None,
            user,
            activated: false,
        };
        b.spawn();
        b
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn socket(&self) -> PathBuf {
        self.path("broker.sock")
    }

    pub fn trust(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.path("state/trust"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    }

    /// Starts the broker under `systemd-socket-activate`, which creates the socket and passes
    /// it (LISTEN_FDS); the broker is started on the first connection.
    pub fn start_activated(policy: &str) -> Broker {
        let mut b = Broker::start(policy, None);
        b.kill9();
        let _ = std::fs::remove_file(b.socket());
        b.activated = true;
        b.spawn();
        b
    }

    /// Starts the broker process and waits until it answers.
    pub fn spawn(&mut self) {
        let mut c = if self.activated {
            let mut c = Command::new("systemd-socket-activate");
            c.arg("-l").arg(self.socket()).arg(BIN);
            c
        } else {
            match self.user {
                Some(u) => {
                    let mut c = Command::new("setpriv");
                    c.args([
                        &format!("--reuid={u}"),
                        &format!("--regid={u}"),
                        "--clear-groups",
                        "--inh-caps=+sys_ptrace",
                        "--ambient-caps=+sys_ptrace",
                        BIN,
                    ]);
                    c
                }
                None => Command::new(BIN),
            }
        };
        c.args(["broker", "serve", "--socket"])
            .arg(self.socket())
            .arg("--key")
            .arg(self.path("broker.key"))
            .arg("--policy")
            .arg(self.path("policy.toml"))
            .arg("--state")
            .arg(self.path("state"))
            .arg("--ocsf")
            .arg(self.path("ocsf.jsonl"))
            .arg("--status-list")
            .arg(self.path("status.cwt"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.path("serve.log"))
                    .unwrap(),
            );
        self.child = Some(c.spawn().unwrap());
        let t = Instant::now();
        loop {
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                return;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("the broker exited ({st}):\n{}", self.log());
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "the broker did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("serve.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// SIGKILL, and wait for it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn signal(&self, sig: rustix::process::Signal) {
        if let Some(p) = rustix::process::Pid::from_raw(self.pid()) {
            rustix::process::kill_process(p, sig).unwrap();
        }
    }

    /// `pqwrap token request` for the manifest file `manifest` (in the broker's directory)
    /// as `as_user` (or this process's user), writing the token to `out_name`.
    pub fn request(
        &self,
        as_user: Option<u32>,
        manifest: &str,
        aud: &str,
        out_name: &str,
    ) -> Output {
        let mut c = match as_user {
            Some(u) => pqwrap_as(u),
            None => pqwrap(),
        };
        c.args(["token", "request", "--socket"])
            .arg(self.socket())
            .arg("--manifest")
            .arg(self.path(manifest))
            .args(["--aud", aud, "-o"])
            .arg(self.out_dir(as_user).join(out_name))
            .output()
            .unwrap()
    }

    /// Where a client of `as_user` writes (a directory it owns).
    pub fn out_dir(&self, as_user: Option<u32>) -> PathBuf {
        let d = self.path(&format!("out-{}", as_user.unwrap_or(0)));
        if !d.exists() {
            std::fs::create_dir(&d).unwrap();
            if let Some(u) = as_user {
                rustix::fs::chown(
                    &d,
                    Some(rustix::fs::Uid::from_raw(u)),
                    Some(rustix::fs::Gid::from_raw(u)),
                )
                .unwrap();
            }
        }
        d
    }

    /// `pqwrap token verify` with the published trust set and status list.
    pub fn verify(&self, token: &Path, aud: &str) -> Output {
        let mut c = pqwrap();
        c.args(["token", "verify", "--aud", aud]);
        for t in self.trust() {
            c.arg("--trust").arg(t);
        }
        c.arg("--status-list")
            .arg(self.path("status.cwt"))
            .arg(token)
            .output()
            .unwrap()
    }

    /// The cti of a token file (verified).
    pub fn cti_of(&self, token: &Path, aud: &str) -> String {
        let o = self.verify(token, aud);
        assert!(o.status.success(), "{}", out(&o));
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        j["cti"].as_str().unwrap().to_owned()
    }

    /// The records of the audit log (verified first).
    pub fn audit(&self) -> Vec<serde_json::Value> {
        let o = pqwrap()
            .args(["audit", "verify"])
            .arg(self.path("state/audit.log"))
            .output()
            .unwrap();
        assert!(o.status.success(), "audit log does not verify: {}", out(&o));
        std::fs::read_to_string(self.path("state/audit.log"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["record"].clone())
            .collect()
    }

    pub fn ocsf(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path("ocsf.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A policy granting the design manifest for `files.local` to `uid`, administered by
/// `admin`; `extra` is appended to the rule (more keys), `broker` to `[broker]`.
pub fn policy(uid: &str, admin: &str, broker: &str, extra: &str) -> String {
    format!(
        r#"[broker]
socket_mode = "0666"
{broker}

[[admin]]
uid = {admin}

[[gatekeeper]]
uid = {admin}
audiences = ["files.local"]

[[rule]]
name = "agents"
uid = {uid}
audiences = ["files.local"]
max_ttl = "1h"
{extra}
[rule.grant]
fileAccess = [{{ path = "/home/user/Documents/Contracts", mode = "read" }}]
network = [{{ host = "internal-api.company.local", port = 443 }}]
shell = {{ allowedCommands = ["/usr/bin/less"], interactive = false }}
quantum = {{ backends = ["qpu-sim-1"], maxQubits = 32, maxShots = 10000, maxJobs = 5, maxRuntime = "600s", algorithms = ["vqe"] }}
"#
    )
}
