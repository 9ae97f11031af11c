//! `pqwrap exec` with real processes: the real binary runs a real Python probe inside the
//! sandbox, which tries reads, writes, executions, connections and signals and reports the
//! errno of each; loopback HTTP servers in this process are the granted and the ungranted
//! peers. Where Landlock (ABI 6 or later) or `/usr/bin/python3` is missing, each test prints
//! a boxed SKIPPED banner and checks nothing.
// A failed unwrap in a test is a failed test, with its message.
#![allow(clippy::unwrap_used)]

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
use pqwrap_core::token::{Algorithm, IssuedToken, Issuer, Manifest, SigningKey, encode_text};

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
        let m = serde_json::json!({"agent": "probe", "capabilities": caps});
        let manifest = Manifest::from_json(&m.to_string()).unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let t = self
            .issuer
            .issue(
                &manifest,
                "sandbox.test",
                Duration::from_secs(ttl),
                now,
                None,
            )
            .unwrap();
        std::fs::write(self.path(name), t.to_text()).unwrap();
        t
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
    s.token(
        "t",
        serde_json::json!({"network": [{"host": "127.0.0.1", "port": granted.port},
                                       {"host": "localhost", "port": named.port}],
                           "shell": python_only()}),
        60,
    );
    let log = s.path("audit.log");
    let url = |port: u16, host: &str| format!("http://{host}:{port}/x");
    let o = s.expect(
        "t",
        &["--audit-log", log.to_str().unwrap()],
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
        ]
    );
    let v = Command::new(BIN)
        .args(["audit", "verify"])
        .arg(&log)
        .output()
        .unwrap();
    assert_eq!(code(&v), 0, "{}", text(&v));
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
    let o = s.probe(
        "t",
        &["--audit-log", log.to_str().unwrap()],
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
    let mut child: Child = s
        .exec(
            "t",
            &["--revoked", list.to_str().unwrap()],
            &[PYTHON, "-c", PROBE, r#"[["session", ""], ["sleep", "30"]]"#],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the probe to run (its first line), then revoke.
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.contains("leader"), "{first}");
    std::fs::write(&list, format!("{cti}\n")).unwrap();
    let revoked_at = Instant::now();
    let status = child.wait().unwrap();
    let took = revoked_at.elapsed();
    eprintln!("the agent was ended {took:?} after the revocation was written");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(123), "{err}");
    assert!(err.contains("the token is revoked"), "{err}");
    // Polled every second; the probe dies of the SIGTERM at once (the bound leaves room for
    // the grace period and a loaded machine).
    assert!(took < Duration::from_secs(2), "took {took:?}: {err}");
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
