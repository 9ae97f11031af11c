//! JSON files (and binary files, which sops stores as JSON): a strict RFC 8259 parser into
//! [`Doc`] with exact byte ranges. Duplicate keys are refused; numbers are resolved as sops's
//! decoder does (an `i64` if they are one, else a float).

use std::collections::HashSet;

use super::SopsError;
use super::doc::{Doc, Entry, MAX_DEPTH, Node, NodeId, Scalar, Value};

struct P<'t> {
    b: &'t [u8],
    i: usize,
    doc: Doc,
}

impl P<'_> {
    fn line(&self) -> usize {
        1 + self
            .b
            .get(..self.i)
            .unwrap_or_default()
            .iter()
            .filter(|c| **c == b'\n')
            .count()
    }

    fn err(&self, msg: &str) -> SopsError {
        SopsError::Syntax {
            format: "JSON",
            line: self.line(),
            msg: msg.into(),
        }
    }

    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<NodeId, SopsError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        self.ws();
        let start = self.i;
        match self.b.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut entries = Vec::new();
                let mut seen = HashSet::new();
                self.ws();
                if !self.eat(b'}') {
                    loop {
                        self.ws();
                        let ks = self.i;
                        let key = self.string()?;
                        let key_span = ks..self.i;
                        let key =
                            String::from_utf8(key).map_err(|_| self.err("a key is not UTF-8"))?;
                        if !seen.insert(key.clone()) {
                            return Err(SopsError::DuplicateKey {
                                line: self.line(),
                                key,
                            });
                        }
                        self.ws();
                        if !self.eat(b':') {
                            return Err(self.err("expected ':'"));
                        }
                        let value = self.value(depth + 1)?;
                        entries.push(Entry {
                            key,
                            key_span,
                            value,
                        });
                        self.ws();
                        if self.eat(b'}') {
                            break;
                        }
                        if !self.eat(b',') {
                            return Err(self.err("expected ',' or '}'"));
                        }
                    }
                }
                Ok(self.doc.push(Node::Map {
                    entries,
                    span: start..self.i,
                }))
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if !self.eat(b']') {
                    loop {
                        items.push(self.value(depth + 1)?);
                        self.ws();
                        if self.eat(b']') {
                            break;
                        }
                        if !self.eat(b',') {
                            return Err(self.err("expected ',' or ']'"));
                        }
                    }
                }
                Ok(self.doc.push(Node::Seq {
                    items,
                    span: start..self.i,
                    flow: true,
                }))
            }
            Some(b'"') => {
                let text = self.string()?;
                Ok(self.scalar(text, Value::Str, start))
            }
            Some(b't') if self.b.get(self.i..self.i + 4) == Some(b"true") => {
                self.i += 4;
                Ok(self.scalar(b"true".to_vec(), Value::Bool(true), start))
            }
            Some(b'f') if self.b.get(self.i..self.i + 5) == Some(b"false") => {
                self.i += 5;
                Ok(self.scalar(b"false".to_vec(), Value::Bool(false), start))
            }
            Some(b'n') if self.b.get(self.i..self.i + 4) == Some(b"null") => {
                self.i += 4;
                Ok(self.scalar(b"null".to_vec(), Value::Null, start))
            }
            Some(b'-' | b'0'..=b'9') => self.number(start),
            _ => Err(self.err("expected a JSON value")),
        }
    }

    fn scalar(&mut self, text: Vec<u8>, value: Value, start: usize) -> NodeId {
        self.doc.push(Node::Scalar(Scalar {
            text,
            value,
            span: start..self.i,
            block: false,
        }))
    }

    fn number(&mut self, start: usize) -> Result<NodeId, SopsError> {
        let digits = |p: &mut Self| {
            let s = p.i;
            while p.b.get(p.i).is_some_and(u8::is_ascii_digit) {
                p.i += 1;
            }
            p.i > s
        };
        self.eat(b'-');
        if self.eat(b'0') {
            if self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
                return Err(self.err("a number with a leading zero"));
            }
        } else if !digits(self) {
            return Err(self.err("a malformed number"));
        }
        if self.eat(b'.') && !digits(self) {
            return Err(self.err("a malformed number"));
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !digits(self) {
                return Err(self.err("a malformed number"));
            }
        }
        let text = self.b.get(start..self.i).unwrap_or_default().to_vec();
        let s = std::str::from_utf8(&text).unwrap_or_default();
        let value = match s.parse::<i64>() {
            Ok(i) => Value::Int(i),
            Err(_) => s.parse::<f64>().map_or(Value::Unsupported, Value::Float),
        };
        Ok(self.scalar(text, value, start))
    }

    fn hex4(&mut self) -> Result<u32, SopsError> {
        let h = self
            .b
            .get(self.i..self.i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| self.err("a bad \\u escape"))?;
        self.i += 4;
        Ok(h)
    }

    fn string(&mut self) -> Result<Vec<u8>, SopsError> {
        if !self.eat(b'"') {
            return Err(self.err("expected a string"));
        }
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.b.get(self.i) else {
                return Err(self.err("an unterminated string"));
            };
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.b.get(self.i) else {
                        return Err(self.err("an unterminated string"));
                    };
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xd800..0xdc00).contains(&hi) {
                                if !(self.eat(b'\\') && self.eat(b'u')) {
                                    return Err(self.err("a lone surrogate"));
                                }
                                let lo = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&lo) {
                                    return Err(self.err("a lone surrogate"));
                                }
                                0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                            } else {
                                hi
                            };
                            char::from_u32(cp).ok_or_else(|| self.err("a lone surrogate"))?
                        }
                        _ => return Err(self.err("a bad escape")),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                0..=0x1f => return Err(self.err("a control character in a string")),
                _ => out.push(c),
            }
        }
        if std::str::from_utf8(&out).is_err() {
            return Err(self.err("a string that is not UTF-8"));
        }
        Ok(out)
    }
}

/// Parses a JSON document whose top level is an object.
pub(crate) fn parse(text: &[u8]) -> Result<Doc, SopsError> {
    let mut p = P {
        b: text,
        i: 0,
        doc: Doc::default(),
    };
    p.ws();
    if p.b.get(p.i) != Some(&b'{') {
        return Err(p.err("the top level is not an object"));
    }
    let root = p.value(0)?;
    p.ws();
    if p.i != p.b.len() {
        return Err(p.err("text after the top-level object"));
    }
    p.doc.roots.push(Some(root));
    Ok(p.doc)
}

/// `s` as a JSON string literal, escaped as Go's `json.Marshal` does (HTML characters too).
pub(crate) fn quote(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strictly_with_spans() {
        let text = br#" {"a": [1, 2.5, true, null, "x\n\u00e9\ud83d\ude00"], "b": {}} "#;
        let doc = parse(text).unwrap();
        let root = doc.roots[0].unwrap();
        let a = doc.get(root, "a").unwrap().value;
        assert_eq!(
            &text[doc.span(a).unwrap()],
            br#"[1, 2.5, true, null, "x\n\u00e9\ud83d\ude00"]"#
        );
        let items = doc.items(a).unwrap();
        assert_eq!(doc.scalar(items[0]).unwrap().value, Value::Int(1));
        assert_eq!(doc.str(items[4]), Some("x\né😀"));
        for bad in [
            &br#"{"a": 1, "a": 2}"#[..],
            br#"{"a": 01}"#,
            br#"{"a": "\ud800"}"#,
            br#"{"a": 1} x"#,
            br#"[1]"#,
            br#"{"a": 1,}"#,
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(quote("a<b\n"), r#""a\u003cb\n""#);
    }
}
