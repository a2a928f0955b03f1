//! The Fermyon Spin adapter (spin-sdk 7, WASIp3): implements the ports over Spin's key-value
//! store, variables and outbound HTTP, and converts requests and responses at the boundary.
//! No decisions here. Each port is in a file of the same name as in the Cloudflare adapter.
//!
//! Host gaps, handled where they occur: Spin's KV has no TTL (kv.rs: expiry lives in the entry,
//! and the core deletes expired entries it finds); Spin variables are read asynchronously and
//! only when declared (vars.rs: fetched once per request, up front); an instance serves one
//! request, so instance memory does not outlive it (memory.rs: breaker state comes from Redis).

mod background;
mod clock;
mod entry;
mod http;
mod kv;
mod log;
mod memory;
mod random;
mod vars;

use std::cell::RefCell;
use std::rc::Rc;

/// The ports of one Spin request. Clones share the opened store, so a background task can own one.
#[derive(Clone, Default)]
pub struct SpinHost {
    /// The default store, opened on first use.
    store: Rc<RefCell<Option<Rc<spin_sdk::key_value::Store>>>>,
}
