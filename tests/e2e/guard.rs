//! Guard rails on the real runtimes, with a real Redis: a tenant's limit shared by both hosts at
//! once (the window script run with EVALSHA, loaded with EVAL on NOSCRIPT); the official OpenAI
//! SDK reading the rate-limit headers and the 429; a kill switch flipped through one host and
//! obeyed by the other within its bound; Redis stopped: fail open, or closed when the tenant
//! says so.

use std::time::{Duration, Instant};

use devstack::node::run_script;
use devstack::stack::{Stack, ADMIN_KEY, KEY_A, KEY_B};
use devstack::{HttpRequest, HttpResponse};
use llm_edge_cache::stores::redis::{WINDOW_SCRIPT, WINDOW_SCRIPT_SHA1};
use serde_json::json;

use crate::client::*;
use crate::runner::{eventually, Ctx, Scenario};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        ("guard::a_limit_is_shared_by_both_hosts_at_once", shared_limit),
        ("guard::the_openai_sdk_reads_the_rate_limit_headers", openai_sdk),
        ("guard::a_kill_switch_reaches_the_other_host_within_its_bound", kill_switch),
        ("guard::redis_down_fails_open_or_closed_as_the_tenant_says", redis_down),
        ("guard::what_a_limit_check_costs", cost),
    ]
}

/// Waits for a fresh minute when this one is nearly over, so that a scenario's requests fall
/// into one fixed window (the sliding window lets some of the last one go as it rolls over).
pub(crate) fn early_in_a_minute() {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let into = ms % 60_000;
    if into > 40_000 {
        std::thread::sleep(Duration::from_millis(60_000 - into + 200));
    }
}

fn admin_post(base: &str, path: &str, body: &str) -> HttpResponse {
    HttpRequest::post(&format!("{base}{path}"))
        .header("authorization", &format!("Bearer {ADMIN_KEY}"))
        .header("content-type", "application/json")
        .timeout(Duration::from_secs(10))
        .body(body.as_bytes().to_vec())
        .send()
        .unwrap_or_else(|e| panic!("admin request failed: {e}"))
}

fn to(base: &str, key: &str, body: &str) -> HttpResponse {
    request_to(base, key, body, &[]).send().unwrap_or_else(|e| panic!("chat request to {base} failed: {e}"))
}

fn shared_limit(ctx: &Ctx) {
    let tenants = json!({"tenant-a": {"requests_per_minute": 4}, "tenant-b": {"requests_per_minute": 6}}).to_string();
    let s = ctx.own_stack(&[("TENANTS", &tenants)]);
    let other = ctx.host.other();
    let peer = s.start_peer(other.kind()).unwrap_or_else(|e| panic!("a peer on {}: {e}", other.name()));
    early_in_a_minute();
    let m = marker("guard-shared");
    // Two through each host, interleaved: one count in Redis.
    for (i, base) in [s.url(), peer.url(), s.url(), peer.url()].iter().enumerate() {
        let r = to(base, KEY_A, &body(&format!("{m} {i}")));
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(header(&r, "x-ratelimit-limit-requests"), "4");
        assert_eq!(header(&r, "x-ratelimit-remaining-requests"), (3 - i).to_string(), "request {i}");
    }
    for base in [s.url(), peer.url()] {
        let r = to(&base, KEY_A, &body(&format!("{m} over")));
        assert_error(&r, 429, "rate_limit_exceeded");
        assert_eq!(json_of(&r)["error"]["type"], "requests");
        assert!(header(&r, "retry-after").parse::<u64>().is_ok_and(|s| s >= 1));
    }
    // Tenant B: twelve requests at once, six through each host: exactly its six are let through.
    let (s_url, peer_url) = (s.url(), peer.url());
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..12)
            .map(|i| {
                let base = if i % 2 == 0 { s_url.clone() } else { peer_url.clone() };
                let b = body(&format!("{m} burst {i}"));
                scope.spawn(move || to(&base, KEY_B, &b).status)
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("request thread")).collect()
    });
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!((admitted, statuses.iter().filter(|s| **s == 429).count()), (6, 6), "{statuses:?}");
    // Only the admitted requests reached the provider: four of tenant A, six of tenant B.
    assert_eq!(s.fake().calls(&m), 10);
    // The script ran by its SHA-1 after one EVAL (Redis's own digest of it is ours).
    assert_eq!(redis(&s, json!(["SCRIPT", "EXISTS", WINDOW_SCRIPT_SHA1])), json!([1]));
    assert_eq!(redis(&s, json!(["SCRIPT", "LOAD", WINDOW_SCRIPT])), json!(WINDOW_SCRIPT_SHA1));
    drop(peer);
}

