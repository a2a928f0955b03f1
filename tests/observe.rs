//! Issue 11 on the in-memory host: one `request` log line per request (GenAI attribute names,
//! attempts, fallback, tokens, cost, cost avoided), written after the response and, for a
//! provider stream, when it ends; metrics added up in the isolate and flushed to Redis in one
//! pipeline for many requests; nothing breaks when Redis is down.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::collections::BTreeMap;

use bytes::Bytes;
use llm_edge_cache::stores::redis::{Redis, DEFAULT_PREFIX};
use llm_edge_cache::testing::Scripted;
use serde_json::{json, Value};
use support::*;

fn ask_mini(content: &str, stream: bool) -> String {
    json!({"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": content}]}).to_string()
}

/// The `request` log lines so far.
fn request_lines(w: &World) -> Vec<Value> {
    w.host
        .logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["event"] == "request")
        .collect()
}

/// The metric totals in Redis.
fn totals(w: &World) -> BTreeMap<String, u64> {
    let upstash = w.config.upstash.as_ref().expect("redis configured");
    w.host.block_on(Redis::new(upstash).metric_totals(&w.host)).expect("totals read")
}

/// gpt-4o-mini's list price of the OK fixture's usage (9 input, 10 output tokens), nano-dollars.
const OK_COST_NANOS: u64 = 9 * 150 + 10 * 600;

