//! The capability manifest: what an agent may do.
//!
//! Accepted as JSON exactly in the shape of the design brief:
//!
//! ```json
//! {"agent": "cowork-session-1234",
//!  "capabilities": {
//!    "fileAccess": [{"path": "/home/user/Documents/Contracts", "mode": "read"}],
//!    "network": [{"host": "internal-api.company.local", "port": 443}],
//!    "clipboard": false,
//!    "shell": {"allowedCommands": ["/usr/bin/less"], "interactive": false},
//!    "quantum": {"backends": ["qpu-sim-1"], "maxQubits": 32, "maxShots": 10000,
//!                "maxJobs": 5, "maxRuntime": "600s", "algorithms": ["vqe"]}},
//!  "ttl": "3600s"}
//! ```
//!
//! Every capability inside `capabilities` may be left out (it is then not granted). Unknown or
//! duplicated fields, relative or non-normalised paths, bad ports and hosts, and empty
//! command paths are errors that name the field (`capabilities.fileAccess[0].path: …`).
//! Inside a token the capabilities are a compact CBOR map (see docs/TOKENS.md).

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use super::cbor::Value;

/// Largest manifest JSON accepted.
pub const MAX_MANIFEST_LEN: usize = 64 * 1024;
/// Most entries in any list of a manifest.
pub const MAX_LIST: usize = 256;
/// Longest path, host, command or name accepted.
pub const MAX_STR: usize = 4096;

/// A manifest (or quantum job) that is not acceptable: the field, by its path in the JSON or
/// CBOR (`capabilities.network[0].port`), and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("manifest: {field}: {problem}")]
pub struct ManifestError {
    /// The field's path.
    pub field: String,
    /// What is wrong with it.
    pub problem: ManifestProblem,
}

/// What is wrong with a manifest field.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ManifestProblem {
    /// The JSON decoder refused it (unknown or duplicated field, wrong type): its message.
    #[error("{0}")]
    Json(String),
    /// Longer than the limit for the document or the string.
    #[error("longer than {0} bytes")]
    TooLong(usize),
    /// A duration not in the accepted grammar (the text given).
    #[error(
        "{0:?} is not a positive whole number of seconds written as digits and d, h, m or s \
         (e.g. \"3600s\", \"15m\", \"1h30m\")"
    )]
    Duration(String),
    /// A duration of zero.
    #[error("must be a positive whole number of seconds")]
    ZeroDuration,
    /// A file mode other than read, write or readwrite (the text given).
    #[error("{0:?} is not read, write or readwrite")]
    Mode(String),
    /// A port outside 1..=65535 (the number given).
    #[error("{0} is not a port in 1..=65535")]
    Port(i64),
    /// A port that is not a number in 1..=65535.
    #[error("not a port in 1..=65535")]
    NotAPort,
    /// An empty string.
    #[error("must not be empty")]
    Empty,
    /// Control characters in a string.
    #[error("contains control characters")]
    Control,
    /// A path that is not absolute and canonical (the path given).
    #[error("{}", .0.describe(.1))]
    Path(PathProblem, String),
    /// A host name longer than DNS allows.
    #[error("host must be 1..=253 bytes")]
    HostLength,
    /// A host with an empty or over-long label (the host given).
    #[error("{0:?}: empty or over-long label")]
    HostLabel(String),
    /// A host with characters outside lowercase letters, digits, `-` and `.`.
    #[error("{0:?}: only lowercase letters, digits, '-' and '.' are allowed")]
    HostCharacters(String),
    /// A host label that starts or ends with `-`.
    #[error("{0:?}: label starts or ends with '-'")]
    HostHyphen(String),
    /// More entries than [`MAX_LIST`].
    #[error("more than {MAX_LIST} entries")]
    TooManyEntries,
    /// An entry that appears twice.
    #[error("duplicate entry")]
    Duplicate,
    /// An empty command path.
    #[error("empty command path")]
    EmptyCommand,
    /// A limit of zero where it must be positive.
    #[error("must be positive")]
    NotPositive,
    /// A CBOR item that should be a map.
    #[error("not a map")]
    NotMap,
    /// A CBOR file mode other than 1, 2 or 3.
    #[error("not 1, 2 or 3")]
    ModeNumber,
    /// `clipboard` present but not `true` (absence means false).
    #[error("present but not true")]
    NotTrue,
    /// A CBOR item that should be a bool.
    #[error("not a bool")]
    NotBool,
    /// A CBOR item that should be an unsigned integer.
    #[error("not an unsigned integer")]
    NotUint,
    /// A CBOR label the capability map does not define (as decoded).
    #[error("unknown label {0}")]
    UnknownLabel(String),
    /// A CBOR array that is empty (empty lists are left out) or too long.
    #[error("empty or too long (empty lists are left out)")]
    ListLength,
    /// A CBOR item that should be an array.
    #[error("not an array")]
    NotArray,
    /// A CBOR item that should be a two-element array.
    #[error("not a two-element array")]
    NotPair,
    /// A CBOR item that should be a text string (of bounded length).
    #[error("not a text string (or too long)")]
    NotText,
    /// A CBOR item that should be an array of text strings.
    #[error("not an array of text strings")]
    NotTextArray,
    /// A CBOR map that must have exactly the labels 1..=N.
    #[error("must have exactly the labels 1..={0}")]
    Labels(usize),
}

