//! One codebase, two hosts: the same requests sent to the Cloudflare and the Spin deployment must
//! get the same status, the same body and the same cache headers. Runs with both hosts' shared
//! stacks up; only what is random or timed (request ids, timings, ages, TTL seconds, the fake
//! upstream's call numbers) is left out of the comparison.

use devstack::stack::{Stack, KEY_A};
use devstack::{HttpRequest, HttpResponse};
use serde_json::Value;

use crate::client::*;

pub type ParityScenario = (&'static str, fn(&Stack, &Stack));

pub fn scenarios() -> Vec<ParityScenario> {
    vec![
        ("parity::bad_input_answers_are_identical", bad_input),
        ("parity::cache_headers_are_identical", cache_headers),
        ("parity::informational_endpoints_are_identical", informational),
    ]
}

/// Headers compared across hosts, with digits in TTLs and ages masked.
const COMPARED: &[&str] = &[
    "content-type",
    "x-cache",
    "x-cache-tier",
    "cache-status",
    "x-provider",
    "x-attempts",
    "x-fallback",
    "retry-after",
    "allow",
    "access-control-allow-origin",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-expose-headers",
];

fn comparable(r: &HttpResponse) -> (u16, Vec<(String, Option<String>)>) {
    let headers = COMPARED
        .iter()
        .map(|h| {
            let v = r.header(h).map(|v| {
                if *h == "cache-status" {
                    v.split(", ").map(mask_ttl).collect::<Vec<_>>().join(", ")
                } else {
                    v.to_owned()
                }
            });
            (h.to_string(), v)
        })
        .collect();
    (r.status, headers)
}

fn mask_ttl(member: &str) -> String {
    member
        .split("; ")
        .map(|p| if p.starts_with("ttl=") { "ttl=N".to_owned() } else { p.to_owned() })
        .collect::<Vec<_>>()
        .join("; ")
}

fn same(what: &str, a: &HttpResponse, b: &HttpResponse) {
    assert_eq!(comparable(a), comparable(b), "{what}: status and headers differ between hosts");
}

fn bad_input(cf: &Stack, spin: &Stack) {
    for case in bad_input_cases() {
        let name = case["name"].as_str().expect("name");
        if case["oversize"] == true {
            continue; // the limit differs by stack configuration, not by host
        }
        let send = |s: &Stack| bad_input_request(s, &case, 0).send().unwrap_or_else(|e| panic!("{name}: {e}"));
        let (a, b) = (send(cf), send(spin));
        same(name, &a, &b);
        assert_eq!(a.text(), b.text(), "{name}: bodies differ");
    }
}

fn cache_headers(cf: &Stack, spin: &Stack) {
    let m = marker("parity");
    let b = body(&m);
    let first = (chat_a(cf, &b), chat_a(spin, &b));
    same("a miss", &first.0, &first.1);
    let hit = (wait_cached(cf, KEY_A, &b), wait_cached(spin, KEY_A, &b));
    same("a hit", &hit.0, &hit.1);
    let no_store = |s: &Stack| chat(s, KEY_A, &b, &[("cache-control", "no-store")]);
    same("no-store", &no_store(cf), &no_store(spin));
    let oic = |s: &Stack| chat(s, KEY_A, &body(&marker("parity-oic")), &[("cache-control", "only-if-cached")]);
    let (a, z) = (oic(cf), oic(spin));
    same("only-if-cached miss", &a, &z);
    assert_eq!(a.text(), z.text());
    let stream = |s: &Stack| read_stream(request(s, KEY_A, &stream_body(&m), &[])).expect("complete stream");
    same("a stream", &stream(cf), &stream(spin));
}

fn informational(cf: &Stack, spin: &Stack) {
    let models = |s: &Stack| {
        HttpRequest::get(&format!("{}/v1/models", s.url()))
            .header("authorization", &format!("Bearer {KEY_A}"))
            .send()
            .expect("models")
    };
    let (a, b) = (models(cf), models(spin));
    same("/v1/models", &a, &b);
    assert_eq!(a.text(), b.text());
    let preflight = |s: &Stack| {
        HttpRequest::new("OPTIONS", &format!("{}/v1/chat/completions", s.url()))
            .header("origin", "https://app.example")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
            .expect("preflight")
    };
    same("CORS preflight", &preflight(cf), &preflight(spin));
    let live = |s: &Stack| HttpRequest::get(&format!("{}/healthz", s.url())).send().expect("healthz");
    same("/healthz", &live(cf), &live(spin));
    let health = |s: &Stack| {
        HttpRequest::get(&format!("{}/admin/health", s.url()))
            .header("authorization", &format!("Bearer {}", devstack::stack::ADMIN_KEY))
            .send()
            .expect("admin health")
    };
    let (a, b) = (health(cf), health(spin));
    same("/admin/health", &a, &b);
    let shape = |r: &HttpResponse| {
        let mut v = json_of(r);
        for tier in ["edge_kv", "redis"] {
            v["tiers"][tier]["latency_ms"] = Value::Null;
        }
        // Counters live in each stack's own Redis: what one host's scenarios skipped is its own.
        v["not_stored"] = Value::Null;
        v["coalesced"] = Value::Null;
        v
    };
    assert_eq!(shape(&a), shape(&b), "/admin/health reports the same state on both hosts");
}
