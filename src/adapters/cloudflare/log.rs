//! The `Log` port: one line to the Workers console (visible in `wrangler dev` and `wrangler tail`).

use super::CfHost;
use crate::ports::Log;

impl Log for CfHost {
    fn log(&self, line: &str) {
        worker::console_log!("{line}");
    }
}
