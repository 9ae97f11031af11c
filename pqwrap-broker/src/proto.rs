//! The wire protocol: one frame per request and per response over a Unix stream socket.
//!
//! ```text
//! frame  = magic "PQWB" | version (1 byte, = 1) | kind (1 byte: 1 request, 2 response)
//!          | reserved (2 bytes, = 0) | length (4 bytes, big-endian) | body (length bytes)
//! body   = one JSON object (UTF-8), at most MAX_BODY bytes
//! ```
//!
//! The header is checked before the body is read, so an oversized or foreign frame costs the
//! broker 12 bytes. Bodies are decoded strictly: unknown or duplicated fields, trailing
//! bytes, wrong types and a request where a response belongs are errors. Requests and
//! responses are JSON objects with exactly one member naming the operation, e.g.
//! `{"issue": {"manifest": "…", "aud": "files.local"}}` — docs/BROKER.md lists them all.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The frame magic.
pub const MAGIC: [u8; 4] = *b"PQWB";
/// The protocol version this build speaks.
pub const VERSION: u8 = 1;
/// Bytes in a frame header.
pub const HEADER_LEN: usize = 12;
/// Largest body accepted: a 64 KiB manifest plus a 16 KiB token in text form, JSON-escaped,
/// fits with room to spare.
pub const MAX_BODY: usize = 192 * 1024;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Client to broker.
    Request,
    /// Broker to client.
    Response,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Request => 1,
            Kind::Response => 2,
        }
    }
}

/// Why bytes are not a frame of this protocol.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// Reading or writing the socket failed (including timeouts).
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection before a frame began.
    #[error("the connection was closed")]
    Closed,
    /// The first four bytes are not `PQWB`.
    #[error("not a pqwrap broker frame (bad magic)")]
    BadMagic,
    /// A version this build does not speak.
    #[error("protocol version {0} is not supported (this broker speaks version {VERSION})")]
    Version(u8),
    /// A request where a response was expected, or the reverse, or an unknown kind.
    #[error("unexpected frame kind {0}")]
    Kind(u8),
    /// The reserved bytes are not zero.
    #[error("reserved header bytes are not zero")]
    Reserved,
    /// The body is longer than [`MAX_BODY`].
    #[error("frame body of {0} bytes exceeds the {MAX_BODY}-byte limit")]
    TooLarge(u32),
    /// The body is not the JSON this protocol defines.
    #[error("malformed body: {0}")]
    Body(String),
}

/// A request from a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Mint a token for a manifest (or narrow a parent token to one).
    Issue(IssueRequest),
    /// Revoke a token (and its descendants), or every token of an agent session.
    Revoke(RevokeTarget),
    /// Charge one quantum job to a token (and to every token it was narrowed from).
    Consume(ConsumeRequest),
    /// Start signing with a fresh key; the old one stays trusted while its tokens live.
    RotateKey(Empty),
    /// The public keys whose tokens may still be live.
    TrustSet(Empty),
}

/// A body with no fields (`{}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// `issue`: the manifest as JSON text (parsed strictly by the broker), the audience, and
/// optionally a lifetime and a parent token to narrow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueRequest {
    /// Manifest JSON, in the shape of docs/TOKENS.md §4.
    pub manifest: String,
    /// Audience (the enforcement point).
    pub aud: String,
    /// Requested lifetime such as `"30m"` (default: the manifest's, else the policy's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// A token (text form) issued by this broker to narrow instead of minting a root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// `revoke`: by token id or by agent session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RevokeTarget {
    /// A cti in hex (32 digits), as `pqwrap token verify` prints it.
    Cti(String),
    /// Every token whose `sub` is this agent session, now and from now on.
    Agent(String),
}

/// `consume`: a token and the quantum job about to run under it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumeRequest {
    /// The token (text form).
    pub token: String,
    /// The job as JSON text: `{"backend", "algorithm", "qubits", "shots", "runtime"}`.
    pub job: String,
}

/// A response from the broker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    /// A token was minted.
    Issued(Issued),
    /// These tokens are now revoked.
    Revoked(Revoked),
    /// The job is allowed and has been counted.
    Consumed(Usage),
    /// The broker now signs with a new key.
    Rotated(Rotated),
    /// The trust set.
    TrustSet(TrustSetBody),
    /// Policy, consent, quota or revocation said no; the reason says why.
    Refused(Refusal),
    /// The request could not be handled.
    Error(ErrorBody),
}

