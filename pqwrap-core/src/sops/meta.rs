//! The `sops` metadata block: master keys by key group, the MAC, `lastmodified`, the rules
//! that say which values are encrypted; read from a nested block (YAML, JSON) or from
//! flattened keys (dotenv, INI), with where each part is so that it can be rewritten.

use std::ops::Range;

use super::doc::{Doc, NodeId};
use super::flat::unescape;
use super::{FileType, KeyKind, MasterKey, SopsError};

/// Where a key group's master keys are in a nested (YAML, JSON) metadata block.
#[derive(Clone, Debug)]
pub(crate) struct TreeGroup {
    /// The mapping holding the group's lists (`sops` itself for a file with one group).
    pub container: NodeId,
}

/// One flattened metadata line (dotenv, INI).
#[derive(Clone, Debug)]
pub(crate) struct FlatLine {
    /// The key without the `sops_` prefix (dotenv) or in the `[sops]` section (INI).
    pub path: String,
    /// The value, newlines unescaped.
    pub value: String,
    /// The whole line, its newline included.
    pub line: Range<usize>,
    /// The key's bytes as written (the prefix included).
    pub key_span: Range<usize>,
    /// The value's bytes as written.
    pub value_span: Range<usize>,
}

/// Where the metadata is, for rewriting it.
#[derive(Clone, Debug)]
pub(crate) enum Layout {
    /// Nested: one block per YAML document (the first is authoritative; sops writes the same
    /// block into every document, so all are rewritten).
    Tree {
        /// Per document: the `sops` mapping and its groups.
        blocks: Vec<(NodeId, Vec<TreeGroup>)>,
        /// Whether the groups are under `key_groups`.
        grouped: bool,
    },
    /// Flattened keys, in file order.
    Flat {
        /// The metadata lines.
        lines: Vec<FlatLine>,
        /// Whether the groups are under `key_groups`.
        grouped: bool,
    },
}

/// Which values are encrypted (sops allows at most one of these rules).
#[derive(Clone, Debug, Default)]
pub(crate) struct Rules {
    pub unencrypted_suffix: Option<String>,
    pub encrypted_suffix: Option<String>,
    pub unencrypted_regex: Option<regex::Regex>,
    pub encrypted_regex: Option<regex::Regex>,
    /// `encrypted_comment_regex` or `unencrypted_comment_regex`: decided by comments, which
    /// this model does not keep; values are then taken as encrypted when they look so.
    pub by_comment: bool,
    pub mac_only_encrypted: bool,
}

impl Rules {
    /// sops's `shouldBeEncrypted`, for a value at `path`.
    pub fn encrypted(&self, path: &[&str]) -> bool {
        let mut enc = true;
        if let Some(s) = &self.unencrypted_suffix
            && path.iter().any(|p| p.ends_with(s.as_str()))
        {
            enc = false;
        }
        if let Some(s) = &self.encrypted_suffix {
            enc = path.iter().any(|p| p.ends_with(s.as_str()));
        }
        if let Some(r) = &self.unencrypted_regex
            && path.iter().any(|p| r.is_match(p))
        {
            enc = false;
        }
        if let Some(r) = &self.encrypted_regex {
            enc = path.iter().any(|p| r.is_match(p));
        }
        enc
    }
}

/// The metadata of a file.
#[derive(Clone, Debug)]
pub(crate) struct Metadata {
    pub groups: Vec<Vec<MasterKey>>,
    pub threshold: usize,
    pub lastmodified: String,
    /// Where `lastmodified`'s value is, per block.
    pub lastmodified_spans: Vec<Range<usize>>,
    pub mac: String,
    /// Where the MAC's value is, per block.
    pub mac_spans: Vec<Range<usize>>,
    pub rules: Rules,
    pub layout: Layout,
}

fn meta_err(msg: &'static str) -> SopsError {
    SopsError::Metadata(msg)
}