impl ManifestError {
    /// `field: problem`, without the `manifest:` prefix of `Display` (for messages that
    /// name their own context).
    pub fn detail(&self) -> String {
        format!("{}: {}", self.field, self.problem)
    }
}

fn err(field: &str, problem: ManifestProblem) -> ManifestError {
    ManifestError {
        field: field.to_owned(),
        problem,
    }
}

/// What a file grant allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileMode {
    /// Read only.
    Read,
    /// Write only.
    Write,
    /// Read and write.
    ReadWrite,
}

impl FileMode {
    /// Whether reading is allowed.
    pub fn can_read(self) -> bool {
        matches!(self, FileMode::Read | FileMode::ReadWrite)
    }
    /// Whether writing is allowed.
    pub fn can_write(self) -> bool {
        matches!(self, FileMode::Write | FileMode::ReadWrite)
    }
    /// Whether every access `self` allows is also allowed by `other`.
    pub fn within(self, other: FileMode) -> bool {
        (!self.can_read() || other.can_read()) && (!self.can_write() || other.can_write())
    }
    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            FileMode::Read => "read",
            FileMode::Write => "write",
            FileMode::ReadWrite => "readwrite",
        }
    }
    fn code(self) -> u64 {
        match self {
            FileMode::Read => 1,
            FileMode::Write => 2,
            FileMode::ReadWrite => 3,
        }
    }
}

/// Access to a directory tree (or a single file): the path and everything below it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileGrant {
    /// Absolute, lexically normalised path.
    pub path: String,
    /// What is allowed.
    pub mode: FileMode,
}

/// Permission to connect to one host and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NetGrant {
    /// Lowercase DNS name or IPv4 address.
    pub host: String,
    /// TCP/UDP port, 1..=65535.
    pub port: u16,
}

/// Shell access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShellGrant {
    /// Absolute paths of the commands that may be run.
    pub allowed_commands: Vec<String>,
    /// Whether an interactive session may be started.
    pub interactive: bool,
}

/// The most jobs that may be submitted under one token (`maxJobs`), counted against that
/// token's own `cti`.
///
/// It is a ceiling for one token, not a share of a budget: narrowing gives each child a
/// ceiling no higher than its parent's, but every child gets its own, so three children of a
/// parent with `maxJobs: 5` could submit 15 jobs if each were counted alone. Totals are the
/// broker's to enforce: it counts every job against the token it was submitted under *and*
/// against each of that token's ancestors ([`super::Claims::quota_accounts`]), and refuses a
/// job that would take any of them past its own ceiling. An enforcement point that sees only
/// the child token can check the child's ceiling, never the parent's total.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobCeiling(u64);

