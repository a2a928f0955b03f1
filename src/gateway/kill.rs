//! Kill switches: an operator takes a target out of rotation, at once and for every isolate on
//! both hosts, and puts it back.
//! - `POST /admin/targets/{id}/disable` (optional body `{"until_ms": <ms since the epoch>}` or
//!   `{"seconds": N}`) and `POST /admin/targets/{id}/enable`, behind `ADMIN_KEYS`; each writes
//!   an `admin_audit` line. The switch lives in Redis (`{prefix}:kill:{id}`, expiring at `until`).
//! - `DISABLED_TARGETS` (deploy time) does the same for good.
//! - Routing (`live_targets`) leaves switched-off targets out, so the next target answers. An
//!   isolate re-reads the switches (one `MGET`, bounded by `REDIS_TIMEOUT_MS`) on the way to a
//!   provider call when what it knows is older than `KILL_REFRESH_MS`: a switch reaches every
//!   isolate that calls a provider within that bound (plus the read's own time). The isolate
//!   that served the admin call knows at once. A Redis outage keeps what was last known.
//!
//! Must not: build Redis keys (`stores::redis`), or answer without an admin key.

use http::{Response, StatusCode};
use serde_json::{json, Map, Value};

use super::{reply, Exchange};
use crate::error::{ApiError, ErrorType};
use crate::ports::{with_timeout, Body, Host};
use crate::routing::table::Target;
use crate::stores::redis::Redis;

/// How old what an isolate knows of the switches may be before a provider call re-reads them.
pub const KILL_REFRESH_MS: u64 = 2_000;
/// The longest a switch may be set for with a time: 30 days.
const MAX_KILL_MS: u64 = 30 * 86_400_000;

