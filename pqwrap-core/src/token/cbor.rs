//! A small, strict CBOR codec (RFC 8949) for the subset tokens use.
//!
//! Decoding accepts only the deterministic encoding of RFC 8949 §4.2.1: every argument in its
//! shortest form, definite lengths only, map keys in strictly ascending bytewise order of
//! their encodings (which also rules out duplicate keys). Floats, `undefined` and other
//! simple values are refused; so is anything after the top-level item. Every length is checked
//! against the bytes that remain before anything is allocated, and nesting is bounded, so no
//! input can make the decoder allocate more than a small multiple of its own size or recurse
//! deeply. Encoding always produces that same deterministic form.

use thiserror::Error;

/// Deepest nesting of arrays, maps and tags accepted.
const MAX_DEPTH: usize = 16;

/// Elements reserved up front for an array or map; beyond that the vector grows as elements
/// actually decode. Reserving the declared count (bounded only by the bytes left) would let
/// each nested container reserve ~32 bytes of `Value` per remaining input byte before the
/// error was found: a 16 KiB token of nested containers reserved 8 MB.
const PREALLOC_ITEMS: usize = 16;

/// A decoded CBOR data item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    /// Major type 0.
    Uint(u64),
    /// Major type 1: the value is `-1 - n`.
    Nint(u64),
    /// Major type 2.
    Bytes(Vec<u8>),
    /// Major type 3 (valid UTF-8).
    Text(String),
    /// Major type 4.
    Array(Vec<Value>),
    /// Major type 5, entries in deterministic key order.
    Map(Vec<(Value, Value)>),
    /// Major type 6.
    Tag(u64, Box<Value>),
    /// Simple values 20 and 21.
    Bool(bool),
    /// Simple value 22.
    Null,
}

/// Why bytes are not a deterministic CBOR item of the accepted subset.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CborError {
    /// The input ended inside an item.
    #[error("CBOR: truncated input")]
    Truncated,
    /// Bytes follow the top-level item.
    #[error("CBOR: trailing bytes after the item")]
    Trailing,
    /// An indefinite-length item (additional information 31).
    #[error("CBOR: indefinite length is not allowed")]
    Indefinite,
    /// An argument was not encoded in its shortest form.
    #[error("CBOR: non-shortest encoding of an argument")]
    NonCanonical,
    /// Reserved additional information 28..30.
    #[error("CBOR: reserved additional information")]
    Reserved,
    /// A float or a simple value other than false/true/null.
    #[error("CBOR: floats and simple values other than false, true and null are not allowed")]
    Unsupported,
    /// A text string that is not UTF-8.
    #[error("CBOR: text string is not valid UTF-8")]
    Utf8,
    /// Two map entries with the same key.
    #[error("CBOR: duplicate map key")]
    DuplicateKey,
    /// Map keys not in deterministic (bytewise ascending) order.
    #[error("CBOR: map keys not in deterministic order")]
    KeyOrder,
    /// Nested deeper than 16 levels.
    #[error("CBOR: nested too deeply")]
    TooDeep,
}

