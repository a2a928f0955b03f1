//! Gateway keys (each naming a tenant) and admin keys (each naming an admin), read from a JSON
//! object `{"<key>": "<name>"}` and matched by SHA-256 digest in constant time, so neither a
//! comparison's time nor a log line says anything about a key.
//!
//! Must not: keep, print or report a key itself; problems name the variable only.

use std::fmt;

use sha2::{Digest, Sha256};

/// Keys by digest, each with its name (a tenant, or an admin's id).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct KeyRing {
    entries: Vec<([u8; 32], String)>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.entries.iter().map(|(_, n)| n).collect();
        names.sort();
        write!(f, "KeyRing({names:?})")
    }
}

pub(super) fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The value whose key digest is the presented key's. Every stored digest is compared in full,
/// whatever matches, so the time taken does not depend on which key (or how much of one)
/// matched.
pub(super) fn find_digest<'a, T>(entries: &'a [([u8; 32], T)], presented: &str) -> Option<&'a T> {
    let wanted = digest(presented);
    let mut found = None;
    for (d, value) in entries {
        let diff = d.iter().zip(wanted.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 {
            found = Some(value);
        }
    }
    found
}

/// Names: letters, digits, '.', '_' or '-', 1 to 64 of them (they go into cache keys and logs).
pub fn is_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl KeyRing {
    /// The name the presented key belongs to (compared in constant time: `find_digest`).
    pub fn find(&self, presented: &str) -> Option<&str> {
        find_digest(&self.entries, presented).map(String::as_str)
    }

    /// The name as kept here, when some key belongs to `name`.
    pub fn name(&self, name: &str) -> Option<&str> {
        self.entries.iter().map(|(_, n)| n.as_str()).find(|n| *n == name)
    }

    /// Whether some key belongs to `name`.
    pub fn has_name(&self, name: &str) -> bool {
        self.entries.iter().any(|(_, n)| n == name)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a key of this ring is also a key of `other`.
    pub fn shares_a_key_with(&self, other: &KeyRing) -> bool {
        self.entries.iter().any(|(d, _)| other.entries.iter().any(|(o, _)| o == d))
    }

    /// Reads `{"<key>": "<name>"}` from variable `var`. Entries with a short key or a bad name are
    /// dropped and reported (without the key); an unreadable value is reported and gives none.
    pub fn parse(raw: &str, var: &str, min_key_len: usize, what: &str, problems: &mut Vec<String>) -> KeyRing {
        let Ok(map) = serde_json::from_str::<std::collections::BTreeMap<String, String>>(raw) else {
            problems.push(format!("{var} must be a JSON object mapping each key to {what}"));
            return KeyRing::default();
        };
        let (mut short, mut bad_name) = (0, 0);
        let mut entries = Vec::new();
        for (key, name) in map {
            if key.chars().count() < min_key_len {
                short += 1;
            } else if !is_name(&name) {
                bad_name += 1;
            } else {
                entries.push((digest(&key), name));
            }
        }
        if short > 0 {
            problems.push(format!("{var}: {short} key(s) shorter than {min_key_len} characters were ignored"));
        }
        if bad_name > 0 {
            problems.push(format!(
                "{var}: {bad_name} key(s) were ignored: their {what} must be 1 to 64 letters, digits, '.', '_' or '-'"
            ));
        }
        KeyRing { entries }
    }
}
