//! Settings of metrics (`gateway::record`, `stores::redis::metrics`): how long the per-minute
//! counts are kept in Redis and how long an isolate adds up before it flushes.
//! Must not: read anything but its own variables.

use super::Reader;
use crate::ports::Vars;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsConfig {
    /// How long a minute's counts are kept (`METRICS_RETENTION_SECONDS`, default 7 days).
    pub retention_ms: u64,
    /// How long an isolate adds counts up in memory before it sends them in one pipeline
    /// (`METRICS_FLUSH_MS`, default 5 s).
    pub flush_ms: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { retention_ms: 7 * 86_400_000, flush_ms: 5_000 }
    }
}

impl MetricsConfig {
    pub(super) fn read<V: Vars>(r: &mut Reader<'_, V>) -> MetricsConfig {
        let default = MetricsConfig::default();
        MetricsConfig {
            retention_ms: r.number("METRICS_RETENTION_SECONDS", default.retention_ms / 1000, 60, 366 * 86_400) * 1000,
            flush_ms: r.number("METRICS_FLUSH_MS", default.flush_ms, 10, 60_000),
        }
    }
}
