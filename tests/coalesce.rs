//! Single flight on the in-memory host, in virtual time: identical misses in flight at once share
//! one provider call, in one isolate (JSON and stream followers, either form following either)
//! and across isolates through the claim in Redis; a leader that fails or stalls never costs its
//! followers more than their own call after the bound; Redis down means no coalescing, never an
//! error; `no-cache` and `COALESCE_WAIT_MS=0` opt out.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use futures_util::future::join_all;
use llm_edge_cache::gateway;
use llm_edge_cache::ports::{Body, Clock, Memory};
use llm_edge_cache::testing::Scripted;
use serde_json::{json, Value};
use support::*;

fn ask(content: &str, stream: bool) -> String {
    json!({"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": content}]}).to_string()
}

fn request(body: &str, id: &str, headers: &[(&str, &str)]) -> http::Request<Body> {
    let mut req = http::Request::post("https://gw.test/v1/chat/completions")
        .header("authorization", format!("Bearer {KEY_A}"))
        .header("content-type", "application/json")
        .header("x-request-id", id);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Body::Full(Bytes::from(body.to_owned()))).expect("valid request")
}

/// One request through `w`, its body read to the end.
async fn exchange(w: &World, req: http::Request<Body>) -> Reply {
    let response = gateway::handle(&w.host, Ok(&w.config), req).await;
    let (parts, body) = response.into_parts();
    let body = body.collect(usize::MAX).await.expect("body reads");
    Reply { status: parts.status.as_u16(), headers: parts.headers, body }
}

/// Runs the requests at once (each through its world), background work beside them.
fn at_once(driver: &World, requests: Vec<(&World, http::Request<Body>)>) -> Vec<Reply> {
    driver.host.block_on_with_background(join_all(requests.into_iter().map(|(w, r)| exchange(w, r))))
}

/// The provider answers JSON after `ms`, counting calls.
fn slow_provider(w: &World, ms: u64) -> Rc<RefCell<usize>> {
    let calls = Rc::new(RefCell::new(0));
    let c = calls.clone();
    let body = fixture("openai/ok.json");
    w.upstream(move |req| {
        *c.borrow_mut() += 1;
        let streamed = wire(req)["stream"] == true;
        let then = if streamed {
            let events = fixture("openai/stream_ok.sse");
            let chunks = events.split_inclusive("\n\n").map(|e| Ok(Bytes::from(e.to_owned()))).collect();
            Scripted::Stream { status: 200, chunks }
        } else {
            Scripted::Respond {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: Bytes::from(body.clone()),
            }
        };
        Scripted::Delay { ms, then: Box::new(then) }
    });
    calls
}

fn content(r: &Reply) -> Value {
    r.json()["choices"][0]["message"]["content"].clone()
}

#[test]
fn twenty_identical_misses_in_one_isolate_make_one_provider_call() {
    let w = World::new();
    let calls = slow_provider(&w, 2_000);
    let body = ask("burst", false);
    let requests = (0..20).map(|i| (&w, request(&body, &format!("req-{i}"), &[]))).collect();
    let replies = at_once(&w, requests);
    assert_eq!(*calls.borrow(), 1, "one provider call for twenty identical misses");
    let leader = &replies[0];
    assert_eq!(leader.status, 200);
    assert_eq!(leader.header("x-coalesced"), None, "the leader called the provider itself");
    for r in &replies[1..] {
        assert_eq!(r.status, 200);
        assert_eq!(content(r), content(leader));
        assert_eq!(r.header("x-coalesced"), Some("req-0"));
        assert_eq!(r.header("x-cache"), Some("MISS"));
        assert!(r.header("cache-status").is_some_and(|s| s.contains("collapsed")), "{:?}", r.header("cache-status"));
    }
    assert!(w.host.flights().is_empty(), "every flight ended");
    w.host.run_background();
    let saved: Vec<String> = w.host.logs().into_iter().filter(|l| l.contains("\"event\":\"coalesced\"")).collect();
    assert_eq!(saved.len(), 19);
    assert_eq!(w.upstash.raw("llmc1:count:coalesced_isolate").as_deref(), Some("19"));
    let health = w.admin_get("/admin/health").json();
    assert_eq!(health["coalesced"], json!({"isolate": 19, "redis": 0}), "{health}");
    assert!(health["not_stored"].get("coalesced_isolate").is_none());
}

