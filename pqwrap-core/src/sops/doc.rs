//! The document model shared by every SOPS file type: mappings, sequences and scalars with the
//! byte ranges they occupy in the file, so that a re-wrap can replace exactly the metadata
//! entries it changes and leave every other byte alone.

use std::ops::Range;

use super::SopsError;
use super::value::{go_format_float, go_parse_float};

/// Index of a node in [`Doc::nodes`].
pub(crate) type NodeId = usize;

/// Documents nested deeper than this are refused (no input exhausts the stack).
pub(crate) const MAX_DEPTH: usize = 128;

/// A scalar's value after resolution (YAML's core schema as Go's yaml.v3 applies it, JSON's
/// literals, or the plain strings of dotenv and INI).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    /// `null`, `~`, empty: not part of the MAC.
    Null,
    /// A string (its bytes are in [`Scalar::text`]).
    Str,
    /// A boolean.
    Bool(bool),
    /// A 64-bit integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// Something sops itself cannot hash (an unsigned 64-bit integer beyond `i64`, binary).
    Unsupported,
}

/// A scalar: its decoded text, what it resolves to, and where it is.
#[derive(Clone, Debug)]
pub(crate) struct Scalar {
    /// The decoded text (escapes and folding applied).
    pub text: Vec<u8>,
    /// What it resolves to.
    pub value: Value,
    /// Its bytes in the file: quotes included; for a block scalar, its content lines (the
    /// `|` or `>` header is on the line before).
    pub span: Range<usize>,
    /// YAML: a block scalar (`|`, `>`).
    pub block: bool,
}

/// A mapping key.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// The key.
    pub key: String,
    /// Where the key is.
    pub key_span: Range<usize>,
    /// Its value.
    pub value: NodeId,
}

/// A node.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    /// A mapping, in file order.
    Map {
        /// Its entries.
        entries: Vec<Entry>,
        /// Where it is.
        span: Range<usize>,
    },
    /// A sequence.
    Seq {
        /// Its items.
        items: Vec<NodeId>,
        /// Where it is.
        span: Range<usize>,
        /// Written in flow style (`[...]`).
        flow: bool,
    },
    /// A scalar.
    Scalar(Scalar),
    /// A YAML alias: the anchored node, walked again where the alias is (as yaml.v3 does).
    Alias(NodeId),
}

/// A parsed file: its nodes and one root per document (YAML may hold several).
#[derive(Debug, Default)]
pub(crate) struct Doc {
    /// Every node.
    pub nodes: Vec<Node>,
    /// The root of each document (`None` for an empty document).
    pub roots: Vec<Option<NodeId>>,
}

impl Doc {
    /// Adds a node.
    pub fn push(&mut self, n: Node) -> NodeId {
        self.nodes.push(n);
        self.nodes.len() - 1
    }

    /// The node `id`.
    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id)
    }

    /// Follows aliases.
    pub fn resolve(&self, mut id: NodeId) -> Option<&Node> {
        for _ in 0..MAX_DEPTH {
            match self.nodes.get(id)? {
                Node::Alias(t) => id = *t,
                n => return Some(n),
            }
        }
        None
    }

    /// The entries of mapping `id`.
    pub fn entries(&self, id: NodeId) -> Option<&[Entry]> {
        match self.resolve(id)? {
            Node::Map { entries, .. } => Some(entries),
            _ => None,
        }
    }

    /// The value of `key` in mapping `id`.
    pub fn get(&self, id: NodeId, key: &str) -> Option<&Entry> {
        self.entries(id)?.iter().find(|e| e.key == key)
    }

    /// The items of sequence `id`.
    pub fn items(&self, id: NodeId) -> Option<&[NodeId]> {
        match self.resolve(id)? {
            Node::Seq { items, .. } => Some(items),
            _ => None,
        }
    }

    /// The scalar `id`.
    pub fn scalar(&self, id: NodeId) -> Option<&Scalar> {
        match self.resolve(id)? {
            Node::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The text of scalar `id`, as UTF-8.
    pub fn str(&self, id: NodeId) -> Option<&str> {
        self.scalar(id)
            .and_then(|s| std::str::from_utf8(&s.text).ok())
    }

    /// Where node `id` is.
    pub fn span(&self, id: NodeId) -> Option<Range<usize>> {
        match self.nodes.get(id)? {
            Node::Map { span, .. } | Node::Seq { span, .. } => Some(span.clone()),
            Node::Scalar(s) => Some(s.span.clone()),
            Node::Alias(_) => None,
        }
    }
}

/// yaml.v3's resolution of a plain (unquoted, untagged) scalar, for a value decoded into an
/// untyped Go value: what sops hashes for values it leaves unencrypted.
pub(crate) fn resolve_plain(s: &str) -> Value {
    match s {
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        _ => {}
    }
    match s.as_bytes().first() {
        Some(b'.') => go_parse_float(s).map_or(Value::Str, Value::Float),
        Some(b'0'..=b'9' | b'+' | b'-') => {
            if looks_like_timestamp(s) {
                // Decoded into an untyped value, yaml.v3 keeps timestamps as strings.
                return Value::Str;
            }
            let plain: String = s.chars().filter(|c| *c != '_').collect();
            match go_parse_int(&plain) {
                Some(IntParse::Fits(i)) => Value::Int(i),
                Some(IntParse::Unsigned) => Value::Unsupported,
                None if yaml_style_float(&plain) => {
                    go_parse_float(&plain).map_or(Value::Str, Value::Float)
                }
                None => Value::Str,
            }
        }
        _ => Value::Str,
    }
}

/// What Go's `strconv.ParseInt(s, 0, 64)` (then `ParseUint`) makes of `s`.
enum IntParse {
    Fits(i64),
    Unsigned,
}

fn go_parse_int(s: &str) -> Option<IntParse> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, s.get(1..)?),
        Some(b'+') => (false, s.get(1..)?),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.to_string())
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.to_string())
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.to_string())
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower.get(1..)?.to_string())
    } else {
        (10, lower)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let mag = u64::from_str_radix(&digits, radix).ok()?;
    if neg {
        if mag <= i64::MAX as u64 + 1 {
            return Some(IntParse::Fits((mag as i128).wrapping_neg() as i64));
        }
        return None;
    }
    Some(match i64::try_from(mag) {
        Ok(i) => IntParse::Fits(i),
        Err(_) => IntParse::Unsigned,
    })
}

