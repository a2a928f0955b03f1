//! What the metrics show (behind the admin key, dispatched by `admin`; the page that charts them,
//! `page`, is public and holds no data): `GET /admin/metrics`, the
//! Prometheus text exposition of the totals in Redis, and `GET /admin/metrics.json?window=hour|
//! day|week`, a window of per-minute or per-hour counts as the series the stats page charts, with
//! each target's breaker and kill switch. Both flush this isolate's unsent counts first, so that
//! what it has seen is in what it shows.
//!
//! Without Redis (not configured, or not answering) there are no metrics: a 503
//! `metrics_unavailable`, which the page shows as data missing.
//! Must not: show a key, a URL or a token.

pub(super) mod page;

use http::header::HeaderValue;
use http::{Response, StatusCode};
use serde_json::json;

use super::{reply, tally};
use crate::config::Config;
use crate::error::{ApiError, ErrorType};
use crate::metrics::prometheus as prom;
use crate::metrics::window::{self, Window};
use crate::ports::{Body, Host};
use crate::stores::redis::Redis;

fn unavailable(why: &str) -> Response<Body> {
    reply::error(&ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorType::Api,
        "metrics_unavailable",
        format!("The metrics cannot be read: {why}."),
    ))
}

pub(super) async fn prometheus<H: Host>(host: &H, config: &Config) -> Response<Body> {
    let Some(upstash) = &config.upstash else { return unavailable("they are kept in Redis, which is not configured") };
    tally::flush(host, upstash, config.metrics).await;
    match Redis::new(upstash).metric_totals(host).await {
        Ok(totals) => {
            let mut response = Response::new(Body::Full(prom::exposition(&totals).into()));
            response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static(prom::CONTENT_TYPE));
            response
        }
        Err(e) => unavailable(&format!("Redis did not answer ({})", e.kind.word())),
    }
}

pub(super) async fn window<H: Host>(host: &H, config: &Config, query: Option<&str>) -> Response<Body> {
    let asked = query.unwrap_or("").split('&').find_map(|kv| kv.strip_prefix("window=")).unwrap_or("hour");
    let Some(window) = Window::parse(asked) else {
        return reply::error(
            &ApiError::bad_request("invalid_value", "'window' must be 'hour', 'day' or 'week'.").with_param("window"),
        );
    };
    let Some(upstash) = &config.upstash else { return unavailable("they are kept in Redis, which is not configured") };
    tally::flush(host, upstash, config.metrics).await;
    let now = host.now_ms();
    let buckets = window.buckets(now);
    let hashes = match Redis::new(upstash).metric_buckets(host, &buckets, window != Window::Hour).await {
        Ok(hashes) => hashes,
        Err(e) => return unavailable(&format!("Redis did not answer ({})", e.kind.word())),
    };
    let mut view = window::view(window, &buckets, &hashes);
    view["now_ms"] = json!(now);
    view["targets"] = json!(super::admin::targets(host, config, true).await);
    reply::json(StatusCode::OK, view.to_string())
}