/// The lists of master keys a group mapping may hold, in the order sops reads them.
pub(crate) const LISTS: [(&str, KeyKind); 7] = [
    ("kms", KeyKind::Kms),
    ("gcp_kms", KeyKind::GcpKms),
    ("hckms", KeyKind::HcKms),
    ("azure_kv", KeyKind::AzureKv),
    ("hc_vault", KeyKind::HcVault),
    ("pgp", KeyKind::Pgp),
    ("age", KeyKind::Age),
];

/// The field that names a master key of each kind.
pub(crate) fn id_field(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Age => "recipient",
        KeyKind::Pgp => "fp",
        KeyKind::Kms => "arn",
        KeyKind::GcpKms => "resource_id",
        KeyKind::AzureKv => "vault_url",
        KeyKind::HcVault => "vault_address",
        KeyKind::HcKms => "key_id",
    }
}

/// A scalar field's text, as a string (numbers and booleans as written).
fn text_of(doc: &Doc, id: NodeId) -> Option<String> {
    doc.scalar(id)
        .map(|s| String::from_utf8_lossy(&s.text).into_owned())
}

fn tree_group(doc: &Doc, container: NodeId) -> Result<Vec<MasterKey>, SopsError> {
    let mut keys = Vec::new();
    for (name, kind) in LISTS {
        let Some(list) = doc.get(container, name) else {
            continue;
        };
        let items = match doc.items(list.value) {
            Some(items) => items,
            // `hc_vault:` with nothing, or `null`: an empty list.
            None if doc
                .scalar(list.value)
                .is_some_and(|s| s.value == super::doc::Value::Null) =>
            {
                &[]
            }
            None => return Err(meta_err("has a master-key list that is not a list")),
        };
        for item in items {
            let field = |f: &str| doc.get(*item, f).and_then(|e| text_of(doc, e.value));
            let enc = field("enc").ok_or(meta_err("has a master key without `enc`"))?;
            let id = field(id_field(kind)).unwrap_or_default();
            if kind == KeyKind::Age && id.is_empty() {
                return Err(meta_err("has an age entry without `recipient`"));
            }
            keys.push(MasterKey { kind, id, enc });
        }
    }
    Ok(keys)
}

fn scalar_field(doc: &Doc, sops: NodeId, key: &str) -> Option<(String, Range<usize>)> {
    let e = doc.get(sops, key)?;
    let s = doc.scalar(e.value)?;
    Some((
        String::from_utf8_lossy(&s.text).into_owned(),
        s.span.clone(),
    ))
}

