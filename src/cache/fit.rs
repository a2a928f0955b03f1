//! Whether an entry fits where it is to be stored: the one place that compares an entry's size
//! with a limit. The size is always the encoded one (`Entry::encoded_len`), which is what a store
//! holds. The gateway asks before it promises a write or a backfill; the stores ask again before
//! they send, with the same answer.
//!
//! Pure: no IO. Must not: be bypassed by a size check of its own anywhere else.

use crate::ports::KvLimits;
use crate::stores::upstash::MAX_REQUEST_BYTES;

/// An entry over a limit: both in bytes of the encoded entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    pub size: usize,
    pub limit: usize,
}

/// Where an entry is to be stored, with what bounds its size there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Any tier: the operator's `MAX_ENTRY_BYTES`. A larger entry is stored nowhere.
    Cache { max_entry_bytes: usize },
    /// Tier 1: the host's KV value limit.
    EdgeKv(KvLimits),
    /// Tier 2: one Upstash request carries the entry in base64, with its Redis key (of
    /// `key_bytes`) and the rest of the `SET` command.
    Redis { key_bytes: usize },
}

/// Room a `SET` command takes besides its key and value: `["SET","","","PX",""]` and a TTL of
/// up to 20 digits, rounded up.
const SET_ENVELOPE: usize = 64;

/// Room a `GET` reply takes besides the value (`{"result":""}`), with a margin for entries whose
/// fields came on top of a body bounded by `MAX_ENTRY_BYTES` (the rule of earlier releases).
const GET_ENVELOPE: usize = 4 << 10;

impl Place {
    /// The largest encoded entry this place takes.
    pub fn max_encoded(self) -> usize {
        match self {
            Place::Cache { max_entry_bytes } => max_entry_bytes,
            Place::EdgeKv(limits) => limits.max_value_bytes,
            // base64 of n bytes is 4 * ceil(n / 3) long.
            Place::Redis { key_bytes } => MAX_REQUEST_BYTES.saturating_sub(key_bytes + SET_ENVELOPE) / 4 * 3,
        }
    }
}

/// Whether an entry of `encoded_len` bytes fits `place`.
pub fn fits(encoded_len: usize, place: Place) -> Result<(), TooLarge> {
    let limit = place.max_encoded();
    if encoded_len <= limit {
        Ok(())
    } else {
        Err(TooLarge { size: encoded_len, limit })
    }
}

/// The length of `n` bytes in base64, padding included.
pub fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// The largest reply a `GET` of an entry may need when entries are at most `max_entry_bytes`.
pub fn redis_reply_limit(max_entry_bytes: usize) -> usize {
    base64_len(max_entry_bytes) + GET_ENVELOPE
}
