//! The admin surface: every `/admin/...` path, behind `ADMIN_KEYS` (separate from gateway keys,
//! matched in constant time). `GET /admin/health` is the detailed view (each tier with its
//! latency, each target's breaker, counters, configuration problems); `POST /admin/cache/purge`
//! deletes one entry from both tiers; `POST /admin/targets/{id}/disable|enable` flips a kill
//! switch (`kill`); `GET /admin/metrics` and `/admin/metrics.json` show the metrics (`stats`).
//! Every change writes one audit line: which admin, what, when.
//!
//! Must not: answer anything without a valid admin key, or show a secret, a URL or a key.

use http::{HeaderMap, Method, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::{counters, reply, Exchange};
use crate::api::chat::ChatRequest;
use crate::cache::key::{CacheKey, KeyScope};
use crate::cache::policy::valid_namespace;
use crate::config::Config;
use crate::error::{ApiError, ErrorType};
use crate::ports::{with_timeout, Body, Host};
use crate::stores::kv;
use crate::stores::redis::Redis;

/// A key no entry can have (entry keys are hex digests): what the KV probe reads.
const PROBE_KEY: &str = "llmc1:healthz";
/// Longest purge body: a chat request and two names.
const MAX_PURGE_BODY: usize = 4 << 20;

impl<H: Host> Exchange<'_, H> {
    /// Dispatches an `/admin/...` request.
    pub(super) async fn admin(&mut self, request: http::Request<Body>) -> Response<Body> {
        // The stats page holds no data (it asks for the key and sends it with each data request):
        // a browser's first load, which carries no Authorization header, gets it.
        if request.uri().path() == "/admin/stats" && matches!(*request.method(), Method::GET | Method::HEAD) {
            return super::stats::page::page();
        }
        let admin = match admin_of(self.config, request.headers()) {
            Ok(admin) => admin.to_owned(),
            Err(e) => return reply::error(&e),
        };
        let path = request.uri().path().to_owned();
        if path.starts_with("/admin/targets/") {
            return self.kill_switch(&admin, request).await;
        }
        let (allowed, method) = match path.as_str() {
            "/admin/health" | "/admin/metrics" | "/admin/metrics.json" => ("GET", Method::GET),
            "/admin/cache/purge" => ("POST", Method::POST),
            _ => return reply::not_found(&path),
        };
        if request.method() != method {
            return reply::method_not_allowed(&path, allowed, request.method());
        }
        match path.as_str() {
            "/admin/health" => health(self.host, self.config).await,
            "/admin/metrics" => super::stats::prometheus(self.host, self.config).await,
            "/admin/metrics.json" => super::stats::window(self.host, self.config, request.uri().query()).await,
            _ => self.purge(&admin, request).await,
        }
    }

    /// Deletes the entry a chat request (plus `tenant` and, optionally, `namespace`) would use,
    /// from both tiers.
    async fn purge(&mut self, admin: &str, request: http::Request<Body>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let target = match self.read_json(&parts.headers, body, MAX_PURGE_BODY).await.and_then(purge_target) {
            Ok(t) => t,
            Err(e) => return reply::error(&e),
        };
        if !self.config.tenant_exists(&target.tenant) {
            return reply::error(
                &ApiError::bad_request("invalid_value", "'tenant' names no tenant of GATEWAY_KEYS.")
                    .with_param("tenant"),
            );
        }
        let scope =
            KeyScope { generation: &self.config.generation, tenant: &target.tenant, namespace: &target.namespace };
        let key = CacheKey::chat_in(&scope, &target.request);
        let host = self.host;
        let edge_kv = match kv::delete(host, &key, self.config.kv_timeout_ms).await {
            Ok(()) => "deleted",
            Err(_) => "failed",
        };
        let redis = match &self.config.upstash {
            None => "disabled",
            Some(config) => match Redis::new(config).delete_entry(host, &key).await {
                Ok(true) => "deleted",
                Ok(false) => "absent",
                Err(_) => "failed",
            },
        };
        self.audit(
            admin,
            "cache_purge",
            json!({"tenant": target.tenant, "namespace": target.namespace, "key": key.digest_hex(), "edge_kv": edge_kv, "redis": redis}),
        );
        let body = json!({"purged": key.digest_hex(), "tiers": {"edge_kv": edge_kv, "redis": redis}});
        let status = if edge_kv == "failed" || redis == "failed" { StatusCode::BAD_GATEWAY } else { StatusCode::OK };
        reply::json(status, body.to_string())
    }

    /// One audit line per admin change: which admin (by name, never the key), what, when.
    pub(super) fn audit(&self, admin: &str, action: &str, fields: Value) {
        let mut line = json!({
            "level": "info",
            "event": "admin_audit",
            "admin": admin,
            "action": action,
            "at_ms": self.host.now_ms(),
            "request_id": self.request_id,
        });
        if let (Some(line), Value::Object(fields)) = (line.as_object_mut(), fields) {
            line.extend(fields);
        }
        self.host.log(&line.to_string());
    }
}