impl JobCeiling {
    /// A ceiling of `n` jobs under one token.
    pub const fn new(n: u64) -> JobCeiling {
        JobCeiling(n)
    }

    /// The number of jobs.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// Whether one more job fits under this ceiling, with `counted` jobs already counted
    /// against the same token.
    pub const fn allows_another(self, counted: u64) -> bool {
        counted < self.0
    }
}

/// Quantum job submission and its quotas. Qubits, shots and runtime bound each job; the
/// number of jobs is a per-token [`JobCeiling`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuantumGrant {
    /// Backends jobs may go to.
    pub backends: Vec<String>,
    /// Algorithms jobs may run.
    pub algorithms: Vec<String>,
    /// Most qubits per job.
    pub max_qubits: u64,
    /// Most shots per job.
    pub max_shots: u64,
    /// Most jobs counted against this one token (not a total across its children).
    pub max_jobs: JobCeiling,
    /// Longest runtime per job, in seconds.
    pub max_runtime_secs: u64,
}

/// The capabilities a token grants. Anything not listed is denied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// File access grants.
    pub file_access: Vec<FileGrant>,
    /// Network grants.
    pub network: Vec<NetGrant>,
    /// Clipboard access.
    pub clipboard: bool,
    /// Shell access, if any.
    pub shell: Option<ShellGrant>,
    /// Quantum job submission, if any.
    pub quantum: Option<QuantumGrant>,
}

/// A parsed manifest: the agent (becomes the token's `sub`), its capabilities, and the
/// requested lifetime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The agent session id.
    pub agent: String,
    /// What it may do.
    pub capabilities: Capabilities,
    /// Requested lifetime (`"ttl"`), whole seconds.
    pub ttl: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    agent: String,
    capabilities: RawCaps,
    ttl: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawCaps {
    file_access: Option<Vec<RawFile>>,
    network: Option<Vec<RawNet>>,
    clipboard: Option<bool>,
    shell: Option<RawShell>,
    quantum: Option<RawQuantum>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    path: String,
    mode: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNet {
    host: String,
    port: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawShell {
    allowed_commands: Vec<String>,
    interactive: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawQuantum {
    backends: Vec<String>,
    max_qubits: u64,
    max_shots: u64,
    max_jobs: u64,
    max_runtime: String,
    algorithms: Vec<String>,
}

/// Parses a duration such as `"3600s"`, `"15m"` or `"1h30m"`: one or more parts, each a
/// canonical decimal (ASCII digits, no sign, no leading zero) followed by `d`, `h`, `m` or
/// `s`, largest unit first, each unit at most once, nothing else (no spaces, fractions or
/// other units). The total must be positive; it is whole seconds by construction.
pub fn parse_duration(field: &str, s: &str) -> Result<Duration, ManifestError> {
    let bad = || err(field, ManifestProblem::Duration(s.to_owned()));
    if s.is_empty() || s.len() > 64 {
        return Err(bad());
    }
    const UNITS: [(u8, u64); 4] = [(b'd', 86_400), (b'h', 3_600), (b'm', 60), (b's', 1)];
    let b = s.as_bytes();
    let (mut i, mut next_unit, mut total) = (0usize, 0usize, 0u64);
    while i < b.len() {
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let digits = &s[start..i];
        let n = canonical_decimal(digits).ok_or_else(bad)?;
        let unit = *b.get(i).ok_or_else(bad)?;
        i += 1;
        let k = UNITS
            .iter()
            .position(|(u, _)| *u == unit)
            .filter(|k| *k >= next_unit)
            .ok_or_else(bad)?;
        next_unit = k + 1;
        total = n
            .checked_mul(UNITS[k].1)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(bad)?;
    }
    if total == 0 {
        return Err(err(field, ManifestProblem::ZeroDuration));
    }
    Ok(Duration::from_secs(total))
}

/// `s` as a number if it is a canonical decimal: one or more ASCII digits, no sign, no
/// leading zero (except `0` itself), within `u64`. `str::parse` also takes a leading `+`.
pub fn canonical_decimal(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) || (b.len() > 1 && b[0] == b'0') {
        return None;
    }
    b.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

impl Manifest {
    /// Parses and strictly validates manifest JSON.
    pub fn from_json(text: &str) -> Result<Manifest, ManifestError> {
        if text.len() > MAX_MANIFEST_LEN {
            return Err(err(
                "(manifest)",
                ManifestProblem::TooLong(MAX_MANIFEST_LEN),
            ));
        }
        let de = &mut serde_json::Deserializer::from_str(text);
        let raw: RawManifest = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            err(&path, ManifestProblem::Json(e.into_inner().to_string()))
        })?;
        let c = raw.capabilities;
        let caps = Capabilities {
            file_access: c
                .file_access
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(i, f)| {
                    let mode = match f.mode.as_str() {
                        "read" => FileMode::Read,
                        "write" => FileMode::Write,
                        "readwrite" => FileMode::ReadWrite,
                        other => {
                            return Err(err(
                                &format!("capabilities.fileAccess[{i}].mode"),
                                ManifestProblem::Mode(other.to_owned()),
                            ));
                        }
                    };
                    Ok(FileGrant { path: f.path, mode })
                })
                .collect::<Result<_, _>>()?,
            network: c
                .network
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(i, n)| {
                    let port = u16::try_from(n.port)
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or_else(|| {
                            err(
                                &format!("capabilities.network[{i}].port"),
                                ManifestProblem::Port(n.port),
                            )
                        })?;
                    Ok(NetGrant { host: n.host, port })
                })
                .collect::<Result<_, _>>()?,
            clipboard: c.clipboard.unwrap_or(false),
            shell: c.shell.map(|s| ShellGrant {
                allowed_commands: s.allowed_commands,
                interactive: s.interactive,
            }),
            quantum: match c.quantum {
                None => None,
                Some(q) => Some(QuantumGrant {
                    max_runtime_secs: parse_duration(
                        "capabilities.quantum.maxRuntime",
                        &q.max_runtime,
                    )?
                    .as_secs(),
                    backends: q.backends,
                    algorithms: q.algorithms,
                    max_qubits: q.max_qubits,
                    max_shots: q.max_shots,
                    max_jobs: JobCeiling::new(q.max_jobs),
                }),
            },
        };
        validate_agent("agent", &raw.agent)?;
        caps.validate()?;
        let ttl = raw.ttl.map(|t| parse_duration("ttl", &t)).transpose()?;
        Ok(Manifest {
            agent: raw.agent,
            capabilities: caps,
            ttl,
        })
    }
}

