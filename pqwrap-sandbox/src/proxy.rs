//! The egress proxy: the only TCP peer the sandbox may reach. It runs outside the sandbox on
//! loopback, accepts HTTP `CONNECT host:port` and plain-HTTP requests with an absolute
//! `http://` URL, allows exactly the token's `host:port` grants, resolves names itself, and
//! answers anything else with 403. Each decision goes to the journal.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use pqwrap_core::token::{Capabilities, Request};

/// Longest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most connections handled at once; more get 503.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting to an upstream may take, per address.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How a request reached the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `CONNECT host:port` (a tunnel, e.g. for HTTPS).
    Connect,
    /// A plain-HTTP request forwarded to `http://host:port`.
    Forward,
}

impl Method {
    /// The name used in logs.
    pub fn name(self) -> &'static str {
        match self {
            Method::Connect => "CONNECT",
            Method::Forward => "HTTP",
        }
    }
}

/// One decision of the proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Allowed (a grant matched and the upstream was reached) or not.
    pub allowed: bool,
    /// How it was asked.
    pub method: Method,
    /// The host asked for, as sent (empty if the request could not be parsed).
    pub host: String,
    /// The port asked for (0 if unparsable).
    pub port: u16,
    /// The request's method as sent (`CONNECT`, `GET`…; empty if the request could not be
    /// parsed, or its method is not a plain token of at most 32 letters).
    pub verb: String,
    /// The status the proxy answered with (200 for an established tunnel, 403, 400…), or
    /// `None` when the request was forwarded and the upstream answers it.
    pub code: Option<u16>,
    /// The client's address (always on loopback), if known.
    pub client: Option<SocketAddr>,
    /// Why: the grant check's answer, or what failed.
    pub reason: String,
}

/// Receives every decision (logging and auditing are the caller's).
pub type Journal = Arc<dyn Fn(&Decision) + Send + Sync>;

/// A running proxy; [`stop`](EgressProxy::stop) ends its accept loop.
pub struct EgressProxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<thread::JoinHandle<()>>,
}

impl EgressProxy {
    /// Listens on 127.0.0.1 on a free port and serves `caps`' network grants.
    pub fn start(caps: Capabilities, journal: Journal) -> io::Result<EgressProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let caps = Arc::new(caps);
        let active = Arc::new(AtomicUsize::new(0));
        let accept = thread::Builder::new()
            .name("egress-proxy".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (caps, journal) = (caps.clone(), journal.clone());
                    let slot = Slot::take(&active);
                    if slot.0 >= MAX_CONNECTIONS {
                        let why = "too many connections through the proxy";
                        journal(&Decision {
                            allowed: false,
                            method: Method::Forward,
                            host: String::new(),
                            port: 0,
                            verb: String::new(),
                            code: Some(503),
                            client: conn.peer_addr().ok(),
                            reason: why.into(),
                        });
                        let _ = respond(&conn, 503, why);
                        continue;
                    }
                    // A failed spawn drops the closure, and the slot with it.
                    let _ = thread::Builder::new()
                        .name("egress-conn".into())
                        .spawn(move || {
                            let _slot = slot;
                            serve(conn, &caps, &journal);
                        });
                }
            })?;
        Ok(EgressProxy {
            addr,
            stop,
            accept: Some(accept),
        })
    }

    /// The loopback address the sandbox is told to use.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections (tunnels already open end with their peers); dropping
    /// the proxy does the same.
    pub fn stop(self) {}
}

impl Drop for EgressProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// One counted connection: the count before it was taken, given back on drop.
struct Slot(usize, Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>) -> Slot {
        Slot(active.fetch_add(1, Ordering::SeqCst), active.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.1.fetch_sub(1, Ordering::SeqCst);
    }
}

