//! Real Azure Blob and Google Cloud Storage servers for the tests: Azurite (npm) and
//! gcp-storage-emulator (PyPI), installed by `.ci/install-cloud-emulators.sh`, started on
//! loopback on a free port and stopped by process group; and a REST client of the tests' own
//! (ureq; Azure's SharedKey signature) to set up and check containers and buckets without
//! going through pqwrap.
//!
//! What each emulator enforces, measured against the versions pinned here:
//! - Azurite 3.37.0: SharedKey signatures (a wrong key gets 403), a missing container (404
//!   `ContainerNotFound`), `If-Match` on Put Blob (412 `ConditionNotMet` for a stale ETag),
//!   ranged GETs.
//! - gcp-storage-emulator 2026.7.19 (a single-threaded Python HTTP/1.0 server): no
//!   authentication at all, a missing bucket (404); it checks no precondition
//!   (`ifGenerationMatch` on the JSON API, `x-goog-if-generation-match` on the XML API: both
//!   ignored, the write happens), and its XML API (the one `object_store` speaks) answers a
//!   PUT or GET without `ETag`, `Last-Modified` or `x-goog-generation` headers and a bucket
//!   listing (`GET /BUCKET?list-type=2`) with 501.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The emulator account of Azurite, and its well-known key (published with the emulator).
pub const AZURE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// A valid key (base64 of 64 bytes) that is not the account's.
pub const WRONG_AZURE_KEY: &str =
    "d3JvbmctYnV0LXdlbGwtZm9ybWVkLWtleS13cm9uZy1idXQtd2VsbC1mb3JtZWQta2V5LXdyb25nLWJ1dC13ZQ==";
const AZURE_API_VERSION: &str = "2021-12-02";

/// Which service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// Azure Blob Storage, through Azurite.
    Azure,
    /// Google Cloud Storage, through gcp-storage-emulator.
    Gcs,
}

impl Service {
    /// `az` or `gs`: the URL scheme.
    pub fn scheme(self) -> &'static str {
        match self {
            Service::Azure => "az",
            Service::Gcs => "gs",
        }
    }

    fn program(self) -> &'static str {
        match self {
            Service::Azure => "Azurite",
            Service::Gcs => "gcp-storage-emulator",
        }
    }
}

fn tools() -> PathBuf {
    std::env::var_os("PQWRAP_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tools"))
}

/// The emulator's program: `$PQWRAP_AZURITE` / `$PQWRAP_GCS_EMULATOR`, else where
/// `.ci/install-cloud-emulators.sh` puts it.
pub fn binary(service: Service) -> Option<PathBuf> {
    let (var, installed) = match service {
        Service::Azure => (
            "PQWRAP_AZURITE",
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/azurite/node_modules/.bin/azurite-blob"),
        ),
        Service::Gcs => (
            "PQWRAP_GCS_EMULATOR",
            tools().join("gcs-emulator/bin/gcp-storage-emulator"),
        ),
    };
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p));
    }
    installed.is_file().then_some(installed)
}

/// The loud banner of a test that checked nothing.
pub fn skipped(test: &str, why: &str) {
    crate::common::skipped_banner(
        test,
        why,
        "install the emulators with .ci/install-cloud-emulators.sh; CI does",
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An object's version as the service names it: what a conditional write is pinned to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Version {
    /// Azure: the ETag (quoted, as the service sends it).
    ETag(String),
    /// GCS: the generation number.
    Generation(String),
}

/// An HTTP status and body the helpers did not expect.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub body: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}: {}", self.status, self.body)
    }
}

/// A running emulator.
pub struct Server {
    /// Which service it emulates.
    pub service: Service,
    /// Its loopback port.
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    child: Option<Child>,
    agent: ureq::Agent,
}

