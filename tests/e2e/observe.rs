//! Issue 11 on the real runtimes: one `request` log line per request, and metrics that every
//! isolate of both hosts adds to the same Redis, read back as the traffic sent.

use std::collections::BTreeMap;
use std::time::Duration;

use devstack::stack::{Stack, ADMIN_KEY, KEY_A, KEY_B};
use devstack::HttpRequest;
use serde_json::{json, Value};

use crate::client::*;
use crate::runner::{eventually, Ctx, Host, Scenario};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        ("observe::request_lines_and_metrics_add_up_across_both_hosts", add_up),
        ("observe::admin_metrics_parses_with_prometheus_client_and_matches_the_traffic", prometheus),
        ("observe::the_stats_page_is_public_holds_no_data_and_charts_real_traffic", stats_page),
    ]
}

/// The metric totals in the stack's Redis (field -> value).
pub fn totals(s: &Stack) -> BTreeMap<String, u64> {
    let flat = redis(s, json!(["HGETALL", "llmc1:metrics:total"]));
    let items = flat.as_array().cloned().unwrap_or_default();
    items.chunks(2).filter_map(|p| Some((p[0].as_str()?.to_owned(), p[1].as_str()?.parse().ok()?))).collect()
}

/// The sum of the totals whose field starts with `prefix`.
pub fn sum(t: &BTreeMap<String, u64>, prefix: &str) -> u64 {
    t.iter().filter(|(f, _)| f.starts_with(prefix)).map(|(_, n)| n).sum()
}

/// The `request` lines of a gateway's log.
fn request_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(|l| l["event"] == "request")
        .collect()
}

fn add_up(ctx: &Ctx) {
    let s = ctx.own_stack(&[("METRICS_FLUSH_MS", "200")]);
    let other = ctx.host.other();
    let peer = s.start_peer(other.kind()).unwrap_or_else(|e| panic!("a peer on {}: {e}", other.name()));
    let m = marker("observe");
    let b = body(&m);
    let miss = chat(&s, KEY_A, &b, &[("x-request-id", "req-obs-miss")]);
    assert_eq!((miss.status, miss.header("x-cache")), (200, Some("MISS")), "{}", miss.text());
    let usage = json_of(&miss)["usage"].clone();
    let (input, output) = (usage["prompt_tokens"].as_u64().unwrap(), usage["completion_tokens"].as_u64().unwrap());
    // gpt-4o-mini's list price: $0.15 and $0.60 per million tokens, in nano-dollars.
    let cost = input * 150 + output * 600;
    let redis_key = format!("llmc1:{}", key_of("tenant-a", &b).digest_hex());
    eventually(Duration::from_secs(10), "tier 2 written", || {
        (redis(&s, json!(["EXISTS", redis_key])) == 1).then_some(())
    });
    for base in [peer.url(), peer.url(), s.url(), s.url()] {
        let hit = request_to(&base, KEY_A, &b, &[]).send().expect("hit");
        assert_eq!((hit.status, hit.header("x-cache")), (200, Some("HIT")), "{}", hit.text());
    }
    let streamed =
        read_stream(request(&s, KEY_A, &stream_body(&marker("observe-stream")), &[("x-request-id", "req-obs-stream")]))
            .expect("the stream completes");
    assert_eq!(streamed.status, 200);

    // Both hosts' isolates flush into the same hashes.
    let t = eventually(Duration::from_secs(15), "the metrics of six requests", || {
        let t = totals(&s);
        (sum(&t, "requests|") == 6 && sum(&t, "hits|") == 4).then_some(t)
    });
    assert_eq!(t.get("requests|tenant-a|gpt-4o-mini|miss"), Some(&2), "{t:?}");
    assert_eq!(t.get("requests|tenant-a|gpt-4o-mini|hit"), Some(&4), "{t:?}");
    assert_eq!(t.get("calls|openai|2xx"), Some(&2), "{t:?}");
    assert!(t.get("tokens|tenant-a|openai|input").is_some_and(|n| *n >= input), "{t:?}");
    assert_eq!(sum(&t, "cost_avoided_nanos|tenant-a|"), 4 * cost, "{t:?}");
    assert_eq!(sum(&t, "tokens_avoided|tenant-a|"), 4 * (input + output), "{t:?}");
    assert_eq!(t.get("duration_ms|origin|count"), Some(&2), "{t:?}");
    assert_eq!(t.get("ttft_ms|openai|count"), Some(&1), "{t:?}");
    let minute_keys = redis(&s, json!(["KEYS", "llmc1:metrics:m:*"]));
    assert!(!minute_keys.as_array().unwrap().is_empty(), "per-minute hashes");
    let ttl = redis(&s, json!(["PTTL", minute_keys[0]])).as_i64().unwrap();
    assert!(ttl > 6 * 86_400_000 && ttl <= 7 * 86_400_000 + 60_000, "kept 7 days: {ttl}");

    // One line per request, with the GenAI names; the stream's is written at its end.
    let lines = eventually(Duration::from_secs(10), "the request lines", || {
        let lines = request_lines(&gateway_log(&s));
        let ids: Vec<&str> = lines.iter().filter_map(|l| l["request_id"].as_str()).collect();
        (ids.contains(&"req-obs-miss") && ids.contains(&"req-obs-stream")).then_some(lines)
    });
    let line = lines.iter().find(|l| l["request_id"] == "req-obs-miss").unwrap();
    assert_eq!(line["gen_ai.operation.name"], "chat", "{line}");
    assert_eq!(line["gen_ai.request.model"], "gpt-4o-mini");
    assert_eq!(line["gen_ai.usage.input_tokens"], input);
    assert_eq!(line["gen_ai.usage.output_tokens"], output);
    assert_eq!(line["tenant"], "tenant-a");
    assert_eq!(line["cache"]["outcome"], "miss");
    assert_eq!(line["attempts"][0]["outcome"], "2xx");
    assert_eq!(line["cost_usd"].as_f64(), Some(cost as f64 / 1e9));
    let stream = lines.iter().find(|l| l["request_id"] == "req-obs-stream").unwrap();
    assert_eq!(stream["stream_end"], "complete", "{stream}");
    assert!(stream["ttft_ms"].is_u64(), "{stream}");
    let peer_lines = request_lines(&peer.log());
    assert_eq!(peer_lines.iter().filter(|l| l["cache"]["outcome"] == "hit").count(), 2, "{peer_lines:?}");
    for l in lines.iter().chain(&peer_lines) {
        assert!(!l.to_string().contains(KEY_A), "no key in {l}");
    }
}