fn respond(mut conn: &TcpStream, code: u16, msg: &str) -> io::Result<()> {
    let status = match code {
        400 => "Bad Request",
        403 => "Forbidden",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        _ => "Service Unavailable",
    };
    let body = format!("pqwrap egress proxy: {msg}\n");
    // One write: `write!` on the socket would send each formatted piece as its own segment.
    let response = format!(
        "HTTP/1.1 {code} {status}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(response.as_bytes())?;
    conn.flush()
}

/// A parsed request head.
struct Head {
    method: Method,
    /// The method token as sent, if it is a plain one (see [`Decision::verb`]).
    verb: String,
    host: String,
    port: u16,
    /// What to send upstream before the rest of the client's bytes (empty for CONNECT).
    upstream_head: Vec<u8>,
}

fn serve(conn: TcpStream, caps: &Capabilities, journal: &Journal) {
    let client = conn.peer_addr().ok();
    let decide = |allowed: bool, head: Option<&Head>, code: Option<u16>, reason: String| {
        journal(&Decision {
            allowed,
            method: head.map_or(Method::Forward, |h| h.method),
            host: head.map(|h| h.host.clone()).unwrap_or_default(),
            port: head.map_or(0, |h| h.port),
            verb: head.map(|h| h.verb.clone()).unwrap_or_default(),
            code,
            client,
            reason,
        })
    };
    let _ = conn.set_read_timeout(Some(HEAD_TIMEOUT));
    let (head, rest) = match read_head(&conn) {
        Ok(v) => v,
        Err((code, why)) => {
            decide(false, None, Some(code), why.clone());
            let _ = respond(&conn, code, &why);
            return;
        }
    };
    let head = match parse_head(&head) {
        Ok(h) => h,
        Err(why) => {
            decide(false, None, Some(400), why.clone());
            let _ = respond(&conn, 400, &why);
            return;
        }
    };
    let (method, host, port) = (head.method, head.host.as_str(), head.port);
    if let Err(denied) = caps.check(&Request::Connect { host, port }) {
        let why = format!("{}: the token does not grant {host}:{port}", denied.0);
        decide(false, Some(&head), Some(403), denied.0.to_string());
        let _ = respond(&conn, 403, &why);
        return;
    }
    let upstream = match connect(host, port) {
        Ok(s) => s,
        Err(e) => {
            let why = format!("granted, but {host}:{port} cannot be reached: {e}");
            decide(false, Some(&head), Some(502), why.clone());
            let _ = respond(&conn, 502, &why);
            return;
        }
    };
    let answered = (method == Method::Connect).then_some(200);
    decide(true, Some(&head), answered, "granted by the token".into());
    let _ = conn.set_read_timeout(None);
    let setup = (|| -> io::Result<()> {
        let mut up = &upstream;
        if method == Method::Connect {
            (&conn).write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
        } else {
            up.write_all(&head.upstream_head)?;
        }
        up.write_all(&rest)
    })();
    if setup.is_ok() {
        splice(conn, upstream);
    }
}

/// Reads up to the end of the head; returns it and any bytes already read past it.
fn read_head(mut conn: &TcpStream) -> Result<(String, Vec<u8>), (u16, String)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            let head = String::from_utf8(buf)
                .map_err(|_| (400, "the request head is not UTF-8".to_owned()))?;
            return Ok((head, rest));
        }
        if buf.len() > MAX_HEAD {
            return Err((431, format!("request head longer than {MAX_HEAD} bytes")));
        }
        match conn.read(&mut chunk) {
            Ok(0) => {
                return Err((
                    400,
                    "connection closed before the request head ended".into(),
                ));
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((400, format!("reading the request: {e}"))),
        }
    }
}

fn parse_host_port(authority: &str, default_port: Option<u16>) -> Result<(String, u16), String> {
    let bad = || format!("{authority:?} is not host:port");
    if authority.is_empty() || authority.contains('@') || !authority.is_ascii() {
        return Err(bad());
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
        None => (authority, default_port.ok_or_else(bad)?),
    };
    if host.is_empty() || port == 0 || host.contains(['/', ' ', '[', ']']) {
        return Err(bad());
    }
    Ok((host.to_ascii_lowercase(), port))
}