#[test]
fn stream_followers_read_along_and_other_forms_get_the_whole_answer() {
    let w = World::new();
    let calls = slow_provider(&w, 1_000);
    let streamed = ask("stream burst", true);
    let whole = ask("stream burst", false);
    let requests = vec![
        (&w, request(&streamed, "lead", &[])),
        (&w, request(&streamed, "along-1", &[])),
        (&w, request(&whole, "whole", &[])),
        (&w, request(&streamed, "along-2", &[])),
    ];
    let replies = at_once(&w, requests);
    assert_eq!(*calls.borrow(), 1);
    let lead = &replies[0];
    assert!(lead.body.ends_with(b"data: [DONE]\n\n"), "{:?}", lead.body);
    for along in [&replies[1], &replies[3]] {
        assert_eq!(along.header("content-type"), Some("text/event-stream"));
        assert_eq!(along.header("x-coalesced"), Some("lead"));
        assert_eq!(along.body, lead.body, "a follower streams what the leader's client got");
    }
    let whole = &replies[2];
    assert_eq!(whole.header("content-type"), Some("application/json"));
    assert_eq!(whole.header("x-coalesced"), Some("lead"));
    assert!(content(whole).as_str().is_some_and(|c| !c.is_empty()), "{}", whole.json());
}

#[test]
fn a_stream_follower_of_a_json_leader_gets_the_answer_replayed() {
    let w = World::new();
    let calls = slow_provider(&w, 1_000);
    let replies = at_once(
        &w,
        vec![(&w, request(&ask("mixed", false), "lead", &[])), (&w, request(&ask("mixed", true), "follow", &[]))],
    );
    assert_eq!(*calls.borrow(), 1);
    let follow = &replies[1];
    assert_eq!(follow.header("content-type"), Some("text/event-stream"));
    assert_eq!(follow.header("x-coalesced"), Some("lead"));
    let text = std::str::from_utf8(&follow.body).expect("utf-8");
    assert!(text.contains("\"delta\"") && text.ends_with("data: [DONE]\n\n"), "{text}");
}

#[test]
fn isolates_share_a_call_through_the_claim_in_redis() {
    let a = World::new();
    let b = a.another_isolate();
    let calls = slow_provider(&a, 3_000);
    let body = ask("two isolates", false);
    let replies = at_once(&a, vec![(&a, request(&body, "on-a", &[])), (&b, request(&body, "on-b", &[]))]);
    assert_eq!(*calls.borrow(), 1, "one call for both isolates");
    assert_eq!(replies[1].status, 200);
    assert_eq!(replies[1].header("x-coalesced"), Some("on-a"));
    assert_eq!(content(&replies[1]), content(&replies[0]));
    a.host.run_background();
    assert!(!a.upstash.keys().iter().any(|k| k.contains(":flight:")), "the claim is gone: {:?}", a.upstash.keys());
    assert_eq!(a.upstash.raw("llmc1:count:coalesced_redis").as_deref(), Some("1"));
}

#[test]
fn followers_of_a_leader_that_failed_call_the_provider_themselves() {
    let w = World::new();
    let b = w.another_isolate();
    let calls = scripted(
        &w,
        UPSTREAM,
        // The local follower's own call is slow, so the remote one sees the claim go first.
        vec![
            Scripted::Delay { ms: 1_000, then: Box::new(status(400)) },
            Scripted::Delay { ms: 2_000, then: Box::new(ok("x")) },
        ],
    );
    let body = ask("fails", false);
    let started = w.host.now_ms();
    let replies = at_once(
        &w,
        vec![
            (&w, request(&body, "lead", &[])),
            (&w, request(&body, "local", &[])),
            (&b, request(&body, "remote", &[])),
        ],
    );
    replies[0].assert_error(400, "upstream_rejected_request");
    for r in &replies[1..] {
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.header("x-coalesced"), None);
    }
    assert_eq!(*calls.borrow(), 3);
    // The remote follower saw the claim go at once, not after COALESCE_WAIT_MS.
    assert!(w.host.now_ms() - started < 5_000, "took {} ms", w.host.now_ms() - started);
}

#[test]
fn a_stuck_claim_holds_a_request_back_no_longer_than_the_bound() {
    let w = world_with(&[("COALESCE_WAIT_MS", "4000")]);
    let calls = slow_provider(&w, 10);
    let body = ask("stuck", false);
    let key = key_for("tenant-a", &body);
    w.upstash.insert_raw(&format!("llmc1:flight:{}", key.digest_hex()), "gone-request");
    let started = w.host.now_ms();
    let r = at_once(&w, vec![(&w, request(&body, "late", &[]))]).remove(0);
    assert_eq!(r.status, 200);
    assert_eq!(*calls.borrow(), 1);
    let waited = w.host.now_ms() - started;
    assert!((4_000..4_600).contains(&waited), "waited {waited} ms");
    assert!(w.host.logs().iter().any(|l| l.contains("coalesce_gave_up")));
}