pub(crate) fn validate_agent(field: &str, s: &str) -> Result<(), ManifestError> {
    validate_name(field, s)
}

fn validate_name(field: &str, s: &str) -> Result<(), ManifestError> {
    if s.is_empty() {
        return Err(err(field, ManifestProblem::Empty));
    }
    if s.len() > 256 {
        return Err(err(field, ManifestProblem::TooLong(256)));
    }
    if s.chars().any(char::is_control) {
        return Err(err(field, ManifestProblem::Control));
    }
    Ok(())
}

/// Checks that `p` is absolute and canonical: starts with `/`, no empty (`//`), `.` or `..`
/// components, no trailing `/` (except the root itself), no NUL, at most [`MAX_STR`] bytes.
pub fn validate_abs_path(field: &str, p: &str) -> Result<(), ManifestError> {
    match path_problem(p) {
        Some(problem) => Err(err(field, ManifestProblem::Path(problem, p.to_owned()))),
        None => Ok(()),
    }
}

/// Why a path is not absolute and canonical: the rule shared by the manifest (grants) and
/// enforcement (requests), so both accept exactly the same strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathProblem {
    /// The empty string.
    Empty,
    /// Longer than a manifest string may be.
    TooLong,
    /// Not starting with `/`.
    NotAbsolute,
    /// A NUL byte.
    Nul,
    /// An empty component (`//`) or a trailing `/`.
    EmptyComponent,
    /// A `.` component.
    Dot,
    /// A `..` component.
    DotDot,
}

