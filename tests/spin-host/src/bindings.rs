//! Host bindings generated from the vendored Spin WIT (`wit/`): `spin:key-value@3.0.0` and
//! `spin:variables@3.0.0`. Generated code only; the implementations live in `kv.rs` and
//! `variables.rs`. WASI and `wasi:http` bindings come from wasmtime-wasi(-http), not from here.

#![allow(missing_docs, reason = "generated code")]

wasmtime::component::bindgen!({
    path: "wit",
    world: "spin-host:host/spin-imports",
    // WIT `async func`s get `async | store` by default; `trappable` lets a host bug trap the
    // guest instead of panicking the host.
    imports: { default: trappable },
    with: {
        "spin:key-value/key-value.store": crate::kv::StoreHandle,
    },
});
