//! llm-edge-cache: an exact-match LLM response cache and gateway that compiles to one WebAssembly
//! edge function. This file is the module list only; the way of one request is in `gateway`.

pub mod api;
pub mod auth;
pub mod cache;
pub mod coalesce;
pub mod config;
pub mod error;
pub mod gateway;
pub mod limits;
pub mod metrics;
pub mod ports;
pub mod prices;
pub mod providers;
pub mod routing;
pub mod stores;

/// In-memory ports and a manual clock for host tests of the core. Never compiled into the wasm build.
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

#[cfg(any(
    all(feature = "cloudflare", target_arch = "wasm32", target_os = "unknown"),
    all(feature = "spin", target_os = "wasi")
))]
mod adapters;
