//! Rewriting a SOPS file in place, as byte edits: the age entries of a group are replaced (in
//! the layout the file already uses, taken from an existing entry where there is one), PGP
//! entries removed on request, single values replaced. Every byte outside an edit is kept.

use std::ops::Range;

use super::doc::{Node, NodeId, Scalar, column, line_end, line_start};
use super::flat::escape;
use super::json::quote;
use super::meta::{FlatKey, FlatLine, Layout, classify_flat};
use super::{FileType, KeyKind, SopsError, SopsFile};

/// Byte edits of a file: replacements of non-overlapping ranges (empty ranges insert).
#[derive(Default)]
pub(crate) struct Edits(Vec<(Range<usize>, Vec<u8>)>);

impl Edits {
    pub fn replace(&mut self, range: Range<usize>, with: Vec<u8>) {
        self.0.push((range, with));
    }

    /// The edited bytes; overlapping edits are a bug in the plan and refused.
    pub fn apply(mut self, bytes: &[u8]) -> Result<Vec<u8>, SopsError> {
        // Stable: insertions at one place stay in the order they were made.
        self.0.sort_by_key(|(r, _)| (r.start, r.end));
        let mut out = Vec::with_capacity(bytes.len() + 4096);
        let mut pos = 0;
        for (r, with) in self.0 {
            if r.start < pos || r.end < r.start || r.end > bytes.len() {
                return Err(SopsError::Unsupported("overlapping edits of the metadata"));
            }
            out.extend_from_slice(bytes.get(pos..r.start).unwrap_or_default());
            out.extend_from_slice(&with);
            pos = r.end;
        }
        out.extend_from_slice(bytes.get(pos..).unwrap_or_default());
        Ok(out)
    }
}

/// A scalar's new text in the style of the old one: double-quoted if it was, single-quoted
/// if it was, else as is (age recipients and `ENC[...]` values need no quoting in YAML).
fn requote(old: &[u8], new: &str) -> String {
    match old.first() {
        Some(b'"') => quote(new),
        Some(b'\'') => format!("'{}'", new.replace('\'', "''")),
        _ => new.to_string(),
    }
}

/// Replaces the text of the scalar at `span` (`lastmodified`, the MAC).
pub(crate) fn replace_scalar_text(
    f: &SopsFile<'_>,
    span: Range<usize>,
    new: &str,
    edits: &mut Edits,
) -> Result<(), SopsError> {
    let old = f.bytes.get(span.clone()).unwrap_or_default();
    let text = match f.ftype {
        FileType::Dotenv | FileType::Ini => escape(new),
        _ => requote(old, new),
    };
    edits.replace(span, text.into_bytes());
    Ok(())
}

/// Replaces an encrypted value.
pub(crate) fn replace_value(
    f: &SopsFile<'_>,
    s: &Scalar,
    new: &str,
    edits: &mut Edits,
) -> Result<(), SopsError> {
    if s.block {
        return Err(SopsError::Unsupported(
            "an encrypted value written as a block scalar",
        ));
    }
    replace_scalar_text(f, s.span.clone(), new, edits)
}

/// The encrypted comments of the file: where each `ENC[...]` after a comment marker is.
pub(crate) fn encrypted_comments(f: &SopsFile<'_>) -> Vec<Range<usize>> {
    let b = f.bytes;
    let enc_at = |start: usize| -> Option<Range<usize>> {
        let rest = b.get(start..)?;
        if !super::value::looks_encrypted(rest) {
            return None;
        }
        let end = rest.iter().position(|c| *c == b']')?;
        Some(start..start + end + 1)
    };
    match f.ftype {
        FileType::Dotenv | FileType::Ini => f
            .comments
            .iter()
            .filter_map(|c| {
                let lead = b.get(c.clone())?.iter().take_while(|x| **x == b' ').count();
                enc_at(c.start + lead)
            })
            .collect(),
        FileType::Yaml => {
            let mut out = Vec::new();
            let mut start = 0;
            while start < b.len() {
                let end = line_end(b, start);
                let line = b.get(start..end).unwrap_or_default();
                let lead = line.iter().take_while(|x| **x == b' ').count();
                if line.get(lead) == Some(&b'#')
                    && let Some(r) = enc_at(start + lead + 1)
                {
                    out.push(r);
                }
                start = end;
            }
            out
        }
        FileType::Json | FileType::Binary => Vec::new(),
    }
}

