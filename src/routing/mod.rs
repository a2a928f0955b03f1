//! Which providers answer a model, in what order, and when to give up on one: the route table,
//! weighted ordering, retry backoff, cool-downs, circuit breakers (and what isolates share of them)
//! and the failover of one request.
//! Pure state machines and decisions; the gateway does the sending and the adapters keep the state.

pub mod backoff;
pub mod breaker;
pub mod failover;
pub mod health;
pub mod pacing;
pub mod select;
pub mod sharing;
pub mod table;