fn rules(get: &dyn Fn(&str) -> Option<String>) -> Result<Rules, SopsError> {
    let non_empty = |k: &str| get(k).filter(|v| !v.is_empty());
    let regex = |k: &str| -> Result<Option<regex::Regex>, SopsError> {
        non_empty(k)
            .map(|r| {
                regex::Regex::new(&r).map_err(|_| meta_err("has a regex that does not compile"))
            })
            .transpose()
    };
    let mut r = Rules {
        unencrypted_suffix: non_empty("unencrypted_suffix"),
        encrypted_suffix: non_empty("encrypted_suffix"),
        unencrypted_regex: regex("unencrypted_regex")?,
        encrypted_regex: regex("encrypted_regex")?,
        by_comment: non_empty("unencrypted_comment_regex").is_some()
            || non_empty("encrypted_comment_regex").is_some(),
        mac_only_encrypted: get("mac_only_encrypted")
            .is_some_and(|v| matches!(v.as_str(), "true" | "True" | "TRUE" | "1")),
    };
    let count = [
        r.unencrypted_suffix.is_some(),
        r.encrypted_suffix.is_some(),
        r.unencrypted_regex.is_some(),
        r.encrypted_regex.is_some(),
        non_empty("unencrypted_comment_regex").is_some(),
        non_empty("encrypted_comment_regex").is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if count > 1 {
        return Err(meta_err(
            "sets more than one of the encrypted/unencrypted rules",
        ));
    }
    if count == 0 {
        r.unencrypted_suffix = Some("_unencrypted".into());
    }
    Ok(r)
}

fn threshold(groups: usize, raw: Option<String>) -> Result<usize, SopsError> {
    if groups <= 1 {
        return Ok(1);
    }
    let t = match raw.filter(|s| !s.is_empty()) {
        Some(s) => s
            .parse::<usize>()
            .map_err(|_| meta_err("has a shamir_threshold that is not a number"))?,
        None => 0,
    };
    // sops: 0 means every group is needed.
    let t = if t == 0 { groups } else { t };
    if t < 2 || t > groups {
        return Err(meta_err("has a shamir_threshold outside 2..=groups"));
    }
    Ok(t)
}

/// Reads the nested metadata of every document of a YAML or JSON file.
pub(crate) fn from_tree(doc: &Doc) -> Result<Metadata, SopsError> {
    let mut blocks = Vec::new();
    for root in doc.roots.iter().flatten() {
        if doc.entries(*root).is_none() {
            return Err(SopsError::NotSops("the top level is not a mapping"));
        }
        if let Some(e) = doc.get(*root, "sops") {
            if doc.entries(e.value).is_none() {
                return Err(meta_err("is not a mapping"));
            }
            blocks.push(e.value);
        }
    }
    let first = *blocks
        .first()
        .ok_or(SopsError::NotSops("no `sops` metadata"))?;
    let grouped_in = |sops: NodeId| -> Result<Option<Vec<TreeGroup>>, SopsError> {
        let Some(kg) = doc.get(sops, "key_groups") else {
            return Ok(None);
        };
        let items = doc
            .items(kg.value)
            .ok_or(meta_err("has `key_groups` that is not a list"))?;
        items
            .iter()
            .map(|g| {
                doc.entries(*g)
                    .map(|_| TreeGroup { container: *g })
                    .ok_or(meta_err("has a key group that is not a mapping"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    };
    let has_top_keys = |sops: NodeId| {
        LISTS.iter().any(|(n, _)| {
            doc.get(sops, n)
                .and_then(|e| doc.items(e.value))
                .is_some_and(|i| !i.is_empty())
        })
    };
    // sops: top-level keys, if any, make the one group; else `key_groups`.
    let layout_of = |sops: NodeId| -> Result<(Vec<TreeGroup>, bool), SopsError> {
        if has_top_keys(sops) {
            return Ok((vec![TreeGroup { container: sops }], false));
        }
        match grouped_in(sops)? {
            Some(g) if !g.is_empty() => Ok((g, true)),
            _ => Err(meta_err("has no master keys")),
        }
    };
    let (groups_loc, grouped) = layout_of(first)?;
    let groups = groups_loc
        .iter()
        .map(|g| tree_group(doc, g.container))
        .collect::<Result<Vec<_>, _>>()?;
    let mut all_blocks = Vec::new();
    let (mut lm_spans, mut mac_spans) = (Vec::new(), Vec::new());
    let (lastmodified, _) =
        scalar_field(doc, first, "lastmodified").ok_or(meta_err("has no `lastmodified`"))?;
    let (mac, _) = scalar_field(doc, first, "mac").ok_or(meta_err("has no `mac`"))?;
    for b in &blocks {
        let (g, gr) = layout_of(*b)?;
        let keys = g
            .iter()
            .map(|g| tree_group(doc, g.container))
            .collect::<Result<Vec<_>, _>>()?;
        if gr != grouped || keys != groups {
            return Err(meta_err("differs between the documents of the file"));
        }
        let (_, lm) =
            scalar_field(doc, *b, "lastmodified").ok_or(meta_err("has no `lastmodified`"))?;
        let (_, m) = scalar_field(doc, *b, "mac").ok_or(meta_err("has no `mac`"))?;
        lm_spans.push(lm);
        mac_spans.push(m);
        all_blocks.push((*b, g));
    }
    let get = |k: &str| scalar_field(doc, first, k).map(|(v, _)| v);
    Ok(Metadata {
        threshold: threshold(groups.len(), get("shamir_threshold"))?,
        groups,
        lastmodified,
        lastmodified_spans: lm_spans,
        mac,
        mac_spans,
        rules: rules(&get)?,
        layout: Layout::Tree {
            blocks: all_blocks,
            grouped,
        },
    })
}

/// One step of a flattened key: `__map_<key>` or `__list_<n>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Token {
    Map(String),
    List(usize),
}

/// Splits a flattened key (`key_groups__list_0__map_age__list_1__map_enc`) as sops does.
pub(crate) fn tokenize(path: &str) -> Option<Vec<Token>> {
    const MAP: &str = "__map_";
    const LIST: &str = "__list_";
    let mut out = Vec::new();
    let mut rest = path;
    let mut kind = 'm';
    loop {
        let next = [
            rest.find(MAP).map(|i| (i, 'm')),
            rest.find(LIST).map(|i| (i, 'l')),
        ]
        .into_iter()
        .flatten()
        .min();
        let (piece, after) = match next {
            Some((i, k)) => {
                let (p, a) = rest.split_at(i);
                let skip = if k == 'm' { MAP.len() } else { LIST.len() };
                (p, Some((a.get(skip..).unwrap_or_default(), k)))
            }
            None => (rest, None),
        };
        out.push(match kind {
            'm' => Token::Map(piece.to_string()),
            _ => Token::List(piece.parse().ok()?),
        });
        match after {
            Some((a, k)) => {
                rest = a;
                kind = k;
            }
            None => return Some(out),
        }
    }
}

/// What a flattened metadata key is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FlatKey {
    /// A field of a master key: group (`None` outside `key_groups`), kind, index, field.
    Key(Option<usize>, KeyKind, usize, String),
    /// A top-level field (`mac`, `lastmodified`, ...).
    Field(String),
    /// Something else under `key_groups` (sops writes nothing else there).
    Other,
}

pub(crate) fn classify_flat(path: &str) -> Option<FlatKey> {
    let t = tokenize(path)?;
    let kind_of = |n: &str| LISTS.iter().find(|(l, _)| *l == n).map(|(_, k)| *k);
    Some(match t.as_slice() {
        [Token::Map(list), Token::List(i), Token::Map(f)] => match kind_of(list) {
            Some(k) => FlatKey::Key(None, k, *i, f.clone()),
            None => FlatKey::Other,
        },
        [
            Token::Map(kg),
            Token::List(g),
            Token::Map(list),
            Token::List(i),
            Token::Map(f),
        ] if kg == "key_groups" => match kind_of(list) {
            Some(k) => FlatKey::Key(Some(*g), k, *i, f.clone()),
            None => FlatKey::Other,
        },
        [Token::Map(f)] => FlatKey::Field(f.clone()),
        _ => FlatKey::Other,
    })
}

/// A master key being gathered from flattened lines: (group, list, index), kind, id, enc.
type FlatSlot = (
    (Option<usize>, usize, usize),
    KeyKind,
    Option<String>,
    Option<String>,
);

/// Reads flattened metadata: `lines` are the metadata keys (prefix removed) with their places.
pub(crate) fn from_flat(lines: Vec<FlatLine>, ftype: FileType) -> Result<Metadata, SopsError> {
    if lines.is_empty() {
        return Err(SopsError::NotSops(match ftype {
            FileType::Dotenv => "no `sops_` metadata keys",
            _ => "no `[sops]` section",
        }));
    }
    let mut fields: Vec<(String, String, Range<usize>)> = Vec::new();
    // (group, kind, index) -> (id, enc)
    let mut keys: Vec<FlatSlot> = Vec::new();
    for l in &lines {
        match classify_flat(&l.path).ok_or(meta_err("has a malformed flattened key"))? {
            FlatKey::Field(f) => fields.push((f, l.value.clone(), l.value_span.clone())),
            FlatKey::Key(g, kind, i, f) => {
                let kpos = LISTS.iter().position(|(_, k)| *k == kind).unwrap_or(0);
                let slot = (g, kpos, i);
                let idx = match keys.iter().position(|(s, ..)| *s == slot) {
                    Some(p) => p,
                    None => {
                        keys.push((slot, kind, None, None));
                        keys.len() - 1
                    }
                };
                let Some(entry) = keys.get_mut(idx) else {
                    continue;
                };
                if f == "enc" {
                    entry.3 = Some(l.value.clone());
                } else if f == id_field(kind) {
                    entry.2 = Some(l.value.clone());
                }
            }
            FlatKey::Other => {}
        }
    }
    let grouped = keys.iter().any(|((g, ..), ..)| g.is_some());
    if grouped && keys.iter().any(|((g, ..), ..)| g.is_none()) {
        return Err(meta_err("mixes top-level master keys and key groups"));
    }
    // sops sorts flattened keys when it unflattens: groups, lists and indices in order.
    keys.sort_by_key(|(slot, ..)| *slot);
    let ngroups = if grouped {
        keys.iter()
            .filter_map(|((g, ..), ..)| *g)
            .max()
            .map_or(0, |m| m + 1)
    } else {
        1
    };
    let mut groups: Vec<Vec<MasterKey>> = vec![Vec::new(); ngroups];
    for ((g, ..), kind, id, enc) in keys {
        let enc = enc.ok_or(meta_err("has a master key without `enc`"))?;
        if kind == KeyKind::Age && id.is_none() {
            return Err(meta_err("has an age entry without `recipient`"));
        }
        if let Some(group) = groups.get_mut(g.unwrap_or(0)) {
            group.push(MasterKey {
                kind,
                id: id.unwrap_or_default(),
                enc,
            });
        }
    }
    if groups.iter().all(Vec::is_empty) {
        return Err(meta_err("has no master keys"));
    }
    let field = |k: &str| fields.iter().find(|(f, ..)| f == k);
    let get = |k: &str| field(k).map(|(_, v, _)| v.clone());
    let (_, lastmodified, lm_span) = field("lastmodified")
        .cloned()
        .ok_or(meta_err("has no `lastmodified`"))?;
    let (_, mac, mac_span) = field("mac").cloned().ok_or(meta_err("has no `mac`"))?;
    Ok(Metadata {
        threshold: threshold(groups.len(), get("shamir_threshold"))?,
        groups,
        lastmodified,
        lastmodified_spans: vec![lm_span],
        mac,
        mac_spans: vec![mac_span],
        rules: rules(&get)?,
        layout: Layout::Flat { lines, grouped },
    })
}

/// The flattened metadata lines of a dotenv or INI document.
pub(crate) fn flat_lines(text: &[u8], doc: &Doc, ftype: FileType) -> Vec<FlatLine> {
    let Some(Some(root)) = doc.roots.first() else {
        return Vec::new();
    };
    let entries: Vec<(&super::doc::Entry, String)> = match ftype {
        FileType::Dotenv => doc
            .entries(*root)
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e.key.strip_prefix("sops_").map(|p| (e, p.to_string())))
            .collect(),
        _ => doc
            .get(*root, "sops")
            .and_then(|s| doc.entries(s.value))
            .unwrap_or_default()
            .iter()
            .map(|e| (e, e.key.clone()))
            .collect(),
    };
    entries
        .into_iter()
        .filter_map(|(e, path)| {
            let s = doc.scalar(e.value)?;
            let raw = text.get(s.span.clone())?;
            let line_start = super::doc::line_start(text, e.key_span.start);
            let line_end = super::doc::line_end(text, s.span.end.max(e.key_span.end));
            Some(FlatLine {
                path,
                value: String::from_utf8_lossy(&unescape(raw)).into_owned(),
                line: line_start..line_end,
                key_span: e.key_span.clone(),
                value_span: s.span.clone(),
            })
        })
        .collect()
}