fn parse_head(head: &str) -> Result<Head, String> {
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(verb), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("malformed request line {request_line:?}"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(format!("unsupported protocol {version:?}"));
    }
    // Only a plain method name is kept for the logs, not whatever bytes were sent.
    let plain_verb = if verb.len() <= 32 && verb.bytes().all(|b| b.is_ascii_alphabetic()) {
        verb.to_owned()
    } else {
        String::new()
    };
    if verb == "CONNECT" {
        let (host, port) = parse_host_port(target, None)?;
        return Ok(Head {
            method: Method::Connect,
            verb: plain_verb,
            host,
            port,
            upstream_head: Vec::new(),
        });
    }
    let lower = target.to_ascii_lowercase();
    let Some(after) = lower.strip_prefix("http://").map(|_| &target[7..]) else {
        return Err(
            "only CONNECT and requests for absolute http:// URLs are proxied \
             (use CONNECT for https)"
                .into(),
        );
    };
    let split = after.find(['/', '?']).unwrap_or(after.len());
    let (authority, path) = after.split_at(split);
    let (host, port) = parse_host_port(authority, Some(80))?;
    let path = if path.is_empty() {
        "/".to_owned()
    } else if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    let mut out = format!("{verb} {path} {version}\r\n");
    for line in lines.filter(|l| !l.is_empty()) {
        let name = line.split(':').next().unwrap_or("").trim();
        // Hop-by-hop headers meant for the proxy are not passed on.
        if name.eq_ignore_ascii_case("proxy-connection")
            || name.eq_ignore_ascii_case("proxy-authorization")
        {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    Ok(Head {
        method: Method::Forward,
        verb: plain_verb,
        host,
        port,
        upstream_head: out.into_bytes(),
    })
}

fn connect(host: &str, port: u16) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name resolves to no address");
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Copies both ways until each side has finished sending.
fn splice(client: TcpStream, upstream: TcpStream) {
    let (Ok(client2), Ok(upstream2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let up = thread::Builder::new()
        .name("egress-up".into())
        .spawn(move || {
            let _ = io::copy(&mut &client2, &mut &upstream2);
            let _ = upstream2.shutdown(Shutdown::Write);
        });
    let _ = io::copy(&mut &upstream, &mut &client);
    let _ = client.shutdown(Shutdown::Write);
    if let Ok(t) = up {
        let _ = t.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let h = parse_head("CONNECT Example.COM:443 HTTP/1.1\r\nHost: x").unwrap();
        assert_eq!(
            (h.method, h.host.as_str(), h.port),
            (Method::Connect, "example.com", 443)
        );
        let h = parse_head(
            "GET http://127.0.0.1:8080/a?b HTTP/1.1\r\nHost: 127.0.0.1\r\nProxy-Connection: keep-alive\r\n",
        )
        .unwrap();
        assert_eq!((h.host.as_str(), h.port), ("127.0.0.1", 8080));
        assert_eq!(
            String::from_utf8(h.upstream_head).unwrap(),
            "GET /a?b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        );
        assert_eq!(h.verb, "GET");
        let h = parse_head("GET http://a.b HTTP/1.0\r\n").unwrap();
        assert_eq!((h.host.as_str(), h.port), ("a.b", 80));
        let h = parse_head("M-SEARCH http://a.b/ HTTP/1.1\r\n").unwrap();
        assert_eq!((h.method, h.verb.as_str()), (Method::Forward, ""));
        for bad in [
            "GET / HTTP/1.1",
            "GET https://a.b/ HTTP/1.1",
            "CONNECT a.b HTTP/1.1",
            "CONNECT [::1]:443 HTTP/1.1",
            "CONNECT u@a.b:443 HTTP/1.1",
            "CONNECT a.b:0 HTTP/1.1",
            "CONNECT a.b:443 SPDY/3",
        ] {
            assert!(parse_head(bad).is_err(), "{bad}");
        }
    }
}
