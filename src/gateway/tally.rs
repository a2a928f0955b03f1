//! Metrics kept in Redis, shared by every isolate of both hosts: counts are added up in the
//! isolate's memory (the `Memory` port's `metrics()`), and the first addition after a flush
//! schedules the next one, `METRICS_FLUSH_MS` later, in background work: one pipeline
//! (`stores::redis::metrics`) for everything added meanwhile, whatever the traffic.
//!
//! Never delays or fails an answer: adding is a few map updates after the response; a flush that
//! fails is logged and its counts dropped (memory stays bounded). What an instance has added but
//! not flushed is lost if the host ends it before the flush's background work has run: on
//! Workers, an isolate evicted within `METRICS_FLUSH_MS` of its last request (`waitUntil`
//! normally keeps it until the flush); on Spin, an instance the host stops while the flush of
//! its last request is still waiting (Spin runs that work in the request's task after the
//! response, so an instance is normally kept until it ends).
//! Must not: send a Redis command per request, or hold the buffer across an await.

use serde_json::json;

use super::WRITE_TIMEOUT_MS;
use crate::config::metrics::MetricsConfig;
use crate::config::UpstashConfig;
use crate::error::StoreError;
use crate::metrics::{self as m, Adds};
use crate::ports::Host;
use crate::stores::redis::Redis;

/// Adds `adds` to this isolate's counts of the minute of `now_ms`, and schedules a flush if none
/// is. Without Redis there is nowhere to keep metrics: nothing is kept.
pub(super) fn add<H: Host>(host: &H, upstash: Option<&UpstashConfig>, config: MetricsConfig, now_ms: u64, adds: Adds) {
    let buffer = host.metrics();
    let Some(upstash) = upstash.cloned() else {
        buffer.take();
        return;
    };
    let dropped = buffer.add(m::minute(now_ms), adds);
    if dropped > 0 {
        host.log(&json!({"level": "warn", "event": "metrics_fields_dropped", "fields": dropped}).to_string());
    }
    if !buffer.schedule() {
        return;
    }
    let task_host = host.clone();
    host.spawn_later(config.flush_ms, Box::pin(async move { flush(&task_host, &upstash, config).await }));
}

/// Sends everything added so far in one pipeline (also before `/admin/metrics` reads, so that
/// this isolate's latest counts are in what it shows).
pub(super) async fn flush<H: Host>(host: &H, upstash: &UpstashConfig, config: MetricsConfig) {
    let buffer = host.metrics();
    let batch = buffer.take();
    buffer.flushed();
    if batch.is_empty() {
        return;
    }
    let requests: u64 = batch
        .values()
        .flat_map(|fields| fields.iter())
        .filter(|(field, _)| {
            field.starts_with(m::REQUESTS.name) && field.as_bytes().get(m::REQUESTS.name.len()) == Some(&b'|')
        })
        .map(|(_, n)| n)
        .sum();
    let fields: usize = batch.values().map(|f| f.len()).sum();
    match Redis::new(upstash).add_metrics(host, &batch, config.retention_ms, WRITE_TIMEOUT_MS).await {
        Ok(commands) => {
            let line = json!({"level": "debug", "event": "metrics_flushed", "requests": requests, "fields": fields, "commands": commands});
            host.log(&line.to_string());
        }
        Err(e) => {
            let line = json!({"level": "warn", "event": "metrics_not_flushed", "requests": requests, "fields": fields, "kind": e.kind.word()});
            host.log(&line.to_string());
        }
    }
}

/// A store operation failed: counted (flushed with the next request's counts).
pub(super) fn store_error<H: crate::ports::Memory + crate::ports::Clock>(host: &H, e: &StoreError) {
    let mut adds = Adds::default();
    adds.count(&m::STORE_ERRORS, &[e.tier.as_str(), e.kind.word()], 1);
    host.metrics().add(m::minute(host.now_ms()), adds);
}

/// An answer was not stored, for `reason`: counted (flushed with the next request's counts).
pub(super) fn skipped<H: Host>(host: &H, reason: &str) {
    let mut adds = Adds::default();
    adds.count(&m::STORE_SKIPPED, &[reason], 1);
    host.metrics().add(m::minute(host.now_ms()), adds);
}
