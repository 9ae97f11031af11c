//! AWS credentials, found the way the AWS SDKs and CLI find them, in their order:
//! 1. `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`);
//! 2. a web identity token (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`, as Kubernetes
//!    service accounts get them), exchanged with STS `AssumeRoleWithWebIdentity`;
//! 3. the profile `AWS_PROFILE` (or `default`) of the shared credentials and config files
//!    (`AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`, else `~/.aws/credentials` and
//!    `~/.aws/config`): static keys, or a web identity token file and role;
//! 4. container credentials (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` or `_FULL_URI`, with
//!    `AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE]`);
//! 5. the instance metadata service, IMDSv2 (unless `AWS_EC2_METADATA_DISABLED=true`;
//!    `AWS_EC2_METADATA_SERVICE_ENDPOINT` moves it).
//!
//! Temporary credentials are refreshed five minutes before they expire. Secrets are zeroized
//! when dropped and never printed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;
use zeroize::Zeroizing;

/// Why no credentials could be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// Nothing in the chain had any.
    #[error(
        "no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, \
         a web identity token, or run where container or instance metadata provides them)"
    )]
    NotFound,
    /// A source was configured but did not work.
    #[error("{source_name}: {message}")]
    Source {
        /// Which source.
        source_name: &'static str,
        /// What went wrong.
        message: String,
    },
}

fn fail(source_name: &'static str, message: impl Into<String>) -> CredentialsError {
    CredentialsError::Source {
        source_name,
        message: message.into(),
    }
}

/// A set of credentials.
pub struct Credentials {
    key_id: String,
    secret: Zeroizing<String>,
    token: Option<Zeroizing<String>>,
    expires: Option<Timestamp>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("key_id", &self.key_id)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Static credentials.
    pub fn new(key_id: String, secret: String, token: Option<String>) -> Credentials {
        Credentials {
            key_id,
            secret: Zeroizing::new(secret),
            token: token.filter(|t| !t.is_empty()).map(Zeroizing::new),
            expires: None,
        }
    }

    /// The access key id.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The secret access key.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The session token, for temporary credentials.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref().map(String::as_str)
    }

    fn fresh(&self) -> bool {
        self.expires
            .is_none_or(|e| Timestamp::now() + jiff::SignedDuration::from_secs(300) < e)
    }
}

/// Where credentials come from.
#[derive(Clone, Debug)]
enum Source {
    Static,
    WebIdentity {
        role_arn: String,
        token_file: PathBuf,
        session: String,
        sts: String,
    },
    Container {
        url: String,
        auth: Option<String>,
        auth_file: Option<PathBuf>,
    },
    Imds {
        endpoint: String,
    },
}

/// The environment credentials are looked up in (the process's, or a test's).
pub type Env = HashMap<String, String>;

/// The credentials of a run: found once, refreshed when they expire.
pub struct Provider {
    source: Source,
    cached: Mutex<Option<Arc<Credentials>>>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider").finish_non_exhaustive()
    }
}

fn var<'e>(env: &'e Env, name: &str) -> Option<&'e str> {
    env.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

impl Provider {
    /// Fixed credentials.
    pub fn fixed(c: Credentials) -> Provider {
        Provider {
            source: Source::Static,
            cached: Mutex::new(Some(Arc::new(c))),
        }
    }

