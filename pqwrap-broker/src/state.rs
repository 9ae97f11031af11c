//! What the broker knows, rebuilt from the journal at start: issued tokens (with their
//! status-list index, ancestors and children), revocations, quota use and signing keys.

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pqwrap_core::token::keys::hex_lower;
use pqwrap_core::token::status::{Bits, Status, StatusList};
use pqwrap_core::token::{Cti, Issuer, Kid, SigningKey};

use crate::journal::Record;

/// Entries added to the status list at a time (1 KiB of one-bit entries): the published list
/// grows, and is republished, once per this many issued tokens.
pub const LIST_CHUNK: u64 = 8192;

/// An issued token, as the broker remembers it.
#[derive(Clone, Debug)]
pub struct TokenInfo {
    /// Status-list index.
    pub idx: u64,
    /// Agent session.
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// Expiry.
    pub exp: u64,
    /// Ancestors, root first.
    pub ancestors: Vec<Cti>,
    /// Tokens narrowed from it.
    pub children: Vec<Cti>,
    /// maxJobs, if it may submit quantum jobs.
    pub jobs_max: Option<u64>,
    /// Jobs charged to it (its own and its descendants').
    pub jobs_used: u64,
    /// Shots charged to it.
    pub shots_used: u64,
    /// Runtime charged to it, seconds.
    pub runtime_used: u64,
}

/// A signing key.
pub struct KeyEntry {
    /// 0 for the key given with `--key`, else the rotation's number (`keys/<seq>.jwk`).
    pub seq: u64,
    /// Signs with it.
    pub issuer: Arc<Issuer>,
    /// Latest expiry of a token it signed (0: none yet).
    pub last_exp: u64,
}

impl KeyEntry {
    /// Its kid.
    pub fn kid(&self) -> Kid {
        *self.issuer.key().public_key().kid()
    }
}

/// The broker's state.
pub struct State {
    /// Next status-list index.
    pub next_idx: u64,
    /// Issued tokens.
    pub tokens: HashMap<Cti, TokenInfo>,
    /// Revoked ctis (also of tokens this broker does not know).
    pub revoked: HashSet<Cti>,
    /// Revoked agent sessions.
    pub revoked_agents: HashSet<String>,
    /// The status list (all issued indices).
    pub list: StatusList,
    /// Signing keys, oldest first; the last signs.
    pub keys: Vec<KeyEntry>,
}

/// Parses a hex cti.
pub fn parse_cti(s: &str) -> Option<Cti> {
    if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Why state could not be rebuilt.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A record names something malformed.
    #[error("journal record {n}: {what}")]
    Record {
        /// 1-based.
        n: usize,
        /// What.
        what: String,
    },
    /// A rotated key file is missing or unreadable.
    #[error("key file {path}: {what}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What.
        what: String,
    },
    /// The status list is full.
    #[error("the status list is full ({0} tokens): start a new state directory")]
    Full(u64),
}

impl State {
    /// Rebuilds the state from `records`, with `key` as key 0 and rotated keys from
    /// `keys_dir`.
    pub fn replay(
        key: SigningKey,
        keys_dir: &Path,
        records: &[Record],
    ) -> Result<State, StateError> {
        let mut s = State {
            next_idx: 0,
            tokens: HashMap::new(),
            revoked: HashSet::new(),
            revoked_agents: HashSet::new(),
            list: StatusList::new(Bits::One, LIST_CHUNK).map_err(|e| StateError::Record {
                n: 0,
                what: e.to_string(),
            })?,
            keys: vec![KeyEntry {
                seq: 0,
                issuer: Arc::new(Issuer::new(key)),
                last_exp: 0,
            }],
        };
        for (i, r) in records.iter().enumerate() {
            s.apply(r, keys_dir).map_err(|what| match what {
                ApplyError::Key(path, what) => StateError::Key { path, what },
                ApplyError::Other(what) => StateError::Record { n: i + 1, what },
            })?;
        }
        Ok(s)
    }

    /// Applies one record (at replay, and live for records whose effect is not applied
    /// before they are committed).
    pub fn apply(&mut self, r: &Record, keys_dir: &Path) -> Result<(), ApplyError> {
        let cti = |s: &str| parse_cti(s).ok_or_else(|| ApplyError::Other(format!("bad cti {s:?}")));
        match r {
            Record::Issued {
                cti: c,
                idx,
                sub,
                aud,
                exp,
                kid,
                ancestors,
                jobs_max,
            } => {
                let c = cti(c)?;
                let ancestors = ancestors
                    .iter()
                    .map(|a| cti(a))
                    .collect::<Result<Vec<_>, _>>()?;
                self.insert_issued(
                    c,
                    TokenInfo {
                        idx: *idx,
                        sub: sub.clone(),
                        aud: aud.clone(),
                        exp: *exp,
                        ancestors,
                        children: Vec::new(),
                        jobs_max: *jobs_max,
                        jobs_used: 0,
                        shots_used: 0,
                        runtime_used: 0,
                    },
                    kid,
                )
                .map_err(|e| ApplyError::Other(e.to_string()))?;
            }
            Record::Revoked { ctis } => {
                for c in ctis {
                    let c = cti(c)?;
                    self.mark_revoked(c);
                }
            }
            Record::AgentRevoked { agent } => {
                self.revoked_agents.insert(agent.clone());
            }
            Record::Consumed {
                chain,
                shots,
                runtime_secs,
            } => {
                for c in chain {
                    let c = cti(c)?;
                    if let Some(t) = self.tokens.get_mut(&c) {
                        t.jobs_used += 1;
                        t.shots_used = t.shots_used.saturating_add(*shots);
                        t.runtime_used = t.runtime_used.saturating_add(*runtime_secs);
                    }
                }
            }
            Record::KeyAdded { seq, kid } => {
                let path = keys_dir.join(format!("{seq}.jwk"));
                let key = load_key(&path).map_err(|w| ApplyError::Key(path.clone(), w))?;
                if hex_lower(key.public_key().kid()) != *kid {
                    return Err(ApplyError::Key(path, format!("is not key {kid}")));
                }
                self.keys.push(KeyEntry {
                    seq: *seq,
                    issuer: Arc::new(Issuer::new(key)),
                    last_exp: 0,
                });
            }
            Record::KeyRetired { seq } => {
                if self.keys.len() > 1 {
                    self.keys.retain(|k| k.seq != *seq);
                }
            }
        }
        Ok(())
    }