impl PathProblem {
    /// The problem, said of the path `p`.
    pub fn describe(self, p: &str) -> String {
        match self {
            PathProblem::Empty => "empty path".into(),
            PathProblem::TooLong => format!("longer than {MAX_STR} bytes"),
            PathProblem::NotAbsolute => format!("{p:?} is not an absolute path"),
            PathProblem::Nul => "contains NUL".into(),
            PathProblem::EmptyComponent => {
                format!("{p:?} is not normalised (empty component or trailing '/')")
            }
            PathProblem::Dot => format!("{p:?} is not normalised (\".\" component)"),
            PathProblem::DotDot => format!("{p:?} is not normalised (\"..\" component)"),
        }
    }
}

/// Why `p` is not an absolute canonical path, or `None` if it is one. Shared by the
/// manifest (grants) and enforcement (requests), so both accept exactly the same strings.
pub(crate) fn path_problem(p: &str) -> Option<PathProblem> {
    if p.is_empty() {
        return Some(PathProblem::Empty);
    }
    if p.len() > MAX_STR {
        return Some(PathProblem::TooLong);
    }
    if !p.starts_with('/') {
        return Some(PathProblem::NotAbsolute);
    }
    if p.contains('\0') {
        return Some(PathProblem::Nul);
    }
    if p == "/" {
        return None;
    }
    for comp in p[1..].split('/') {
        match comp {
            "" => return Some(PathProblem::EmptyComponent),
            "." => return Some(PathProblem::Dot),
            ".." => return Some(PathProblem::DotDot),
            _ => {}
        }
    }
    None
}

/// Checks a host: a lowercase DNS name (labels of `a-z0-9-`, not starting or ending in `-`,
/// 1..=63 bytes each, at most 253 in all) or a dotted IPv4 address.
pub fn validate_host(field: &str, h: &str) -> Result<(), ManifestError> {
    if h.is_empty() || h.len() > 253 {
        return Err(err(field, ManifestProblem::HostLength));
    }
    for label in h.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(err(field, ManifestProblem::HostLabel(h.to_owned())));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(err(field, ManifestProblem::HostCharacters(h.to_owned())));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(err(field, ManifestProblem::HostHyphen(h.to_owned())));
        }
    }
    Ok(())
}

fn check_list_len<T>(field: &str, v: &[T]) -> Result<(), ManifestError> {
    if v.len() > MAX_LIST {
        return Err(err(field, ManifestProblem::TooManyEntries));
    }
    Ok(())
}

fn check_unique<T: Ord>(field: &str, items: impl Iterator<Item = T>) -> Result<(), ManifestError> {
    let mut seen = BTreeSet::new();
    for (i, x) in items.enumerate() {
        if !seen.insert(x) {
            return Err(err(&format!("{field}[{i}]"), ManifestProblem::Duplicate));
        }
    }
    Ok(())
}