/// A minted token and what was granted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Issued {
    /// The token, text form.
    pub token: String,
    /// Its id (hex).
    pub cti: String,
    /// Its expiry (seconds since the epoch).
    pub exp: u64,
    /// The granted capabilities (manifest JSON shape).
    pub granted: serde_json::Value,
    /// How the request was narrowed to fit the policy (empty if granted as asked).
    pub narrowed: Vec<String>,
}

/// The tokens a revocation covered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoked {
    /// Their ctis (hex), descendants included.
    pub ctis: Vec<String>,
}

/// Jobs used and allowed after a consume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    /// Jobs counted against the token (its own and its descendants').
    pub jobs_used: u64,
    /// Its maxJobs.
    pub jobs_max: u64,
}

/// The new signing key and the trust set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotated {
    /// The new key's kid (hex).
    pub kid: String,
    /// kids of every key in the trust set.
    pub trusted: Vec<String>,
}

/// Public keys as JWKs, newest last.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustSetBody {
    /// JWK text of each key.
    pub keys: Vec<String>,
}

/// A refusal and its reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refusal {
    /// Why, in words a person can act on.
    pub reason: String,
}

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame or body is malformed.
    BadRequest,
    /// The peer could not be attested.
    Attestation,
    /// The peer may not make this request (admin or gatekeeper only).
    Forbidden,
    /// Too many requests from this peer identity.
    RateLimited,
    /// Too many connections at once.
    Busy,
    /// The broker failed (state, audit or key storage); nothing was granted.
    Internal,
    /// An unsupported protocol version.
    Version,
}

/// An error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// The class of error.
    pub code: ErrorCode,
    /// What happened.
    pub message: String,
}

impl Response {
    /// An error response.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Response {
        Response::Error(ErrorBody {
            code,
            message: message.into(),
        })
    }

    /// A refusal.
    pub fn refused(reason: impl Into<String>) -> Response {
        Response::Refused(Refusal {
            reason: reason.into(),
        })
    }
}

/// Parses a frame header, returning the body length.
pub fn parse_header(h: &[u8; HEADER_LEN], want: Kind) -> Result<usize, ProtoError> {
    if h[..4] != MAGIC {
        return Err(ProtoError::BadMagic);
    }
    if h[4] != VERSION {
        return Err(ProtoError::Version(h[4]));
    }
    if h[5] != want.byte() {
        return Err(ProtoError::Kind(h[5]));
    }
    if h[6] != 0 || h[7] != 0 {
        return Err(ProtoError::Reserved);
    }
    let len = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
    if len as usize > MAX_BODY {
        return Err(ProtoError::TooLarge(len));
    }
    Ok(len as usize)
}

/// Encodes a frame.
pub fn encode(kind: Kind, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind.byte());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn body_of<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ProtoError> {
    let text = std::str::from_utf8(body).map_err(|_| ProtoError::Body("not UTF-8".into()))?;
    serde_json::from_str(text).map_err(|e| ProtoError::Body(e.to_string()))
}

/// Decodes a complete request frame (header and body), strictly.
pub fn decode_request(frame: &[u8]) -> Result<Request, ProtoError> {
    let (h, body) = split(frame)?;
    let len = parse_header(&h, Kind::Request)?;
    if body.len() != len {
        return Err(ProtoError::Body(format!(
            "the header says {len} bytes, the frame has {}",
            body.len()
        )));
    }
    body_of(body)
}

/// Decodes a complete response frame, strictly.
pub fn decode_response(frame: &[u8]) -> Result<Response, ProtoError> {
    let (h, body) = split(frame)?;
    let len = parse_header(&h, Kind::Response)?;
    if body.len() != len {
        return Err(ProtoError::Body(format!(
            "the header says {len} bytes, the frame has {}",
            body.len()
        )));
    }
    body_of(body)
}

fn split(frame: &[u8]) -> Result<([u8; HEADER_LEN], &[u8]), ProtoError> {
    let (h, body) = frame
        .split_at_checked(HEADER_LEN)
        .ok_or(ProtoError::Closed)?;
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(h);
    Ok((header, body))
}

/// Encodes a request frame.
pub fn encode_request(r: &Request) -> Vec<u8> {
    // Serialising these plain structs cannot fail.
    encode(Kind::Request, &serde_json::to_vec(r).unwrap_or_default())
}

