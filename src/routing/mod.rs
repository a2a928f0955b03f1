//! Which providers answer a model, in what order, and when to give up on one: the route table,
//! weighted ordering, retry backoff, cool-downs and circuit breakers. Pure state machines and
//! decisions; the gateway does the sending and the adapters keep the state.

pub mod backoff;
pub mod breaker;
pub mod health;
pub mod select;
pub mod table;