impl Capabilities {
    /// Checks every rule the JSON parser checks, so that capabilities built in code or decoded
    /// from a token obey the same rules.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let f = "capabilities.fileAccess";
        check_list_len(f, &self.file_access)?;
        for (i, g) in self.file_access.iter().enumerate() {
            validate_abs_path(&format!("{f}[{i}].path"), &g.path)?;
        }
        check_unique(f, self.file_access.iter().map(|g| g.path.as_str()))?;
        let f = "capabilities.network";
        check_list_len(f, &self.network)?;
        for (i, n) in self.network.iter().enumerate() {
            validate_host(&format!("{f}[{i}].host"), &n.host)?;
            if n.port == 0 {
                return Err(err(&format!("{f}[{i}].port"), ManifestProblem::Port(0)));
            }
        }
        check_unique(f, self.network.iter().map(|n| (n.host.as_str(), n.port)))?;
        if let Some(s) = &self.shell {
            let f = "capabilities.shell.allowedCommands";
            check_list_len(f, &s.allowed_commands)?;
            for (i, c) in s.allowed_commands.iter().enumerate() {
                if c.is_empty() {
                    return Err(err(&format!("{f}[{i}]"), ManifestProblem::EmptyCommand));
                }
                validate_abs_path(&format!("{f}[{i}]"), c)?;
            }
            check_unique(f, s.allowed_commands.iter())?;
        }
        if let Some(q) = &self.quantum {
            for (f, list) in [
                ("capabilities.quantum.backends", &q.backends),
                ("capabilities.quantum.algorithms", &q.algorithms),
            ] {
                check_list_len(f, list)?;
                for (i, b) in list.iter().enumerate() {
                    validate_name(&format!("{f}[{i}]"), b)?;
                }
                check_unique(f, list.iter())?;
            }
            if q.max_runtime_secs == 0 {
                return Err(err(
                    "capabilities.quantum.maxRuntime",
                    ManifestProblem::NotPositive,
                ));
            }
        }
        Ok(())
    }

    /// The capabilities as JSON, in the manifest's shape.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let mut m = serde_json::Map::new();
        m.insert(
            "fileAccess".into(),
            self.file_access
                .iter()
                .map(|g| json!({"path": g.path, "mode": g.mode.name()}))
                .collect(),
        );
        m.insert(
            "network".into(),
            self.network
                .iter()
                .map(|n| json!({"host": n.host, "port": n.port}))
                .collect(),
        );
        m.insert("clipboard".into(), self.clipboard.into());
        if let Some(s) = &self.shell {
            m.insert(
                "shell".into(),
                json!({"allowedCommands": s.allowed_commands, "interactive": s.interactive}),
            );
        }
        if let Some(q) = &self.quantum {
            m.insert(
                "quantum".into(),
                json!({"backends": q.backends, "maxQubits": q.max_qubits, "maxShots": q.max_shots,
                       "maxJobs": q.max_jobs.get(), "maxRuntime": format!("{}s", q.max_runtime_secs),
                       "algorithms": q.algorithms}),
            );
        }
        serde_json::Value::Object(m)
    }

    /// The CBOR form carried in a token (labels in docs/TOKENS.md). Empty lists, a false
    /// clipboard and absent sections are left out, so each capability set has one encoding.
    pub(crate) fn to_cbor(&self) -> Value {
        let texts = |v: &[String]| Value::Array(v.iter().map(|s| Value::text(s)).collect());
        let mut m = Vec::new();
        if !self.file_access.is_empty() {
            m.push((
                Value::Uint(1),
                Value::Array(
                    self.file_access
                        .iter()
                        .map(|g| {
                            Value::Array(vec![Value::text(&g.path), Value::Uint(g.mode.code())])
                        })
                        .collect(),
                ),
            ));
        }
        if !self.network.is_empty() {
            m.push((
                Value::Uint(2),
                Value::Array(
                    self.network
                        .iter()
                        .map(|n| {
                            Value::Array(vec![Value::text(&n.host), Value::Uint(u64::from(n.port))])
                        })
                        .collect(),
                ),
            ));
        }
        if self.clipboard {
            m.push((Value::Uint(3), Value::Bool(true)));
        }
        if let Some(s) = &self.shell {
            m.push((
                Value::Uint(4),
                Value::Map(vec![
                    (Value::Uint(1), texts(&s.allowed_commands)),
                    (Value::Uint(2), Value::Bool(s.interactive)),
                ]),
            ));
        }
        if let Some(q) = &self.quantum {
            m.push((
                Value::Uint(5),
                Value::Map(vec![
                    (Value::Uint(1), texts(&q.backends)),
                    (Value::Uint(2), texts(&q.algorithms)),
                    (Value::Uint(3), Value::Uint(q.max_qubits)),
                    (Value::Uint(4), Value::Uint(q.max_shots)),
                    (Value::Uint(5), Value::Uint(q.max_jobs.get())),
                    (Value::Uint(6), Value::Uint(q.max_runtime_secs)),
                ]),
            ));
        }
        Value::Map(m)
    }

    /// Decodes and validates the CBOR form.
    pub(crate) fn from_cbor(v: &Value) -> Result<Capabilities, ManifestError> {
        let Value::Map(entries) = v else {
            return Err(err("capabilities", ManifestProblem::NotMap));
        };
        let mut caps = Capabilities::default();
        for (k, val) in entries {
            match k {
                Value::Uint(1) => {
                    let items = nonempty_array("capabilities.fileAccess", val)?;
                    for (i, it) in items.iter().enumerate() {
                        let f = format!("capabilities.fileAccess[{i}]");
                        let [p, m] = pair(&f, it)?;
                        let mode = match m {
                            Value::Uint(1) => FileMode::Read,
                            Value::Uint(2) => FileMode::Write,
                            Value::Uint(3) => FileMode::ReadWrite,
                            _ => {
                                return Err(err(&format!("{f}.mode"), ManifestProblem::ModeNumber));
                            }
                        };
                        caps.file_access.push(FileGrant {
                            path: text(&format!("{f}.path"), p)?,
                            mode,
                        });
                    }
                }
                Value::Uint(2) => {
                    let items = nonempty_array("capabilities.network", val)?;
                    for (i, it) in items.iter().enumerate() {
                        let f = format!("capabilities.network[{i}]");
                        let [h, p] = pair(&f, it)?;
                        let port = match p {
                            Value::Uint(p) => u16::try_from(*p).ok().filter(|p| *p != 0),
                            _ => None,
                        }
                        .ok_or_else(|| err(&format!("{f}.port"), ManifestProblem::NotAPort))?;
                        caps.network.push(NetGrant {
                            host: text(&format!("{f}.host"), h)?,
                            port,
                        });
                    }
                }
                Value::Uint(3) => {
                    if *val != Value::Bool(true) {
                        return Err(err("capabilities.clipboard", ManifestProblem::NotTrue));
                    }
                    caps.clipboard = true;
                }
                Value::Uint(4) => {
                    let f = "capabilities.shell";
                    let [cmds, inter] = exact_map::<2>(f, val)?;
                    caps.shell = Some(ShellGrant {
                        allowed_commands: texts(&format!("{f}.allowedCommands"), cmds)?,
                        interactive: match inter {
                            Value::Bool(b) => *b,
                            _ => {
                                return Err(err(
                                    &format!("{f}.interactive"),
                                    ManifestProblem::NotBool,
                                ));
                            }
                        },
                    });
                }
                Value::Uint(5) => {
                    let f = "capabilities.quantum";
                    let [b, a, qb, sh, jb, rt] = exact_map::<6>(f, val)?;
                    let uint = |v: &Value, name: &str| match v {
                        Value::Uint(n) => Ok(*n),
                        _ => Err(err(&format!("{f}.{name}"), ManifestProblem::NotUint)),
                    };
                    caps.quantum = Some(QuantumGrant {
                        backends: texts(&format!("{f}.backends"), b)?,
                        algorithms: texts(&format!("{f}.algorithms"), a)?,
                        max_qubits: uint(qb, "maxQubits")?,
                        max_shots: uint(sh, "maxShots")?,
                        max_jobs: JobCeiling::new(uint(jb, "maxJobs")?),
                        max_runtime_secs: uint(rt, "maxRuntime")?,
                    });
                }
                other => {
                    return Err(err(
                        "capabilities",
                        ManifestProblem::UnknownLabel(format!("{other:?}")),
                    ));
                }
            }
        }
        caps.validate()?;
        Ok(caps)
    }
}

