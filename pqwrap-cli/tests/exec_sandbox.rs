//! `pqwrap exec` with real processes: the real binary runs a real Python probe inside the
//! sandbox, which tries reads, writes, executions, connections and signals and reports the
//! errno of each; loopback HTTP servers in this process are the granted and the ungranted
//! peers. Where Landlock (ABI 6 or later) or `/usr/bin/python3` is missing, each test prints
//! a boxed SKIPPED banner and checks nothing.
// A failed unwrap in a test is a failed test, with its message.
#![allow(clippy::unwrap_used)]

mod broker_support;
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{BIN, code, text};
use pqwrap_core::token::status::{Bits, Status, StatusList, StatusListClaims, StatusRef};
use pqwrap_core::token::{
    Algorithm, IssuedToken, Issuer, Manifest, SigningKey, encode_text, unix_now,
};

const PYTHON: &str = "/usr/bin/python3";

/// Runs each `[op, arg]` of argv[1] and prints `[op, arg, result]` per line: "ok", an errno
/// name, or what was read.
const PROBE: &str = r#"
import errno, json, os, signal, socket, sys, time, urllib.request, urllib.error

def http_connect(port):
    proxy = os.environ["HTTPS_PROXY"].rsplit(":", 1)
    s = socket.create_connection((proxy[0].split("//")[1], int(proxy[1])), timeout=5)
    s.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        b = s.recv(1)
        if not b: break
        head += b
    status = head.split(b"\r\n")[0].decode()
    if " 200 " not in status + " ":
        return status
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    body = b""
    while True:
        b = s.recv(4096)
        if not b: break
        body += b
    return "tunnel " + body.decode().split("\r\n\r\n", 1)[1]

def run(op, arg):
    try:
        if op == "read":
            with open(arg) as f: return "ok " + f.read().strip()
        if op == "list": os.listdir(arg)
        elif op == "write":
            with open(arg, "w") as f: f.write("w")
        elif op == "mkdir": os.mkdir(arg)
        elif op == "remove": os.remove(arg)
        elif op == "truncate": os.truncate(arg, 0)
        elif op == "exec":
            pid = os.fork()
            if pid == 0:
                try:
                    os.execv(arg, [arg, "-c", "exit 7"])
                except OSError as e:
                    os._exit(100 + e.errno)
            code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            return "ok" if code == 7 else errno.errorcode.get(code - 100, str(code))
        elif op == "memfd-exec":
            fd = os.memfd_create("x")
            with open(arg, "rb") as f: os.write(fd, f.read())
            pid = os.fork()
            if pid == 0:
                try:
                    os.execve(fd, [arg, "-c", "exit 7"], {})
                except OSError as e:
                    os._exit(100 + e.errno)
            code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            return "ok" if code == 7 else errno.errorcode.get(code - 100, str(code))
        elif op == "connect": socket.create_connection(("127.0.0.1", int(arg)), timeout=3).close()
        elif op == "proxyport": return os.environ["HTTP_PROXY"].rsplit(":", 1)[1]
        elif op == "udp": socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        elif op == "unix": socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        elif op == "unix-connect":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(arg.replace("@", "\0", 1))
        elif op == "bind":
            s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
        elif op == "kill": os.kill(int(arg), 0)
        elif op == "http":
            with urllib.request.urlopen(arg, timeout=10) as r: return f"{r.status} {r.read().decode()}"
        elif op == "connect-tunnel": return http_connect(int(arg))
        elif op == "raw":
            proxy = os.environ["HTTP_PROXY"].rsplit(":", 1)
            s = socket.create_connection((proxy[0].split("//")[1], int(proxy[1])), timeout=5)
            s.sendall(arg.encode() + b"\r\n\r\n")
            line = b""
            while b"\r\n" not in line:
                b = s.recv(1)
                if not b: break
                line += b
            return line.split(b"\r\n")[0].decode()
        elif op == "env": return os.environ.get(arg, "<unset>")
        elif op == "stdin": return repr(sys.stdin.read())
        elif op == "tty": os.close(os.open("/dev/tty", os.O_RDWR))
        elif op == "nnp":
            import ctypes
            return str(ctypes.CDLL(None).prctl(39, 0, 0, 0, 0))  # PR_GET_NO_NEW_PRIVS
        elif op == "bounding":
            import ctypes
            caps = ctypes.CDLL(None)
            # PR_CAPBSET_READ of every capability the kernel knows
            return str(sum(caps.prctl(23, c, 0, 0, 0) == 1 for c in range(64)))
        elif op == "session": return "leader" if os.getsid(0) == os.getpid() else "not leader"
        elif op == "detach":
            # Fork twice and leave a new session behind that ignores SIGTERM.
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    signal.signal(signal.SIGTERM, signal.SIG_IGN)
                    with open(arg + ".tmp", "w") as f: f.write(str(os.getpid()))
                    os.rename(arg + ".tmp", arg)
                    time.sleep(100)
                os._exit(0)
            for _ in range(200):
                if os.path.exists(arg): break
                time.sleep(0.01)
        elif op == "sleep": time.sleep(float(arg))
        elif op == "exit": sys.stdout.flush(); os._exit(int(arg))
        return "ok"
    except urllib.error.HTTPError as e:
        return f"http {e.code}"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))

for op, arg in json.loads(sys.argv[1]):
    print(json.dumps([op, arg, run(op, arg)]), flush=True)
"#;

fn skipped(test: &str, because: &str) {
    let lines = [
        format!("SKIPPED {test}"),
        format!("because {because}"),
        "nothing was checked by this test".to_string(),
    ];
    let w = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let bar = "*".repeat(w + 8);
    let mut banner = format!("\n{bar}\n");
    for l in &lines {
        banner.push_str(&format!("*** {l:<w$} ***\n"));
    }
    banner.push_str(&format!("{bar}\n"));
    eprint!("{banner}");
}

/// Whether this machine can run these tests; prints the banner when not.
fn available(test: &str) -> bool {
    let k = pqwrap_sandbox::Kernel::probe();
    if k.abi < 6 {
        skipped(
            test,
            &format!("this kernel has Landlock ABI {} (6 is needed)", k.abi),
        );
        return false;
    }
    if !Path::new(PYTHON).exists() {
        skipped(test, &format!("{PYTHON} is not installed"));
        return false;
    }
    true
}