/// Encodes a response frame.
pub fn encode_response(r: &Response) -> Vec<u8> {
    encode(Kind::Response, &serde_json::to_vec(r).unwrap_or_default())
}

/// Reads one frame of `kind` from `r`: the header first (refused before any body is read if
/// it is not acceptable), then exactly the body. `Closed` if the stream ends before the first
/// byte.
pub fn read_frame(r: &mut impl Read, kind: Kind) -> Result<Vec<u8>, ProtoError> {
    let mut h = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut h[got..]) {
            Ok(0) if got == 0 => return Err(ProtoError::Closed),
            Ok(0) => {
                return Err(ProtoError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = parse_header(&h, kind)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(body)
}

/// Reads one request.
pub fn read_request(r: &mut impl Read) -> Result<Request, ProtoError> {
    body_of(&read_frame(r, Kind::Request)?)
}

/// Reads one response.
pub fn read_response(r: &mut impl Read) -> Result<Response, ProtoError> {
    body_of(&read_frame(r, Kind::Response)?)
}

/// Writes a request.
pub fn write_request(w: &mut impl Write, r: &Request) -> Result<(), ProtoError> {
    w.write_all(&encode_request(r))?;
    w.flush()?;
    Ok(())
}

/// Writes a response.
pub fn write_response(w: &mut impl Write, r: &Response) -> Result<(), ProtoError> {
    w.write_all(&encode_response(r))?;
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue() -> Request {
        Request::Issue(IssueRequest {
            manifest: "{}".into(),
            aud: "files.local".into(),
            ttl: None,
            parent: None,
        })
    }

    #[test]
    fn round_trips() {
        for r in [
            issue(),
            Request::Revoke(RevokeTarget::Cti("00".repeat(16))),
            Request::Revoke(RevokeTarget::Agent("s".into())),
            Request::RotateKey(Empty {}),
            Request::TrustSet(Empty {}),
        ] {
            assert_eq!(decode_request(&encode_request(&r)).unwrap(), r);
        }
        let resp = Response::error(ErrorCode::Busy, "x");
        assert_eq!(decode_response(&encode_response(&resp)).unwrap(), resp);
    }

    #[test]
    fn strict_bodies() {
        let bad: &[&str] = &[
            r#"{"issue": {"manifest": "{}", "aud": "a", "extra": 1}}"#,
            r#"{"issue": {"manifest": "{}", "aud": "a", "aud": "b"}}"#,
            r#"{"issue": {"manifest": "{}"}}"#,
            r#"{"issue": {"manifest": "{}", "aud": "a"}} x"#,
            r#"{"issue": {"manifest": "{}", "aud": "a"}, "revoke": {"agent": "x"}}"#,
            r#"{"launch": {}}"#,
            r#"{"rotate_key": {"now": true}}"#,
            r#"{"revoke": {"cti": "a", "agent": "b"}}"#,
            r#"[]"#,
            "",
        ];
        for b in bad {
            let f = encode(Kind::Request, b.as_bytes());
            assert!(decode_request(&f).is_err(), "accepted {b}");
        }
        let ok = encode(
            Kind::Request,
            br#"{"issue": {"manifest": "{}", "aud": "a"}}"#,
        );
        assert!(decode_request(&ok).is_ok());
    }

    #[test]
    fn headers_are_checked_before_bodies() {
        let mut f = encode_request(&issue());
        f[0] = b'X';
        assert!(matches!(decode_request(&f), Err(ProtoError::BadMagic)));
        let mut f = encode_request(&issue());
        f[4] = 2;
        assert!(matches!(decode_request(&f), Err(ProtoError::Version(2))));
        let f = encode_response(&Response::refused("no"));
        assert!(matches!(decode_request(&f), Err(ProtoError::Kind(2))));
        let mut f = encode_request(&issue());
        f[7] = 1;
        assert!(matches!(decode_request(&f), Err(ProtoError::Reserved)));
        let mut h = encode(Kind::Request, b"");
        h[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            read_frame(&mut h.as_slice(), Kind::Request),
            Err(ProtoError::TooLarge(_))
        ));
        assert!(matches!(
            read_frame(&mut &b""[..], Kind::Request),
            Err(ProtoError::Closed)
        ));
        assert!(matches!(
            read_frame(&mut &b"PQW"[..], Kind::Request),
            Err(ProtoError::Io(_))
        ));
    }
}
