//! SOPS values: `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`, AES-256-GCM with a 32-byte IV
//! under the data key, the key path (`a:b:`) as associated data; and the bytes each
//! decrypted value adds to the MAC, as sops writes them (Go's formatting of ints, floats and
//! booleans).

use aes_gcm::aead::AeadInOut;
use aes_gcm::aead::consts::U32;
use aes_gcm::{AesGcm, KeyInit, Nonce, aes::Aes256};
use base64ct::{Base64, Encoding};
use zeroize::Zeroizing;

use super::SopsError;

/// AES-256-GCM with the 32-byte nonce sops uses.
type SopsGcm = AesGcm<Aes256, U32>;

const IV_LEN: usize = 32;
const TAG_LEN: usize = 16;
const PREFIX: &str = "ENC[AES256_GCM,";

/// The type a value had before it was encrypted (the `type:` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    /// `str`
    Str,
    /// `int`
    Int,
    /// `float`
    Float,
    /// `bool`
    Bool,
    /// `bytes`
    Bytes,
    /// `time`
    Time,
    /// `comment`: an encrypted comment (not part of the MAC).
    Comment,
}

impl ValueType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "str" => ValueType::Str,
            "int" => ValueType::Int,
            "float" => ValueType::Float,
            "bool" => ValueType::Bool,
            "bytes" => ValueType::Bytes,
            "time" => ValueType::Time,
            "comment" => ValueType::Comment,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            ValueType::Str => "str",
            ValueType::Int => "int",
            ValueType::Float => "float",
            ValueType::Bool => "bool",
            ValueType::Bytes => "bytes",
            ValueType::Time => "time",
            ValueType::Comment => "comment",
        }
    }
}

/// A parsed `ENC[...]` value.
#[derive(Clone, Debug)]
pub struct Encrypted {
    data: Vec<u8>,
    iv: [u8; IV_LEN],
    tag: [u8; TAG_LEN],
    /// The type before encryption.
    pub ty: ValueType,
}

/// Whether `s` starts like an encrypted value.
pub fn looks_encrypted(s: &[u8]) -> bool {
    s.starts_with(PREFIX.as_bytes())
}

fn field<'a>(rest: &mut &'a str, name: &str) -> Result<&'a str, SopsError> {
    let r = rest
        .strip_prefix(name)
        .ok_or(SopsError::Value("an encrypted value is malformed"))?;
    let end = r.find([',', ']']).unwrap_or(r.len());
    let (v, tail) = r.split_at(end);
    *rest = tail.strip_prefix(',').unwrap_or(tail);
    Ok(v)
}

impl Encrypted {
    /// Parses `ENC[AES256_GCM,data:<b64>,iv:<b64>,tag:<b64>,type:<t>]`, strictly: canonical
    /// padded base64, a 32-byte IV, a 16-byte tag, a known type, nothing after `]`.
    pub fn parse(s: &str) -> Result<Self, SopsError> {
        let bad = SopsError::Value("an encrypted value is malformed");
        let inner = s
            .strip_prefix(PREFIX)
            .and_then(|r| r.strip_suffix(']'))
            .ok_or(SopsError::Value("an encrypted value is malformed"))?;
        let mut rest = inner;
        let data = field(&mut rest, "data:")?;
        let iv = field(&mut rest, "iv:")?;
        let tag = field(&mut rest, "tag:")?;
        let ty = field(&mut rest, "type:")?;
        if !rest.is_empty() {
            return Err(bad);
        }
        let data = Base64::decode_vec(data).map_err(|_| SopsError::Value("bad base64 in data"))?;
        let iv: [u8; IV_LEN] = Base64::decode_vec(iv)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(SopsError::Value("the IV is not 32 bytes of base64"))?;
        let tag: [u8; TAG_LEN] = Base64::decode_vec(tag)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(SopsError::Value("the tag is not 16 bytes of base64"))?;
        let ty = ValueType::parse(ty).ok_or(SopsError::Value("unknown value type"))?;
        Ok(Encrypted { data, iv, tag, ty })
    }