fn openai_sdk(ctx: &Ctx) {
    let tenants = json!({"tenant-a": {"requests_per_minute": 3}}).to_string();
    let s = ctx.own_stack(&[("TENANTS", &tenants)]);
    early_in_a_minute();
    let env = [
        ("GATEWAY_URL", s.url()),
        ("GATEWAY_KEY", KEY_A.to_owned()),
        ("LIMIT", "3".to_owned()),
        ("MARKER", marker("guard-sdk")),
    ];
    let unset = ["OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_LOG"];
    let out = run_script("openai-ratelimit-check.mjs", "openai", &env, &unset, Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "the SDK's checks failed:\n{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("rate limit checks passed"), "{}\n{}", out.stdout, out.stderr);
}

fn kill_switch(ctx: &Ctx) {
    let s: Stack = ctx.stack_with(crate::routing::vars(), &[]);
    let other = ctx.host.other();
    let peer = s.start_peer(other.kind()).unwrap_or_else(|e| panic!("a peer on {}: {e}", other.name()));
    let ask = |m: &str| json!({"model": "r-400", "messages": [{"role": "user", "content": m}]}).to_string();
    let r = to(&peer.url(), KEY_A, &ask(&marker("kill-before")));
    assert_eq!((r.status, header(&r, "x-provider")), (200, "r5-primary"), "{}", r.text());
    let off = admin_post(&s.url(), "/admin/targets/r5-primary/disable", "");
    assert_eq!(off.status, 200, "{}", off.text());
    let flipped = Instant::now();
    assert_eq!(header(&to(&s.url(), KEY_A, &ask(&marker("kill-here"))), "x-provider"), "r5-secondary");
    // The bound: KILL_REFRESH_MS, plus a read and a request on a loaded machine.
    let bound = Duration::from_millis(llm_edge_cache::gateway::KILL_REFRESH_MS) + Duration::from_secs(3);
    eventually(bound, "the peer to leave the switched-off target", || {
        let r = to(&peer.url(), KEY_A, &ask(&marker("kill-peer")));
        (header(&r, "x-provider") == "r5-secondary").then_some(())
    });
    assert!(flipped.elapsed() < bound + Duration::from_secs(1));
    let r = to(&peer.url(), KEY_A, &ask(&marker("kill-peer-again")));
    assert_eq!(header(&r, "x-provider"), "r5-secondary", "and it stays off");
    assert!(s.worker.log().contains("\"action\":\"target_disable\""), "an audit line");
    assert!(!s.worker.log().contains(ADMIN_KEY));
    let on = admin_post(&peer.url(), "/admin/targets/r5-primary/enable", "");
    assert_eq!(on.status, 200, "{}", on.text());
    eventually(bound, "this host to use the target again", || {
        let r = to(&s.url(), KEY_A, &ask(&marker("kill-back")));
        (header(&r, "x-provider") == "r5-primary").then_some(())
    });
    let missing = admin_post(&s.url(), "/admin/targets/nobody/disable", "");
    assert_error(&missing, 404, "target_not_found");
    drop(peer);
}

fn redis_down(ctx: &Ctx) {
    let tenants =
        json!({"tenant-a": {"requests_per_minute": 100}, "tenant-b": {"requests_per_minute": 100, "fail_closed": true}})
            .to_string();
    let mut s = ctx.own_stack(&[("TENANTS", &tenants)]);
    let r = chat_a(&s, &body(&marker("guard-up")));
    assert_eq!(header(&r, "x-ratelimit-limit-requests"), "100");
    s.redis.stop();
    let started = Instant::now();
    let r = chat_a(&s, &body(&marker("guard-down")));
    assert_eq!(r.status, 200, "fail open: {}", r.text());
    assert!(r.header("x-ratelimit-limit-requests").is_none(), "no numbers it could not read");
    assert!(started.elapsed() < Duration::from_secs(5), "a dead Redis must not hold the request");
    let closed = chat(&s, KEY_B, &body(&marker("guard-closed")), &[]);
    assert_error(&closed, 503, "rate_limit_unavailable");
    eventually(Duration::from_secs(10), "the failed check to be logged", || {
        s.worker.log().contains("\"event\":\"limit_check_failed\"").then_some(())
    });
    s.redis.restart().expect("redis restarts");
}

/// Redis's own count of each command run so far (`INFO commandstats`).
fn command_counts(s: &Stack) -> std::collections::BTreeMap<String, u64> {
    let info = redis(s, json!(["INFO", "commandstats"]));
    let text = info.as_str().unwrap_or_default().to_owned();
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?.parse().ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// Redis's commands per request while `send` makes `n` requests (and the writes after them
/// land): script runs (EVALSHA/EVAL), INCRBY, and every command.
pub(crate) fn commands_per_request(s: &Stack, n: usize, mut send: impl FnMut(usize)) -> (f64, f64, f64) {
    let before = command_counts(s);
    (0..n).for_each(&mut send);
    std::thread::sleep(Duration::from_millis(500));
    let after = command_counts(s);
    let per = |name: &str| (after.get(name).unwrap_or(&0) - before.get(name).unwrap_or(&0)) as f64 / n as f64;
    let all = (after.values().sum::<u64>() - before.values().sum::<u64>()) as f64 / n as f64;
    (per("evalsha") + per("eval"), per("incrby"), all)
}

/// Milliseconds at the 50th and 99th percentile.
pub(crate) fn percentiles(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
    (at(0.5), at(0.99))
}

/// Measures, one run on this machine: the latency of a miss with and without a limit check, of
/// a refusal from isolate memory, and the Redis commands a limited miss costs. Prints them; only
/// asserts that the refusals from memory cost no script run.
fn cost(ctx: &Ctx) {
    const N: usize = 40;
    let tenants = json!({"tenant-a": {"requests_per_minute": 100000, "tokens_per_minute": 100000000}, "tenant-b": {"requests_per_minute": 1}}).to_string();
    let s = ctx.own_stack(&[("TENANTS", &tenants)]);
    let m = marker("guard-cost");
    let timed = |stack: &Stack, key: &str, i: usize, what: &str| {
        let t = Instant::now();
        let r = chat(stack, key, &body(&format!("{m} {what} {i}")), &[("cache-control", "no-store")]);
        (r.status, t.elapsed().as_secs_f64() * 1000.0)
    };
    // Warm both up (the script loaded, the isolates' first reads done).
    timed(&s, KEY_A, 0, "warm");
    timed(ctx.shared, KEY_A, 0, "warm");
    let (mut limited, mut free) = (Vec::new(), Vec::new());
    let before = command_counts(&s);
    for i in 0..N {
        let (status, ms) = timed(&s, KEY_A, i, "limited");
        assert_eq!(status, 200);
        limited.push(ms);
        let (status, ms) = timed(ctx.shared, KEY_A, i, "free");
        assert_eq!(status, 200);
        free.push(ms);
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = command_counts(&s);
    let per = |names: &[&str]| {
        names.iter().map(|n| after.get(*n).unwrap_or(&0) - before.get(*n).unwrap_or(&0)).sum::<u64>() as f64 / N as f64
    };
    let total: u64 = after.values().sum::<u64>() - before.values().sum::<u64>();
    // Tenant B: one request, one refusal checked in Redis, then refusals from memory.
    assert_eq!(timed(&s, KEY_B, 0, "b").0, 200);
    let (status, checked_429) = timed(&s, KEY_B, 1, "b");
    assert_eq!(status, 429);
    let scripts_before = per(&["evalsha", "eval"]);
    let mut remembered = Vec::new();
    for i in 0..N {
        let (status, ms) = timed(&s, KEY_B, i + 2, "b");
        assert_eq!(status, 429);
        remembered.push(ms);
    }
    assert_eq!(per(&["evalsha", "eval"]), scripts_before, "refusals from memory run no script");
    let ((lp50, lp99), (fp50, fp99), (rp50, rp99)) = (percentiles(limited), percentiles(free), percentiles(remembered));
    eprintln!(
        "limit check cost on {}: miss with limits p50 {lp50:.1} ms p99 {lp99:.1} ms; without p50 {fp50:.1} ms p99 {fp99:.1} ms; \
         429 checked in Redis {checked_429:.1} ms; 429 from isolate memory p50 {rp50:.1} ms p99 {rp99:.1} ms; \
         Redis commands per limited no-store miss: {:.2} script runs (EVALSHA/EVAL), {:.2} INCRBY+PEXPIRE pairs of tokens, {:.2} commands in all (script-internal ones included)",
        ctx.host.name(),
        per(&["evalsha", "eval"]),
        per(&["incrby"]),
        total as f64 / N as f64,
    );
}