/// Replaces group `gi`'s age entries with `new` (recipient, armored age), and removes its
/// PGP entries unless `keep_pgp`.
pub(crate) fn replace_group(
    f: &SopsFile<'_>,
    gi: usize,
    new: &[(String, String)],
    keep_pgp: bool,
    edits: &mut Edits,
) -> Result<(), SopsError> {
    match &f.meta.layout {
        Layout::Tree { blocks, grouped } => {
            for (sops, groups) in blocks {
                let g = groups
                    .get(gi)
                    .ok_or(SopsError::Metadata("has fewer key groups than planned"))?;
                match f.ftype {
                    FileType::Yaml => yaml_group(f, *sops, g.container, *grouped, new, edits)?,
                    _ => json_group(f, *sops, g.container, new, edits)?,
                }
                if !keep_pgp {
                    remove_list(f, g.container, "pgp", edits)?;
                }
            }
            Ok(())
        }
        Layout::Flat { lines, grouped } => flat_group(f, lines, *grouped, gi, new, keep_pgp, edits),
    }
}

/// The column of the keys of mapping `map`.
fn key_column(f: &SopsFile<'_>, map: NodeId) -> Option<usize> {
    let e = f.doc.entries(map)?.first()?;
    Some(column(f.bytes, e.key_span.start))
}

/// Layout of a block list of entries: dash column, item key column, block content column.
#[derive(Clone, Copy)]
struct BlockLayout {
    dash: usize,
    key: usize,
    content: usize,
}

/// The layout of an existing block list of master keys, relative to the column of its key.
fn list_layout(f: &SopsFile<'_>, list: NodeId, key_col: usize) -> Option<(usize, usize, usize)> {
    let b = f.bytes;
    let first = *f.doc.items(list)?.first()?;
    let dash = column(b, item_dash(b, f.doc.span(first)?.start)?);
    let key = key_column(f, first)?;
    let enc = f.doc.get(first, "enc")?;
    let s = f.doc.scalar(enc.value)?;
    let content = if s.block {
        column(b, s.span.start)
    } else {
        key + 2
    };
    Some((
        dash.checked_sub(key_col)?,
        key.checked_sub(dash)?,
        content.checked_sub(key)?,
    ))
}

/// Where the `-` of the block sequence item starting at `item` is: the item must be the first
/// thing on its line after its dash (`  - key: ...`).
fn item_dash(b: &[u8], item: usize) -> Option<usize> {
    let ls = line_start(b, item);
    let prefix = b.get(ls..item)?;
    let dash = prefix.iter().position(|c| *c == b'-')?;
    let ok = prefix.get(..dash)?.iter().all(|c| *c == b' ')
        && prefix.get(dash + 1..)?.iter().all(|c| *c == b' ');
    ok.then_some(ls + dash)
}