/// A temporary directory with a broker key, its public key file and tokens.
struct Setup {
    dir: tempfile::TempDir,
    issuer: Issuer,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_seed(Algorithm::MlDsa65, &[7u8; 32]);
        std::fs::write(
            dir.path().join("broker.pub"),
            encode_text(&key.public_key().to_cose_key()),
        )
        .unwrap();
        Setup {
            dir,
            issuer: Issuer::new(key),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn p(&self, rel: &str) -> String {
        self.path(rel).to_str().unwrap().to_owned()
    }

    /// Issues a token for `caps` (the JSON of the manifest's capabilities) valid for `ttl`
    /// seconds and writes it to `name`.
    fn token(&self, name: &str, caps: serde_json::Value, ttl: u64) -> IssuedToken {
        self.token_with(name, caps, ttl, None)
    }

    /// [`Setup::token`], with a `status` claim if given.
    fn token_with(
        &self,
        name: &str,
        caps: serde_json::Value,
        ttl: u64,
        status: Option<StatusRef>,
    ) -> IssuedToken {
        let m = serde_json::json!({"agent": "probe", "capabilities": caps});
        let manifest = Manifest::from_json(&m.to_string()).unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let ttl = Duration::from_secs(ttl);
        let t = match status {
            Some(st) => self
                .issuer
                .issue_with_status(&manifest, "sandbox.test", ttl, now, None, st)
                .unwrap(),
            None => self
                .issuer
                .issue(&manifest, "sandbox.test", ttl, now, None)
                .unwrap(),
        };
        std::fs::write(self.path(name), t.to_text()).unwrap();
        t
    }

    /// Writes to `name` a Token Status List (16 one-bit entries, published as
    /// [`STATUS_URI`]) signed by `issuer` at `iat`, expiring at `exp`, with `revoked` set.
    fn status_list(
        &self,
        name: &str,
        issuer: &Issuer,
        iat: u64,
        exp: Option<u64>,
        revoked: &[u64],
    ) -> String {
        let mut l = StatusList::new(Bits::One, 16).unwrap();
        for i in revoked {
            l.set(*i, Status::Invalid).unwrap();
        }
        let mut c = StatusListClaims::new(STATUS_URI, iat, l);
        c.exp = exp;
        std::fs::write(
            self.path(name),
            encode_text(&issuer.sign_status_list(&c).unwrap()),
        )
        .unwrap();
        self.p(name)
    }

    fn exec(&self, token: &str, extra: &[&str], command: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("exec")
            .arg("--token")
            .arg(self.path(token))
            .arg("--trust")
            .arg(self.path("broker.pub"))
            .args(["--aud", "sandbox.test"])
            .args(extra)
            .arg("--")
            .args(command);
        c
    }

    /// Runs the probe with `ops` under `token`.
    fn probe(&self, token: &str, extra: &[&str], ops: serde_json::Value) -> Output {
        self.exec(token, extra, &[PYTHON, "-c", PROBE, &ops.to_string()])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

/// The URI of the status lists these tests sign themselves.
const STATUS_URI: &str = "urn:pqwrap:test:sandbox";

/// A command under `pqwrap exec` that has started: the probe's first line was read.
struct Running {
    child: Child,
}

impl Running {
    /// Starts `c` (a probe whose first operation prints a line and whose second sleeps) and
    /// waits for that line.
    fn start(mut c: Command) -> Running {
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        if first.is_empty() {
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("the probe did not start: {err}");
        }
        Running { child }
    }

    /// Waits for the end: the exit status, standard error, and how long it took from now.
    fn wait(mut self) -> (Option<i32>, String, Duration) {
        let t = Instant::now();
        let status = self.child.wait().unwrap();
        let took = t.elapsed();
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status.code(), err, took)
    }
}

/// A probe that reports its session, then sleeps for 30 s.
const SLEEPER: &str = r#"[["session", ""], ["sleep", "30"]]"#;

/// One probe operation and the result it must have ("ok*" accepts any read content).
type Case<'a> = (&'a str, String, &'a str);

impl Setup {
    /// Runs the probe with `cases` under `token`; it must exit 0 and each operation must give
    /// its expected result.
    fn expect(&self, token: &str, extra: &[&str], cases: &[Case<'_>]) -> Output {
        let ops: Vec<_> = cases
            .iter()
            .map(|(op, arg, _)| serde_json::json!([op, arg]))
            .collect();
        let o = self.probe(token, extra, serde_json::Value::Array(ops));
        assert_eq!(code(&o), 0, "{}", text(&o));
        let got = results(&o);
        assert_eq!(got.len(), cases.len(), "{}", text(&o));
        let wrong: Vec<String> = cases
            .iter()
            .zip(&got)
            .filter(|((_, _, want), got)| match want.strip_suffix('*') {
                Some(prefix) => !got.starts_with(prefix),
                None => got != want,
            })
            .map(|((op, arg, want), got)| format!("{op} {arg}: got {got}, want {want}"))
            .collect();
        assert!(wrong.is_empty(), "{}\n{}", wrong.join("\n"), text(&o));
        o
    }
}

/// The probe's results, in order.
fn results(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v[2].as_str().unwrap().to_owned()
        })
        .collect()
}

/// A loopback HTTP/1.0 server answering every request with `body`; stops on drop.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(body: &'static str) -> Server {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                let _ = write!(
                    conn,
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Server { port, stop }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn python_only() -> serde_json::Value {
    serde_json::json!({"allowedCommands": [PYTHON], "interactive": false})
}

#[test]
fn reads_inside_grants_succeed_and_outside_fail_with_eacces() {
    if !available("reads_inside_grants_succeed_and_outside_fail_with_eacces") {
        return;
    }
    let s = Setup::new();
    std::fs::create_dir_all(s.path("granted/sub")).unwrap();
    std::fs::create_dir_all(s.path("granted2")).unwrap();
    std::fs::write(s.path("granted/sub/a.txt"), "inside").unwrap();
    std::fs::write(s.path("granted2/b.txt"), "sibling").unwrap();
    std::fs::write(s.path("outside.txt"), "outside").unwrap();
    s.token(
        "t",
        serde_json::json!({"fileAccess": [{"path": s.p("granted"), "mode": "read"}],
                           "shell": python_only()}),
        60,
    );
    s.expect(
        "t",
        &[],
        &[
            ("read", s.p("granted/sub/a.txt"), "ok inside"),
            ("list", s.p("granted/sub"), "ok"),
            ("read", s.p("outside.txt"), "EACCES"),
            // A sibling whose name starts like the grant's.
            ("read", s.p("granted2/b.txt"), "EACCES"),
            ("list", s.p(""), "EACCES"),
            ("read", "/etc/shadow".into(), "EACCES"),
            ("list", "/tmp".into(), "EACCES"),
            ("read", "/proc/self/status".into(), "EACCES"),
            // /usr is one of the default read-only system paths.
            ("read", "/usr/lib/os-release".into(), "ok*"),
        ],
    );
}

#[test]
fn writes_under_a_read_grant_fail_and_under_a_write_grant_succeed() {
    if !available("writes_under_a_read_grant_fail_and_under_a_write_grant_succeed") {
        return;
    }
    let s = Setup::new();
    std::fs::create_dir_all(s.path("ro")).unwrap();
    std::fs::create_dir_all(s.path("rw")).unwrap();
    std::fs::write(s.path("ro/f"), "keep").unwrap();
    std::fs::write(s.path("rw/f"), "old").unwrap();
    s.token(
        "t",
        serde_json::json!({"fileAccess": [{"path": s.p("ro"), "mode": "read"},
                                          {"path": s.p("rw"), "mode": "readwrite"}],
                           "shell": python_only()}),
        60,
    );
    s.expect(
        "t",
        &[],
        &[
            ("write", s.p("ro/f"), "EACCES"),
            ("write", s.p("ro/new"), "EACCES"),
            ("truncate", s.p("ro/f"), "EACCES"),
            ("remove", s.p("ro/f"), "EACCES"),
            ("mkdir", s.p("ro/d"), "EACCES"),
            ("write", s.p("rw/f"), "ok"),
            ("write", s.p("rw/new"), "ok"),
            ("mkdir", s.p("rw/d"), "ok"),
            ("remove", s.p("rw/new"), "ok"),
            ("write", "/dev/null".into(), "ok"),
        ],
    );
    assert_eq!(std::fs::read_to_string(s.path("ro/f")).unwrap(), "keep");
    assert_eq!(std::fs::read_to_string(s.path("rw/f")).unwrap(), "w");
}

#[test]
fn dotdot_and_symlinks_leading_out_of_a_grant_are_denied() {
    if !available("dotdot_and_symlinks_leading_out_of_a_grant_are_denied") {
        return;
    }
    let s = Setup::new();
    std::fs::create_dir_all(s.path("g/inner")).unwrap();
    std::fs::create_dir_all(s.path("secret")).unwrap();
    std::fs::write(s.path("secret/key"), "s3cret").unwrap();
    std::fs::write(s.path("g/inner/ok"), "fine").unwrap();
    std::os::unix::fs::symlink(s.path("secret/key"), s.path("g/link-out")).unwrap();
    std::os::unix::fs::symlink(s.path("secret"), s.path("g/dir-out")).unwrap();
    std::os::unix::fs::symlink("inner/ok", s.path("g/link-in")).unwrap();
    s.token(
        "t",
        serde_json::json!({"fileAccess": [{"path": s.p("g"), "mode": "readwrite"}],
                           "shell": python_only()}),
        60,
    );
    s.expect(
        "t",
        &[],
        &[
            ("read", format!("{}/../secret/key", s.p("g")), "EACCES"),
            (
                "read",
                format!("{}/inner/../../secret/key", s.p("g")),
                "EACCES",
            ),
            ("read", s.p("g/link-out"), "EACCES"),
            ("read", s.p("g/dir-out/key"), "EACCES"),
            ("write", s.p("g/dir-out/planted"), "EACCES"),
            ("read", s.p("g/link-in"), "ok fine"),
            ("read", format!("{}/inner/../inner/ok", s.p("g")), "ok fine"),
        ],
    );
    assert!(!s.path("secret/planted").exists());
}

#[test]
fn only_allowed_commands_run_and_can_be_executed_inside() {
    if !available("only_allowed_commands_run_and_can_be_executed_inside") {
        return;
    }
    let s = Setup::new();
    s.token(
        "t",
        serde_json::json!({"shell": {"allowedCommands": [PYTHON, "/bin/sh", "/opt/not-installed/tool"],
                                     "interactive": false}}),
        60,
    );
    // Only root can drop the bounding set; other users have no capability to begin with.
    let bounding = if rustix::process::geteuid().is_root() {
        "0"
    } else {
        "*"
    };
    let o = s.expect(
        "t",
        &[],
        &[
            ("exec", "/bin/sh".into(), "ok"),
            ("exec", "/usr/bin/env".into(), "EACCES"),
            ("exec", "/bin/bash".into(), "EACCES"),
            // A copy of an allowed program in memory is no allowed file.
            ("memfd-exec", "/bin/sh".into(), "EACCES"),
            // no_new_privs is set, and no capability is left in the bounding set.
            ("nnp", String::new(), "1"),
            ("bounding", String::new(), bounding),
        ],
    );
    // An allowed command that is not installed here grants nothing, and says so.
    assert!(
        text(&o).contains("/opt/not-installed/tool: does not exist"),
        "{}",
        text(&o)
    );

    // A path with `..` is refused, not tidied (a symlink would make it name another file);
    // `./` in the current directory is fine.
    let o = s
        .exec("t", &[], &["../bin/sh", "-c", "exit 0"])
        .current_dir("/usr/lib")
        .output()
        .unwrap();
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(text(&o).contains("command path refused"), "{}", text(&o));
    let o = s
        .exec("t", &[], &["./python3", "-c", "raise SystemExit(4)"])
        .current_dir("/usr/bin")
        .output()
        .unwrap();
    assert_eq!(code(&o), 4, "{}", text(&o));

    // Admission: a command that is not granted does not start at all.
    let marker = s.path("ran");
    let o = s
        .exec("t", &[], &["/usr/bin/touch", marker.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(
        text(&o).contains("/usr/bin/touch is not in allowedCommands"),
        "{}",
        text(&o)
    );
    assert!(!marker.exists());
    // Nor does anything under a token for another audience, or under a key not pinned.
    let o = Command::new(BIN)
        .args(["exec", "--token"])
        .arg(s.path("t"))
        .arg("--trust")
        .arg(s.path("broker.pub"))
        .args(["--aud", "other", "--", "/bin/sh", "-c", "exit 0"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(text(&o).contains("audience"), "{}", text(&o));
}

#[test]
fn tcp_goes_only_to_the_proxy_and_udp_unix_and_bind_are_refused() {
    if !available("tcp_goes_only_to_the_proxy_and_udp_unix_and_bind_are_refused") {
        return;
    }
    let s = Setup::new();
    let granted = Server::start("granted");
    let other = Server::start("other");
    s.token(
        "t",
        serde_json::json!({"network": [{"host": "127.0.0.1", "port": granted.port}],
                           "shell": python_only()}),
        60,
    );
    let o = s.probe(
        "t",
        &[],
        serde_json::json!([
            ["connect", granted.port.to_string()],
            ["connect", other.port.to_string()],
            ["proxyport", ""],
            ["udp", ""],
            ["unix", ""],
            ["bind", ""],
        ]),
    );
    assert_eq!(code(&o), 0, "{}", text(&o));
    let r = results(&o);
    assert_eq!(r[..2], ["EACCES", "EACCES"], "{}", text(&o));
    assert_eq!(r[3..], ["EACCES", "EACCES", "EACCES"], "{}", text(&o));
    // The proxy's own port is the one TCP destination allowed.
    let o = s.probe("t", &[], serde_json::json!([["proxyport", ""]]));
    let port = results(&o)[0].clone();
    assert!(port.parse::<u16>().is_ok(), "{}", text(&o));
}

#[test]
fn through_the_proxy_a_granted_server_answers_and_an_ungranted_one_gets_403() {
    if !available("through_the_proxy_a_granted_server_answers_and_an_ungranted_one_gets_403") {
        return;
    }
    let s = Setup::new();
    let granted = Server::start("granted");
    let named = Server::start("named");
    let other = Server::start("other");
    // Granted, but nothing listens there.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = s.token(
        "t",
        serde_json::json!({"network": [{"host": "127.0.0.1", "port": granted.port},
                                       {"host": "localhost", "port": named.port},
                                       {"host": "127.0.0.1", "port": closed}],
                           "shell": python_only()}),
        60,
    );
    let log = s.path("audit.log");
    let ocsf = s.path("ocsf.jsonl");
    let url = |port: u16, host: &str| format!("http://{host}:{port}/x");
    let o = s.expect(
        "t",
        &[
            "--audit-log",
            log.to_str().unwrap(),
            "--ocsf",
            ocsf.to_str().unwrap(),
        ],
        &[
            ("http", url(granted.port, "127.0.0.1"), "200 granted"),
            ("http", url(other.port, "127.0.0.1"), "http 403"),
            // The proxy resolves a granted name itself.
            ("http", url(named.port, "localhost"), "200 named"),
            // Grants are compared as written: names, not the addresses they resolve to.
            ("http", url(granted.port, "localhost"), "http 403"),
            ("http", url(named.port, "127.0.0.1"), "http 403"),
            ("connect-tunnel", granted.port.to_string(), "tunnel granted"),
            (
                "connect-tunnel",
                other.port.to_string(),
                "HTTP/1.1 403 Forbidden",
            ),
            ("http", url(closed, "127.0.0.1"), "http 502"),
            (
                "raw",
                "BREW /pot HTCPCP/1.0".into(),
                "HTTP/1.1 400 Bad Request",
            ),
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("proxy: allowed HTTP 127.0.0.1:{}", granted.port)),
        "{err}"
    );
    assert!(
        err.contains(&format!("proxy: denied CONNECT 127.0.0.1:{}", other.port)),
        "{err}"
    );
    // Every decision is in the hash-chained audit log, between launch and exit.
    let events = audit_events(&log);
    assert_eq!(
        events.first().map(|e| e["event"].as_str().unwrap()),
        Some("exec.launch")
    );
    assert_eq!(
        events.last().map(|e| e["event"].as_str().unwrap()),
        Some("exec.exit")
    );
    let decisions: Vec<String> = events
        .iter()
        .filter(|e| e["event"] == "exec.proxy")
        .map(|e| {
            format!(
                "{} {} {}",
                e["decision"].as_str().unwrap(),
                e["method"].as_str().unwrap(),
                e["port"]
            )
        })
        .collect();
    assert_eq!(
        decisions,
        [
            format!("allow HTTP {}", granted.port),
            format!("deny HTTP {}", other.port),
            format!("allow HTTP {}", named.port),
            format!("deny HTTP {}", granted.port),
            format!("deny HTTP {}", named.port),
            format!("allow CONNECT {}", granted.port),
            format!("deny CONNECT {}", other.port),
            format!("deny HTTP {closed}"),
            "deny HTTP 0".to_string(),
        ]
    );
    let v = Command::new(BIN)
        .args(["audit", "verify"])
        .arg(&log)
        .output()
        .unwrap();
    assert_eq!(code(&v), 0, "{}", text(&v));

    // The same steps as OCSF events: Process Activity Launch, HTTP Activity per decision
    // (its activity the method), Process Activity Terminate for the exit.
    let cti = pqwrap_core::token::keys::hex_lower(&t.claims.cti);
    let events = ocsf_events(&ocsf);
    let kinds: Vec<&str> = events.iter().map(envelope).collect();
    let mut want = vec!["exec.launch"];
    want.extend(["exec.proxy"; 9]);
    want.push("exec.exit");
    assert_eq!(kinds, want);
    for e in &events {
        assert_eq!(e["unmapped"]["token_id"], cti.as_str(), "{e}");
    }
    let launch = &events[0];
    assert_eq!(
        (launch["class_uid"].as_u64(), launch["activity_id"].as_u64()),
        (Some(1007), Some(1))
    );
    let pid = launch["process"]["pid"].as_u64().unwrap();
    assert!(
        launch["process"]["cmd_line"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{PYTHON} -c ")),
        "{launch}"
    );
    assert_eq!(launch["unmapped"]["exp"], t.claims.exp);
    assert_eq!(
        launch["unmapped"]["privileges"],
        serde_json::json!([
            format!("net:127.0.0.1:{}", granted.port),
            format!("net:localhost:{}", named.port),
            format!("net:127.0.0.1:{closed}"),
            format!("exec:{PYTHON}")
        ])
    );
    assert_eq!(launch["unmapped"]["enforcement"], "strict");
    let proxy_port: u64 = launch["unmapped"]["proxy"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // (allowed, activity_id, host, port, answered)
    let want: Vec<(u64, u64, &str, u16, Option<u64>)> = vec![
        (1, 3, "127.0.0.1", granted.port, None),
        (2, 3, "127.0.0.1", other.port, Some(403)),
        (1, 3, "localhost", named.port, None),
        (2, 3, "localhost", granted.port, Some(403)),
        (2, 3, "127.0.0.1", named.port, Some(403)),
        (1, 1, "127.0.0.1", granted.port, Some(200)),
        (2, 1, "127.0.0.1", other.port, Some(403)),
        (2, 3, "127.0.0.1", closed, Some(502)),
    ];
    for (e, (status, activity, host, port, answered)) in events[1..9].iter().zip(want) {
        assert_eq!(e["class_uid"], 4002, "{e}");
        assert_eq!(e["activity_id"], activity, "{e}");
        assert_eq!(e["status_id"], status, "{e}");
        let verb = if activity == 1 { "CONNECT" } else { "GET" };
        assert_eq!(e["http_request"]["http_method"], verb, "{e}");
        assert_eq!(e["http_request"]["url"]["hostname"], host, "{e}");
        assert_eq!(e["http_request"]["url"]["port"], port, "{e}");
        let dst = if host == "localhost" {
            "hostname"
        } else {
            "ip"
        };
        assert_eq!(e["dst_endpoint"][dst], host, "{e}");
        assert_eq!(e["dst_endpoint"]["port"], port, "{e}");
        assert_eq!(e["http_response"]["code"].as_u64(), answered, "{e}");
        assert_eq!(e["src_endpoint"]["ip"], "127.0.0.1", "{e}");
        assert_eq!(
            e["unmapped"]["decision"],
            if status == 1 { "allow" } else { "deny" },
            "{e}"
        );
        // The proxy is pqwrap's, so pqwrap is the actor of its decisions.
        assert_ne!(e["actor"]["process"]["pid"].as_u64(), Some(pid), "{e}");
        assert!(proxy_port > 0);
    }
    // A request that cannot be parsed: Other (99), answered 400, no destination.
    let bad = &events[9];
    assert_eq!(
        (bad["class_uid"].as_u64(), bad["activity_id"].as_u64()),
        (Some(4002), Some(99))
    );
    assert_eq!(bad["status_id"], 2);
    assert_eq!(bad["http_response"]["code"], 400);
    assert!(
        bad.get("http_request").is_none() && bad.get("dst_endpoint").is_none(),
        "{bad}"
    );
    assert!(
        bad["status_detail"]
            .as_str()
            .unwrap()
            .contains("unsupported protocol"),
        "{bad}"
    );
    let exit = &events[10];
    assert_eq!(
        (exit["class_uid"].as_u64(), exit["activity_id"].as_u64()),
        (Some(1007), Some(2))
    );
    assert_eq!(exit["exit_code"], 0);
    assert_eq!(exit["unmapped"]["outcome"], "exited");
    // A command that ended by itself is the actor of its own termination.
    assert_eq!(exit["actor"]["process"]["pid"].as_u64(), Some(pid));
}

fn audit_events(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["record"].clone())
        .collect()
}

fn pid_gone(pid_file: &Path) -> bool {
    let pid = std::fs::read_to_string(pid_file).unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
    // Gone, or at most a zombie waiting for its (subreaper) parent.
    stat.is_err()
        || stat.is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
}

#[test]
fn the_agent_and_a_detached_child_are_gone_within_one_second_of_exp() {
    if !available("the_agent_and_a_detached_child_are_gone_within_one_second_of_exp") {
        return;
    }
    let s = Setup::new();
    std::fs::create_dir_all(s.path("w")).unwrap();
    let t = s.token(
        "t",
        serde_json::json!({"fileAccess": [{"path": s.p("w"), "mode": "readwrite"}],
                           "shell": python_only()}),
        2,
    );
    let log = s.path("audit.log");
    let ocsf = s.path("ocsf.jsonl");
    let o = s.probe(
        "t",
        &[
            "--audit-log",
            log.to_str().unwrap(),
            "--ocsf",
            ocsf.to_str().unwrap(),
        ],
        serde_json::json!([["detach", s.p("w/pid")], ["sleep", "30"]]),
    );
    let ended = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let exp = t.claims.exp as f64;
    eprintln!("the tree was gone {:.3} s after exp", ended - exp);
    assert_eq!(code(&o), 124, "{}", text(&o));
    assert!(
        ended >= exp && ended - exp < 1.0,
        "ended {ended}, exp {exp}: {}",
        text(&o)
    );
    assert!(pid_gone(&s.path("w/pid")), "the detached child survived");
    assert!(text(&o).contains("the token expired"), "{}", text(&o));
    let events: Vec<_> = audit_events(&log)
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(events, ["exec.launch", "exec.expired", "exec.exit"]);
    let events = ocsf_events(&ocsf);
    let kinds: Vec<&str> = events.iter().map(envelope).collect();
    assert_eq!(kinds, ["exec.launch", "exec.expired", "exec.exit"]);
    let (ended, exit) = (&events[1], &events[2]);
    assert_eq!(
        (ended["class_uid"].as_u64(), ended["activity_id"].as_u64()),
        (Some(1007), Some(2))
    );
    assert_eq!(ended["status_id"], 1);
    assert_eq!(ended["unmapped"]["cause"], "expired");
    // The probe and its detached grandchild.
    assert_eq!(ended["unmapped"]["signalled"], 2, "{ended}");
    assert_eq!(ended["unmapped"]["survivors"], 0, "{ended}");
    assert_eq!(ended["unmapped"]["grace_ms"], 500);
    assert_eq!(exit["unmapped"]["outcome"], "expired");
    assert_eq!(exit["unmapped"]["exit_status"], 124);
    assert!(exit.get("exit_code").is_none(), "{exit}");
}

#[test]
fn a_child_that_forks_and_detaches_is_ended_when_the_command_exits() {
    if !available("a_child_that_forks_and_detaches_is_ended_when_the_command_exits") {
        return;
    }
    let s = Setup::new();
    std::fs::create_dir_all(s.path("w")).unwrap();
    s.token(
        "t",
        serde_json::json!({"fileAccess": [{"path": s.p("w"), "mode": "readwrite"}],
                           "shell": python_only()}),
        60,
    );
    let start = Instant::now();
    let o = s.probe(
        "t",
        &[],
        serde_json::json!([["detach", s.p("w/pid")], ["exit", "5"]]),
    );
    assert_eq!(code(&o), 5, "{}", text(&o));
    assert!(pid_gone(&s.path("w/pid")), "the detached child survived");
    assert!(
        text(&o).contains("ended 1 process(es) it left behind"),
        "{}",
        text(&o)
    );
    // It ignores SIGTERM, so it took the grace period and a SIGKILL.
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_revoked_token_does_not_start_and_a_running_agent_is_ended_within_the_poll_interval() {
    if !available(
        "a_revoked_token_does_not_start_and_a_running_agent_is_ended_within_the_poll_interval",
    ) {
        return;
    }
    let s = Setup::new();
    let t = s.token("t", serde_json::json!({"shell": python_only()}), 60);
    let cti = pqwrap_core::token::keys::hex_lower(&t.claims.cti);
    let list = s.path("revoked.txt");
    std::fs::write(&list, format!("# revoked\n{cti}\n")).unwrap();
    let o = s.probe(
        "t",
        &["--revoked", list.to_str().unwrap()],
        serde_json::json!([["exit", "0"]]),
    );
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(text(&o).contains("revoked"), "{}", text(&o));
    assert!(o.stdout.is_empty(), "the command ran: {}", text(&o));

    std::fs::write(&list, "# nothing revoked yet\n").unwrap();
    let run = Running::start(s.exec(
        "t",
        &["--revoked", list.to_str().unwrap()],
        &[PYTHON, "-c", PROBE, SLEEPER],
    ));
    std::fs::write(&list, format!("{cti}\n")).unwrap();
    let (status, err, took) = run.wait();
    eprintln!("the agent was ended {took:?} after the revocation was written");
    assert_eq!(status, Some(123), "{err}");
    assert!(err.contains("the token is revoked"), "{err}");
    // Polled every second; the probe dies of the SIGTERM at once (the bound leaves room for
    // the grace period and a loaded machine).
    assert!(took < Duration::from_secs(2), "took {took:?}: {err}");
}

/// A broker policy that gives this user's agents tokens for `sandbox.test` that run Python.
fn exec_policy() -> String {
    format!(
        r#"[broker]
socket_mode = "0600"

[[admin]]
uid = "self"

[[rule]]
name = "sandboxed probes"
uid = "self"
audiences = ["sandbox.test"]
max_ttl = "10m"

[rule.grant]
shell = {{ allowedCommands = ["{PYTHON}"], interactive = false }}
"#
    )
}

#[test]
fn a_broker_signed_status_list_flipped_while_the_agent_runs_ends_it_and_it_cannot_start_again() {
    if !available(
        "a_broker_signed_status_list_flipped_while_the_agent_runs_ends_it_and_it_cannot_start_again",
    ) {
        return;
    }
    // A real `pqwrap broker serve` issues the token (with its status claim) and publishes the
    // signed list; `pqwrap broker revoke` flips the token's entry.
    let b = broker_support::Broker::start(&exec_policy(), None);
    std::fs::write(
        b.path("probe.json"),
        serde_json::json!({"agent": "probe", "capabilities": {"shell": python_only()}}).to_string(),
    )
    .unwrap();
    let o = b.request(None, "probe.json", "sandbox.test", "t");
    assert_eq!(code(&o), 0, "{}\n{}", text(&o), b.log());
    let token = b.out_dir(None).join("t");
    let cti = b.cti_of(&token, "sandbox.test");
    let ocsf = b.path("exec.ocsf.jsonl");
    let exec = |ops: &str| {
        let mut c = Command::new(BIN);
        c.arg("exec").arg("--token").arg(&token);
        for t in b.trust() {
            c.arg("--trust").arg(t);
        }
        c.args(["--aud", "sandbox.test", "--status-list"])
            .arg(b.path("status.cwt"))
            .arg("--ocsf")
            .arg(&ocsf)
            .args(["--", PYTHON, "-c", PROBE, ops]);
        c
    };
    let run = Running::start(exec(SLEEPER));
    let o = Command::new(BIN)
        .args(["broker", "revoke", "--socket"])
        .arg(b.socket())
        .arg(&cti)
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}\n{}", text(&o), b.log());
    let (status, err, took) = run.wait();
    eprintln!("the agent was ended {took:?} after the broker revoked the token");
    assert_eq!(status, Some(123), "{err}");
    assert!(
        err.contains("the token is revoked") && err.contains("marks entry"),
        "{err}"
    );
    // Polled every second, then SIGTERM (the probe dies of it at once).
    assert!(took < Duration::from_secs(2), "took {took:?}: {err}");

    // Revoked now: it does not start.
    let o = exec(r#"[["session", ""]]"#)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(o.stdout.is_empty(), "the command ran: {}", text(&o));
    assert!(text(&o).contains("the token is revoked"), "{}", text(&o));

    // The OCSF stream: launch, the revocation that ended it, the exit, the refused start.
    let events = ocsf_events(&ocsf);
    let kinds: Vec<&str> = events.iter().map(envelope).collect();
    assert_eq!(
        kinds,
        ["exec.launch", "exec.revoked", "exec.exit", "exec.refused"]
    );
    let (launch, ended, exit, refused) = (&events[0], &events[1], &events[2], &events[3]);
    for e in [launch, ended, exit] {
        assert_eq!(e["unmapped"]["token_id"], cti.as_str(), "{e}");
        assert_eq!(e["unmapped"]["audience"], "sandbox.test", "{e}");
        assert_eq!(e["unmapped"]["agent"], "probe", "{e}");
    }
    assert_eq!(
        (launch["class_uid"].as_u64(), launch["activity_id"].as_u64()),
        (Some(1007), Some(1))
    );
    assert_eq!(launch["status_id"], 1);
    let pid = launch["process"]["pid"].as_u64().unwrap();
    assert_eq!(launch["process"]["file"]["path"], PYTHON);
    assert_eq!(
        launch["unmapped"]["privileges"],
        serde_json::json!([format!("exec:{PYTHON}")])
    );
    assert_eq!(
        (ended["class_uid"].as_u64(), ended["activity_id"].as_u64()),
        (Some(1007), Some(2))
    );
    assert_eq!(ended["unmapped"]["cause"], "revoked");
    assert_eq!(ended["severity_id"], 3);
    assert_eq!(ended["unmapped"]["survivors"], 0);
    assert_eq!(ended["process"]["pid"].as_u64(), Some(pid));
    assert!(
        ended["status_detail"]
            .as_str()
            .unwrap()
            .contains("marks entry"),
        "{ended}"
    );
    assert_eq!(exit["unmapped"]["outcome"], "revoked");
    assert_eq!(exit["unmapped"]["exit_status"], 123);
    assert_eq!(refused["activity_id"], 1);
    assert_eq!(refused["status_id"], 2);
    assert_eq!(refused["process"]["file"]["path"], PYTHON);
    assert!(refused["process"].get("pid").is_none(), "{refused}");
    // The token verified, so its refusal names it.
    assert_eq!(refused["unmapped"]["token_id"], cti.as_str(), "{refused}");

    // A key rotation: the broker signs the list with the new key alone, so an agent whose
    // --trust is the old key no longer gets a list it can verify, and is ended.
    let o = b.request(None, "probe.json", "sandbox.test", "t2");
    assert_eq!(code(&o), 0, "{}\n{}", text(&o), b.log());
    let token = b.out_dir(None).join("t2");
    let exec_with = |trust: &[PathBuf], ops: &str| {
        let mut c = Command::new(BIN);
        c.arg("exec").arg("--token").arg(&token);
        for t in trust {
            c.arg("--trust").arg(t);
        }
        c.args(["--aud", "sandbox.test", "--status-list"])
            .arg(b.path("status.cwt"))
            .args(["--", PYTHON, "-c", PROBE, ops]);
        c
    };
    let old_keys = b.trust();
    let run = Running::start(exec_with(&old_keys, SLEEPER));
    let o = Command::new(BIN)
        .args(["broker", "rotate-key", "--socket"])
        .arg(b.socket())
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}\n{}", text(&o), b.log());
    let (status, err, took) = run.wait();
    eprintln!("the agent was ended {took:?} after the broker rotated its key");
    assert_eq!(status, Some(123), "{err}");
    assert!(
        err.contains("failing closed") && err.contains("does not verify"),
        "{err}"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}: {err}");
    // With the new key among its --trust keys the same token runs.
    let both = b.trust();
    assert_eq!(both.len(), 2);
    let o = exec_with(&both, r#"[["session", ""]]"#)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(results(&o), ["leader"], "{}", text(&o));
    assert!(
        refused["status_detail"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{refused}"
    );
}

#[test]
fn status_lists_that_cannot_vouch_for_the_token_fail_closed() {
    if !available("status_lists_that_cannot_vouch_for_the_token_fail_closed") {
        return;
    }
    let s = Setup::new();
    let entry = |uri: &str, idx| Some(StatusRef::new(uri, idx).unwrap());
    let caps = serde_json::json!({"shell": python_only()});
    s.token_with("t", caps.clone(), 60, entry(STATUS_URI, 3));
    s.token("bare", caps.clone(), 60);
    s.token_with(
        "other",
        caps.clone(),
        60,
        entry("urn:pqwrap:test:elsewhere", 3),
    );
    s.token_with("beyond", caps, 60, entry(STATUS_URI, 16));
    let now = unix_now();
    let leeway = pqwrap_core::token::verify::DEFAULT_LEEWAY_SECS;
    let stranger = Issuer::new(SigningKey::from_seed(Algorithm::MlDsa65, &[8u8; 32]));
    let good = s.status_list("good.cwt", &s.issuer, now, Some(now + 600), &[]);
    let tampered = s.status_list("tampered.cwt", &s.issuer, now, Some(now + 600), &[]);
    let mut bytes = std::fs::read(&tampered).unwrap();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    std::fs::write(&tampered, &bytes).unwrap();
    let cases = [
        // (token, list, what the refusal says)
        ("t", s.p("absent.cwt"), "cannot be read"),
        (
            "t",
            s.status_list("stranger.cwt", &stranger, now, Some(now + 600), &[]),
            "does not verify",
        ),
        ("t", tampered.clone(), "does not verify"),
        (
            "t",
            s.status_list(
                "stale.cwt",
                &s.issuer,
                now - 600,
                Some(now - leeway - 1),
                &[],
            ),
            "does not verify",
        ),
        (
            "t",
            s.status_list("forever.cwt", &s.issuer, now, None, &[]),
            "has no expiry",
        ),
        ("bare", good.clone(), "has no status claim"),
        ("other", good.clone(), "revocation status is unknown"),
        ("beyond", good.clone(), "revocation status is unknown"),
        (
            "t",
            s.status_list("revoked.cwt", &s.issuer, now, Some(now + 600), &[3]),
            "the token is revoked",
        ),
    ];
    for (token, list, says) in &cases {
        let o = s.probe(
            token,
            &["--status-list", list],
            serde_json::json!([["session", ""]]),
        );
        assert_eq!(code(&o), 3, "{token} {list}: {}", text(&o));
        assert!(o.stdout.is_empty(), "{token} {list} ran: {}", text(&o));
        assert!(text(&o).contains(says), "{token} {list}: {}", text(&o));
    }
    // The one list that vouches for the token lets it run (others revoked, the token not).
    let fine = s.status_list("fine.cwt", &s.issuer, now, Some(now + 600), &[2, 4]);
    let o = s.probe(
        "t",
        &["--status-list", &fine],
        serde_json::json!([["session", ""]]),
    );
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(results(&o), ["leader"], "{}", text(&o));

    // While it runs: a list replaced by a tampered one, removed, or put back to an older one
    // ends the agent within the poll interval.
    let live = s.path("live.cwt");
    let older =
        std::fs::read(s.status_list("old.cwt", &s.issuer, now - 20, Some(now + 600), &[])).unwrap();
    for (what, says) in [
        ("tampered", "does not verify"),
        ("removed", "cannot be read"),
        ("older", "before the list already accepted"),
    ] {
        std::fs::copy(&good, &live).unwrap();
        let run = Running::start(s.exec(
            "t",
            &["--status-list", live.to_str().unwrap()],
            &[PYTHON, "-c", PROBE, SLEEPER],
        ));
        // Replaced by a rename, as a publisher does, so no poll sees a half-written file.
        let next = s.path("next.cwt");
        match what {
            "tampered" => std::fs::copy(&tampered, &next).map(drop).unwrap(),
            "older" => std::fs::write(&next, &older).unwrap(),
            _ => {}
        }
        match what {
            "removed" => std::fs::remove_file(&live).unwrap(),
            _ => std::fs::rename(&next, &live).unwrap(),
        }
        let (status, err, took) = run.wait();
        eprintln!("list {what}: the agent was ended {took:?} later");
        assert_eq!(status, Some(123), "{what}: {err}");
        assert!(
            err.contains("failing closed") && err.contains(says),
            "{what}: {err}"
        );
        assert!(
            took < Duration::from_secs(2),
            "{what}: took {took:?}: {err}"
        );
    }

    // A list that goes stale during the run (past its exp and the leeway) ends it too.
    let now = unix_now();
    let expiring = s.status_list(
        "expiring.cwt",
        &s.issuer,
        now - 600,
        Some(now + 3 - leeway),
        &[],
    );
    let started = Instant::now();
    let run = Running::start(s.exec(
        "t",
        &["--status-list", &expiring],
        &[PYTHON, "-c", PROBE, SLEEPER],
    ));
    let (status, err, _) = run.wait();
    let took = started.elapsed();
    eprintln!("a list valid for 3 more seconds: the agent was ended after {took:?}");
    assert_eq!(status, Some(123), "{err}");
    assert!(err.contains("does not verify"), "{err}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "took {took:?}: {err}"
    );
}

/// The events of an OCSF stream.
fn ocsf_events(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Checks the fields every event of `pqwrap exec` has (docs/SANDBOX.md §6a) and returns
/// which step it is (`unmapped.event`).
fn envelope(e: &serde_json::Value) -> &str {
    let class = e["class_uid"].as_u64().unwrap();
    let activity = e["activity_id"].as_u64().unwrap();
    let (category, class_name) = match class {
        1007 => (1, "Process Activity"),
        4002 => (4, "HTTP Activity"),
        _ => panic!("class {class}: {e}"),
    };
    assert_eq!(e["category_uid"], category, "{e}");
    assert_eq!(e["class_name"], class_name, "{e}");
    assert_eq!(e["type_uid"], class * 100 + activity, "{e}");
    assert!(
        e["type_name"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{class_name}: ")),
        "{e}"
    );
    assert_eq!(e["metadata"]["version"], "1.3.0", "{e}");
    assert_eq!(e["metadata"]["product"]["name"], "pqwrap exec", "{e}");
    assert_eq!(e["metadata"]["log_name"], "pqwrap-exec", "{e}");
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let time = e["time"].as_u64().unwrap();
    assert!(time <= now_ms && now_ms - time < 600_000, "{e}");
    let status = e["status_id"].as_u64().unwrap();
    assert!(status == 1 || status == 2, "{e}");
    assert_eq!(
        e["status"],
        if status == 1 { "Success" } else { "Failure" },
        "{e}"
    );
    assert!(
        e["severity_id"]
            .as_u64()
            .is_some_and(|s| (1..=4).contains(&s)),
        "{e}"
    );
    assert!(!e["status_detail"].as_str().unwrap().is_empty(), "{e}");
    assert!(!e["message"].as_str().unwrap().is_empty(), "{e}");
    assert!(e["actor"]["process"]["pid"].as_u64().is_some(), "{e}");
    let uid = rustix::process::geteuid().as_raw().to_string();
    assert_eq!(e["actor"]["user"]["uid"], uid.as_str(), "{e}");
    e["unmapped"]["event"].as_str().unwrap()
}

#[test]
fn without_the_clipboard_no_display_and_no_terminal_or_stdin() {
    if !available("without_the_clipboard_no_display_and_no_terminal_or_stdin") {
        return;
    }
    let s = Setup::new();
    s.token("t", serde_json::json!({"shell": python_only()}), 60);
    let o = s
        .exec(
            "t",
            &[],
            &[
                PYTHON,
                "-c",
                PROBE,
                &serde_json::json!([
                    ["env", "DISPLAY"],
                    ["env", "WAYLAND_DISPLAY"],
                    ["env", "XAUTHORITY"],
                    ["stdin", ""],
                    ["tty", ""],
                    ["session", ""],
                    ["kill", std::process::id().to_string()],
                    ["unix-connect", "/tmp/.X11-unix/X0"],
                ])
                .to_string(),
            ],
        )
        .env("DISPLAY", ":0")
        .env("WAYLAND_DISPLAY", "wayland-0")
        .env("XAUTHORITY", "/root/.Xauthority")
        .stdin(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", text(&o));
    let r = results(&o);
    assert_eq!(
        r[..4],
        ["<unset>", "<unset>", "<unset>", "''"],
        "{}",
        text(&o)
    );
    // No controlling terminal (ENXIO), or no rule for /dev/tty (EACCES).
    assert!(["ENXIO", "EACCES"].contains(&r[4].as_str()), "{}", text(&o));
    assert_eq!(r[5], "leader", "{}", text(&o));
    // Signals to processes outside the sandbox are scoped away.
    assert_eq!(r[6], "EPERM", "{}", text(&o));
    assert_eq!(r[7], "EACCES", "{}", text(&o));
}

#[test]
fn an_interactive_token_keeps_the_terminal() {
    if !available("an_interactive_token_keeps_the_terminal") {
        return;
    }
    if !Path::new("/usr/bin/script").exists() {
        skipped(
            "an_interactive_token_keeps_the_terminal",
            "/usr/bin/script is not installed",
        );
        return;
    }
    let s = Setup::new();
    s.token(
        "t",
        serde_json::json!({"shell": {"allowedCommands": [PYTHON], "interactive": true}}),
        60,
    );
    let ops = serde_json::json!([["tty", ""], ["session", ""]]).to_string();
    let inner = s.exec("t", &[], &[PYTHON, "-c", PROBE, &ops]);
    // `script` runs the command on a new pseudo-terminal, its controlling terminal.
    let line = std::iter::once(inner.get_program())
        .chain(inner.get_args())
        .map(|a| shell_quote(a.to_str().unwrap()))
        .collect::<Vec<_>>()
        .join(" ");
    let o = Command::new("/usr/bin/script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).replace('\r', "");
    let r: Vec<String> = out
        .lines()
        .filter(|l| l.starts_with('['))
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()[2]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    // The terminal is usable (/dev/tty opens) and the command is not a session leader.
    assert_eq!(r, ["ok", "not leader"], "{}", text(&o));
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[test]
fn clipboard_true_needs_abi_9_or_best_effort_and_abstract_sockets_stay_scoped() {
    if !available("clipboard_true_needs_abi_9_or_best_effort_and_abstract_sockets_stay_scoped") {
        return;
    }
    let s = Setup::new();
    s.token(
        "t",
        serde_json::json!({"clipboard": true, "shell": python_only()}),
        60,
    );
    let abstract_name = format!("pqwrap-test-{}", std::process::id());
    let _abstract = {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(&abstract_name).unwrap();
        UnixListener::bind_addr(&addr).unwrap()
    };
    let pathname = UnixListener::bind(s.path("sock")).unwrap();
    let ops = serde_json::json!([
        ["unix-connect", format!("@{abstract_name}")],
        ["unix-connect", s.p("sock")],
    ]);
    if pqwrap_sandbox::Kernel::probe().abi < 9 {
        let o = s.probe("t", &[], ops.clone());
        assert_eq!(code(&o), 1, "{}", text(&o));
        assert!(text(&o).contains("needs Landlock ABI 9"), "{}", text(&o));
        assert!(o.stdout.is_empty());
        let o = s.probe("t", &["--best-effort"], ops);
        assert_eq!(code(&o), 0, "{}", text(&o));
        assert!(text(&o).contains("NOT ENFORCED"), "{}", text(&o));
        // Abstract sockets outside the sandbox stay out of reach (Landlock scope); pathname
        // sockets are what ABI 9 is needed for, and best effort says so.
        assert_eq!(results(&o), ["EPERM", "ok"], "{}", text(&o));
    } else {
        let o = s.probe("t", &[], ops);
        assert_eq!(code(&o), 0, "{}", text(&o));
        assert_eq!(results(&o), ["EPERM", "EACCES"], "{}", text(&o));
    }
    drop(pathname);
}

#[test]
fn system_paths_none_and_a_file_replace_the_default_set() {
    if !available("system_paths_none_and_a_file_replace_the_default_set") {
        return;
    }
    let s = Setup::new();
    s.token("t", serde_json::json!({"shell": python_only()}), 60);
    // Without the system set a dynamically linked program cannot even load its libraries.
    let o = s.probe(
        "t",
        &["--system-paths", "none"],
        serde_json::json!([["exit", "0"]]),
    );
    assert_ne!(code(&o), 0, "{}", text(&o));
    assert!(o.stdout.is_empty(), "{}", text(&o));
    // A file with only what Python needs, without /etc: /etc/passwd is then unreadable.
    let mut file = String::from("# the interpreter and its libraries\nrw /dev/null\n");
    for p in ["/usr", "/lib", "/lib64"]
        .iter()
        .filter(|p| Path::new(p).exists())
    {
        file.push_str(&format!("ro {p}\n"));
    }
    std::fs::write(s.path("system.txt"), file).unwrap();
    let sys = s.p("system.txt");
    let o = s.probe(
        "t",
        &["--system-paths", &sys],
        serde_json::json!([["read", "/etc/passwd"], ["write", "/dev/null"]]),
    );
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(results(&o), ["EACCES", "ok"], "{}", text(&o));
    let o = s.probe("t", &[], serde_json::json!([["read", "/etc/passwd"]]));
    assert!(results(&o)[0].starts_with("ok "), "{}", text(&o));
    // A malformed file is refused with its line.
    std::fs::write(s.path("bad.txt"), "ro /usr\nexec /bin\n").unwrap();
    let o = s.probe(
        "t",
        &["--system-paths", &s.p("bad.txt")],
        serde_json::json!([]),
    );
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("line 2"), "{}", text(&o));
}