/// Decodes exactly one deterministic CBOR item spanning all of `input`.
pub(crate) fn decode(input: &[u8]) -> Result<Value, CborError> {
    let mut d = Decoder { input, pos: 0 };
    let v = d.item(0)?;
    if d.pos != input.len() {
        return Err(CborError::Trailing);
    }
    Ok(v)
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Decoder<'_> {
    fn remaining(&self) -> usize {
        self.input.len().saturating_sub(self.pos)
    }

    fn byte(&mut self) -> Result<u8, CborError> {
        let b = *self.input.get(self.pos).ok_or(CborError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], CborError> {
        if n > self.remaining() {
            return Err(CborError::Truncated);
        }
        let s = self
            .input
            .get(self.pos..self.pos + n)
            .ok_or(CborError::Truncated)?;
        self.pos += n;
        Ok(s)
    }

    /// Reads the argument for additional information `ai`, insisting on the shortest form.
    fn argument(&mut self, ai: u8) -> Result<u64, CborError> {
        match ai {
            0..=23 => Ok(u64::from(ai)),
            24 => {
                let v = u64::from(self.byte()?);
                if v < 24 {
                    return Err(CborError::NonCanonical);
                }
                Ok(v)
            }
            25 => {
                let b: [u8; 2] = self.take(2)?.try_into().map_err(|_| CborError::Truncated)?;
                let v = u64::from(u16::from_be_bytes(b));
                if v <= 0xff {
                    return Err(CborError::NonCanonical);
                }
                Ok(v)
            }
            26 => {
                let b: [u8; 4] = self.take(4)?.try_into().map_err(|_| CborError::Truncated)?;
                let v = u64::from(u32::from_be_bytes(b));
                if v <= 0xffff {
                    return Err(CborError::NonCanonical);
                }
                Ok(v)
            }
            27 => {
                let b: [u8; 8] = self.take(8)?.try_into().map_err(|_| CborError::Truncated)?;
                let v = u64::from_be_bytes(b);
                if v <= 0xffff_ffff {
                    return Err(CborError::NonCanonical);
                }
                Ok(v)
            }
            31 => Err(CborError::Indefinite),
            _ => Err(CborError::Reserved),
        }
    }

    /// A length that must fit in the remaining input (each element takes at least one byte).
    fn length(&mut self, ai: u8) -> Result<usize, CborError> {
        let n = self.argument(ai)?;
        let n = usize::try_from(n).map_err(|_| CborError::Truncated)?;
        if n > self.remaining() {
            return Err(CborError::Truncated);
        }
        Ok(n)
    }

    fn item(&mut self, depth: usize) -> Result<Value, CborError> {
        if depth > MAX_DEPTH {
            return Err(CborError::TooDeep);
        }
        let ib = self.byte()?;
        let major = ib >> 5;
        let ai = ib & 0x1f;
        match major {
            0 => Ok(Value::Uint(self.argument(ai)?)),
            1 => Ok(Value::Nint(self.argument(ai)?)),
            2 => {
                let n = self.length(ai)?;
                Ok(Value::Bytes(self.take(n)?.to_vec()))
            }
            3 => {
                let n = self.length(ai)?;
                let s = std::str::from_utf8(self.take(n)?).map_err(|_| CborError::Utf8)?;
                Ok(Value::Text(s.to_owned()))
            }
            4 => {
                let n = self.length(ai)?;
                let mut v = Vec::with_capacity(n.min(PREALLOC_ITEMS));
                for _ in 0..n {
                    v.push(self.item(depth + 1)?);
                }
                Ok(Value::Array(v))
            }
            5 => {
                // Each entry needs at least two bytes.
                let n = self.length(ai)?;
                if n > self.remaining() / 2 {
                    return Err(CborError::Truncated);
                }
                let mut v: Vec<(Value, Value)> = Vec::with_capacity(n.min(PREALLOC_ITEMS));
                let mut prev_key: Option<(usize, usize)> = None;
                for _ in 0..n {
                    let start = self.pos;
                    let k = self.item(depth + 1)?;
                    let end = self.pos;
                    if let Some((ps, pe)) = prev_key {
                        let prev = self.input.get(ps..pe).ok_or(CborError::Truncated)?;
                        let cur = self.input.get(start..end).ok_or(CborError::Truncated)?;
                        match prev.cmp(cur) {
                            std::cmp::Ordering::Less => {}
                            std::cmp::Ordering::Equal => return Err(CborError::DuplicateKey),
                            std::cmp::Ordering::Greater => return Err(CborError::KeyOrder),
                        }
                    }
                    prev_key = Some((start, end));
                    let val = self.item(depth + 1)?;
                    v.push((k, val));
                }
                Ok(Value::Map(v))
            }
            6 => {
                let tag = self.argument(ai)?;
                Ok(Value::Tag(tag, Box::new(self.item(depth + 1)?)))
            }
            _ => match ai {
                20 => Ok(Value::Bool(false)),
                21 => Ok(Value::Bool(true)),
                22 => Ok(Value::Null),
                31 => Err(CborError::Indefinite),
                _ => Err(CborError::Unsupported),
            },
        }
    }
}

/// Writes the head of an item (major type and argument) in shortest form.
pub(crate) fn write_head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    if arg < 24 {
        out.push(m | arg as u8);
    } else if arg <= 0xff {
        out.push(m | 24);
        out.push(arg as u8);
    } else if arg <= 0xffff {
        out.push(m | 25);
        out.extend_from_slice(&(arg as u16).to_be_bytes());
    } else if arg <= 0xffff_ffff {
        out.push(m | 26);
        out.extend_from_slice(&(arg as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&arg.to_be_bytes());
    }
}

/// Encodes `v` deterministically (map entries sorted by their encoded keys).
pub(crate) fn encode(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Uint(n) => write_head(out, 0, *n),
        Value::Nint(n) => write_head(out, 1, *n),
        Value::Bytes(b) => {
            write_head(out, 2, b.len() as u64);
            out.extend_from_slice(b);
        }
        Value::Text(s) => {
            write_head(out, 3, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Array(items) => {
            write_head(out, 4, items.len() as u64);
            for i in items {
                encode(i, out);
            }
        }
        Value::Map(entries) => {
            let mut enc: Vec<(Vec<u8>, Vec<u8>)> = entries
                .iter()
                .map(|(k, v)| (to_vec(k), to_vec(v)))
                .collect();
            enc.sort_by(|a, b| a.0.cmp(&b.0));
            write_head(out, 5, enc.len() as u64);
            for (k, v) in enc {
                out.extend_from_slice(&k);
                out.extend_from_slice(&v);
            }
        }
        Value::Tag(t, inner) => {
            write_head(out, 6, *t);
            encode(inner, out);
        }
        Value::Bool(false) => out.push(0xf4),
        Value::Bool(true) => out.push(0xf5),
        Value::Null => out.push(0xf6),
    }
}

/// Encodes `v` into a new vector.
pub(crate) fn to_vec(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode(v, &mut out);
    out
}

impl Value {
    /// An integer label (positive or negative) as a [`Value`].
    pub(crate) fn int(i: i64) -> Value {
        if i >= 0 {
            Value::Uint(i as u64)
        } else {
            Value::Nint((-1 - i) as u64)
        }
    }

    /// The value as an `i64`, if it is an integer in range.
    pub(crate) fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Uint(n) => i64::try_from(*n).ok(),
            Value::Nint(n) => i64::try_from(*n).ok().map(|n| -1 - n),
            _ => None,
        }
    }

    /// Text value.
    pub(crate) fn text(s: &str) -> Value {
        Value::Text(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_sorting() {
        let v = Value::Map(vec![
            (Value::int(-1), Value::Bytes(vec![1, 2])),
            (Value::int(3), Value::int(-49)),
            (Value::int(1), Value::int(7)),
        ]);
        let bytes = to_vec(&v);
        assert_eq!(bytes[..4], [0xa3, 0x01, 0x07, 0x03]);
        let back = decode(&bytes).unwrap();
        // Decoded entries come back in deterministic order.
        assert_eq!(to_vec(&back), bytes);
    }

    #[test]
    fn rejects_non_deterministic_forms() {
        assert_eq!(decode(&[0x18, 0x05]), Err(CborError::NonCanonical));
        assert_eq!(decode(&[0x19, 0x00, 0xff]), Err(CborError::NonCanonical));
        assert_eq!(decode(&[0x5f, 0x40, 0xff]), Err(CborError::Indefinite));
        assert_eq!(decode(&[0x9f, 0xff]), Err(CborError::Indefinite));
        assert_eq!(decode(&[0xbf, 0xff]), Err(CborError::Indefinite));
        assert_eq!(
            decode(&[0xa2, 0x01, 0x00, 0x01, 0x00]),
            Err(CborError::DuplicateKey)
        );
        assert_eq!(
            decode(&[0xa2, 0x02, 0x00, 0x01, 0x00]),
            Err(CborError::KeyOrder)
        );
        assert_eq!(decode(&[0xf9, 0x00, 0x00]), Err(CborError::Unsupported));
        assert_eq!(decode(&[0xf7]), Err(CborError::Unsupported));
        assert_eq!(decode(&[0x01, 0x02]), Err(CborError::Trailing));
        assert_eq!(decode(&[0x62, 0xff, 0xfe]), Err(CborError::Utf8));
        assert_eq!(
            decode(&[0x5a, 0xff, 0xff, 0xff, 0xff]),
            Err(CborError::Truncated)
        );
        assert_eq!(decode(&[0x1c]), Err(CborError::Reserved));
        let deep = vec![0x81u8; 40];
        assert_eq!(decode(&deep), Err(CborError::TooDeep));
    }
}
