//! The stores as the gateway sees them: tier 1 (the edge KV), and Redis (tier 2 entries and the
//! shared state of every isolate), each call bounded by a timeout and reporting failures as
//! `StoreError` (which the gateway treats as a miss: fail open).

pub mod kv;
pub mod redis;
pub mod upstash;
