//! A cache entry: the answer exactly as the provider sent it, with the times that decide whether it
//! may be served (`cache::verdict` reads them, on every read: Spin KV has no TTL and Workers KV
//! TTLs have a 60 s minimum, so a store's expiry is only a clean-up, never the source of truth).
//! Encoded as MessagePack with named fields and a format version checked first; `encoded_len`
//! says how large the encoding is without making it.

use serde::{Deserialize, Serialize};

/// The current encoding. An entry with another format is unreadable (a miss), never misread.
pub const ENTRY_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub format: u32,
    pub created_ms: u64,
    /// Until then the entry answers requests as a hit.
    pub fresh_until_ms: u64,
    /// Until then it may still answer when no provider can (stale-if-error).
    pub stale_until_ms: u64,
    /// The provider and model that produced the answer.
    pub provider: String,
    pub model: String,
    /// The response body, byte for byte as the provider sent it.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// Only the version, read before anything else so a new layout is rejected by number, not by
/// luck of field names.
#[derive(Deserialize)]
struct Header {
    format: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("not a MessagePack entry: {0}")]
    Malformed(String),
    #[error("entry format {found} is not the supported format {ENTRY_FORMAT}")]
    UnsupportedFormat { found: u32 },
    #[error("entry times are inconsistent")]
    BadTimes,
}

impl Entry {
    /// A new entry created at `now_ms`, fresh for `fresh_s` and then stale for `stale_s`.
    pub fn new(now_ms: u64, fresh_s: u64, stale_s: u64, provider: &str, model: &str, body: Vec<u8>) -> Entry {
        let fresh_until_ms = now_ms.saturating_add(fresh_s.saturating_mul(1000));
        Entry {
            format: ENTRY_FORMAT,
            created_ms: now_ms,
            fresh_until_ms,
            stale_until_ms: fresh_until_ms.saturating_add(stale_s.saturating_mul(1000)),
            provider: provider.to_owned(),
            model: model.to_owned(),
            body,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("an entry of plain fields always encodes")
    }

    /// The exact length of `encode()`, found without copying the body (what the size limits of
    /// `cache::fit` are checked against).
    pub fn encoded_len(&self) -> usize {
        let mut counter = Counter(0);
        rmp_serde::encode::write_named(&mut counter, self).expect("an entry of plain fields always encodes");
        counter.0
    }

    pub fn decode(bytes: &[u8]) -> Result<Entry, EntryError> {
        let header: Header = rmp_serde::from_slice(bytes).map_err(|e| EntryError::Malformed(e.to_string()))?;
        if header.format != ENTRY_FORMAT {
            return Err(EntryError::UnsupportedFormat { found: header.format });
        }
        let entry: Entry = rmp_serde::from_slice(bytes).map_err(|e| EntryError::Malformed(e.to_string()))?;
        if entry.fresh_until_ms < entry.created_ms || entry.stale_until_ms < entry.fresh_until_ms {
            return Err(EntryError::BadTimes);
        }
        // They become response headers: anything but visible ASCII was not written by us.
        let printable = |s: &str| s.len() <= 256 && s.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
        if !printable(&entry.provider) || !printable(&entry.model) {
            return Err(EntryError::Malformed("provider or model is not visible ASCII".into()));
        }
        Ok(entry)
    }

    /// Whole seconds since the answer was produced (the `Age` header).
    pub fn age_s(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.created_ms) / 1000
    }
}

/// Counts what would be written.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
