//! The `Kv` port over Spin's `default` key-value store. Limits of the default store: keys up to
//! 256 bytes, values up to 1 MiB; it has no TTL, so `min_ttl_seconds` is `None` and expiry lives
//! in the entry (the core deletes expired entries it reads). Entries over the value limit are
//! skipped by the core before a write and logged, never sent.

use std::rc::Rc;

use bytes::Bytes;
use spin_sdk::key_value::Store;

use super::SpinHost;
use crate::ports::{Kv, KvLimits, PortError};

const LIMITS: KvLimits = KvLimits { max_key_bytes: 256, max_value_bytes: 1 << 20, min_ttl_seconds: None };

impl SpinHost {
    async fn store(&self) -> Result<Rc<Store>, PortError> {
        if let Some(store) = self.store.borrow().as_ref() {
            return Ok(store.clone());
        }
        let store = Rc::new(
            Store::open_default().await.map_err(|e| PortError::Unavailable(format!("the default store: {e:?}")))?,
        );
        *self.store.borrow_mut() = Some(store.clone());
        Ok(store)
    }
}

impl Kv for SpinHost {
    fn kv_limits(&self) -> KvLimits {
        LIMITS
    }

    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError> {
        self.store().await?.get(key).await.map_err(|e| PortError::Failed(format!("{e:?}")))
    }

    /// Spin has no TTL: `_ttl_seconds` is always `None` here (see `LIMITS`).
    async fn kv_put(&self, key: &str, value: Bytes, _ttl_seconds: Option<u64>) -> Result<(), PortError> {
        self.store().await?.set(key, value).await.map_err(|e| PortError::Failed(format!("{e:?}")))
    }

    async fn kv_delete(&self, key: &str) -> Result<(), PortError> {
        self.store().await?.delete(key).await.map_err(|e| PortError::Failed(format!("{e:?}")))
    }

    /// Spin lists every key of a store, unordered: keep the `limit` smallest after `after`.
    async fn kv_keys_after(&self, after: &str, limit: usize) -> Result<Vec<String>, PortError> {
        let mut keys = self.store().await?.get_keys().await;
        let mut kept = std::collections::BTreeSet::new();
        while let Some(key) = keys.next().await {
            if key.as_str() > after {
                kept.insert(key);
                if kept.len() > limit {
                    kept.pop_last();
                }
            }
        }
        keys.result().await.map_err(|e| PortError::Failed(format!("{e:?}")))?;
        Ok(kept.into_iter().collect())
    }
}
