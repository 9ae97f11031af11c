//! dotenv and INI files: one `KEY=value` (or `key = value` in a `[section]`) per line, with the
//! sops metadata flattened into keys (`sops_age__list_0__map_enc=...` in dotenv, the
//! `[sops]` section's `age__list_0__map_enc = ...` in INI) and newlines escaped as `\n`.

use std::collections::HashSet;
use std::ops::Range;

use super::SopsError;
use super::doc::{Doc, Entry, Node, NodeId, Scalar, Value};

/// A `#`/`;` comment line: where its text (after the marker) is.
pub(crate) type Comment = Range<usize>;

fn syntax(format: &'static str, line: usize, msg: &str) -> SopsError {
    SopsError::Syntax {
        format,
        line,
        msg: msg.into(),
    }
}

/// The lines of `text` with their start offsets (without the `\n`).
fn lines(text: &[u8]) -> impl Iterator<Item = (usize, usize, &[u8])> {
    let mut start = 0;
    text.split(|c| *c == b'\n')
        .enumerate()
        .map(move |(n, l)| {
            let s = start;
            start += l.len() + 1;
            (n + 1, s, l)
        })
        .filter(move |(_, s, _)| *s < text.len())
}

fn scalar(doc: &mut Doc, text: Vec<u8>, span: Range<usize>) -> NodeId {
    doc.push(Node::Scalar(Scalar {
        text,
        value: Value::Str,
        span,
        block: false,
    }))
}

/// Unescapes sops's `\n` in a flattened value.
pub(crate) fn unescape(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v.get(i..i + 2) == Some(b"\\n") {
            out.push(b'\n');
            i += 2;
        } else {
            out.extend_from_slice(v.get(i..i + 1).unwrap_or_default());
            i += 1;
        }
    }
    out
}

/// Escapes newlines as sops writes them in flattened values.
pub(crate) fn escape(v: &str) -> String {
    v.replace('\n', "\\n")
}

/// Parses a dotenv file: every non-empty line is a `#` comment or `KEY=value`.
pub(crate) fn parse_dotenv(text: &[u8]) -> Result<(Doc, Vec<Comment>), SopsError> {
    let mut doc = Doc::default();
    let mut entries = Vec::new();
    let mut comments = Vec::new();
    let mut seen = HashSet::new();
    for (n, start, line) in lines(text) {
        if line.is_empty() {
            continue;
        }
        if line.first() == Some(&b'#') {
            comments.push(start + 1..start + line.len());
            continue;
        }
        let eq = line.iter().position(|c| *c == b'=').ok_or_else(|| {
            syntax(
                "dotenv",
                n,
                "a line that is neither KEY=value nor a comment",
            )
        })?;
        let key = String::from_utf8(line.get(..eq).unwrap_or_default().to_vec())
            .map_err(|_| syntax("dotenv", n, "a key that is not UTF-8"))?;
        if !seen.insert(key.clone()) {
            return Err(SopsError::DuplicateKey { line: n, key });
        }
        let raw = line.get(eq + 1..).unwrap_or_default();
        let value = scalar(&mut doc, unescape(raw), start + eq + 1..start + line.len());
        entries.push(Entry {
            key,
            key_span: start..start + eq,
            value,
        });
    }
    let root = doc.push(Node::Map {
        entries,
        span: 0..text.len(),
    });
    doc.roots.push(Some(root));
    Ok((doc, comments))
}

/// A section being read: its name and header, its entries, the keys seen.
type Section = (String, Range<usize>, Vec<Entry>, HashSet<String>);

/// The name go-ini gives keys outside any section.
const DEFAULT_SECTION: &str = "DEFAULT";

