//! `.sops.yaml` creation rules, read as `sops updatekeys` reads them: the first rule whose
//! `path_regex` matches the file's path (relative to the directory of the configuration
//! file), or that has no `path_regex`, decides the file's key groups; this module keeps their
//! age recipients (`age:` as a comma-separated string or a list; `key_groups` with `age`
//! lists and `merge`).

use super::SopsError;
use super::doc::{Doc, NodeId};

/// One creation rule.
#[derive(Debug)]
struct Rule {
    path_regex: Option<regex::Regex>,
    /// The age recipients of each key group.
    groups: Vec<Vec<String>>,
}

/// The creation rules of a `.sops.yaml`.
#[derive(Debug)]
pub struct CreationRules {
    rules: Vec<Rule>,
}

fn bad(msg: &'static str) -> SopsError {
    SopsError::Metadata(msg)
}

/// An `age:` field: a comma-separated string, or a list of strings.
fn age_field(doc: &Doc, map: NodeId) -> Result<Vec<String>, SopsError> {
    let Some(e) = doc.get(map, "age") else {
        return Ok(Vec::new());
    };
    if let Some(items) = doc.items(e.value) {
        return items
            .iter()
            .map(|i| {
                doc.str(*i)
                    .map(|s| s.trim().to_string())
                    .ok_or(bad("of .sops.yaml has an age list with a non-string entry"))
            })
            .collect();
    }
    match doc.scalar(e.value) {
        Some(s) if s.value == super::doc::Value::Null => Ok(Vec::new()),
        Some(_) => Ok(doc
            .str(e.value)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()),
        None => Err(bad(
            "of .sops.yaml has an `age` that is neither a string nor a list",
        )),
    }
}

fn group_ages(doc: &Doc, group: NodeId, depth: usize) -> Result<Vec<String>, SopsError> {
    if depth > 16 {
        return Err(bad("of .sops.yaml nests `merge` too deeply"));
    }
    let mut out = Vec::new();
    if let Some(m) = doc.get(group, "merge") {
        for g in doc
            .items(m.value)
            .ok_or(bad("of .sops.yaml has a `merge` that is not a list"))?
        {
            out.extend(group_ages(doc, *g, depth + 1)?);
        }
    }
    out.extend(age_field(doc, group)?);
    let mut seen = std::collections::HashSet::new();
    out.retain(|r| seen.insert(r.clone()));
    Ok(out)
}

impl CreationRules {
    /// Parses a `.sops.yaml`.
    pub fn parse(text: &[u8]) -> Result<CreationRules, SopsError> {
        let text = std::str::from_utf8(text).map_err(|_| SopsError::NotText)?;
        let doc = super::yaml::parse(text)?;
        let root = doc
            .roots
            .first()
            .copied()
            .flatten()
            .ok_or(bad("of .sops.yaml is empty"))?;
        let list = doc
            .get(root, "creation_rules")
            .ok_or(bad("of .sops.yaml has no `creation_rules`"))?;
        let items = doc
            .items(list.value)
            .ok_or(bad("of .sops.yaml has `creation_rules` that is not a list"))?;
        let mut rules = Vec::new();
        for r in items {
            if doc.entries(*r).is_none() {
                return Err(bad(
                    "of .sops.yaml has a creation rule that is not a mapping",
                ));
            }
            let path_regex = match doc.get(*r, "path_regex").and_then(|e| doc.str(e.value)) {
                Some(p) if !p.is_empty() => Some(
                    regex::Regex::new(p)
                        .map_err(|_| bad("of .sops.yaml has a path_regex that does not compile"))?,
                ),
                _ => None,
            };
            let groups = match doc.get(*r, "key_groups").and_then(|e| doc.items(e.value)) {
                Some(gs) if !gs.is_empty() => gs
                    .iter()
                    .map(|g| group_ages(&doc, *g, 0))
                    .collect::<Result<Vec<_>, _>>()?,
                _ => vec![age_field(&doc, *r)?],
            };
            rules.push(Rule { path_regex, groups });
        }
        Ok(CreationRules { rules })
    }

    /// The age recipients of each key group for the file at `relative_path` (relative to the
    /// configuration file's directory, `/`-separated), or `None` if no rule matches.
    pub fn recipients_for(&self, relative_path: &str) -> Option<&[Vec<String>]> {
        self.rules
            .iter()
            .find(|r| {
                r.path_regex
                    .as_ref()
                    .is_none_or(|re| re.is_match(relative_path))
            })
            .map(|r| r.groups.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_in_order() {
        let cfg = br#"
creation_rules:
  - path_regex: prod/.*\.yaml$
    key_groups:
      - age: [age1a, age1b]
      - merge:
          - age: [age1c]
        age:
          - age1d
  - path_regex: \.env$
    age: "age1e, age1f,"
  - age: age1g
"#;
        let rules = CreationRules::parse(cfg).unwrap();
        assert_eq!(
            rules.recipients_for("prod/db.yaml").unwrap(),
            &[
                vec!["age1a".to_string(), "age1b".into()],
                vec!["age1c".into(), "age1d".into()]
            ]
        );
        assert_eq!(
            rules.recipients_for("x/.env").unwrap(),
            &[vec!["age1e".to_string(), "age1f".into()]]
        );
        assert_eq!(
            rules.recipients_for("other").unwrap(),
            &[vec!["age1g".to_string()]]
        );
        let none =
            CreationRules::parse(b"creation_rules:\n  - path_regex: only\n    age: a\n").unwrap();
        assert!(none.recipients_for("other").is_none());
        assert!(CreationRules::parse(b"creation_rules: 3\n").is_err());
    }
}
