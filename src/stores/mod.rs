//! The two cache tiers as the gateway sees them: get an entry, put an entry, each bounded by a
//! timeout and reporting failures as `StoreError` (which the gateway treats as a miss).

pub mod kv;
pub mod upstash;
