//! The public informational endpoints: `GET /healthz` (liveness only: no store calls, no names,
//! no counters; the detailed view is `/admin/health`) and `GET /v1/models` (the configured model
//! names, in OpenAI's list shape).

use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::reply;
use crate::config::Config;
use crate::ports::Body;

/// `{"status":"ok"}` while the configuration can serve, else 503 `{"status":"misconfigured"}`.
pub fn healthz(serving: bool) -> Response<Body> {
    if serving {
        reply::json(StatusCode::OK, r#"{"status":"ok"}"#)
    } else {
        reply::json(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"misconfigured"}"#)
    }
}

pub fn models(config: &Config) -> Response<Body> {
    let data: Vec<Value> = config
        .models
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "llm-edge-cache"}))
        .collect();
    reply::json(StatusCode::OK, json!({"object": "list", "data": data}).to_string())
}
