//! The `Background` port: `ctx.waitUntil`, so cache writes finish after the response is sent.
//! Called from a streaming body too (while workerd pulls it, inside the request's context):
//! work registered before the body ends is waited for like any other.

use std::future::Future;
use std::pin::Pin;

use super::CfHost;
use crate::ports::Background;

impl Background for CfHost {
    fn spawn_background(&self, task: Pin<Box<dyn Future<Output = ()>>>) {
        self.inner.ctx.wait_until(task);
    }
}
