//! YAML files (and the YAML read of `.sops.yaml`): saphyr's event parser, into [`Doc`] with
//! byte ranges. Keys must be strings and unique within a mapping (sops refuses duplicates
//! too); anchors are kept and aliases point at them.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::ops::Range;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};

use super::SopsError;
use super::doc::{Doc, Entry, MAX_DEPTH, Node, NodeId, Scalar, Value, line_start, resolve_plain};

/// Char indices (saphyr's markers) to byte offsets, by a cursor that moves forward.
struct Offsets<'t> {
    text: &'t str,
    ascii: bool,
    chars: usize,
    bytes: usize,
}

impl Offsets<'_> {
    fn byte(&mut self, char_index: usize) -> usize {
        if self.ascii {
            return char_index.min(self.text.len());
        }
        if char_index < self.chars {
            self.chars = 0;
            self.bytes = 0;
        }
        let rest = self.text.get(self.bytes..).unwrap_or_default();
        for (i, (b, _)) in rest.char_indices().enumerate() {
            if self.chars + i == char_index {
                self.bytes += b;
                self.chars = char_index;
                return self.bytes;
            }
        }
        self.text.len()
    }

    fn range(&mut self, span: &Span) -> Range<usize> {
        let s = self.byte(span.start.index());
        let e = self.byte(span.end.index());
        s..e.max(s)
    }
}

enum Frame {
    Map {
        id: NodeId,
        key: Option<(String, Range<usize>)>,
        flow: bool,
        seen: HashSet<String>,
    },
    Seq {
        id: NodeId,
        flow: bool,
    },
    Doc,
}

fn syntax(line: usize, msg: impl Into<String>) -> SopsError {
    SopsError::Syntax {
        format: "YAML",
        line,
        msg: msg.into(),
    }
}

/// The core-schema tag a scalar carries, if any (`!!str`, `tag:yaml.org,2002:int`, ...).
fn core_tag(tag: &Option<Cow<'_, Tag>>) -> Option<String> {
    let t = tag.as_ref()?;
    Some(match t.handle.as_str() {
        "!!" | "tag:yaml.org,2002:" => format!("!!{}", t.suffix),
        h => format!("{h}{}", t.suffix),
    })
}

fn scalar_value(text: &str, style: ScalarStyle, tag: Option<&str>) -> Value {
    match tag {
        None if style == ScalarStyle::Plain => resolve_plain(text),
        None => Value::Str,
        Some("!!str" | "!!timestamp" | "!!merge") => Value::Str,
        Some("!!null") => Value::Null,
        Some("!!bool" | "!!int") => match resolve_plain(text) {
            v @ (Value::Bool(_) | Value::Int(_)) => v,
            _ => Value::Unsupported,
        },
        Some("!!float") => match resolve_plain(text) {
            Value::Int(i) => Value::Float(i as f64),
            v @ Value::Float(_) => v,
            _ => Value::Unsupported,
        },
        Some("!!binary") => Value::Unsupported,
        // Local tags: yaml.v3 hands the text through.
        Some(_) => Value::Str,
    }
}