#[test]
fn a_miss_and_a_hit_each_write_one_line_after_the_response_with_tokens_and_cost() {
    let w = World::new();
    w.upstream_ok();
    let body = ask_mini("observe me", false);
    let miss = w.chat(&body, &[("x-request-id", "req-miss-1")]);
    assert_eq!(miss.header("x-cache"), Some("MISS"));
    assert!(request_lines(&w).is_empty(), "the line is written after the response");
    w.host.run_background();
    let hit = w.chat(&body, &[("x-request-id", "req-hit-1")]);
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    w.host.run_background();

    let lines = request_lines(&w);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let (m, h) = (&lines[0], &lines[1]);
    assert_eq!(m["request_id"], "req-miss-1");
    assert_eq!(m["status"], 200);
    assert_eq!(m["tenant"], "tenant-a");
    assert_eq!(m["gen_ai.operation.name"], "chat");
    assert_eq!(m["gen_ai.provider.name"], "openai");
    assert_eq!(m["gen_ai.request.model"], "gpt-4o-mini");
    assert_eq!(m["gen_ai.response.model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(m["gen_ai.usage.input_tokens"], 9);
    assert_eq!(m["gen_ai.usage.output_tokens"], 10);
    assert_eq!(m["gen_ai.response.finish_reasons"], json!(["stop"]));
    assert_eq!(m["cache"], json!({"outcome": "miss", "tier": "origin", "x_cache": "MISS"}));
    assert_eq!(m["attempts"].as_array().map(Vec::len), Some(1));
    assert_eq!(m["attempts"][0]["target"], "openai");
    assert_eq!(m["attempts"][0]["outcome"], "2xx");
    assert_eq!(m["fallback"], json!({"used": false, "reason": null}));
    assert_eq!(m["cost_usd"].as_f64(), Some(OK_COST_NANOS as f64 / 1e9));
    assert!(m["duration_ms"].is_u64());

    assert_eq!(h["request_id"], "req-hit-1");
    assert_eq!(h["cache"], json!({"outcome": "hit", "tier": "edge-kv", "x_cache": "HIT"}));
    assert_eq!(h["attempts"], json!([]));
    assert_eq!(h["gen_ai.usage.input_tokens"], 9, "the stored answer's usage");
    assert_eq!(h["cost_avoided_usd"].as_f64(), Some(OK_COST_NANOS as f64 / 1e9));
    assert!(h.get("cost_usd").is_none(), "a hit bought nothing");
    for line in w.host.logs() {
        for secret in [KEY_A, "sk-upstream-secret", UPSTASH_TOKEN, UPSTREAM, UPSTASH] {
            assert!(!line.contains(secret), "{secret} in {line}");
        }
    }
}

#[test]
fn many_requests_are_flushed_to_redis_in_one_pipeline_that_adds_up() {
    let w = World::new();
    w.upstream_ok();
    let body = ask_mini("count me", false);
    w.chat(&body, &[]);
    w.host.run_background();
    for _ in 0..4 {
        assert_eq!(w.chat(&body, &[]).header("x-cache"), Some("HIT"));
        w.host.run_background();
    }
    w.chat_as(KEY_B, &ask_mini("count me too", false), &[]);
    w.host.run_background();
    assert!(totals(&w).is_empty(), "nothing is sent before the flush is due");
    let pipelines_before = w.upstash.commands_run().len();
    w.host.run_later();
    let flushed: Vec<Value> = w
        .host
        .logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["event"] == "metrics_flushed")
        .collect();
    assert_eq!(flushed.len(), 1, "one flush for six requests: {flushed:?}");
    assert_eq!(flushed[0]["requests"], 6);
    let commands = flushed[0]["commands"].as_u64().expect("commands counted");
    assert_eq!(w.upstash.commands_run().len() - pipelines_before, commands as usize, "the flush's commands");

    let t = totals(&w);
    assert_eq!(t.get("requests|tenant-a|gpt-4o-mini|miss"), Some(&1), "{t:?}");
    assert_eq!(t.get("requests|tenant-a|gpt-4o-mini|hit"), Some(&4));
    assert_eq!(t.get("requests|tenant-b|gpt-4o-mini|miss"), Some(&1));
    assert_eq!(t.get("hits|edge-kv"), Some(&4));
    assert_eq!(t.get("calls|openai|2xx"), Some(&2));
    assert_eq!(t.get("tokens|tenant-a|openai|input"), Some(&9));
    assert_eq!(t.get("tokens|tenant-a|openai|output"), Some(&10));
    assert_eq!(t.get("cost_nanos|tenant-a|openai"), Some(&OK_COST_NANOS));
    assert_eq!(t.get("cost_avoided_nanos|tenant-a|edge-kv"), Some(&(4 * OK_COST_NANOS)));
    assert_eq!(t.get("tokens_avoided|tenant-a|edge-kv"), Some(&(4 * 19)));
    assert_eq!(t.get("duration_ms|edge-kv|count"), Some(&4));
    assert_eq!(t.get("origin_ms|openai|count"), Some(&2));
    // The minute's hash holds the same, and expires after the retention.
    let minute = llm_edge_cache::metrics::minute(T0);
    let minute_key = llm_edge_cache::stores::redis::minute_key(DEFAULT_PREFIX, minute);
    let expires = w.upstash.expires_at(&minute_key).expect("the minute expires");
    assert_eq!(expires, (minute + 1) * 60_000 + 7 * 86_400_000);
    let upstash = w.config.upstash.as_ref().expect("redis");
    let minutes = w.host.block_on(Redis::new(upstash).metric_buckets(&w.host, &[minute], false)).expect("read");
    assert_eq!(minutes[0].get("requests|tenant-a|gpt-4o-mini|hit"), Some(&4));
}

#[test]
fn a_fallback_says_which_target_failed_and_why() {
    let w = world(&two_targets(), &[]);
    scripted(&w, PRIMARY, vec![status(500)]);
    scripted(&w, SECONDARY, vec![]);
    let r = ask(&w, "fall back");
    assert_eq!(r.header("x-fallback"), Some("true"));
    w.host.run_background();
    let line = request_lines(&w).pop().expect("a line");
    assert_eq!(line["fallback"], json!({"used": true, "reason": "5xx"}));
    let classes: Vec<&str> =
        line["attempts"].as_array().unwrap().iter().map(|a| a["outcome"].as_str().unwrap()).collect();
    assert_eq!(classes, ["5xx", "2xx"]);
    assert_eq!(line["target"], "secondary");
    w.host.run_later();
    let t = totals(&w);
    assert_eq!(t.get("failovers|5xx"), Some(&1), "{t:?}");
    assert_eq!(t.get("calls|primary|5xx"), Some(&1));
    assert_eq!(t.get("calls|secondary|2xx"), Some(&1));
}

#[test]
fn a_streamed_answer_is_recorded_when_its_stream_ends() {
    let w = World::new();
    let sse = fixture("openai/stream_usage.sse");
    w.upstream(move |_| Scripted::Stream {
        status: 200,
        chunks: sse.split_inclusive("\n\n").map(|e| Ok(Bytes::from(e.to_owned()))).collect(),
    });
    let request = http::Request::post("https://gw.test/v1/chat/completions")
        .header("authorization", format!("Bearer {KEY_A}"))
        .header("content-type", "application/json")
        .body(llm_edge_cache::ports::Body::Full(Bytes::from(ask_mini("stream me", true))))
        .expect("request");
    let response = w.host.block_on(llm_edge_cache::gateway::handle(&w.host, Ok(&w.config), request));
    assert_eq!(response.status(), 200);
    w.host.run_background();
    assert!(request_lines(&w).is_empty(), "not before the stream has ended");
    let body = w.host.block_on(response.into_body().collect(usize::MAX)).expect("stream reads");
    assert!(body.ends_with(b"data: [DONE]\n\n"));
    w.host.run_background();
    let lines = request_lines(&w);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["stream"], true);
    assert_eq!(line["stream_end"], "complete");
    assert!(line["ttft_ms"].is_u64(), "{line}");
    assert_eq!(line["gen_ai.usage.output_tokens"], 10);
    w.host.run_later();
    let t = totals(&w);
    assert_eq!(t.get("ttft_ms|openai|count"), Some(&1), "{t:?}");
    assert_eq!(t.get("ttfb_ms|origin|count"), Some(&1));
    assert_eq!(t.get("tokens|tenant-a|openai|output"), Some(&10));
}