    /// Decrypts under `key` with `aad` (the key path, or `lastmodified` for the MAC).
    pub fn decrypt(&self, key: &[u8; 32], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, SopsError> {
        let cipher = SopsGcm::new(&(*key).into());
        let mut buf = Zeroizing::new(self.data.clone());
        cipher
            .decrypt_inout_detached(
                &Nonce::<U32>::from(self.iv),
                aad,
                buf.as_mut_slice().into(),
                &self.tag.into(),
            )
            .map_err(|_| SopsError::Decrypt)?;
        Ok(buf)
    }

    /// Encrypts `plain` of type `ty` under `key` with `aad`, with a fresh random IV, and
    /// formats it as sops does.
    pub fn seal(
        key: &[u8; 32],
        aad: &[u8],
        plain: &[u8],
        ty: ValueType,
    ) -> Result<String, SopsError> {
        let mut iv = [0u8; IV_LEN];
        getrandom::fill(&mut iv).map_err(|_| SopsError::Random)?;
        let cipher = SopsGcm::new(&(*key).into());
        let mut buf = Zeroizing::new(plain.to_vec());
        let tag = cipher
            .encrypt_inout_detached(&Nonce::<U32>::from(iv), aad, buf.as_mut_slice().into())
            .map_err(|_| SopsError::Value("the value is too long to encrypt"))?;
        Ok(format!(
            "{PREFIX}data:{},iv:{},tag:{},type:{}]",
            Base64::encode_string(&buf),
            Base64::encode_string(&iv),
            Base64::encode_string(&tag),
            ty.as_str()
        ))
    }
}

/// The bytes a decrypted value adds to the MAC: sops parses the plaintext as its type and
/// formats it again (Go's `strconv`), so `1.50` counts as `1.5` and `t` as `True`.
pub fn mac_bytes(ty: ValueType, plain: &[u8]) -> Result<Zeroizing<Vec<u8>>, SopsError> {
    let text = || std::str::from_utf8(plain).map_err(|_| SopsError::Value("not UTF-8"));
    Ok(Zeroizing::new(match ty {
        ValueType::Str | ValueType::Bytes | ValueType::Time | ValueType::Comment => plain.to_vec(),
        ValueType::Int => go_atoi(text()?)
            .ok_or(SopsError::Value("an int value does not parse"))?
            .to_string()
            .into_bytes(),
        ValueType::Float => {
            let f = go_parse_float(text()?).ok_or(SopsError::Value("a float does not parse"))?;
            go_format_float(f).into_bytes()
        }
        ValueType::Bool => {
            let b = go_parse_bool(text()?).ok_or(SopsError::Value("a bool does not parse"))?;
            go_bool(b).as_bytes().to_vec()
        }
    }))
}

/// sops's spelling of a boolean (the Python version's).
pub fn go_bool(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// Go's `strconv.Atoi`: an optional sign and decimal digits, in 64 bits.
fn go_atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Go's `strconv.ParseBool`.
fn go_parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseFloat(s, 64)` for the decimal forms and the special values (hex floats
/// are not written by sops and are refused).
pub(crate) fn go_parse_float(s: &str) -> Option<f64> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let neg = s.starts_with('-');
    let special = match body.to_ascii_lowercase().as_str() {
        "inf" | "infinity" => Some(f64::INFINITY),
        "nan" => Some(f64::NAN),
        _ => None,
    };
    if let Some(v) = special {
        return Some(if neg { -v } else { v });
    }
    let ok = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if !ok {
        return None;
    }
    s.parse().ok()
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: the shortest digits that round-trip, never
/// an exponent (Rust's `Display` for `f64` is the same for finite values).
pub(crate) fn go_format_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_reject_tampering() {
        let key = [7u8; 32];
        let enc = Encrypted::seal(&key, b"a:b:", b"secret", ValueType::Str).unwrap();
        let parsed = Encrypted::parse(&enc).unwrap();
        assert_eq!(&*parsed.decrypt(&key, b"a:b:").unwrap(), b"secret");
        assert!(parsed.decrypt(&key, b"a:c:").is_err());
        assert!(parsed.decrypt(&[8u8; 32], b"a:b:").is_err());
        assert!(Encrypted::parse(&enc.replace("type:str", "type:xyz")).is_err());
        assert!(Encrypted::parse(&format!("{enc}x")).is_err());
        assert!(Encrypted::parse("ENC[AES256_GCM,data:,iv:,tag:,type:str]").is_err());
    }

    #[test]
    fn mac_bytes_follow_go_formatting() {
        let m = |t, s: &str| String::from_utf8(mac_bytes(t, s.as_bytes()).unwrap().to_vec());
        assert_eq!(m(ValueType::Int, "+42").unwrap(), "42");
        assert_eq!(m(ValueType::Float, "1.50").unwrap(), "1.5");
        assert_eq!(
            m(ValueType::Float, "1e21").unwrap(),
            "1000000000000000000000"
        );
        assert_eq!(m(ValueType::Float, "0.0000001").unwrap(), "0.0000001");
        assert_eq!(m(ValueType::Float, "-0").unwrap(), "-0");
        assert_eq!(m(ValueType::Bool, "t").unwrap(), "True");
        assert_eq!(m(ValueType::Bool, "false").unwrap(), "False");
        assert!(mac_bytes(ValueType::Int, b"0x10").is_err());
    }
}
