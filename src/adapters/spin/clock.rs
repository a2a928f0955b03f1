//! The `Clock` port: the WASI wall clock and `wasi:clocks` sleeps.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::SpinHost;
use crate::ports::Clock;

impl Clock for SpinHost {
    fn now_ms(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
    }

    async fn sleep_ms(&self, ms: u64) {
        spin_sdk::time::sleep(Duration::from_millis(ms)).await
    }
}