    /// The first source of the chain that is configured in `env` (see the module
    /// documentation). `region` picks the regional STS endpoint.
    pub fn from_env(env: &Env, region: &str) -> Result<Provider, CredentialsError> {
        if let (Some(k), Some(s)) = (
            var(env, "AWS_ACCESS_KEY_ID"),
            var(env, "AWS_SECRET_ACCESS_KEY"),
        ) {
            let token = var(env, "AWS_SESSION_TOKEN").map(str::to_string);
            return Ok(Provider::fixed(Credentials::new(k.into(), s.into(), token)));
        }
        let sts = var(env, "AWS_ENDPOINT_URL_STS")
            .map(str::to_string)
            .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"));
        let session = var(env, "AWS_ROLE_SESSION_NAME")
            .unwrap_or("pqwrap")
            .to_string();
        if let (Some(f), Some(r)) = (
            var(env, "AWS_WEB_IDENTITY_TOKEN_FILE"),
            var(env, "AWS_ROLE_ARN"),
        ) {
            return Ok(Provider::lazy(Source::WebIdentity {
                role_arn: r.into(),
                token_file: f.into(),
                session,
                sts,
            }));
        }
        if let Some(p) = profile(env)? {
            if let (Some(k), Some(s)) = (p.get("aws_access_key_id"), p.get("aws_secret_access_key"))
            {
                let token = p.get("aws_session_token").cloned();
                return Ok(Provider::fixed(Credentials::new(
                    k.clone(),
                    s.clone(),
                    token,
                )));
            }
            if let (Some(f), Some(r)) = (p.get("web_identity_token_file"), p.get("role_arn")) {
                return Ok(Provider::lazy(Source::WebIdentity {
                    role_arn: r.clone(),
                    token_file: f.into(),
                    session,
                    sts,
                }));
            }
            let what = [
                "source_profile",
                "credential_process",
                "sso_session",
                "sso_start_url",
            ]
            .into_iter()
            .find(|k| p.contains_key(*k));
            if let Some(what) = what {
                return Err(fail(
                    "profile",
                    format!(
                        "its `{what}` setting is not supported by pqwrap: export the credentials \
                         (e.g. `aws configure export-credentials --format env`)"
                    ),
                ));
            }
        }
        let auth = var(env, "AWS_CONTAINER_AUTHORIZATION_TOKEN").map(str::to_string);
        let auth_file = var(env, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").map(PathBuf::from);
        if let Some(rel) = var(env, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
            return Ok(Provider::lazy(Source::Container {
                url: format!("http://169.254.170.2{rel}"),
                auth,
                auth_file,
            }));
        }
        if let Some(full) = var(env, "AWS_CONTAINER_CREDENTIALS_FULL_URI") {
            return Ok(Provider::lazy(Source::Container {
                url: full.into(),
                auth,
                auth_file,
            }));
        }
        if var(env, "AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Err(CredentialsError::NotFound);
        }
        let endpoint = var(env, "AWS_EC2_METADATA_SERVICE_ENDPOINT")
            .unwrap_or("http://169.254.169.254")
            .trim_end_matches('/')
            .to_string();
        Ok(Provider::lazy(Source::Imds { endpoint }))
    }

    fn lazy(source: Source) -> Provider {
        Provider {
            source,
            cached: Mutex::new(None),
        }
    }

    /// Current credentials, fetched or refreshed if needed.
    pub fn get(&self) -> Result<Arc<Credentials>, CredentialsError> {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cached.as_ref()
            && (matches!(self.source, Source::Static) || c.fresh())
        {
            return Ok(c.clone());
        }
        let c = Arc::new(fetch(&self.source)?);
        *cached = Some(c.clone());
        Ok(c)
    }
}

/// The region: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region`, else `us-east-1`.
pub fn region(env: &Env) -> String {
    if let Some(r) = var(env, "AWS_REGION").or_else(|| var(env, "AWS_DEFAULT_REGION")) {
        return r.to_string();
    }
    profile(env)
        .ok()
        .flatten()
        .and_then(|p| p.get("region").cloned())
        .unwrap_or_else(|| "us-east-1".to_string())
}

fn home_file(env: &Env, var_name: &str, rel: &str) -> Option<PathBuf> {
    var(env, var_name)
        .map(PathBuf::from)
        .or_else(|| var(env, "HOME").map(|h| PathBuf::from(h).join(rel)))
}

/// The settings of the selected profile, merged from the credentials file (first) and the
/// config file; `None` if neither has it (and `AWS_PROFILE` was not set).
fn profile(env: &Env) -> Result<Option<HashMap<String, String>>, CredentialsError> {
    let name = var(env, "AWS_PROFILE").unwrap_or("default");
    let mut merged = HashMap::new();
    let mut found = false;
    for (file, config) in [
        (
            home_file(env, "AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"),
            false,
        ),
        (home_file(env, "AWS_CONFIG_FILE", ".aws/config"), true),
    ] {
        let Some(file) = file else { continue };
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        if let Some(section) = ini_section(&text, name, config) {
            found = true;
            for (k, v) in section {
                merged.entry(k).or_insert(v);
            }
        }
    }
    if !found && var(env, "AWS_PROFILE").is_some() {
        return Err(fail(
            "profile",
            format!("no profile named {name:?} in the shared config or credentials file"),
        ));
    }
    Ok(found.then_some(merged))
}

/// The `key = value` pairs of section `name` (`[name]`, or `[profile name]` in the config
/// file, where the default profile is `[default]`).
fn ini_section(text: &str, name: &str, config: bool) -> Option<HashMap<String, String>> {
    let mut current: Option<bool> = None;
    let mut out: Option<HashMap<String, String>> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(h) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let h = h.trim();
            let matches = if config && name != "default" {
                h.strip_prefix("profile").is_some_and(|r| r.trim() == name)
            } else {
                h == name || (config && h.strip_prefix("profile").is_some_and(|r| r.trim() == name))
            };
            current = Some(matches);
            if matches && out.is_none() {
                out = Some(HashMap::new());
            }
            continue;
        }
        if current == Some(true)
            && let Some((k, v)) = line.split_once('=')
            && let Some(o) = out.as_mut()
        {
            o.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    out
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(2)))
        .timeout_global(Some(Duration::from_secs(10)))
        .max_redirects(0)
        .build()
        .into()
}

