//! spin-host: runs a Spin 4 application (WASIp3 `wasi:http/handler@0.3.0` components built with
//! spin-sdk 7) the way `spin up` would, for local runs and end-to-end tests, because neither the
//! `spin` CLI nor Spin's runtime crates can be installed here.
//!
//! Host-only: never a dependency of the Wasm package. Library API for tests:
//!
//! ```ignore
//! let host = spin_host::spawn(spin_host::Options::new("spin.toml")).expect("host starts");
//! println!("{}", host.url()); // http://127.0.0.1:PORT; dropping `host` shuts it down
//! ```
//!
//! Module map: `manifest` (spin.toml subset), `routes` (route matching), `variables`
//! (spin:variables), `kv` (spin:key-value over SQLite), `outbound` (allow-list for wasi:http),
//! `runtime` (wasmtime engine, components, execution of a request), `instances` (instance reuse
//! as Spin does it, post-response work, response bodies), `reuse` (the reuse settings and their
//! `spin up` syntax), `server` (HTTP, spin-* headers, TCP options, spawn/shutdown), `bindings`
//! (generated from `wit/`).

pub mod bindings;
pub mod error;
pub(crate) mod instances;
pub mod kv;
pub mod manifest;
pub mod outbound;
pub mod reuse;
pub mod routes;
pub mod runtime;
pub mod server;
pub mod variables;

pub use error::Error;
pub use kv::KvBackend;
pub use manifest::Manifest;
pub use reuse::InstanceReuse;
pub use server::{Options, Server, SpinHostHandle, spawn, start};