/// The samples of a Prometheus text exposition, as the official Python client's parser reads it
/// (`tests/devstack/py/parse_prometheus.py`, installed by `setup-prometheus-parser.sh`).
fn parse_with_prometheus_client(text: &str) -> Vec<Value> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let root = env!("CARGO_MANIFEST_DIR");
    let setup = Command::new("bash")
        .arg(format!("{root}/tests/devstack/scripts/setup-prometheus-parser.sh"))
        .output()
        .expect("the parser's setup runs");
    assert!(setup.status.success(), "setup: {}", String::from_utf8_lossy(&setup.stderr));
    let python = String::from_utf8(setup.stdout).expect("utf-8").trim().to_owned();
    let mut child = Command::new(python)
        .arg(format!("{root}/tests/devstack/py/parse_prometheus.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("text written");
    let out = child.wait_with_output().expect("parser ends");
    assert!(out.status.success(), "prometheus_client rejects the text: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("samples as JSON")
}

fn sample(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .and_then(|s| s["value"].as_f64())
}

fn prometheus(ctx: &Ctx) {
    let s = ctx.own_stack(&[("METRICS_FLUSH_MS", "200")]);
    let miss = mixed_traffic(&s, "prom", 3);

    let get = || {
        HttpRequest::get(&format!("{}/admin/metrics", s.url()))
            .header("authorization", &format!("Bearer {ADMIN_KEY}"))
            .send()
            .expect("metrics")
    };
    assert_eq!(HttpRequest::get(&format!("{}/admin/metrics", s.url())).send().expect("metrics").status, 401);
    let samples = eventually(Duration::from_secs(15), "six requests in /admin/metrics", || {
        let r = get();
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/plain; version=0.0.4")));
        let samples = parse_with_prometheus_client(&r.text());
        let requests: f64 =
            samples.iter().filter(|s| s["name"] == "llmc_requests_total").filter_map(|s| s["value"].as_f64()).sum();
        (requests == 6.0).then_some(samples)
    });
    let a = [("tenant", "tenant-a"), ("model", "gpt-4o-mini")];
    let outcome = |o| sample(&samples, "llmc_requests_total", &[a[0], a[1], ("outcome", o)]);
    assert_eq!(outcome("miss"), Some(1.0));
    assert_eq!(outcome("hit"), Some(3.0));
    assert_eq!(outcome("error"), Some(1.0));
    assert_eq!(sample(&samples, "llmc_requests_total", &[("tenant", "tenant-b"), ("outcome", "miss")]), Some(1.0));
    let hits: f64 =
        samples.iter().filter(|s| s["name"] == "llmc_cache_hits_total").filter_map(|s| s["value"].as_f64()).sum();
    assert_eq!(hits, 3.0);
    assert_eq!(sample(&samples, "llmc_provider_calls_total", &[("target", "openai"), ("class", "2xx")]), Some(2.0));
    assert_eq!(sample(&samples, "llmc_provider_calls_total", &[("target", "openai"), ("class", "5xx")]), Some(1.0));
    // Histograms as Prometheus reads them: a +Inf bucket equal to the count, cumulative buckets.
    let family: Vec<&Value> =
        samples.iter().filter(|s| s["family"] == "gen_ai_client_operation_duration_seconds").collect();
    assert!(family.iter().all(|s| s["type"] == "histogram"));
    let count = sample(&samples, "gen_ai_client_operation_duration_seconds_count", &[("target", "openai")]);
    assert_eq!(count, Some(3.0), "three provider calls");
    assert_eq!(
        sample(&samples, "gen_ai_client_operation_duration_seconds_bucket", &[("target", "openai"), ("le", "+Inf")]),
        count
    );
    let usage = json_of(&miss)["usage"].clone();
    let input = usage["prompt_tokens"].as_f64().unwrap();
    let tokens_in = sample(&samples, "llmc_tokens_total", &[("tenant", "tenant-a"), ("type", "input")]);
    assert_eq!(tokens_in, Some(input));
    let output = usage["completion_tokens"].as_f64().unwrap();
    let cost = (input * 150.0 + output * 600.0) / 1e9;
    let avoided = sample(&samples, "llmc_cost_avoided_usd_total", &[("tenant", "tenant-a")]).unwrap();
    assert!((avoided - 3.0 * cost).abs() < 1e-12, "{avoided} vs {}", 3.0 * cost);
    let token_usage =
        sample(&samples, "gen_ai_client_token_usage_count", &[("target", "openai"), ("gen_ai_token_type", "input")]);
    assert_eq!(token_usage, Some(2.0), "two answers with usage");
}

fn stats_page(ctx: &Ctx) {
    let s = ctx.own_stack(&[("METRICS_FLUSH_MS", "200")]);
    // Public, without data: no Authorization header needed, nothing of the traffic in it.
    let page = HttpRequest::get(&format!("{}/admin/stats", s.url())).send().expect("page");
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"), "{csp}");
    let html = page.text();
    assert!(html.contains("https://github.com/leeoniya/uPlot (v1.6.32)"), "uPlot is embedded");
    for word in ["tenant-a", KEY_A, ADMIN_KEY, "http://", "https://cdn"] {
        assert!(!html.contains(word), "{word} in the page");
    }
    mixed_traffic(&s, "stats", 4);
    if ctx.host != Host::Cloudflare {
        // The browser test runs on workerd (the host for it); here the data it charts.
        let r = HttpRequest::get(&format!("{}/admin/metrics.json?window=hour", s.url()))
            .header("authorization", &format!("Bearer {ADMIN_KEY}"))
            .send()
            .expect("metrics.json");
        assert_eq!(r.status, 200, "{}", r.text());
        let v = json_of(&r);
        assert_eq!(v["requests"]["hit"][59], 4, "{v}");
        return;
    }
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("stats-page.png");
    let env =
        [("GATEWAY_URL", s.url()), ("ADMIN_KEY", ADMIN_KEY.to_owned()), ("SCREENSHOT", shot.display().to_string())];
    let out = devstack::node::run_script("stats-page-check.mjs", "playwright-core", &env, &[], Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "the page's checks failed:\n{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("stats page checks passed"), "{}", out.stdout);
    assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000), "a screenshot at {}", shot.display());
}

/// Real traffic on `s`: a miss of tenant A (returned) and, once it is in tier 2, `hits` hits of
/// it; a miss of tenant B; a call the provider fails with a 500.
fn mixed_traffic(s: &Stack, name: &str, hits: usize) -> devstack::HttpResponse {
    let b = body(&marker(name));
    let miss = chat(s, KEY_A, &b, &[]);
    assert_eq!(miss.status, 200, "{}", miss.text());
    let redis_key = format!("llmc1:{}", key_of("tenant-a", &b).digest_hex());
    eventually(Duration::from_secs(10), "tier 2 written", || {
        (redis(s, json!(["EXISTS", redis_key])) == 1).then_some(())
    });
    for _ in 0..hits {
        assert_eq!(chat(s, KEY_A, &b, &[]).header("x-cache"), Some("HIT"));
    }
    assert_eq!(chat(s, KEY_B, &body(&marker(&format!("{name}-b"))), &[]).status, 200);
    let failing = marker(&format!("{name}-500"));
    s.fake().add_rule(&failing, json!([{"kind": "status", "status": 500}]), true);
    assert_eq!(chat(s, KEY_A, &body(&failing), &[]).status, 502);
    miss
}