#[test]
fn redis_down_means_no_coalescing_across_isolates_and_no_error() {
    let a = World::new();
    let b = a.another_isolate();
    let calls = slow_provider(&a, 1_000);
    a.upstash.set_down(true);
    let body = ask("redis down", false);
    let replies = at_once(&a, vec![(&a, request(&body, "a", &[])), (&b, request(&body, "b", &[]))]);
    assert!(replies.iter().all(|r| r.status == 200));
    assert_eq!(*calls.borrow(), 2);
    assert!(a.host.logs().iter().any(|l| l.contains("\"op\":\"claim\"")), "the failed claim is logged");
}

#[test]
fn no_cache_and_a_zero_bound_opt_out() {
    let w = World::new();
    let calls = slow_provider(&w, 500);
    let body = ask("opt out", false);
    let cc = [("cache-control", "no-cache")];
    at_once(&w, vec![(&w, request(&body, "a", &cc)), (&w, request(&body, "b", &cc))]);
    assert_eq!(*calls.borrow(), 2, "no-cache: each request calls");

    let off = world_with(&[("COALESCE_WAIT_MS", "0")]);
    let calls = slow_provider(&off, 500);
    let replies = at_once(&off, vec![(&off, request(&body, "a", &[])), (&off, request(&body, "b", &[]))]);
    assert_eq!(*calls.borrow(), 2, "COALESCE_WAIT_MS=0: off");
    assert!(replies.iter().all(|r| r.header("x-coalesced").is_none()));
}

#[test]
fn a_request_arriving_while_the_answer_is_being_stored_is_served_from_memory() {
    let w = World::new();
    w.host.set_kv_delay(300);
    let calls = slow_provider(&w, 100);
    let body = ask("late arrival", false);
    let first = w.chat(&body, &[]);
    assert_eq!(first.status, 200);
    // The write has not run: the flight still holds the answer.
    assert!(!w.host.flights().is_empty());
    let second = w.chat(&body, &[]);
    assert_eq!(second.header("x-coalesced"), first.header("x-request-id"));
    assert_eq!(*calls.borrow(), 1);
    w.host.run_background();
    assert!(w.host.flights().is_empty());
}

fn world_with(extra: &[(&str, &str)]) -> World {
    World::with_config(config_with(extra))
}

#[test]
fn an_answer_the_cache_does_not_store_is_still_shared_in_the_isolate() {
    let w = World::new();
    let b = w.another_isolate();
    let cut = json!({"id": "chatcmpl-cut", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "cut sh"}, "finish_reason": "length"}]});
    let calls = scripted(&w, UPSTREAM, vec![Scripted::Delay { ms: 1_000, then: Box::new(Scripted::json(200, &cut)) }]);
    let body = ask("truncated", false);
    let replies = at_once(
        &w,
        vec![
            (&w, request(&body, "lead", &[])),
            (&w, request(&body, "local", &[])),
            (&b, request(&body, "remote", &[])),
        ],
    );
    assert!(replies.iter().all(|r| r.status == 200));
    assert_eq!(replies[1].header("x-coalesced"), Some("lead"));
    assert_eq!(replies[1].json()["choices"][0]["finish_reason"], "length");
    // Not stored, so the other isolate saw the claim go without an entry and called itself.
    assert_eq!(replies[2].header("x-coalesced"), None);
    assert_eq!(*calls.borrow(), 2);
    assert!(w.host.logs().iter().any(|l| l.contains("store_skipped")), "the cut answer was not stored");
}

#[test]
fn followers_holding_a_stale_entry_answer_with_it_at_the_stale_deadline() {
    let w = world_with(&[("CACHE_FRESH_TTL_SECONDS", "60")]);
    let body = ask("stale burst", false);
    let calls = scripted(&w, UPSTREAM, vec![ok("first")]);
    assert_eq!(w.chat(&body, &[]).status, 200);
    w.host.run_background();
    w.host.advance(61_000);
    assert_eq!(*calls.borrow(), 1);
    // Now the provider stalls far past every deadline.
    w.upstream(|_| Scripted::Delay { ms: 3_600_000, then: Box::new(status(200)) });
    let started = w.host.now_ms();
    let replies = at_once(
        &w,
        vec![(&w, request(&body, "lead", &[])), (&w, request(&body, "local", &[])), (&w, request(&body, "third", &[]))],
    );
    let took = w.host.now_ms() - started;
    for r in &replies {
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.header("x-cache"), Some("STALE"));
        assert_eq!(r.header("x-cache-stale-reason"), Some("upstream_timeout"));
    }
    assert_eq!(w.upstream_calls(), 2, "the first request, then only the leader");
    // STALE_DEADLINE_MS (10 s) from each request's start, not twice that.
    assert!((10_000..10_600).contains(&took), "took {took} ms");
}