#[test]
fn with_redis_down_answers_go_on_and_the_lost_flush_is_logged() {
    let w = World::new();
    w.upstream_ok();
    w.upstash.set_down(true);
    assert_eq!(w.chat(&ask_mini("redis down", false), &[]).status, 200);
    w.host.run_background();
    w.host.run_later();
    let lost: Vec<Value> = w
        .host
        .logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["event"] == "metrics_not_flushed")
        .collect();
    assert_eq!(lost.len(), 1, "{:?}", w.host.logs());
    assert_eq!(lost[0]["requests"], 1);
    w.upstash.set_down(false);
    // What was lost stays lost (memory is bounded); later requests count again.
    assert_eq!(w.chat(&ask_mini("redis back", false), &[]).status, 200);
    w.host.run_background();
    w.host.run_later();
    assert_eq!(totals(&w).get("requests|tenant-a|gpt-4o-mini|miss"), Some(&1));
}

#[test]
fn admin_metrics_is_a_prometheus_exposition_of_the_totals_with_real_histograms() {
    let w = World::new();
    w.upstream_ok();
    let body = ask_mini("expose me", false);
    w.chat(&body, &[]);
    w.host.run_background();
    w.chat(&body, &[]);
    w.host.run_background();
    // Not flushed yet: reading flushes this isolate's counts first.
    let r = w.admin_get("/admin/metrics");
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let text = std::str::from_utf8(&r.body).expect("utf-8");
    for line in [
        "# TYPE llmc_requests counter",
        r#"llmc_requests_total{tenant="tenant-a",model="gpt-4o-mini",outcome="miss"} 1"#,
        r#"llmc_requests_total{tenant="tenant-a",model="gpt-4o-mini",outcome="hit"} 1"#,
        r#"llmc_cache_hits_total{tier="edge-kv"} 1"#,
        r#"llmc_provider_calls_total{target="openai",class="2xx"} 1"#,
        "# TYPE gen_ai_client_operation_duration_seconds histogram",
        r#"gen_ai_client_operation_duration_seconds_bucket{target="openai",le="+Inf"} 1"#,
        r#"gen_ai_client_operation_duration_seconds_count{target="openai"} 1"#,
        r#"gen_ai_client_token_usage_bucket{target="openai",gen_ai_token_type="input",le="16"} 1"#,
        r#"gen_ai_client_token_usage_bucket{target="openai",gen_ai_token_type="input",le="4"} 0"#,
        r#"gen_ai_client_token_usage_sum{target="openai",gen_ai_token_type="output"} 10"#,
        r#"llmc_cost_usd_total{tenant="tenant-a",target="openai"} 0.00000735"#,
        r#"llmc_cost_avoided_usd_total{tenant="tenant-a",tier="edge-kv"} 0.00000735"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
    }
    // Buckets are cumulative and end with the count.
    let buckets: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with(r#"llmc_request_duration_seconds_bucket{tier="edge-kv""#))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(buckets.len(), llm_edge_cache::metrics::BUCKETS_MS.len() + 1);
    assert!(buckets.windows(2).all(|p| p[0] <= p[1]), "{buckets:?}");
    assert_eq!(buckets.last(), Some(&1));
}

#[test]
fn admin_metrics_json_charts_a_window_and_lists_the_targets() {
    let w = World::new();
    w.upstream_ok();
    let body = ask_mini("chart me", false);
    for _ in 0..3 {
        w.chat(&body, &[]);
        w.host.run_background();
    }
    let r = w.admin_get("/admin/metrics.json?window=hour");
    assert_eq!(r.status, 200, "{:?}", r.body);
    let v = r.json();
    assert_eq!(v["window"], "hour");
    assert_eq!(v["times"].as_array().map(Vec::len), Some(60));
    assert_eq!(v["requests"]["hit"][59], 2, "{v}");
    assert_eq!(v["requests"]["miss"][59], 1);
    let rate = v["hit_rate"]["edge-kv"][59].as_f64().unwrap();
    assert!((rate - 2.0 / 3.0).abs() < 1e-9, "{rate}");
    assert!(v["latency_ms_by_tier"]["edge-kv"]["p99"][59].is_number(), "{v}");
    assert!(v["latency_ms_by_target"]["openai"]["p50"][59].is_number(), "{v}");
    assert_eq!(v["targets"][0]["id"], "openai");
    assert_eq!(v["targets"][0]["breaker"], "closed");
    let day = w.admin_get("/admin/metrics.json?window=day").json();
    assert_eq!(day["times"].as_array().map(Vec::len), Some(24));
    assert_eq!(day["requests"]["hit"][23], 2, "{day}");
    w.admin_get("/admin/metrics.json?window=year").assert_error(400, "invalid_value");
    w.upstash.set_down(true);
    w.admin_get("/admin/metrics.json").assert_error(503, "metrics_unavailable");
    w.admin_get("/admin/metrics").assert_error(503, "metrics_unavailable");
}

#[test]
fn a_quantile_interpolates_inside_its_bucket() {
    use llm_edge_cache::metrics::window::quantile;
    let bounds = [10, 100, 1000];
    assert_eq!(quantile(&bounds, &[0, 0, 0, 0], 0.5), None);
    assert_eq!(quantile(&bounds, &[0, 10, 0, 0], 0.5), Some(55.0));
    assert_eq!(quantile(&bounds, &[10, 0, 0, 0], 1.0), Some(10.0));
    assert_eq!(quantile(&bounds, &[0, 0, 0, 5], 0.99), Some(1000.0), "past the last bound: the last bound");
}
