//! The `Background` port: `wit_bindgen::spawn`, which runs a task in the component-model task
//! of the request after the handler has returned its response (WASIp3 "execution after
//! returning"): the client has its answer while cache writes finish. Called from a streaming
//! body too: spin-sdk polls the body inside the same task, so the work joins it and outlives the
//! last byte.

use std::future::Future;
use std::pin::Pin;

use super::SpinHost;
use crate::ports::Background;

impl Background for SpinHost {
    fn spawn_background(&self, task: Pin<Box<dyn Future<Output = ()>>>) {
        spin_sdk::wit_bindgen::spawn(task);
    }
}