/// Where a block scalar's content ends: saphyr's span runs on to the indentation of the line
/// that ends it; the content ends after its last non-blank line.
fn block_end(text: &[u8], span: &Range<usize>) -> usize {
    let mut e = span.end.min(text.len());
    let ls = line_start(text, e);
    if text
        .get(ls..e)
        .is_some_and(|b| b.iter().all(|c| *c == b' '))
    {
        e = ls;
    }
    while e > span.start + 1 {
        let prev = line_start(text, e - 1);
        let blank = text
            .get(prev..e)
            .is_some_and(|b| b.iter().all(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n')));
        if !blank || prev <= span.start {
            break;
        }
        e = prev;
    }
    e
}

/// Parses every document of a YAML stream.
pub(crate) fn parse(text: &str) -> Result<Doc, SopsError> {
    let bytes = text.as_bytes();
    let mut doc = Doc::default();
    let mut off = Offsets {
        text,
        ascii: text.is_ascii(),
        chars: 0,
        bytes: 0,
    };
    let mut anchors: HashMap<usize, NodeId> = HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<NodeId> = None;
    let mut parser = Parser::new_from_str(text);
    loop {
        let (event, span) = match parser.next_event() {
            Some(Ok(e)) => e,
            Some(Err(e)) => return Err(syntax(e.marker().line(), e.info().to_string())),
            None => break,
        };
        let line = span.start.line();
        let range = off.range(&span);
        let mut new_node: Option<(NodeId, Option<Frame>)> = None;
        match event {
            Event::StreamStart | Event::Nothing => {}
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                stack.push(Frame::Doc);
                root = None;
            }
            Event::DocumentEnd => {
                stack.pop();
                doc.roots.push(root.take());
            }
            Event::Alias(a) => {
                let target = *anchors
                    .get(&a)
                    .ok_or_else(|| syntax(line, "an alias to an unknown anchor"))?;
                new_node = Some((doc.push(Node::Alias(target)), None));
            }
            Event::Scalar(value, style, anchor, tag) => {
                let tag = core_tag(&tag);
                let v = scalar_value(&value, style, tag.as_deref());
                let block = matches!(style, ScalarStyle::Literal | ScalarStyle::Folded);
                let mut span = range.clone();
                if block {
                    span.end = block_end(bytes, &span);
                }
                let id = doc.push(Node::Scalar(Scalar {
                    text: value.as_bytes().to_vec(),
                    value: v,
                    span,
                    block,
                }));
                if anchor != 0 {
                    anchors.insert(anchor, id);
                }
                new_node = Some((id, None));
            }
            Event::SequenceStart(anchor, _) => {
                let flow = bytes
                    .get(range.start..range.end)
                    .is_some_and(|b| b.ends_with(b"["));
                let start = if flow { range.end - 1 } else { range.start };
                let id = doc.push(Node::Seq {
                    items: Vec::new(),
                    span: start..range.end,
                    flow,
                });
                if anchor != 0 {
                    anchors.insert(anchor, id);
                }
                new_node = Some((id, Some(Frame::Seq { id, flow })));
            }
            Event::MappingStart(anchor, _) => {
                let flow = bytes
                    .get(range.start..range.end)
                    .is_some_and(|b| b.ends_with(b"{"));
                let start = if flow { range.end - 1 } else { range.start };
                let id = doc.push(Node::Map {
                    entries: Vec::new(),
                    span: start..range.end,
                });
                if anchor != 0 {
                    anchors.insert(anchor, id);
                }
                new_node = Some((
                    id,
                    Some(Frame::Map {
                        id,
                        key: None,
                        flow,
                        seen: HashSet::new(),
                    }),
                ));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (id, flow, pending) = match stack.pop() {
                    Some(Frame::Seq { id, flow }) => (id, flow, false),
                    Some(Frame::Map { id, flow, key, .. }) => (id, flow, key.is_some()),
                    _ => return Err(syntax(line, "unbalanced collection")),
                };
                if pending {
                    return Err(syntax(line, "a mapping key without a value"));
                }
                let end = if flow {
                    range.end
                } else {
                    last_child_end(&doc, id).unwrap_or(range.start)
                };
                match doc.nodes.get_mut(id) {
                    Some(Node::Seq { span, .. } | Node::Map { span, .. }) => {
                        span.end = end.max(span.start);
                    }
                    _ => return Err(syntax(line, "unbalanced collection")),
                }
            }
        }
        if let Some((id, frame)) = new_node {
            attach(&mut doc, &mut stack, &mut root, id, line)?;
            if let Some(f) = frame {
                if stack.len() > MAX_DEPTH {
                    return Err(syntax(line, "nested too deeply"));
                }
                stack.push(f);
            }
        }
    }
    Ok(doc)
}

fn last_child_end(doc: &Doc, id: NodeId) -> Option<usize> {
    let last = match doc.node(id)? {
        Node::Seq { items, .. } => *items.last()?,
        Node::Map { entries, .. } => entries.last()?.value,
        _ => return None,
    };
    match doc.node(last)? {
        Node::Alias(_) => None,
        _ => doc.span(last).map(|s| s.end),
    }
}

fn attach(
    doc: &mut Doc,
    stack: &mut [Frame],
    root: &mut Option<NodeId>,
    id: NodeId,
    line: usize,
) -> Result<(), SopsError> {
    match stack.last_mut() {
        Some(Frame::Doc) => {
            *root = Some(id);
            Ok(())
        }
        Some(Frame::Seq { id: seq, .. }) => {
            if let Some(Node::Seq { items, .. }) = doc.nodes.get_mut(*seq) {
                items.push(id);
            }
            Ok(())
        }
        Some(Frame::Map {
            id: map, key, seen, ..
        }) => match key.take() {
            None => {
                let Some(Node::Scalar(s)) = doc.nodes.get(id) else {
                    return Err(syntax(line, "a mapping key that is not a scalar"));
                };
                if s.value != Value::Str {
                    return Err(syntax(line, "a mapping key that is not a string"));
                }
                let k = String::from_utf8(s.text.clone())
                    .map_err(|_| syntax(line, "a key that is not UTF-8"))?;
                if !seen.insert(k.clone()) {
                    return Err(SopsError::DuplicateKey { line, key: k });
                }
                *key = Some((k, s.span.clone()));
                Ok(())
            }
            Some((k, key_span)) => {
                if let Some(Node::Map { entries, .. }) = doc.nodes.get_mut(*map) {
                    entries.push(Entry {
                        key: k,
                        key_span,
                        value: id,
                    });
                }
                Ok(())
            }
        },
        None => Err(syntax(line, "a node outside any document")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_exactly_the_nodes() {
        let text = "a: [1, {b: \"x\"}]\nc: |\n  two\n\n# after\nd: &x {e: f}\ng: *x\n";
        let doc = parse(text).unwrap();
        let root = doc.roots[0].unwrap();
        let a = doc.get(root, "a").unwrap().value;
        assert_eq!(&text[doc.span(a).unwrap()], "[1, {b: \"x\"}]");
        let c = doc.get(root, "c").unwrap().value;
        assert_eq!(&text[doc.span(c).unwrap()], "two\n");
        assert_eq!(doc.str(c), Some("two\n"));
        let g = doc.get(root, "g").unwrap().value;
        assert_eq!(doc.entries(g).unwrap()[0].key, "e");
        assert!(matches!(
            parse("a: 1\na: 2\n"),
            Err(SopsError::DuplicateKey { .. })
        ));
        assert!(parse("1: x\n").is_err());
        assert!(parse("a: [\n").is_err());
    }
}