fn block_entries(layout: BlockLayout, new: &[(String, String)]) -> String {
    let mut out = String::new();
    for (r, enc) in new {
        out.push_str(&" ".repeat(layout.dash));
        out.push('-');
        out.push_str(&" ".repeat(layout.key.saturating_sub(layout.dash + 1).max(1)));
        out.push_str("recipient: ");
        out.push_str(r);
        out.push('\n');
        out.push_str(&" ".repeat(layout.key));
        out.push_str("enc: |\n");
        for l in enc.lines() {
            out.push_str(&" ".repeat(layout.content));
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// `new` as entries shaped like the existing entry `item` (spanning `text` in the file):
/// the same keys in the same order, indentation and scalar styles; only the values differ.
fn templated_entries(
    f: &SopsFile<'_>,
    item: NodeId,
    text: Range<usize>,
    new: &[(String, String)],
) -> Option<String> {
    let b = f.bytes;
    let entries = f.doc.entries(item)?;
    let mut keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    keys.sort_unstable();
    if keys != ["enc", "recipient"] {
        return None;
    }
    let rec = f.doc.scalar(f.doc.get(item, "recipient")?.value)?;
    let enc = f.doc.scalar(f.doc.get(item, "enc")?.value)?;
    // A block scalar's span starts at its content, the line after its `|`: the content
    // lines are replaced whole, at the content's indentation.
    let (enc_range, content) = if enc.block {
        (
            line_start(b, enc.span.start)..enc.span.end,
            Some(column(b, enc.span.start)),
        )
    } else {
        (enc.span.clone(), None)
    };
    let mut spans = [(rec.span.clone(), 0usize), (enc_range, 1usize)];
    spans.sort_by_key(|(s, _)| s.start);
    if spans
        .iter()
        .any(|(s, _)| s.start < text.start || s.end > text.end)
    {
        return None;
    }
    let mut out = Vec::new();
    for (r, e) in new {
        let mut pos = text.start;
        for (span, which) in &spans {
            out.extend_from_slice(b.get(pos..span.start)?);
            let old = b.get(span.clone())?;
            if *which == 0 {
                out.extend_from_slice(requote(old, r).as_bytes());
            } else if let Some(indent) = &content {
                for l in e.lines() {
                    out.extend_from_slice(" ".repeat(*indent).as_bytes());
                    out.extend_from_slice(l.as_bytes());
                    out.push(b'\n');
                }
            } else {
                out.extend_from_slice(quote(e).as_bytes());
            }
            pos = span.end;
        }
        out.extend_from_slice(b.get(pos..text.end)?);
    }
    String::from_utf8(out).ok()
}

fn flow_entries(new: &[(String, String)]) -> String {
    let items: Vec<String> = new
        .iter()
        .map(|(r, e)| format!("{{\"recipient\": {}, \"enc\": {}}}", quote(r), quote(e)))
        .collect();
    format!("[{}]", items.join(", "))
}

fn only_spaces(b: &[u8], r: Range<usize>) -> bool {
    b.get(r).is_some_and(|s| s.iter().all(|c| *c == b' '))
}

fn yaml_group(
    f: &SopsFile<'_>,
    sops: NodeId,
    container: NodeId,
    grouped: bool,
    new: &[(String, String)],
    edits: &mut Edits,
) -> Result<(), SopsError> {
    let b = f.bytes;
    let odd = || SopsError::Unsupported("an age list laid out in a way pqwrap does not rewrite");
    let kcol = key_column(f, container).ok_or(SopsError::Metadata("has an empty key group"))?;
    // The layout for synthesized entries: that of another list of this group, or sops's.
    let sibling = [
        "pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms", "age",
    ]
    .iter()
    .filter_map(|n| f.doc.get(container, n))
    .find_map(|e| {
        let kc = column(b, e.key_span.start);
        list_layout(f, e.value, kc)
    });
    let (dd, dk, kc) = sibling.unwrap_or((if grouped { 2 } else { kcol.max(2) }, 2, 2));
    let layout = BlockLayout {
        dash: kcol + dd,
        key: kcol + dd + dk,
        content: kcol + dd + dk + kc,
    };
    match f.doc.get(container, "age") {
        Some(age) => match f.doc.node(age.value) {
            Some(Node::Seq {
                items, span, flow, ..
            }) if !items.is_empty() => {
                if *flow {
                    edits.replace(span.clone(), flow_entries(new).into_bytes());
                    return Ok(());
                }
                let first = *items
                    .first()
                    .ok_or(SopsError::Metadata("has an empty age list"))?;
                // From the first item's dash (an indentless list's span starts elsewhere).
                let fstart = f.doc.span(first).ok_or_else(odd)?.start;
                let start = line_start(b, item_dash(b, fstart).ok_or_else(odd)?);
                let end = line_end(b, span.end.saturating_sub(1).max(span.start));
                let first_end = match items.get(1) {
                    Some(second) => line_start(b, f.doc.span(*second).ok_or_else(odd)?.start),
                    None => end,
                };
                // The first entry's lines, from its dash (the list's start) on.
                let text = templated_entries(f, first, start..first_end, new)
                    .unwrap_or_else(|| block_entries(layout, new));
                edits.replace(start..end, text.into_bytes());
                Ok(())
            }
            // `age: []`, `age:` or `age: null`: the key's line becomes the list.
            _ => {
                let ls = line_start(b, age.key_span.start);
                let end = line_end(b, age.key_span.end);
                let mut text = b.get(ls..age.key_span.end).unwrap_or_default().to_vec();
                text.extend_from_slice(b":\n");
                text.extend_from_slice(block_entries(layout, new).as_bytes());
                edits.replace(ls..end, text);
                Ok(())
            }
        },
        None => {
            let mut text = " ".repeat(kcol);
            text.push_str("age:\n");
            text.push_str(&block_entries(layout, new));
            // Where sops puts it: before `lastmodified` in the block, else after the group.
            let at = if container == sops {
                f.doc
                    .get(sops, "lastmodified")
                    .map(|e| line_start(b, e.key_span.start))
            } else {
                None
            };
            let at = match at {
                Some(a) => a,
                None => {
                    let last = f
                        .doc
                        .entries(container)
                        .and_then(|e| e.last())
                        .ok_or_else(odd)?;
                    let end = f
                        .doc
                        .span(last.value)
                        .ok_or(SopsError::Unsupported("a key group ending with an alias"))?;
                    line_end(b, end.end.saturating_sub(1).max(end.start))
                }
            };
            edits.replace(at..at, text.into_bytes());
            Ok(())
        }
    }
}

/// Removes the list `name` (key and value) from `container`.
fn remove_list(
    f: &SopsFile<'_>,
    container: NodeId,
    name: &str,
    edits: &mut Edits,
) -> Result<(), SopsError> {
    let b = f.bytes;
    let Some(entries) = f.doc.entries(container) else {
        return Ok(());
    };
    let Some(pos) = entries.iter().position(|e| e.key == name) else {
        return Ok(());
    };
    let Some(e) = entries.get(pos) else {
        return Ok(());
    };
    let vspan = f
        .doc
        .span(e.value)
        .ok_or(SopsError::Unsupported("a PGP list that is an alias"))?;
    match f.ftype {
        FileType::Yaml => {
            let start = line_start(b, e.key_span.start);
            if only_spaces(b, start..e.key_span.start) {
                let end = line_end(b, vspan.end.saturating_sub(1).max(vspan.start));
                edits.replace(start..end, Vec::new());
            } else if let (0, Some(next)) = (pos, entries.get(1)) {
                // `- pgp:` opening a key group item: the next key takes its place after the
                // dash.
                edits.replace(e.key_span.start..next.key_span.start, Vec::new());
            } else {
                return Err(SopsError::Unsupported("a PGP list laid out on one line"));
            }
        }
        _ => {
            // A JSON member, with one comma.
            let range = if pos > 0 {
                let prev = entries.get(pos - 1).and_then(|p| f.doc.span(p.value));
                prev.map_or(e.key_span.start, |p| p.end)..vspan.end
            } else {
                let next = entries.get(pos + 1).map(|n| n.key_span.start);
                e.key_span.start..next.unwrap_or(vspan.end)
            };
            edits.replace(range, Vec::new());
        }
    }
    Ok(())
}

/// The indentation of the line holding `pos`.
fn indent_at(b: &[u8], pos: usize) -> String {
    let ls = line_start(b, pos);
    let n = b
        .get(ls..)
        .unwrap_or_default()
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t'))
        .count();
    String::from_utf8_lossy(b.get(ls..ls + n).unwrap_or_default()).into_owned()
}

fn json_group(
    f: &SopsFile<'_>,
    sops: NodeId,
    container: NodeId,
    new: &[(String, String)],
    edits: &mut Edits,
) -> Result<(), SopsError> {
    let b = f.bytes;
    let cspan = f
        .doc
        .span(container)
        .ok_or(SopsError::Metadata("is not a mapping"))?;
    let compact = !b.get(cspan.clone()).unwrap_or_default().contains(&b'\n');
    // One level of indentation: the difference between the block's line and its members'.
    let member_indent = f
        .doc
        .entries(container)
        .and_then(|e| e.first())
        .map(|e| indent_at(b, e.key_span.start))
        .unwrap_or_default();
    let outer = indent_at(b, cspan.start);
    let unit = member_indent
        .strip_prefix(outer.as_str())
        .filter(|u| !u.is_empty())
        .unwrap_or("\t")
        .to_string();
    let synth = |indent: &str| -> String {
        if compact {
            let items: Vec<String> = new
                .iter()
                .map(|(r, e)| format!("{{\"recipient\":{},\"enc\":{}}}", quote(r), quote(e)))
                .collect();
            return format!("[{}]", items.join(","));
        }
        let i1 = format!("{indent}{unit}");
        let i2 = format!("{i1}{unit}");
        let items: Vec<String> = new
            .iter()
            .map(|(r, e)| {
                format!(
                    "{i1}{{\n{i2}\"recipient\": {},\n{i2}\"enc\": {}\n{i1}}}",
                    quote(r),
                    quote(e)
                )
            })
            .collect();
        format!("[\n{}\n{indent}]", items.join(",\n"))
    };
    match f.doc.get(container, "age") {
        Some(age) => {
            let vspan = f
                .doc
                .span(age.value)
                .ok_or(SopsError::Metadata("is malformed"))?;
            let items = f.doc.items(age.value).unwrap_or_default();
            let text = match (items.first(), items.last()) {
                (Some(first), Some(last)) => {
                    let fs = f
                        .doc
                        .span(*first)
                        .ok_or(SopsError::Metadata("is malformed"))?;
                    let ls = f
                        .doc
                        .span(*last)
                        .ok_or(SopsError::Metadata("is malformed"))?;
                    let open = b.get(vspan.start..fs.start).unwrap_or_default();
                    let close = b.get(ls.end..vspan.end).unwrap_or_default();
                    let between = match items.get(1).and_then(|s| f.doc.span(*s)) {
                        Some(second) => b.get(fs.end..second.start).unwrap_or_default().to_vec(),
                        None => {
                            let mut v = b",".to_vec();
                            v.extend_from_slice(open.get(1..).unwrap_or_default());
                            v
                        }
                    };
                    let one = |r: &str, e: &str| json_templated(f, *first, fs.clone(), r, e);
                    let mut out = Some(open.to_vec());
                    for (i, (r, e)) in new.iter().enumerate() {
                        match (out.as_mut(), one(r, e)) {
                            (Some(o), Some(t)) => {
                                if i > 0 {
                                    o.extend_from_slice(&between);
                                }
                                o.extend_from_slice(t.as_bytes());
                            }
                            _ => out = None,
                        }
                    }
                    match out {
                        Some(mut o) => {
                            o.extend_from_slice(close);
                            o
                        }
                        // An entry shaped unlike sops's: written in sops's layout instead.
                        None => synth(&indent_at(b, age.key_span.start)).into_bytes(),
                    }
                }
                _ => synth(&indent_at(b, age.key_span.start)).into_bytes(),
            };
            edits.replace(vspan, text);
        }
        None => {
            let lm = (container == sops)
                .then(|| f.doc.get(sops, "lastmodified"))
                .flatten();
            match lm {
                Some(lm) => {
                    let indent = indent_at(b, lm.key_span.start);
                    let sep = if compact {
                        ",".to_string()
                    } else {
                        format!(",\n{indent}")
                    };
                    let text = format!("\"age\": {}{sep}", synth(&indent));
                    edits.replace(lm.key_span.start..lm.key_span.start, text.into_bytes());
                }
                None => {
                    let last = f
                        .doc
                        .entries(container)
                        .and_then(|e| e.last())
                        .ok_or(SopsError::Metadata("has an empty key group"))?;
                    let end = f
                        .doc
                        .span(last.value)
                        .ok_or(SopsError::Metadata("is malformed"))?
                        .end;
                    let indent = indent_at(b, last.key_span.start);
                    let sep = if compact {
                        ",".to_string()
                    } else {
                        format!(",\n{indent}")
                    };
                    let text = format!("{sep}\"age\": {}", synth(&indent));
                    edits.replace(end..end, text.into_bytes());
                }
            }
        }
    }
    Ok(())
}

/// One JSON age entry shaped like `item` (its whitespace and key order).
fn json_templated(
    f: &SopsFile<'_>,
    item: NodeId,
    span: Range<usize>,
    recipient: &str,
    enc: &str,
) -> Option<String> {
    let entries = f.doc.entries(item)?;
    let mut keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    keys.sort_unstable();
    if keys != ["enc", "recipient"] {
        return None;
    }
    let mut vals: Vec<(Range<usize>, String)> = entries
        .iter()
        .map(|e| {
            let v = if e.key == "enc" { enc } else { recipient };
            (f.doc.span(e.value).unwrap_or(0..0), quote(v))
        })
        .collect();
    vals.sort_by_key(|(r, _)| r.start);
    let b = f.bytes;
    let mut out = Vec::new();
    let mut pos = span.start;
    for (r, v) in vals {
        out.extend_from_slice(b.get(pos..r.start)?);
        out.extend_from_slice(v.as_bytes());
        pos = r.end;
    }
    out.extend_from_slice(b.get(pos..span.end)?);
    String::from_utf8(out).ok()
}

fn flat_group(
    f: &SopsFile<'_>,
    lines: &[FlatLine],
    grouped: bool,
    gi: usize,
    new: &[(String, String)],
    keep_pgp: bool,
    edits: &mut Edits,
) -> Result<(), SopsError> {
    let b = f.bytes;
    let in_group = |l: &&FlatLine| match classify_flat(&l.path) {
        Some(FlatKey::Key(g, ..)) => g.unwrap_or(0) == gi,
        _ => false,
    };
    let kind_of = |l: &FlatLine| match classify_flat(&l.path) {
        Some(FlatKey::Key(_, k, i, field)) => Some((k, i, field)),
        _ => None,
    };
    let group: Vec<&FlatLine> = lines.iter().filter(in_group).collect();
    let ages: Vec<&FlatLine> = group
        .iter()
        .copied()
        .filter(|l| kind_of(l).is_some_and(|(k, ..)| k == KeyKind::Age))
        .collect();
    // Field order of one entry, as the file has it (sops sorts: enc, recipient).
    let mut order: Vec<String> = ages
        .iter()
        .filter_map(|l| kind_of(l).filter(|(_, i, _)| *i == 0).map(|(_, _, f)| f))
        .collect();
    if order.len() != 2 {
        order = vec!["enc".into(), "recipient".into()];
    }
    let template = ages.first().copied().or_else(|| lines.first());
    let prefix = match f.ftype {
        FileType::Dotenv => "sops_",
        _ => "",
    };
    let group_prefix = if grouped {
        format!("key_groups__list_{gi}__map_")
    } else {
        String::new()
    };
    // INI: keys padded so that `=` lines up as in the template line.
    let (width, sep) = match (f.ftype, template) {
        (FileType::Ini, Some(t)) => {
            let sep = b.get(t.key_span.end..t.value_span.start).unwrap_or(b" = ");
            let pad = sep.iter().take_while(|c| **c == b' ').count();
            (t.key_span.len() + pad, " = ".to_string())
        }
        (FileType::Ini, None) => (0, " = ".to_string()),
        _ => (0, "=".to_string()),
    };
    let mut text = String::new();
    for (j, (r, enc)) in new.iter().enumerate() {
        for field in &order {
            let key = format!("{prefix}{group_prefix}age__list_{j}__map_{field}");
            let value = if field == "enc" {
                escape(enc)
            } else {
                r.clone()
            };
            if f.ftype == FileType::Ini {
                let padded = format!(
                    "{key:<width$}",
                    width = width.saturating_sub(1).max(key.len())
                );
                text.push_str(&padded);
                text.push_str(&sep);
            } else {
                text.push_str(&key);
                text.push_str(&sep);
            }
            text.push_str(&value);
            text.push('\n');
        }
    }
    let at = match (ages.first(), group.last()) {
        (Some(first), _) => first.line.start,
        (None, Some(last)) => last.line.end,
        (None, None) => lines.first().map_or(b.len(), |l| l.line.start),
    };
    for l in &group {
        let remove = match kind_of(l) {
            Some((KeyKind::Age, ..)) => true,
            Some((KeyKind::Pgp, ..)) => !keep_pgp,
            _ => false,
        };
        if remove {
            edits.replace(l.line.clone(), Vec::new());
        }
    }
    // A file that does not end with a newline: the new lines go after one.
    if at == b.len() && !b.ends_with(b"\n") {
        text.insert(0, '\n');
        text.pop();
    }
    edits.replace(at..at, text.into_bytes());
    Ok(())
}