fn read_text(
    resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    what: &'static str,
) -> Result<String, CredentialsError> {
    let mut resp = resp.map_err(|e| fail(what, e.to_string()))?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .map_err(|e| fail(what, e.to_string()))?;
    if !(200..300).contains(&status) {
        return Err(fail(what, format!("HTTP {status}")));
    }
    Ok(body)
}

#[derive(Deserialize)]
struct JsonCreds {
    #[serde(rename = "AccessKeyId")]
    key: String,
    #[serde(rename = "SecretAccessKey")]
    secret: String,
    #[serde(rename = "Token", default)]
    token: Option<String>,
    #[serde(rename = "Expiration", default)]
    expiration: Option<String>,
}

impl JsonCreds {
    fn into_creds(self) -> Credentials {
        let mut c = Credentials::new(self.key, self.secret, self.token);
        c.expires = self.expiration.and_then(|e| e.parse().ok());
        c
    }
}

fn fetch(source: &Source) -> Result<Credentials, CredentialsError> {
    let agent = agent();
    match source {
        Source::Static => Err(CredentialsError::NotFound),
        Source::WebIdentity {
            role_arn,
            token_file,
            session,
            sts,
        } => {
            let token = Zeroizing::new(
                std::fs::read_to_string(token_file)
                    .map_err(|e| fail("web identity", format!("{}: {e}", token_file.display())))?,
            );
            let form = [
                ("Action", "AssumeRoleWithWebIdentity"),
                ("DurationSeconds", "3600"),
                ("RoleArn", role_arn.as_str()),
                ("RoleSessionName", session.as_str()),
                ("Version", "2011-06-15"),
                ("WebIdentityToken", token.trim()),
            ];
            let body = read_text(
                agent.post(sts.as_str()).send_form(form),
                "web identity (STS)",
            )?;
            #[derive(Deserialize)]
            struct Resp {
                #[serde(rename = "AssumeRoleWithWebIdentityResult")]
                result: Res,
            }
            #[derive(Deserialize)]
            struct Res {
                #[serde(rename = "Credentials")]
                c: StsCreds,
            }
            #[derive(Deserialize)]
            struct StsCreds {
                #[serde(rename = "AccessKeyId")]
                key: String,
                #[serde(rename = "SecretAccessKey")]
                secret: String,
                #[serde(rename = "SessionToken")]
                token: String,
                #[serde(rename = "Expiration")]
                expiration: String,
            }
            let r: Resp = quick_xml::de::from_str(&body)
                .map_err(|e| fail("web identity (STS)", format!("unreadable answer: {e}")))?;
            let mut c = Credentials::new(r.result.c.key, r.result.c.secret, Some(r.result.c.token));
            c.expires = r.result.c.expiration.parse().ok();
            Ok(c)
        }
        Source::Container {
            url,
            auth,
            auth_file,
        } => {
            let auth = match (auth_file, auth) {
                (Some(f), _) => Some(Zeroizing::new(
                    std::fs::read_to_string(f)
                        .map_err(|e| {
                            fail("container credentials", format!("{}: {e}", f.display()))
                        })?
                        .trim()
                        .to_string(),
                )),
                (None, Some(a)) => Some(Zeroizing::new(a.clone())),
                (None, None) => None,
            };
            let mut req = agent.get(url.as_str());
            if let Some(a) = &auth {
                req = req.header("authorization", a.as_str());
            }
            let body = read_text(req.call(), "container credentials")?;
            let j: JsonCreds = serde_json::from_str(&body)
                .map_err(|e| fail("container credentials", format!("unreadable answer: {e}")))?;
            Ok(j.into_creds())
        }
        Source::Imds { endpoint } => {
            let token = Zeroizing::new(read_text(
                agent
                    .put(format!("{endpoint}/latest/api/token"))
                    .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
                    .send_empty(),
                "instance metadata",
            )?);
            let base = format!("{endpoint}/latest/meta-data/iam/security-credentials/");
            let roles = read_text(
                agent
                    .get(base.as_str())
                    .header("x-aws-ec2-metadata-token", token.as_str())
                    .call(),
                "instance metadata",
            )?;
            let role = roles
                .lines()
                .next()
                .filter(|r| !r.is_empty())
                .ok_or_else(|| fail("instance metadata", "no IAM role attached to the instance"))?;
            let body = read_text(
                agent
                    .get(format!("{base}{role}"))
                    .header("x-aws-ec2-metadata-token", token.as_str())
                    .call(),
                "instance metadata",
            )?;
            let j: JsonCreds = serde_json::from_str(&body)
                .map_err(|e| fail("instance metadata", format!("unreadable answer: {e}")))?;
            Ok(j.into_creds())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn environment_keys_come_first_and_profiles_are_read() {
        let p = Provider::from_env(
            &env(&[
                ("AWS_ACCESS_KEY_ID", "AK"),
                ("AWS_SECRET_ACCESS_KEY", "SK"),
                ("AWS_SESSION_TOKEN", "T"),
            ]),
            "us-east-1",
        )
        .unwrap();
        let c = p.get().unwrap();
        assert_eq!((c.key_id(), c.secret(), c.token()), ("AK", "SK", Some("T")));
        assert!(!format!("{c:?}").contains("SK"));

        let d = tempfile::tempdir().unwrap();
        let creds = d.path().join("credentials");
        let config = d.path().join("config");
        std::fs::write(&creds, "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n[ops]\naws_access_key_id=O\naws_secret_access_key=OS\n").unwrap();
        std::fs::write(&config, "[default]\nregion = eu-west-1\n[profile ops]\nregion = ap-south-1\n[profile sso]\nsso_session = x\n").unwrap();
        let (cf, cg) = (creds.to_str().unwrap(), config.to_str().unwrap());
        let base = [
            ("AWS_SHARED_CREDENTIALS_FILE", cf),
            ("AWS_CONFIG_FILE", cg),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ];
        let e = env(&base);
        assert_eq!(
            Provider::from_env(&e, "x").unwrap().get().unwrap().key_id(),
            "D"
        );
        assert_eq!(region(&e), "eu-west-1");
        let mut e2 = e.clone();
        e2.insert("AWS_PROFILE".into(), "ops".into());
        assert_eq!(
            Provider::from_env(&e2, "x")
                .unwrap()
                .get()
                .unwrap()
                .key_id(),
            "O"
        );
        assert_eq!(region(&e2), "ap-south-1");
        e2.insert("AWS_PROFILE".into(), "sso".into());
        let err = Provider::from_env(&e2, "x").unwrap_err().to_string();
        assert!(err.contains("sso_session"), "{err}");
        e2.insert("AWS_PROFILE".into(), "missing".into());
        assert!(
            Provider::from_env(&e2, "x")
                .unwrap_err()
                .to_string()
                .contains("missing")
        );
        // Nothing anywhere, metadata disabled: a clear error, no request.
        let none = env(&[
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("HOME", d.path().join("nohome").to_str().unwrap()),
        ]);
        assert!(matches!(
            Provider::from_env(&none, "x"),
            Err(CredentialsError::NotFound)
        ));
    }

    /// A loopback HTTP server answering each request with what `answer` gives for it; serves
    /// `n` requests, then stops, returning the requests seen.
    fn serve(
        n: usize,
        answer: fn(&str) -> (u16, String),
    ) -> (u16, std::thread::JoinHandle<Vec<String>>) {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..n {
                let (mut c, _) = l.accept().unwrap();
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = 0;
                // The head, and a form body if one is announced.
                loop {
                    let k = c.read(&mut buf[got..]).unwrap();
                    got += k;
                    let text = String::from_utf8_lossy(&buf[..got]).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if got >= end + 4 + len || k == 0 {
                            break;
                        }
                    }
                }
                let req = String::from_utf8_lossy(&buf[..got]).to_string();
                let (status, body) = answer(&req);
                write!(
                    c,
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
                seen.push(req);
            }
            seen
        });
        (port, t)
    }

    const JSON: &str = r#"{"AccessKeyId":"TMP","SecretAccessKey":"TS","Token":"TT","Expiration":"2099-01-01T00:00:00Z"}"#;

    #[test]
    fn container_metadata_web_identity_and_imds_on_loopback() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().to_str().unwrap().to_string();
        // Container credentials, with the authorization token from a file.
        let (port, t) = serve(1, |req| {
            assert!(req.starts_with("GET /creds "), "{req}");
            let lower = req.to_ascii_lowercase();
            assert!(lower.contains("authorization: secret-token"), "{req}");
            (200, JSON.into())
        });
        let tok = d.path().join("tok");
        std::fs::write(&tok, "secret-token\n").unwrap();
        let url = format!("http://127.0.0.1:{port}/creds");
        let e = env(&[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &url),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                tok.to_str().unwrap(),
            ),
            ("HOME", &home),
        ]);
        let c = Provider::from_env(&e, "r").unwrap().get().unwrap();
        assert_eq!(
            (c.key_id(), c.secret(), c.token()),
            ("TMP", "TS", Some("TT"))
        );
        t.join().unwrap();

        // IMDSv2: a session token first, then the role, then its credentials.
        let (port, t) = serve(3, |req| {
            let lower = req.to_ascii_lowercase();
            if req.starts_with("PUT /latest/api/token ") {
                assert!(
                    lower.contains("x-aws-ec2-metadata-token-ttl-seconds"),
                    "{req}"
                );
                return (200, "imds-token".into());
            }
            assert!(
                lower.contains("x-aws-ec2-metadata-token: imds-token"),
                "{req}"
            );
            if req.starts_with("GET /latest/meta-data/iam/security-credentials/ ") {
                return (200, "the-role\n".into());
            }
            let role = "GET /latest/meta-data/iam/security-credentials/the-role ";
            assert!(req.starts_with(role), "{req}");
            (200, JSON.into())
        });
        let url = format!("http://127.0.0.1:{port}/");
        let e = env(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &url), ("HOME", &home)]);
        let c = Provider::from_env(&e, "r").unwrap().get().unwrap();
        assert_eq!(c.key_id(), "TMP");
        assert_eq!(t.join().unwrap().len(), 3);

        // Web identity: the token file's contents go to STS AssumeRoleWithWebIdentity.
        let (port, t) = serve(1, |req| {
            assert!(req.starts_with("POST / "), "{req}");
            assert!(req.contains("Action=AssumeRoleWithWebIdentity"), "{req}");
            assert!(req.contains("WebIdentityToken=k8s-jwt"), "{req}");
            assert!(
                req.contains("RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fr"),
                "{req}"
            );
            let creds = "<Credentials><AccessKeyId>WI</AccessKeyId><SecretAccessKey>WS</SecretAccessKey>\
                <SessionToken>WT</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>";
            let body = format!(
                "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult>{creds}\
                 </AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
            );
            (200, body)
        });
        let jwt = d.path().join("jwt");
        std::fs::write(&jwt, "k8s-jwt\n").unwrap();
        let url = format!("http://127.0.0.1:{port}/");
        let e = env(&[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", jwt.to_str().unwrap()),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
            ("AWS_ENDPOINT_URL_STS", &url),
            ("HOME", &home),
        ]);
        let c = Provider::from_env(&e, "r").unwrap().get().unwrap();
        assert_eq!((c.key_id(), c.token()), ("WI", Some("WT")));
        t.join().unwrap();

        // A source that answers with an error is named in the message.
        let (port, t) = serve(1, |_| (500, String::new()));
        let url = format!("http://127.0.0.1:{port}/creds");
        let e = env(&[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &url),
            ("HOME", &home),
        ]);
        let err = Provider::from_env(&e, "r").unwrap().get().unwrap_err();
        let err = err.to_string();
        assert!(
            err.contains("container credentials") && err.contains("500"),
            "{err}"
        );
        t.join().unwrap();
    }
}