fn nonempty_array<'a>(field: &str, v: &'a Value) -> Result<&'a [Value], ManifestError> {
    match v {
        Value::Array(a) if !a.is_empty() && a.len() <= MAX_LIST => Ok(a),
        Value::Array(_) => Err(err(field, ManifestProblem::ListLength)),
        _ => Err(err(field, ManifestProblem::NotArray)),
    }
}

fn pair<'a>(field: &str, v: &'a Value) -> Result<[&'a Value; 2], ManifestError> {
    match v {
        Value::Array(a) => match a.as_slice() {
            [x, y] => Ok([x, y]),
            _ => Err(err(field, ManifestProblem::NotPair)),
        },
        _ => Err(err(field, ManifestProblem::NotPair)),
    }
}

fn text(field: &str, v: &Value) -> Result<String, ManifestError> {
    match v {
        Value::Text(s) if s.len() <= MAX_STR => Ok(s.clone()),
        _ => Err(err(field, ManifestProblem::NotText)),
    }
}

fn texts(field: &str, v: &Value) -> Result<Vec<String>, ManifestError> {
    match v {
        Value::Array(a) if a.len() <= MAX_LIST => a
            .iter()
            .enumerate()
            .map(|(i, x)| text(&format!("{field}[{i}]"), x))
            .collect(),
        _ => Err(err(field, ManifestProblem::NotTextArray)),
    }
}

