//! The `Kv` port over a Workers KV namespace binding. Workers KV limits: keys up to 512 bytes,
//! values up to 25 MiB, TTLs of at least 60 s (the core raises shorter ones; expiry on read is
//! decided from the entry itself).

use bytes::Bytes;

use super::CfHost;
use crate::ports::{Kv, KvLimits, PortError};

const LIMITS: KvLimits = KvLimits { max_key_bytes: 512, max_value_bytes: 25 << 20, min_ttl_seconds: Some(60) };

impl CfHost {
    fn store(&self) -> Result<worker::kv::KvStore, PortError> {
        self.inner
            .env
            .kv(&self.inner.kv_binding)
            .map_err(|_| PortError::Unavailable(format!("KV binding '{}' is not bound", self.inner.kv_binding)))
    }
}

impl Kv for CfHost {
    fn kv_limits(&self) -> KvLimits {
        LIMITS
    }

    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError> {
        self.store()?.get(key).bytes().await.map_err(|e| PortError::Failed(e.to_string()))
    }

    async fn kv_put(&self, key: &str, value: Bytes, ttl_seconds: Option<u64>) -> Result<(), PortError> {
        let mut put = self.store()?.put_bytes(key, &value).map_err(|e| PortError::Failed(e.to_string()))?;
        if let Some(ttl) = ttl_seconds {
            put = put.expiration_ttl(ttl);
        }
        put.execute().await.map_err(|e| PortError::Failed(e.to_string()))
    }

    async fn kv_delete(&self, key: &str) -> Result<(), PortError> {
        self.store()?.delete(key).await.map_err(|e| PortError::Failed(e.to_string()))
    }

    /// Workers KV expires entries itself (every write has a TTL): it is never swept.
    async fn kv_keys_after(&self, _after: &str, _limit: usize) -> Result<Vec<String>, PortError> {
        Ok(Vec::new())
    }
}
