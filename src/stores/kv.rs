//! Tier 1: entries in the host's edge key-value store, through the `Kv` port.
//!
//! Limits of the store (key and value size, the shortest TTL it accepts) come from the port and
//! are checked before a write (the value's through `cache::fit`, as the gateway checked it), so an
//! oversize entry is skipped and reported, never sent.

use bytes::Bytes;

use crate::cache::entry::Entry;
use crate::cache::fit::{self, Place};
use crate::cache::key::CacheKey;
use crate::cache::verdict;
use crate::error::{StoreError, StoreErrorKind, Tier};
use crate::ports::{with_timeout, Clock, Kv};

fn err(op: &'static str, kind: StoreErrorKind) -> StoreError {
    StoreError { tier: Tier::EdgeKv, op, kind }
}

/// Reads and decodes the entry under `key`; garbage is an error (a miss for the caller). The
/// entry's body is a view into the value read, not a copy.
pub async fn get<H: Kv + Clock>(host: &H, key: &CacheKey, timeout_ms: u64) -> Result<Option<Entry>, StoreError> {
    match with_timeout(host, timeout_ms, host.kv_get(key.as_str())).await {
        None => Err(err("get", StoreErrorKind::Timeout)),
        Some(Err(e)) => Err(err("get", StoreErrorKind::Unavailable(e.to_string()))),
        Some(Ok(None)) => Ok(None),
        Some(Ok(Some(bytes))) => Entry::decode_shared(Bytes::from(bytes))
            .map(Some)
            .map_err(|e| err("get", StoreErrorKind::Garbage(e.to_string()))),
    }
}

/// Writes an encoded entry (shared with the tier-2 write, never copied here). Its store TTL is
/// the entry's remaining life (stale window included), raised to the store's minimum where it
/// has one; expiry on read stays the source of truth.
pub async fn put<H: Kv + Clock>(
    host: &H,
    key: &CacheKey,
    entry: &Entry,
    encoded: Bytes,
    timeout_ms: u64,
) -> Result<(), StoreError> {
    let limits = host.kv_limits();
    if key.as_str().len() > limits.max_key_bytes {
        return Err(err("put", StoreErrorKind::TooLarge { size: key.as_str().len(), limit: limits.max_key_bytes }));
    }
    if let Err(e) = fit::fits(encoded.len(), Place::EdgeKv(limits)) {
        return Err(err("put", StoreErrorKind::TooLarge { size: e.size, limit: e.limit }));
    }
    let ttl = limits.min_ttl_seconds.map(|min| verdict::store_ttl_ms(entry, host.now_ms()).div_ceil(1000).max(min));
    match with_timeout(host, timeout_ms, host.kv_put(key.as_str(), encoded, ttl)).await {
        None => Err(err("put", StoreErrorKind::Timeout)),
        Some(Err(e)) => Err(err("put", StoreErrorKind::Unavailable(e.to_string()))),
        Some(Ok(())) => Ok(()),
    }
}

/// Removes an entry (expired entries on a store without TTL).
pub async fn delete<H: Kv + Clock>(host: &H, key: &CacheKey, timeout_ms: u64) -> Result<(), StoreError> {
    match with_timeout(host, timeout_ms, host.kv_delete(key.as_str())).await {
        None => Err(err("delete", StoreErrorKind::Timeout)),
        Some(Err(e)) => Err(err("delete", StoreErrorKind::Unavailable(e.to_string()))),
        Some(Ok(())) => Ok(()),
    }
}