/// A map whose keys are exactly 1..=n (in order, which deterministic CBOR guarantees).
fn exact_map<'a, const N: usize>(
    field: &str,
    v: &'a Value,
) -> Result<[&'a Value; N], ManifestError> {
    let n = N;
    let Value::Map(entries) = v else {
        return Err(err(field, ManifestProblem::NotMap));
    };
    if entries.len() != n {
        return Err(err(field, ManifestProblem::Labels(n)));
    }
    let mut out = Vec::with_capacity(entries.len());
    for (i, (k, val)) in entries.iter().enumerate() {
        if *k != Value::Uint(i as u64 + 1) {
            return Err(err(field, ManifestProblem::Labels(n)));
        }
        out.push(val);
    }
    out.try_into()
        .map_err(|_| err(field, ManifestProblem::Labels(n)))
}

/// The capability manifest example from the product brief (DESIGN.md), verbatim: the shape
/// `Manifest::from_json` accepts, and the manifest the tests, benchmarks and size figures use.
pub const DESIGN_EXAMPLE: &str = r#"{"agent": "cowork-session-1234",
   "capabilities": {
     "fileAccess": [{"path": "/home/user/Documents/Contracts", "mode": "read"}],
     "network": [{"host": "internal-api.company.local", "port": 443}],
     "clipboard": false,
     "shell": {"allowedCommands": ["/usr/bin/less"], "interactive": false},
     "quantum": {"backends": ["qpu-sim-1"], "maxQubits": 32, "maxShots": 10000,
                 "maxJobs": 5, "maxRuntime": "600s", "algorithms": ["vqe"]}},
   "ttl": "3600s"}"#;

#[cfg(test)]
mod tests {
    use super::*;

    use super::DESIGN_EXAMPLE as DESIGN;

    #[test]
    fn durations_are_strict() {
        let secs = |s| parse_duration("f", s).map(|d| d.as_secs());
        assert_eq!(secs("3600s"), Ok(3600));
        assert_eq!(secs("15m"), Ok(900));
        assert_eq!(secs("1d2h3m4s"), Ok(93_784));
        assert_eq!(secs("0h1s"), Ok(1));
        for bad in [
            "",
            "s",
            "10",
            "+10s",
            "-10s",
            "010s",
            "1 0s",
            " 10s",
            "10s ",
            "1.5h",
            "1500ms",
            "1m1h",
            "1s1s",
            "10S",
            "10sec",
            "0s",
            "0x10s",
            "99999999999999999999s",
            "213503982334602d",
            "１s",
        ] {
            assert!(secs(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(canonical_decimal("0"), Some(0));
        assert_eq!(canonical_decimal("18446744073709551615"), Some(u64::MAX));
        for bad in ["", "+1", "01", "1_000", "18446744073709551616", "-0"] {
            assert_eq!(canonical_decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn design_example_parses_and_round_trips_through_cbor() {
        let m = Manifest::from_json(DESIGN).unwrap();
        assert_eq!(m.ttl, Some(Duration::from_secs(3600)));
        assert_eq!(
            m.capabilities.quantum.as_ref().unwrap().max_runtime_secs,
            600
        );
        let v = m.capabilities.to_cbor();
        assert_eq!(Capabilities::from_cbor(&v).unwrap(), m.capabilities);
    }
}