/// yaml.v3's float pattern: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    } else {
        if !digits(&mut i) {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}

/// yaml.v3's timestamp test, in its first step: four digits and a dash, then a date (and
/// time) in one of its formats. Only the shape matters here: such values stay strings.
fn looks_like_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 8
        && b.iter().take(4).all(u8::is_ascii_digit)
        && b.get(4) == Some(&b'-')
        && b.get(5).is_some_and(u8::is_ascii_digit)
}

/// The bytes an unencrypted scalar adds to the MAC (`None`: nothing, for null).
pub(crate) fn plain_mac_bytes(s: &Scalar) -> Result<Option<Vec<u8>>, SopsError> {
    Ok(Some(match &s.value {
        Value::Null => return Ok(None),
        Value::Str => s.text.clone(),
        Value::Bool(b) => super::value::go_bool(*b).as_bytes().to_vec(),
        Value::Int(i) => i.to_string().into_bytes(),
        Value::Float(f) => go_format_float(*f).into_bytes(),
        Value::Unsupported => {
            return Err(SopsError::Value(
                "an unencrypted value has a type sops cannot hash",
            ));
        }
    }))
}

/// Byte offset of the start of the line holding `pos`.
pub(crate) fn line_start(text: &[u8], pos: usize) -> usize {
    text.get(..pos.min(text.len()))
        .and_then(|b| b.iter().rposition(|c| *c == b'\n'))
        .map_or(0, |i| i + 1)
}

/// Byte offset just past the end of the line holding byte `pos` (after its `\n`, or the
/// end of the text).
pub(crate) fn line_end(text: &[u8], pos: usize) -> usize {
    text.get(pos..)
        .and_then(|b| b.iter().position(|c| *c == b'\n'))
        .map_or(text.len(), |i| pos + i + 1)
}

/// The column (bytes from the line start) of `pos`.
pub(crate) fn column(text: &[u8], pos: usize) -> usize {
    pos - line_start(text, pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_scalars_resolve_as_yaml_v3_does() {
        assert_eq!(resolve_plain("42"), Value::Int(42));
        assert_eq!(resolve_plain("0x1F"), Value::Int(31));
        assert_eq!(resolve_plain("017"), Value::Int(15));
        assert_eq!(resolve_plain("1_000"), Value::Int(1000));
        assert_eq!(resolve_plain("-9223372036854775808"), Value::Int(i64::MIN));
        assert_eq!(resolve_plain("18446744073709551615"), Value::Unsupported);
        assert_eq!(resolve_plain("1.5"), Value::Float(1.5));
        assert_eq!(resolve_plain(".5"), Value::Float(0.5));
        assert_eq!(resolve_plain("1e3"), Value::Float(1000.0));
        assert_eq!(resolve_plain("yes"), Value::Str);
        assert_eq!(resolve_plain("True"), Value::Bool(true));
        assert_eq!(resolve_plain("~"), Value::Null);
        assert_eq!(resolve_plain("2024-01-02"), Value::Str);
        assert_eq!(resolve_plain("1.2.3"), Value::Str);
        assert_eq!(resolve_plain("-"), Value::Str);
    }
}
