//! The `Log` port: one line to the component's stderr, which Spin writes to its logs.

use super::SpinHost;
use crate::ports::Log;

impl Log for SpinHost {
    fn log(&self, line: &str) {
        eprintln!("{line}");
    }
}