    /// Records an issued token: index, parent's child list, key's last expiry; a token whose
    /// ancestor is revoked is revoked at once.
    pub fn insert_issued(
        &mut self,
        c: Cti,
        info: TokenInfo,
        kid_hex: &str,
    ) -> Result<(), StateError> {
        let idx = info.idx;
        if idx >= self.list.len() {
            let want = (idx / LIST_CHUNK + 1) * LIST_CHUNK;
            self.list
                .grow_to(want)
                .map_err(|_| StateError::Full(StatusList::capacity_limit(Bits::One)))?;
        }
        self.next_idx = self.next_idx.max(idx + 1);
        if let Some(k) = self
            .keys
            .iter_mut()
            .find(|k| hex_lower(&k.kid()) == kid_hex)
        {
            k.last_exp = k.last_exp.max(info.exp);
        }
        if let Some(p) = info.ancestors.last()
            && let Some(pi) = self.tokens.get_mut(p)
        {
            pi.children.push(c);
        }
        let ancestor_revoked = info.ancestors.iter().any(|a| self.revoked.contains(a));
        let agent_revoked = self.revoked_agents.contains(&info.sub);
        self.tokens.insert(c, info);
        if ancestor_revoked || agent_revoked || self.revoked.contains(&c) {
            self.mark_revoked(c);
        }
        Ok(())
    }

    /// Allocates the next status-list index (growing the list if needed).
    pub fn allocate_idx(&mut self) -> Result<u64, StateError> {
        let idx = self.next_idx;
        if idx >= StatusList::capacity_limit(Bits::One) {
            return Err(StateError::Full(idx));
        }
        Ok(idx)
    }

    /// Revokes `c` in memory (and its status entry, if it has one).
    pub fn mark_revoked(&mut self, c: Cti) {
        self.revoked.insert(c);
        if let Some(t) = self.tokens.get(&c) {
            let _ = self.list.set(t.idx, Status::Invalid);
        }
    }

    /// `c` and every token narrowed from it, transitively.
    pub fn with_descendants(&self, c: Cti) -> Vec<Cti> {
        let mut out = vec![c];
        let mut i = 0;
        while let Some(x) = out.get(i).copied() {
            if let Some(t) = self.tokens.get(&x) {
                for ch in &t.children {
                    if !out.contains(ch) {
                        out.push(*ch);
                    }
                }
            }
            i += 1;
        }
        out
    }

    /// Every token of agent session `agent`, and their descendants.
    pub fn of_agent(&self, agent: &str) -> Vec<Cti> {
        let mut out: Vec<Cti> = Vec::new();
        let mut roots: Vec<Cti> = self
            .tokens
            .iter()
            .filter(|(_, t)| t.sub == agent)
            .map(|(c, _)| *c)
            .collect();
        roots.sort();
        for r in roots {
            for c in self.with_descendants(r) {
                if !out.contains(&c) {
                    out.push(c);
                }
            }
        }
        out
    }

    /// Whether `c` or any of its ancestors is revoked.
    pub fn is_revoked(&self, c: &Cti, ancestors: &[Cti]) -> bool {
        self.revoked.contains(c) || ancestors.iter().any(|a| self.revoked.contains(a))
    }

    /// The key that signs new tokens.
    pub fn current(&self) -> &KeyEntry {
        // There is always key 0 or a later one: retirement never removes the last key.
        &self.keys[self.keys.len() - 1]
    }
}

/// Why a record could not be applied.
#[derive(Debug)]
pub enum ApplyError {
    /// A key file.
    Key(PathBuf, String),
    /// Anything else.
    Other(String),
}

/// Loads a private JWK key file.
pub fn load_key(path: &Path) -> Result<SigningKey, String> {
    use std::io::Read;
    let mut text = zeroize::Zeroizing::new(String::new());
    std::fs::File::open(path)
        .and_then(|f| f.take(1 << 20).read_to_string(&mut text))
        .map_err(|e| format!("cannot read: {e}"))?;
    SigningKey::from_jwk_private(&text).map_err(|e| e.to_string())
}

/// Writes `bytes` to `path` atomically and durably: a temporary file in the same directory
/// with `mode`, synced, renamed over `path`, then the directory synced.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let mut rnd = [0u8; 8];
    getrandom::fill(&mut rnd).map_err(|e| std::io::Error::other(e.to_string()))?;
    let tmp = dir.join(format!(".{name}.{}.tmp", hex_lower(&rnd)));
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}
