//! The Cloudflare Workers adapter (workers-rs): implements the ports over the Worker's `env` and
//! execution context, and converts requests and responses at the boundary. No decisions here.
//!
//! Each port is in a file of the same name as in the Spin adapter.

mod background;
mod clock;
mod entry;
mod http;
mod kv;
mod log;
mod memory;
mod random;
mod vars;

use std::rc::Rc;

/// The ports of one Worker invocation. Clones share the invocation's env and context, so a
/// background task can own one.
#[derive(Clone)]
pub struct CfHost {
    inner: Rc<Inner>,
}

struct Inner {
    env: worker::Env,
    ctx: worker::Context,
    /// The KV binding name (`KV_BINDING`, default `CACHE`).
    kv_binding: String,
}

impl CfHost {
    fn new(env: worker::Env, ctx: worker::Context) -> CfHost {
        let kv_binding = env.var("KV_BINDING").map(|v| v.to_string()).unwrap_or_else(|_| "CACHE".to_owned());
        CfHost { inner: Rc::new(Inner { env, ctx, kv_binding }) }
    }
}
