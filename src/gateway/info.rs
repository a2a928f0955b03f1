//! The informational endpoints: `GET /healthz` (each tier's state, never a secret or URL) and
//! `GET /v1/models` (the configured model names, in OpenAI's list shape).

use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::reply;
use crate::config::{Config, ConfigError};
use crate::ports::{with_timeout, Body, Host};
use crate::stores::upstash::Upstash;

/// Reports the state of each part. 200 while the gateway can serve (a dead store only degrades
/// it: fail open); 503 when its configuration is invalid.
pub async fn healthz<H: Host>(host: &H, config: Result<&Config, &ConfigError>) -> Response<Body> {
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            let body = json!({"status": "misconfigured", "problems": e.problems});
            return reply::json(StatusCode::SERVICE_UNAVAILABLE, body.to_string());
        }
    };
    let kv = {
        let started = host.now_ms();
        let probe = with_timeout(host, config.kv_timeout_ms, host.kv_get(HEALTH_KEY)).await;
        let latency_ms = host.now_ms().saturating_sub(started);
        match probe {
            Some(Ok(_)) => json!({"state": "ok", "latency_ms": latency_ms}),
            Some(Err(_)) => json!({"state": "down", "error": "unavailable", "latency_ms": latency_ms}),
            None => json!({"state": "down", "error": "timeout", "latency_ms": latency_ms}),
        }
    };
    let redis = match &config.upstash {
        None => json!({"state": "disabled"}),
        Some(upstash) => {
            let started = host.now_ms();
            let ping = Upstash::new(upstash).ping(host).await;
            let latency_ms = host.now_ms().saturating_sub(started);
            match ping {
                Ok(()) => json!({"state": "ok", "latency_ms": latency_ms}),
                Err(e) => json!({"state": "down", "error": e.kind.word(), "latency_ms": latency_ms}),
            }
        }
    };
    let all_ok = [&kv, &redis].iter().all(|t| t["state"] != "down");
    let now = host.now_ms();
    // What this instance knows of each target; names and kinds only, never URLs or keys.
    let targets: Vec<Value> = config
        .routes
        .all_targets()
        .into_iter()
        .map(|t| {
            json!({
                "id": t.id,
                "provider": t.kind.as_str(),
                "key_configured": t.api_key.is_some(),
                "breaker": host.health().describe(&t.id, now),
            })
        })
        .collect();
    let skipped = match &config.upstash {
        Some(upstash) if redis["state"] == "ok" => super::counters::read(host, upstash).await.unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let body = json!({
        "status": if all_ok { "ok" } else { "degraded" },
        "tiers": {"edge_kv": kv, "redis": redis},
        "targets": targets,
        "not_stored": skipped,
    });
    reply::json(StatusCode::OK, body.to_string())
}

/// A key no entry can have (entry keys are hex digests).
const HEALTH_KEY: &str = "llmc1:healthz";

pub fn models(config: &Config) -> Response<Body> {
    let data: Vec<Value> = config
        .models
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "llm-edge-cache"}))
        .collect();
    reply::json(StatusCode::OK, json!({"object": "list", "data": data}).to_string())
}
