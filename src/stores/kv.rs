//! Tier 1: entries in the host's edge key-value store, through the `Kv` port.
//!
//! Limits of the store (key and value size, the shortest TTL it accepts) come from the port and
//! are checked before a write (the value's through `cache::fit`, as the gateway checked it), so an
//! oversize entry is skipped and reported, never sent. A store without TTL (Spin) is swept now
//! and then (`sweep`), so entries that are never read again do not stay forever.

use bytes::Bytes;

use crate::cache::entry::Entry;
use crate::cache::fit::{self, Place};
use crate::cache::key::CacheKey;
use crate::cache::verdict::{self, Freshness};
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

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub examined: usize,
    pub deleted: usize,
}

/// One in this many tier-1 writes on a store without TTL sweeps (`sweep`).
pub const SWEEP_ONE_WRITE_IN: u64 = 32;
/// Entries a sweep examines: twice `SWEEP_ONE_WRITE_IN`, so that every write examines two entries
/// on average. In a steady state a sweep deletes one entry per write once half of what it
/// examines is past its stale window, so the store holds at most about twice its live entries.
pub const SWEEP_EXAMINES: usize = 64;

/// Deletes entries past their stale window (and unreadable ones) among the `SWEEP_EXAMINES`
/// entry keys that follow `start` (wrapping to the first keys), for a store without TTL (Spin):
/// without it, an entry that is never read again would stay forever. `start` should be random
/// (keys are hex digests, so any start is a fair sample). Errors end the sweep early: fail open.
pub async fn sweep<H: Kv + Clock>(host: &H, start: &str, timeout_ms: u64) -> Swept {
    let mut swept = Swept::default();
    let mut keys = match with_timeout(host, timeout_ms, host.kv_keys_after(start, SWEEP_EXAMINES)).await {
        Some(Ok(keys)) => keys,
        _ => return swept,
    };
    if keys.len() < SWEEP_EXAMINES {
        let rest = SWEEP_EXAMINES - keys.len();
        if let Some(Ok(more)) = with_timeout(host, timeout_ms, host.kv_keys_after("", rest)).await {
            keys.extend(more.into_iter().filter(|k| k.as_str() <= start));
        }
    }
    for key in keys.into_iter().filter(|k| CacheKey::is_entry_key(k)) {
        swept.examined += 1;
        let expired = match with_timeout(host, timeout_ms, host.kv_get(&key)).await {
            Some(Ok(Some(bytes))) => {
                Entry::decode(&bytes).map_or(true, |e| verdict::freshness(&e, host.now_ms()) == Freshness::Expired)
            }
            Some(Ok(None)) => false,
            _ => return swept,
        };
        if expired {
            match with_timeout(host, timeout_ms, host.kv_delete(&key)).await {
                Some(Ok(())) => swept.deleted += 1,
                _ => return swept,
            }
        }
    }
    swept
}

/// Removes an entry (expired entries on a store without TTL).
pub async fn delete<H: Kv + Clock>(host: &H, key: &CacheKey, timeout_ms: u64) -> Result<(), StoreError> {
    match with_timeout(host, timeout_ms, host.kv_delete(key.as_str())).await {
        None => Err(err("delete", StoreErrorKind::Timeout)),
        Some(Err(e)) => Err(err("delete", StoreErrorKind::Unavailable(e.to_string()))),
        Some(Ok(())) => Ok(()),
    }
}