impl<H: Host> Exchange<'_, H> {
    /// The targets of a route that are switched on, in order; `Err` when none is.
    pub(super) async fn live_targets(&self, targets: &[Target]) -> Result<Vec<Target>, ApiError> {
        self.refresh_kills().await;
        let now = self.host.now_ms();
        let memory = self.host.limits();
        let off =
            |t: &Target| self.config.disabled_targets.contains(&t.id) || memory.killed_until(&t.id, now).is_some();
        let live: Vec<Target> = targets.iter().filter(|t| !off(t)).cloned().collect();
        if !live.is_empty() {
            return Ok(live);
        }
        let mut error = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Api,
            "all_providers_failed",
            format!(
                "No provider could answer ({}).",
                targets.iter().map(|t| format!("{}: disabled", t.id)).collect::<Vec<_>>().join(", ")
            ),
        );
        error.failures = targets.iter().map(|t| (t.id.clone(), "disabled")).collect();
        Err(error)
    }

    /// Re-reads every target's switch when what this isolate knows is older than the bound.
    async fn refresh_kills(&self) {
        let Some(upstash) = &self.config.upstash else { return };
        let memory = self.host.limits();
        let now = self.host.now_ms();
        if memory.kills_read_ms.get() != 0 && now.saturating_sub(memory.kills_read_ms.get()) < KILL_REFRESH_MS {
            return;
        }
        let ids: Vec<String> = self.config.routes.all_targets().iter().map(|t| t.id.clone()).collect();
        let read = with_timeout(self.host, upstash.timeout_ms, Redis::new(upstash).read_kills(self.host, &ids)).await;
        match read {
            Some(Ok(kills)) => memory.set_kills(kills, self.host.now_ms()),
            failed => {
                // Keep what was known; ask again after the bound, not on every request.
                memory.kills_read_ms.set(now.max(1));
                let detail = match failed {
                    Some(Err(e)) => e.to_string(),
                    _ => format!("no answer within {} ms", upstash.timeout_ms),
                };
                self.log("warn", "kill_switch_read_failed", json!({"detail": detail}));
            }
        }
    }

    /// `POST /admin/targets/{id}/disable` and `.../enable`.
    pub(super) async fn kill_switch(&mut self, admin: &str, request: http::Request<Body>) -> Response<Body> {
        let path = request.uri().path().to_owned();
        let rest = path.trim_start_matches("/admin/targets/");
        let Some((raw_id, action)) = rest.rsplit_once('/').filter(|(_, a)| *a == "disable" || *a == "enable") else {
            return reply::not_found(&path);
        };
        if request.method() != http::Method::POST {
            return reply::method_not_allowed(&path, "POST", request.method());
        }
        let id = percent_decoded(raw_id);
        if !self.config.routes.all_targets().iter().any(|t| t.id == id) {
            let shown: String = id.chars().take(100).collect();
            return reply::error(&ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorType::NotFound,
                "target_not_found",
                format!("No target of ROUTES has the id '{shown}'."),
            ));
        }
        let Some(upstash) = &self.config.upstash else {
            return reply::error(&ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorType::Api,
                "kill_switch_unavailable",
                "Kill switches are kept in Redis, and tier 2 is not configured (use DISABLED_TARGETS).",
            ));
        };
        let redis = Redis::new(upstash);
        let now = self.host.now_ms();
        let (result, until_ms) = if action == "disable" {
            let until = match self.read_until(request.into_body(), now).await {
                Ok(until) => until,
                Err(e) => return reply::error(&e),
            };
            (redis.set_kill(self.host, &id, until).await.map(|()| true), until)
        } else {
            (redis.clear_kill(self.host, &id).await, None)
        };
        let changed = match result {
            Ok(changed) => changed,
            Err(e) => {
                super::writes::log_store_error(self.host, self.request_id, &e);
                return reply::error(&ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    ErrorType::Api,
                    "kill_switch_unavailable",
                    "The switch could not be written to Redis; nothing changed.",
                ));
            }
        };
        let disabled = action == "disable";
        self.host.limits().set_kill(&id, disabled.then(|| until_ms.unwrap_or(u64::MAX)));
        let by_config = self.config.disabled_targets.contains(&id);
        let fields = json!({"target": id, "until_ms": until_ms, "changed": changed});
        self.audit(admin, if disabled { "target_disable" } else { "target_enable" }, fields);
        let body = json!({"target": id, "disabled": disabled || by_config, "until_ms": until_ms, "disabled_by_config": by_config});
        reply::json(StatusCode::OK, body.to_string())
    }

    /// The optional body of a disable: `{"until_ms": N}` or `{"seconds": N}`; none: until enabled.
    async fn read_until(&self, body: Body, now: u64) -> Result<Option<u64>, ApiError> {
        let bytes = body.collect(4096).await.map_err(|_| {
            ApiError::bad_request("invalid_request", "The body must be a small JSON object, or nothing.")
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let fields: Map<String, Value> = serde_json::from_slice(&bytes).map_err(|_| {
            ApiError::bad_request("invalid_json", "The body must be a JSON object such as {\"seconds\": 600}.")
        })?;
        let number = |name: &str| fields.get(name).filter(|v| !v.is_null()).map(|v| (name.to_owned(), v.as_u64()));
        let until = match (number("until_ms"), number("seconds")) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request("invalid_request", "Give 'until_ms' or 'seconds', not both."))
            }
            (Some((_, Some(at))), None) => at,
            (None, Some((_, Some(s)))) => now.saturating_add(s.saturating_mul(1000)),
            (Some((name, None)), None) | (None, Some((name, None))) => {
                return Err(
                    ApiError::bad_request("invalid_type", format!("'{name}' must be a whole number.")).with_param(name)
                )
            }
        };
        if until <= now || until - now > MAX_KILL_MS {
            return Err(ApiError::bad_request(
                "invalid_value",
                "The switch must end in the future, within 30 days ('until_ms' is ms since the epoch).",
            ));
        }
        Ok(Some(until))
    }
}

/// `%XX` sequences of a path segment decoded (target ids may hold `:` or `/`).
fn percent_decoded(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What `/admin/health` shows of a target's switch.
pub(super) fn describe_switch(by_config: bool, until_ms: Option<u64>) -> Value {
    match (by_config, until_ms) {
        (true, _) => json!({"by": "config"}),
        (false, Some(u64::MAX)) => json!({"by": "admin", "until_ms": null}),
        (false, Some(until)) => json!({"by": "admin", "until_ms": until}),
        (false, None) => Value::Bool(false),
    }
}
