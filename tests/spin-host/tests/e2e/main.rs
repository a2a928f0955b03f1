//! End-to-end tests of spin-host: a real spin-sdk 7 guest (built from `guest/`) served on
//! 127.0.0.1, checked capability by capability. One test binary (linking wasmtime is slow), one
//! module per capability. Every host, upstream and client here is loopback-only and time-bounded.

mod cli;
mod inbound;
mod kv;
mod outbound;
mod reuse;
mod startup;
mod support;
mod tcp;
mod variables;
