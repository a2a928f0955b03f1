//! The end-to-end suite: every scenario against the built worker in real workerd (`wrangler
//! dev`), with a real redis-server behind the Upstash-compatible REST endpoint and the scriptable
//! upstream. Run by `cargo test --test e2e` after the worker is built (`npm test` does both).
//!
//! A custom runner (no libtest): one shared stack is started once for the scenarios that can
//! share it (each uses its own marker string, so upstream call counts stay exact), scenarios that
//! break a part (stop Redis, unbind KV, shorten TTLs) start a stack of their own, and everything
//! is stopped before the summary line. Scenarios run in parallel; the run is bounded in time.
//! Each scenario runs once per host (`Host`), so a second host is a new variant, not a copy.

#[cfg(not(target_arch = "wasm32"))]
mod admin;
#[cfg(not(target_arch = "wasm32"))]
mod browser;
#[cfg(not(target_arch = "wasm32"))]
mod budget;
#[cfg(not(target_arch = "wasm32"))]
mod cache;
#[cfg(not(target_arch = "wasm32"))]
mod client;
#[cfg(not(target_arch = "wasm32"))]
mod coalesce;
#[cfg(not(target_arch = "wasm32"))]
mod embeddings;
#[cfg(not(target_arch = "wasm32"))]
mod failopen;
#[cfg(not(target_arch = "wasm32"))]
mod guard;
#[cfg(not(target_arch = "wasm32"))]
mod input;
#[cfg(not(target_arch = "wasm32"))]
mod observe;
#[cfg(not(target_arch = "wasm32"))]
mod pacing;
#[cfg(not(target_arch = "wasm32"))]
mod parity;
#[cfg(not(target_arch = "wasm32"))]
mod routing;
#[cfg(not(target_arch = "wasm32"))]
mod runner;
#[cfg(not(target_arch = "wasm32"))]
mod streams;
#[cfg(not(target_arch = "wasm32"))]
mod upstream;

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    runner::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {}
