//! Host-only tools for local runs and tests of llm-edge-cache: a real `redis-server`
//! process, an Upstash-REST-compatible endpoint over it, a scriptable fake LLM upstream,
//! and a tiny blocking HTTP client to drive them.
//!
//! ```no_run
//! use devstack::{spawn_upstash, spawn_upstream, RedisServer};
//! use serde_json::json;
//!
//! let redis = RedisServer::start().expect("redis-server");
//! let upstash = spawn_upstash(redis.addr(), "token"); // upstash.url(), upstash.token()
//! let upstream = spawn_upstream(); // upstream.url() + "/v1/chat/completions"
//! upstream.add_rule("my-marker", json!([{"kind": "status", "status": 429}]), false);
//! // ... drive the gateway, then:
//! assert_eq!(upstream.calls("my-marker"), 1);
//! ```
//!
//! Binaries (for local runs): `cargo run -p devstack --bin upstash-rest -- --listen
//! 127.0.0.1:8079 --redis 127.0.0.1:6379 --token TOKEN` and `cargo run -p devstack --bin
//! fake-upstream -- --listen 127.0.0.1:8089`; each prints `<name> listening on http://ADDR`.
//!
//! Nothing here may ever be a dependency of the wasm package: it uses processes, sockets,
//! threads and tokio. Module list and re-exports only.

pub mod http_client;
pub mod http_server;
pub mod minilm;
pub mod node;
pub mod process;
pub mod redis_client;
pub mod redis_server;
pub mod spin;
pub mod stack;
pub mod upstash;
pub mod upstream;
pub mod urlcodec;
pub mod vector;
pub mod worker;

pub use http_client::{HttpClientError, HttpRequest, HttpResponse};
pub use redis_server::{RedisServer, RedisServerError};
pub use upstash::{spawn_upstash, try_spawn_upstash, try_spawn_upstash_with, UpstashHandle, UpstashOptions};
pub use upstream::{spawn_upstream, try_spawn_upstream, UpstreamHandle};
