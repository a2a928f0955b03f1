//! A cache entry: the answer exactly as the provider sent it, with the times that decide whether it
//! may be served (`cache::verdict` reads them). Encoded as MessagePack with named fields and a
//! format version checked first.
//!
//! The body is `Bytes`: an entry made from an answer shares the answer's buffer, and an entry
//! decoded with `decode_shared` shares the stored value's, so neither copies the body. Encoding is
//! the one copy on the way to a store (`encode`); `encoded_len` says how large it will be without
//! making it.

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The current encoding. An entry with another format is unreadable (a miss), never misread.
pub const ENTRY_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
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
    pub body: Bytes,
}

/// The encoded form, field for field (names and order are the format: changing either is a new
/// `ENTRY_FORMAT`). Borrows from the entry when writing and from the input when reading.
#[derive(Serialize, Deserialize)]
struct Wire<'a> {
    format: u32,
    created_ms: u64,
    fresh_until_ms: u64,
    stale_until_ms: u64,
    #[serde(borrow)]
    provider: Cow<'a, str>,
    #[serde(borrow)]
    model: Cow<'a, str>,
    #[serde(with = "serde_bytes")]
    body: &'a [u8],
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
    /// A new entry created at `now_ms`, fresh for `fresh_s` and then stale for `stale_s`. Takes
    /// the body as it is (an answer's `Bytes` is shared, not copied).
    pub fn new(now_ms: u64, fresh_s: u64, stale_s: u64, provider: &str, model: &str, body: impl Into<Bytes>) -> Entry {
        let fresh_until_ms = now_ms.saturating_add(fresh_s.saturating_mul(1000));
        Entry {
            format: ENTRY_FORMAT,
            created_ms: now_ms,
            fresh_until_ms,
            stale_until_ms: fresh_until_ms.saturating_add(stale_s.saturating_mul(1000)),
            provider: provider.to_owned(),
            model: model.to_owned(),
            body: body.into(),
        }
    }

    fn wire(&self) -> Wire<'_> {
        Wire {
            format: self.format,
            created_ms: self.created_ms,
            fresh_until_ms: self.fresh_until_ms,
            stale_until_ms: self.stale_until_ms,
            provider: Cow::Borrowed(&self.provider),
            model: Cow::Borrowed(&self.model),
            body: &self.body,
        }
    }

    /// The stored form: the one copy of the body on its way to the stores.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        rmp_serde::encode::write_named(&mut out, &self.wire()).expect("an entry of plain fields always encodes");
        out
    }

    /// The exact length of `encode()`, found without copying the body (what the size limits of
    /// `cache::fit` are checked against).
    pub fn encoded_len(&self) -> usize {
        let mut counter = Counter(0);
        rmp_serde::encode::write_named(&mut counter, &self.wire()).expect("an entry of plain fields always encodes");
        counter.0
    }

    /// Decodes a stored entry, copying its body out of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Entry, EntryError> {
        Entry::read(bytes, Bytes::copy_from_slice)
    }

    /// Decodes a stored entry whose body stays a view into `bytes` (no copy).
    pub fn decode_shared(bytes: Bytes) -> Result<Entry, EntryError> {
        Entry::read(&bytes, |body| bytes.slice_ref(body))
    }

    fn read(bytes: &[u8], body_of: impl FnOnce(&[u8]) -> Bytes) -> Result<Entry, EntryError> {
        let header: Header = rmp_serde::from_slice(bytes).map_err(|e| EntryError::Malformed(e.to_string()))?;
        if header.format != ENTRY_FORMAT {
            return Err(EntryError::UnsupportedFormat { found: header.format });
        }
        let wire: Wire<'_> = rmp_serde::from_slice(bytes).map_err(|e| EntryError::Malformed(e.to_string()))?;
        if wire.fresh_until_ms < wire.created_ms || wire.stale_until_ms < wire.fresh_until_ms {
            return Err(EntryError::BadTimes);
        }
        // They become response headers: anything but visible ASCII was not written by us.
        let printable = |s: &str| s.len() <= 256 && s.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
        if !printable(&wire.provider) || !printable(&wire.model) {
            return Err(EntryError::Malformed("provider or model is not visible ASCII".into()));
        }
        Ok(Entry {
            format: wire.format,
            created_ms: wire.created_ms,
            fresh_until_ms: wire.fresh_until_ms,
            stale_until_ms: wire.stale_until_ms,
            provider: wire.provider.into_owned(),
            model: wire.model.into_owned(),
            body: body_of(wire.body),
        })
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
