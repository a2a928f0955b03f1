//! The `Clock` port: `Date.now()` and `setTimeout`. Workers time advances only across IO, which is
//! all a timeout needs.

use std::time::Duration;

use super::CfHost;
use crate::ports::Clock;

impl Clock for CfHost {
    fn now_ms(&self) -> u64 {
        worker::Date::now().as_millis()
    }

    async fn sleep_ms(&self, ms: u64) {
        worker::Delay::from(Duration::from_millis(ms)).await
    }
}