impl Server {
    /// Starts an emulator, or prints the SKIPPED banner for `test` and returns `None`.
    pub fn start(service: Service, test: &str) -> Option<Server> {
        let Some(bin) = binary(service) else {
            skipped(test, &format!("{} is not installed", service.program()));
            return None;
        };
        let mut s = Server {
            service,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            bin,
            child: None,
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(120)))
                .build()
                .into(),
        };
        // Installed but not starting is a fault to see, not a reason to skip.
        if let Err(e) = s.spawn() {
            panic!("{test}: {} did not start: {e}", service.program());
        }
        Some(s)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let port = self.port.to_string();
        let args: Vec<String> = match self.service {
            // --loose: object_store sends headers Azurite does not know (it would refuse them);
            // --skipApiVersionCheck: any x-ms-version a client sends; no telemetry (no network
            // beyond loopback in tests).
            Service::Azure => vec![
                "--blobHost".into(),
                "127.0.0.1".into(),
                "--blobPort".into(),
                port,
                // In memory: nothing to clean, and no disk writes on a loaded machine.
                "--inMemoryPersistence".into(),
                "--silent".into(),
                "--skipApiVersionCheck".into(),
                "--loose".into(),
                "--disableTelemetry".into(),
            ],
            Service::Gcs => vec![
                "-d".into(),
                data.display().to_string(),
                "start".into(),
                "--host".into(),
                "127.0.0.1".into(),
                "--port".into(),
                port,
                "--in-memory".into(),
                "-q".into(),
            ],
        };
        // A watchdog shell leads the emulator's process group: if the test process dies
        // without stopping the server (a shared one lives in a static, never dropped), the
        // server goes with it within a second. Stopping kills the whole group (node or
        // python and anything they started).
        let quoted: Vec<String> = std::iter::once(self.bin.display().to_string())
            .chain(args)
            .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
            .collect();
        let script = format!(
            "{} >'{log}' 2>&1 & w=$!; \
             while kill -0 {me} 2>/dev/null && kill -0 $w 2>/dev/null; do sleep 1; done; \
             kill $w 2>/dev/null; wait $w",
            quoted.join(" "),
            log = self.dir.path().join("server.log").display(),
            me = std::process::id(),
        );
        let child = {
            use std::os::unix::process::CommandExt as _;
            Command::new("sh")
                .arg("-c")
                .arg(script)
                .current_dir(self.dir.path())
                .process_group(0)
                .stdin(Stdio::null())
                // The shell's own report of the server it killed ("Terminated").
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| e.to_string())?
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.ready() {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                return Err(format!("exited ({st}); log: {}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("not ready after 60 s; log: {}", self.log()))
    }

    fn ready(&self) -> bool {
        match self.service {
            Service::Azure => self
                .azure("GET", "", "comp=list", &[], b"")
                .is_ok_and(|(st, _, _)| st == 200),
            Service::Gcs => self
                .agent
                .get(format!("{}/", self.base()))
                .call()
                .is_ok_and(|r| r.status() == 200),
        }
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Stops the server: SIGTERM to its process group, then SIGKILL.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        if let Some(pgid) = rustix::process::Pid::from_raw(c.id() as i32) {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::TERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            // The group may outlive its leader by a moment: SIGKILL it whatever happened.
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
        let _ = c.wait();
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `az://CONTAINER/PREFIX` or `gs://BUCKET/PREFIX` URL pqwrap is given.
    pub fn url(&self, container: &str, prefix: &str) -> String {
        format!("{}://{container}/{prefix}", self.service.scheme())
    }

    /// The environment of a pqwrap run against this server. The one place that knows how
    /// pqwrap's store finds the service (object_store's `from_env` conventions).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match self.service {
            Service::Azure => vec![
                ("AZURE_STORAGE_USE_EMULATOR", "true".into()),
                ("AZURITE_BLOB_STORAGE_URL", self.base()),
                ("AZURE_STORAGE_ACCOUNT_NAME", AZURE_ACCOUNT.into()),
                ("AZURE_STORAGE_ACCOUNT_KEY", AZURE_KEY.into()),
                ("AZURE_ALLOW_HTTP", "true".into()),
            ],
            Service::Gcs => {
                let sa = self.dir.path().join("service-account.json");
                if !sa.exists() {
                    let json = serde_json::json!({
                        "private_key": "",
                        "private_key_id": "",
                        "client_email": "",
                        "gcs_base_url": self.base(),
                        "disable_oauth": true,
                    });
                    std::fs::write(&sa, json.to_string()).unwrap();
                }
                vec![
                    ("GOOGLE_SERVICE_ACCOUNT", sa.display().to_string()),
                    ("GOOGLE_ALLOW_HTTP", "true".into()),
                ]
            }
        }
    }

    /// [`Server::env`] with credentials the service refuses: `None` where the emulator checks
    /// none (gcp-storage-emulator).
    pub fn env_bad_credentials(&self) -> Option<Vec<(&'static str, String)>> {
        match self.service {
            Service::Azure => {
                let mut env = self.env();
                for (k, v) in &mut env {
                    if *k == "AZURE_STORAGE_ACCOUNT_KEY" {
                        *v = WRONG_AZURE_KEY.into();
                    }
                }
                Some(env)
            }
            Service::Gcs => None,
        }
    }

    // ---- Azure Blob REST, SharedKey-signed ----

    /// One signed request: `path` below the account (`container/blob`, encoded), `query`
    /// unencoded-safe `k=v&k=v`, extra `headers` (lower-case names).
    fn azure_with_key(
        &self,
        key: &str,
        method: &str,
        path: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, ureq::http::HeaderMap, Vec<u8>), String> {
        let date = jiff::Timestamp::now()
            .strftime("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let mut ms: Vec<(String, String)> = vec![
            ("x-ms-date".into(), date),
            ("x-ms-version".into(), AZURE_API_VERSION.into()),
        ];
        let mut std_headers: Vec<(&str, &str)> = Vec::new();
        for (k, v) in headers {
            if k.starts_with("x-ms-") {
                ms.push((k.to_string(), v.to_string()));
            } else {
                std_headers.push((k, v));
            }
        }
        ms.sort();
        let std_header = |name: &str| {
            std_headers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| *v)
                .unwrap_or("")
        };
        // Since API version 2015-02-21 a zero length is signed as the empty string.
        let len = if body.is_empty() {
            String::new()
        } else {
            body.len().to_string()
        };
        let content_type = if method == "PUT" {
            "application/octet-stream"
        } else {
            ""
        };
        let mut to_sign = format!(
            "{method}\n\n\n{len}\n\n{content_type}\n\n\n{}\n{}\n\n{}\n",
            std_header("if-match"),
            std_header("if-none-match"),
            std_header("range"),
        );
        for (k, v) in &ms {
            to_sign.push_str(&format!("{k}:{v}\n"));
        }
        // Path-style emulator URLs carry the account in the path as well.
        to_sign.push_str(&format!("/{AZURE_ACCOUNT}/{AZURE_ACCOUNT}/{path}"));
        let mut params: Vec<(String, String)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_ascii_lowercase(), unescape_query(v))
            })
            .collect();
        params.sort();
        for (k, v) in &params {
            to_sign.push_str(&format!("\n{k}:{v}"));
        }
        let key = base64::engine::general_purpose::STANDARD
            .decode(key)
            .map_err(|e| e.to_string())?;
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).unwrap();
        mac.update(to_sign.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());

        let mut url = format!("{}/{AZURE_ACCOUNT}/{path}", self.base());
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", format!("SharedKey {AZURE_ACCOUNT}:{sig}"));
        for (k, v) in &ms {
            req = req.header(k.as_str(), v.as_str());
        }
        for (k, v) in &std_headers {
            req = req.header(*k, *v);
        }
        if !content_type.is_empty() {
            req = req.header("content-type", content_type);
        }
        self.send(req.body(body.to_vec()).map_err(|e| e.to_string())?)
    }

    /// Sends `req`: the status, headers and whole body of the answer.
    fn send(
        &self,
        req: ureq::http::Request<Vec<u8>>,
    ) -> Result<(u16, ureq::http::HeaderMap, Vec<u8>), String> {
        let mut resp = self.agent.run(req).map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(1 << 31)
            .read_to_vec()
            .map_err(|e| e.to_string())?;
        Ok((status, headers, bytes))
    }

    fn azure(
        &self,
        method: &str,
        path: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, ureq::http::HeaderMap, Vec<u8>), String> {
        self.azure_with_key(AZURE_KEY, method, path, query, headers, body)
    }

    /// An Azure request with the wrong key: its status (the helpers' own check that the
    /// emulator verifies signatures).
    pub fn azure_status_with_wrong_key(&self) -> u16 {
        self.azure_with_key(WRONG_AZURE_KEY, "GET", "", "comp=list", &[], b"")
            .unwrap()
            .0
    }

    // ---- Google Cloud Storage JSON API, unauthenticated ----

    /// A raw, unauthenticated request to the server (`path_and_query` from the root): its
    /// status and headers, for measuring what an emulator answers.
    pub fn raw(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> (u16, ureq::http::HeaderMap) {
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.base()))
            .body(body.to_vec())
            .unwrap();
        let mut resp = self.agent.run(req).unwrap();
        let _ = resp.body_mut().read_to_vec();
        (resp.status().as_u16(), resp.headers().clone())
    }

    fn gcs(
        &self,
        method: &str,
        url: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), String> {
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{url}", self.base()));
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let (status, _, bytes) = self.send(req.body(body.to_vec()).map_err(|e| e.to_string())?)?;
        Ok((status, bytes))
    }

    fn gcs_json(&self, method: &str, url: &str, body: &[u8]) -> Result<serde_json::Value, Refused> {
        self.gcs_json_typed(method, url, "application/octet-stream", body)
    }

    fn gcs_json_typed(
        &self,
        method: &str,
        url: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<serde_json::Value, Refused> {
        let (status, bytes) = self
            .gcs(method, url, Some(content_type), body)
            .map_err(|e| Refused { status: 0, body: e })?;
        if status != 200 {
            return Err(Refused {
                status,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| Refused {
            status,
            body: format!("{e}: {}", String::from_utf8_lossy(&bytes)),
        })
    }

    // ---- the helpers, one API for both services ----

    /// Creates a container (Azure) or bucket (GCS); one that exists already is fine.
    pub fn create_container(&self, name: &str) {
        match self.service {
            Service::Azure => {
                let (st, _, body) = self
                    .azure("PUT", name, "restype=container", &[], b"")
                    .unwrap();
                assert!(
                    st == 201 || st == 409,
                    "create container {name}: HTTP {st} {}",
                    String::from_utf8_lossy(&body)
                );
            }
            Service::Gcs => {
                let body = serde_json::json!({ "name": name }).to_string();
                let (st, body) = self
                    .gcs(
                        "POST",
                        "/storage/v1/b?project=pqwrap-test",
                        Some("application/json"),
                        body.as_bytes(),
                    )
                    .unwrap();
                assert!(
                    st == 200 || st == 409,
                    "create bucket {name}: HTTP {st} {}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
    }

    /// Writes an object, unconditionally; its new version.
    pub fn put(&self, container: &str, key: &str, bytes: &[u8]) -> Version {
        self.put_cond(container, key, bytes, None)
            .unwrap_or_else(|e| panic!("put {container}/{key}: {e}"))
    }

    /// Writes an object if its current version is `if_version` (`If-Match` on Azure,
    /// `ifGenerationMatch` on GCS); `Err` with the status the service refused it with.
    pub fn put_cond(
        &self,
        container: &str,
        key: &str,
        bytes: &[u8],
        if_version: Option<&Version>,
    ) -> Result<Version, Refused> {
        match self.service {
            Service::Azure => {
                let mut headers = vec![("x-ms-blob-type", "BlockBlob")];
                if let Some(Version::ETag(e)) = if_version {
                    headers.push(("if-match", e.as_str()));
                }
                let path = format!("{container}/{}", encode_path(key));
                let (st, h, body) = self
                    .azure("PUT", &path, "", &headers, bytes)
                    .map_err(|e| Refused { status: 0, body: e })?;
                if st != 201 {
                    return Err(Refused {
                        status: st,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                }
                Ok(Version::ETag(
                    header(&h, "etag").expect("Put Blob answers an ETag"),
                ))
            }
            Service::Gcs => {
                let mut url = format!(
                    "/upload/storage/v1/b/{container}/o?uploadType=media&name={}",
                    encode_all(key)
                );
                let (mut body, mut content_type) = (bytes.to_vec(), "application/octet-stream");
                // The emulator's media upload fails on an empty body (it closes the
                // connection): an empty object goes as a multipart upload, metadata and no
                // bytes.
                const EMPTY: &str = "--pqwrap-empty\r\ncontent-type: application/json\r\n\r\n{}\r\n\
                    --pqwrap-empty\r\ncontent-type: application/octet-stream\r\n\r\n\r\n\
                    --pqwrap-empty--\r\n";
                if bytes.is_empty() {
                    url = url.replace("uploadType=media", "uploadType=multipart");
                    body = EMPTY.as_bytes().to_vec();
                    content_type = "multipart/related; boundary=pqwrap-empty";
                }
                if let Some(Version::Generation(g)) = if_version {
                    url.push_str(&format!("&ifGenerationMatch={g}"));
                }
                let v = self.gcs_json_typed("POST", &url, content_type, &body)?;
                Ok(Version::Generation(
                    v["generation"].as_str().expect("a generation").to_string(),
                ))
            }
        }
    }

    /// Azure: stages a block of `key` without committing it (Put Block), as an interrupted
    /// block upload leaves it.
    pub fn stage_block(&self, container: &str, key: &str, bytes: &[u8]) {
        assert_eq!(self.service, Service::Azure, "blocks are Azure's");
        let id = base64::engine::general_purpose::STANDARD.encode(b"block-0000");
        let path = format!("{container}/{}", encode_path(key));
        let query = format!("comp=block&blockid={}", encode_all(&id));
        let (st, _, body) = self.azure("PUT", &path, &query, &[], bytes).unwrap();
        assert_eq!(st, 201, "Put Block: {}", String::from_utf8_lossy(&body));
    }

    /// An object's bytes, `None` if there is none.
    pub fn get(&self, container: &str, key: &str) -> Option<Vec<u8>> {
        let (st, body) = match self.service {
            Service::Azure => {
                let path = format!("{container}/{}", encode_path(key));
                let (st, _, body) = self.azure("GET", &path, "", &[], b"").unwrap();
                (st, body)
            }
            Service::Gcs => self
                .gcs(
                    "GET",
                    &format!(
                        "/download/storage/v1/b/{container}/o/{}?alt=media",
                        encode_all(key)
                    ),
                    None,
                    b"",
                )
                .unwrap(),
        };
        match st {
            200 => Some(body),
            404 => None,
            _ => panic!(
                "get {container}/{key}: HTTP {st} {}",
                String::from_utf8_lossy(&body)
            ),
        }
    }

    /// An object's current version (ETag or generation), `None` if there is none.
    pub fn version(&self, container: &str, key: &str) -> Option<Version> {
        match self.service {
            Service::Azure => {
                let path = format!("{container}/{}", encode_path(key));
                let (st, h, _) = self.azure("HEAD", &path, "", &[], b"").unwrap();
                match st {
                    200 => Some(Version::ETag(header(&h, "etag").expect("an ETag"))),
                    404 => None,
                    _ => panic!("properties of {container}/{key}: HTTP {st}"),
                }
            }
            Service::Gcs => {
                match self.gcs_json(
                    "GET",
                    &format!("/storage/v1/b/{container}/o/{}", encode_all(key)),
                    b"",
                ) {
                    Ok(v) => Some(Version::Generation(
                        v["generation"].as_str().expect("a generation").to_string(),
                    )),
                    Err(Refused { status: 404, .. }) => None,
                    Err(e) => panic!("metadata of {container}/{key}: {e}"),
                }
            }
        }
    }

    /// The keys under `prefix`, sorted, following every page (on Azure with the blobs that
    /// have only uncommitted blocks).
    pub fn list(&self, container: &str, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut next: Option<String> = None;
        loop {
            match self.service {
                Service::Azure => {
                    // Blobs that exist only as staged, uncommitted blocks are listed too:
                    // what an interrupted block upload would leave.
                    let mut q = format!(
                        "restype=container&comp=list&include=uncommittedblobs&prefix={}",
                        encode_all(prefix)
                    );
                    if let Some(m) = &next {
                        q.push_str(&format!("&marker={}", encode_all(m)));
                    }
                    let (st, _, body) = self.azure("GET", container, &q, &[], b"").unwrap();
                    let xml = String::from_utf8_lossy(&body).into_owned();
                    assert_eq!(st, 200, "list {container}: {xml}");
                    keys.extend(xml_values(&xml, "Name"));
                    next = xml_values(&xml, "NextMarker")
                        .into_iter()
                        .next()
                        .filter(|m| !m.is_empty());
                }
                Service::Gcs => {
                    let mut url =
                        format!("/storage/v1/b/{container}/o?prefix={}", encode_all(prefix));
                    if let Some(t) = &next {
                        url.push_str(&format!("&pageToken={}", encode_all(t)));
                    }
                    let v = self
                        .gcs_json("GET", &url, b"")
                        .unwrap_or_else(|e| panic!("list {container}: {e}"));
                    for item in v["items"].as_array().into_iter().flatten() {
                        keys.push(item["name"].as_str().unwrap().to_string());
                    }
                    next = v["nextPageToken"].as_str().map(str::to_string);
                }
            }
            if next.is_none() {
                break;
            }
        }
        keys.sort();
        keys
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The server of `service` shared by the tests of one test binary (each test uses its own
/// container). It lives as long as the test process; its watchdog stops it when the process
/// exits.
pub fn shared(service: Service, test: &str) -> Option<&'static Server> {
    static AZURE: OnceLock<Option<Server>> = OnceLock::new();
    static GCS: OnceLock<Option<Server>> = OnceLock::new();
    let cell = match service {
        Service::Azure => &AZURE,
        Service::Gcs => &GCS,
    };
    let s = cell
        .get_or_init(|| Server::start(service, &format!("the shared {}", service.program())))
        .as_ref();
    if s.is_none() {
        skipped(test, &format!("{} is not available", service.program()));
    }
    s
}

fn header(h: &ureq::http::HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Percent-encodes every byte but the unreserved ones and `/`.
fn encode_path(key: &str) -> String {
    encode(key, true)
}

/// Percent-encodes every byte but the unreserved ones (`/` too: a GCS object name is one
/// path segment).
fn encode_all(key: &str) -> String {
    encode(key, false)
}

fn encode(s: &str, keep_slash: bool) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b'/' if keep_slash => "/".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn unescape_query(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(x) = u8::from_str_radix(&v[i + 1..i + 3], 16)
        {
            out.push(x);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// The text of every `<tag>...</tag>` in `xml`, entities decoded.
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(
            after[..j]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        );
        rest = &after[j + close.len()..];
    }
    out
}