/// What a purge names.
struct PurgeTarget {
    tenant: String,
    namespace: String,
    request: ChatRequest,
}

fn purge_target(mut body: Map<String, Value>) -> Result<PurgeTarget, ApiError> {
    let tenant = match body.remove("tenant") {
        Some(Value::String(t)) => t,
        None | Some(Value::Null) => {
            return Err(ApiError::bad_request("missing_required_parameter", "Missing required parameter: 'tenant'.")
                .with_param("tenant"))
        }
        Some(_) => return Err(ApiError::bad_request("invalid_type", "'tenant' must be a string.").with_param("tenant")),
    };
    let namespace = match body.remove("namespace") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(ns)) if valid_namespace(&ns) => ns,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_cache_namespace",
                "'namespace' must be 1 to 64 characters of letters, digits, '.', '_', ':' or '-'.",
            )
            .with_param("namespace"))
        }
    };
    let request = ChatRequest::from_object(body)?;
    Ok(PurgeTarget { tenant, namespace, request })
}

/// The admin named by the request's `Authorization: Bearer <admin key>`.
fn admin_of<'c>(config: &'c Config, headers: &HeaderMap) -> Result<&'c str, ApiError> {
    if !config.admin_enabled() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorType::Permission,
            "admin_disabled",
            "The admin surface is off: the operator has set no usable ADMIN_KEYS.",
        ));
    }
    let key = super::bearer(headers)?;
    config.admin_for_key(key).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorType::Authentication,
            "invalid_admin_key",
            "The admin key is not valid.",
        )
    })
}

/// The detailed health view: each tier probed with its latency, what this instance knows of each
/// target (on a host whose memory starts empty, what Redis holds), the counters shared in Redis,
/// and the configuration's problems (names only). 200
/// while the gateway can serve; a dead store only degrades it (fail open).
pub async fn health<H: Host>(host: &H, config: &Config) -> Response<Body> {
    let kv = {
        let started = host.now_ms();
        let probe = with_timeout(host, config.kv_timeout_ms, host.kv_get(PROBE_KEY)).await;
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
            let ping = Redis::new(upstash).ping(host).await;
            let latency_ms = host.now_ms().saturating_sub(started);
            match ping {
                Ok(()) => json!({"state": "ok", "latency_ms": latency_ms}),
                Err(e) => json!({"state": "down", "error": e.kind.word(), "latency_ms": latency_ms}),
            }
        }
    };
    let all_ok = [&kv, &redis].iter().all(|t| t["state"] != "down");
    let targets = targets(host, config, redis["state"] == "ok").await;
    let mut not_stored = match &config.upstash {
        Some(upstash) if redis["state"] == "ok" => counters::read(host, upstash).await.unwrap_or(Value::Null),
        _ => Value::Null,
    };
    // Provider calls saved by single flight, by where the shared call ran.
    let coalesced = match not_stored.as_object_mut() {
        Some(counts) => json!({
            "isolate": counts.remove(counters::COALESCED_ISOLATE),
            "redis": counts.remove(counters::COALESCED_REDIS),
        }),
        None => Value::Null,
    };
    let body = json!({
        "status": if all_ok { "ok" } else { "degraded" },
        "tiers": {"edge_kv": kv, "redis": redis},
        "targets": targets,
        "not_stored": not_stored,
        "coalesced": coalesced,
        "limits": {"failed_open_here": host.limits().failed_open.get()},
        "problems": config.problems,
    });
    reply::json(StatusCode::OK, body.to_string())
}

/// Each target with its breaker and kill switch, as this instance knows them after reading what
/// every isolate shared (a new one knows nothing); names and kinds only, never URLs or keys.
pub(super) async fn targets<H: Host>(host: &H, config: &Config, redis_ok: bool) -> Vec<Value> {
    if let Some(upstash) = &config.upstash {
        // What every isolate shared, folded into what this one knows (a new one knows nothing).
        let ids: Vec<String> = config.routes.all_targets().iter().map(|t| t.id.clone()).collect();
        super::origin::load_health(host, upstash, &config.breaker, &ids).await;
    }
    if let Some(upstash) = config.upstash.as_ref().filter(|_| redis_ok) {
        // The switches as Redis holds them now (and this instance knows them from now on).
        let ids: Vec<String> = config.routes.all_targets().iter().map(|t| t.id.clone()).collect();
        if let Ok(kills) = Redis::new(upstash).read_kills(host, &ids).await {
            host.limits().set_kills(kills, host.now_ms());
        }
    }
    let now = host.now_ms();
    config
        .routes
        .all_targets()
        .into_iter()
        .map(|t| {
            json!({
                "id": t.id,
                "provider": t.kind.as_str(),
                "key_configured": t.api_key.is_some(),
                "breaker": host.health().describe(&t.id, now),
                "disabled": super::kill::describe_switch(
                    config.disabled_targets.contains(&t.id),
                    host.limits().killed_until(&t.id, now),
                ),
            })
        })
        .collect()
}