/// Parses an INI file as go-ini reads what sops writes: `[section]` headers, `key = value`
/// (or `key: value`) lines, `;`/`#` comments; keys before any section are in `DEFAULT`.
pub(crate) fn parse_ini(text: &[u8]) -> Result<(Doc, Vec<Comment>), SopsError> {
    let mut doc = Doc::default();
    let mut sections: Vec<Entry> = Vec::new();
    let mut current: Option<Section> = None;
    let mut comments = Vec::new();
    let mut names = HashSet::new();
    let close = |doc: &mut Doc, sections: &mut Vec<Entry>, sec: Option<Section>| {
        if let Some((key, key_span, entries, _)) = sec {
            let span = key_span.start
                ..entries
                    .last()
                    .and_then(|e| doc.span(e.value))
                    .map_or(key_span.end, |s| s.end);
            let value = doc.push(Node::Map { entries, span });
            sections.push(Entry {
                key,
                key_span,
                value,
            });
        }
    };
    for (n, start, raw_line) in lines(text) {
        let lead = raw_line
            .iter()
            .take_while(|c| matches!(c, b' ' | b'\t'))
            .count();
        let line = raw_line.get(lead..).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let at = start + lead;
        if line.iter().all(|c| matches!(c, b' ' | b'\t')) {
            continue;
        }
        if matches!(line.first(), Some(b';' | b'#')) {
            comments.push(at + 1..at + line.len());
            continue;
        }
        if line.first() == Some(&b'[') {
            let end = line
                .iter()
                .position(|c| *c == b']')
                .ok_or_else(|| syntax("INI", n, "an unclosed section header"))?;
            let name = String::from_utf8(line.get(1..end).unwrap_or_default().to_vec())
                .map_err(|_| syntax("INI", n, "a section name that is not UTF-8"))?
                .trim()
                .to_string();
            if !names.insert(name.clone()) {
                return Err(SopsError::DuplicateKey { line: n, key: name });
            }
            close(&mut doc, &mut sections, current.take());
            current = Some((name, at..at + end + 1, Vec::new(), HashSet::new()));
            continue;
        }
        let delim = line
            .iter()
            .position(|c| matches!(c, b'=' | b':'))
            .ok_or_else(|| syntax("INI", n, "a line that is neither key = value nor a section"))?;
        let key_raw = line.get(..delim).unwrap_or_default();
        let key_len = key_raw
            .iter()
            .rposition(|c| !matches!(c, b' ' | b'\t'))
            .map_or(0, |p| p + 1);
        let key = String::from_utf8(key_raw.get(..key_len).unwrap_or_default().to_vec())
            .map_err(|_| syntax("INI", n, "a key that is not UTF-8"))?;
        let rest = line.get(delim + 1..).unwrap_or_default();
        let vlead = rest
            .iter()
            .take_while(|c| matches!(c, b' ' | b'\t'))
            .count();
        let mut value = rest.get(vlead..).unwrap_or_default();
        let mut vstart = at + delim + 1 + vlead;
        if let Some(q) = value.first().copied().filter(|q| matches!(q, b'"' | b'`'))
            && value.len() >= 2
            && value.last() == Some(&q)
            && !value.starts_with(b"\"\"\"")
        {
            value = value.get(1..value.len() - 1).unwrap_or_default();
            vstart += 1;
        } else {
            if let Some(c) = value.iter().position(|c| matches!(c, b'#' | b';')) {
                value = value.get(..c).unwrap_or_default();
            }
            let vlen = value
                .iter()
                .rposition(|c| !matches!(c, b' ' | b'\t'))
                .map_or(0, |p| p + 1);
            value = value.get(..vlen).unwrap_or_default();
        }
        if current.is_none() {
            if !names.insert(DEFAULT_SECTION.to_string()) {
                return Err(SopsError::DuplicateKey {
                    line: n,
                    key: DEFAULT_SECTION.into(),
                });
            }
            current = Some((DEFAULT_SECTION.into(), at..at, Vec::new(), HashSet::new()));
        }
        let Some((_, _, entries, seen)) = current.as_mut() else {
            continue;
        };
        if !seen.insert(key.clone()) {
            return Err(SopsError::DuplicateKey { line: n, key });
        }
        let id = scalar(&mut doc, value.to_vec(), vstart..vstart + value.len());
        entries.push(Entry {
            key,
            key_span: at..at + key_len,
            value: id,
        });
    }
    close(&mut doc, &mut sections, current.take());
    let root = doc.push(Node::Map {
        entries: sections,
        span: 0..text.len(),
    });
    doc.roots.push(Some(root));
    Ok((doc, comments))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_and_ini_lines() {
        let (doc, comments) = parse_dotenv(b"# c\nA=1\n\nB=x\\ny\n").unwrap();
        let root = doc.roots[0].unwrap();
        assert_eq!(doc.str(doc.get(root, "B").unwrap().value), Some("x\ny"));
        assert_eq!(comments, vec![1..3]);
        assert!(parse_dotenv(b"A=1\nA=2\n").is_err());
        assert!(parse_dotenv(b"nonsense\n").is_err());

        let text = b"top = 1\n[s]\nkey     = value ; note\nq = \"  spaced \"\n";
        let (doc, _) = parse_ini(text).unwrap();
        let root = doc.roots[0].unwrap();
        let s = doc.get(root, "s").unwrap().value;
        let v = doc.get(s, "key").unwrap().value;
        assert_eq!(doc.str(v), Some("value"));
        assert_eq!(&text[doc.span(v).unwrap()], b"value");
        assert_eq!(doc.str(doc.get(s, "q").unwrap().value), Some("  spaced "));
        assert!(doc.get(root, DEFAULT_SECTION).is_some());
        assert!(parse_ini(b"[a]\nx=1\n[a]\n").is_err());
    }
}
