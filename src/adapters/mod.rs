//! Host adapters: each implements the ports for one host and converts requests and responses at
//! its boundary. Nothing else: every decision lives in the core.

#[cfg(all(feature = "cloudflare", target_arch = "wasm32", target_os = "unknown"))]
mod cloudflare;

#[cfg(all(feature = "spin", target_os = "wasi"))]
mod spin;
