//! Single flight on the real runtimes: a burst of identical misses (JSON and streamed) makes one
//! provider call, inside one runtime (workerd's isolate; Spin's instances, up to 16 requests
//! each, sharing through Redis), and two gateways on different hosts sharing one Redis make one
//! call for the same question asked of both at once. Prints the calls saved.

use std::time::Duration;

use devstack::stack::KEY_A;
use devstack::HttpResponse;
use llm_edge_cache::providers::assemble::Assembler;
use serde_json::{json, Value};

use crate::client::*;
use crate::runner::{Ctx, Scenario};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        ("coalesce::twenty_identical_misses_make_one_provider_call", burst),
        ("coalesce::two_hosts_sharing_redis_make_one_provider_call", two_hosts),
    ]
}

/// `x-coalesced`, when the answer has it.
fn coalesced(r: &HttpResponse) -> Option<&str> {
    r.header("x-coalesced")
}

/// The message of a JSON answer or of a complete stream.
fn message(r: &HttpResponse) -> Value {
    if header(r, "content-type").starts_with("text/event-stream") {
        let mut a = Assembler::new(1 << 20);
        a.push(&r.body);
        let answer = a.finish().unwrap_or_else(|e| panic!("not a complete stream ({e}): {}", r.text()));
        let v: Value = serde_json::from_slice(&answer.body).expect("json");
        return v["choices"][0]["message"].clone();
    }
    json_of(r)["choices"][0]["message"].clone()
}

fn burst(ctx: &Ctx) {
    let s = ctx.shared;
    let m = marker("coalesce-burst");
    // Slow enough that every request of the burst arrives while the first call is out.
    s.fake().add_rule(&m, json!([{"kind": "ok", "delay_ms": 2500}]), true);
    let whole = body(&m);
    let streamed =
        json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": m}]}).to_string();
    let replies: Vec<HttpResponse> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let b = if i % 4 == 3 { streamed.clone() } else { whole.clone() };
                let id = format!("req-burst-{i}");
                scope.spawn(move || {
                    std::thread::sleep(Duration::from_millis(10 * i));
                    read_stream(request(s, KEY_A, &b, &[("x-request-id", &id)]))
                        .unwrap_or_else(|p| panic!("request {i} broke off: {}", p.text()))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("request thread")).collect()
    });
    let calls = s.fake().calls(&m);
    let shared = replies.iter().filter(|r| coalesced(r).is_some()).count();
    eprintln!(
        "coalesce burst on {}: 20 identical misses, {calls} provider call(s), {shared} answered by another's call",
        ctx.host.name()
    );
    assert_eq!(calls, 1, "one provider call for the burst");
    assert_eq!(shared, 19);
    let first = message(&replies[0]);
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(message(r), first, "request {i} got the same answer");
        if let Some(leader) = coalesced(r) {
            assert!(leader.starts_with("req-burst-"), "{leader}");
            assert!(header(r, "cache-status").contains("collapsed"), "{}", header(r, "cache-status"));
            assert_eq!(header(r, "x-cache"), "MISS");
        }
    }
    // Counted in Redis for /admin/health (after the responses, in the background).
    let saved = || {
        let saved = &admin_health(s)["coalesced"];
        saved["isolate"].as_u64().unwrap_or(0) + saved["redis"].as_u64().unwrap_or(0)
    };
    crate::runner::eventually(Duration::from_secs(10), "the saved calls to be counted", || {
        (saved() >= 19).then_some(())
    });
    assert!(gateway_log(s).contains("\"event\":\"coalesced\""));
}

fn two_hosts(ctx: &Ctx) {
    let s = ctx.own_stack(&[]);
    let other = ctx.host.other();
    let peer = s.start_peer(other.kind()).unwrap_or_else(|e| panic!("a peer on {}: {e}", other.name()));
    let m = marker("coalesce-hosts");
    s.fake().add_rule(&m, json!([{"kind": "ok", "delay_ms": 2500}]), true);
    let b = body(&m);
    let (here, there) = std::thread::scope(|scope| {
        let here = scope.spawn(|| request(&s, KEY_A, &b, &[("x-request-id", "req-here")]).send());
        std::thread::sleep(Duration::from_millis(300));
        let there = scope.spawn(|| request_to(&peer.url(), KEY_A, &b, &[("x-request-id", "req-there")]).send());
        (here.join().expect("thread"), there.join().expect("thread"))
    });
    let (here, there) = (here.expect("this host answers"), there.expect("the peer answers"));
    assert_eq!((here.status, there.status), (200, 200), "{} / {}", here.text(), there.text());
    assert_eq!(s.fake().calls(&m), 1, "one provider call for both hosts");
    assert_eq!(coalesced(&here), None);
    assert_eq!(coalesced(&there), Some("req-here"), "the peer shared this host's call");
    assert_eq!(message(&there), message(&here));
}
