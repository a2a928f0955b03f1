//! Target health shared between isolates through one Redis: outcome counts add up, openings and
//! cool-downs only move later, so no isolate erases what another reported (a straggler
//! included), counters expire with the window, and a Redis outage never stops routing. Each test
//! runs two isolates (or Spin instances): two in-memory hosts with memories of their own over the
//! same clock, providers and Redis.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use bytes::Bytes;
use llm_edge_cache::gateway;
use llm_edge_cache::ports::{Body, Clock, Memory};
use llm_edge_cache::routing::breaker::BreakerConfig;
use llm_edge_cache::testing::Scripted;
use serde_json::json;
use support::*;

/// Opens after 4 calls in the window when more than half failed; rests the target 30 s.
const BREAKER: [(&str, &str); 3] =
    [("BREAKER_MIN_REQUESTS", "4"), ("BREAKER_ERROR_PERCENT", "50"), ("BREAKER_OPEN_SECONDS", "30")];

const MARKS: &str = "llmc1:health:primary:marks";

fn failing_primary(w: &World) -> std::rc::Rc<std::cell::RefCell<usize>> {
    let calls = scripted(w, PRIMARY, (0..100).map(|_| status(500)).collect());
    scripted(w, SECONDARY, vec![]);
    calls
}

/// `(x-provider, x-attempts)` of an answer.
fn routed(r: &Reply) -> (Option<&str>, Option<&str>) {
    (r.header("x-provider"), r.header("x-attempts"))
}

#[test]
fn failures_seen_by_two_isolates_add_up_and_open_the_breaker_after_a_sync() {
    let a = world(&two_targets(), &BREAKER);
    let b = a.another_isolate();
    let primary = failing_primary(&a);
    // Each isolate sees two failures, a sync apart: neither alone reaches the 4 calls needed.
    for (w, name) in [(&a, "a"), (&b, "b")] {
        assert_eq!(routed(&ask(w, &format!("{name} first"))), (Some("secondary"), Some("2")));
        w.host.run_background();
    }
    a.host.advance(5_000);
    assert_eq!(routed(&ask(&a, "a second")), (Some("secondary"), Some("2")));
    a.host.run_background();
    assert_eq!(routed(&ask(&b, "b second")), (Some("secondary"), Some("2")), "the sync runs after the response");
    assert_eq!(*primary.borrow(), 4);
    assert!(!a.host.logs().iter().any(|l| l.contains("breaker_opened")), "no isolate saw enough alone");
    // B's sync (after that response) adds its report to A's: 4 failures, and B opens.
    b.host.run_background();
    assert!(b.host.logs().iter().any(|l| l.contains("breaker_opened") && l.contains("shared_counts")));
    assert_eq!(routed(&ask(&b, "b third")), (Some("secondary"), Some("1")), "the open target is skipped");
    assert_eq!(*primary.borrow(), 4);
    // B tells the others at once (news does not wait for the next sync).
    b.host.run_background();
    assert!(a.upstash.zscore(MARKS, "open_until").is_some(), "B's opening was reported");
}

/// Sends `body` as tenant A to `w`'s gateway; the future of its reply.
async fn chat_on(w: &World, content: &str) -> Reply {
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}).to_string();
    let request = http::Request::post("https://gw.test/v1/chat/completions")
        .header("authorization", format!("Bearer {KEY_A}"))
        .header("content-type", "application/json")
        .body(Body::Full(Bytes::from(body)))
        .expect("valid request");
    let response = gateway::handle(&w.host, Ok(&w.config), request).await;
    let (parts, body) = response.into_parts();
    let body = body.collect(usize::MAX).await.expect("body reads");
    Reply { status: parts.status.as_u16(), headers: parts.headers, body }
}

/// Spin instances: B reads the shared health, calls a slow primary that answers, and reports
/// after A has opened the breaker meanwhile. B's report, made of what B saw before, must not
/// close A's opening.
#[test]
fn a_straggler_that_saw_the_target_closed_cannot_close_another_instances_opening() {
    let config = [("BREAKER_MIN_REQUESTS", "1"), ("BREAKER_ERROR_PERCENT", "50"), ("BREAKER_OPEN_SECONDS", "30")];
    let a = world(&two_targets(), &config);
    let b = a.another_isolate();
    a.host.set_memory_fleeting(true);
    scripted(&a, SECONDARY, vec![]);
    // B's call is the slow one (answered after a second); A's fails at once.
    let primary =
        scripted(&a, PRIMARY, vec![Scripted::Delay { ms: 1_000, then: Box::new(ok("primary")) }, status(500)]);
    let (from_b, from_a) = a.host.block_on(futures_util::future::join(chat_on(&b, "slow"), chat_on(&a, "fails")));
    assert_eq!(routed(&from_b), (Some("primary"), Some("1")));
    assert_eq!(routed(&from_a), (Some("secondary"), Some("2")));
    assert!(a.host.logs().iter().any(|l| l.contains("breaker_opened")));
    // A's report went first, B's (the straggler's) after it.
    a.host.run_background();
    let fresh = a.another_isolate();
    assert_eq!(routed(&ask(&fresh, "after both")), (Some("secondary"), Some("1")), "the opening survived B's report");
    assert_eq!(*primary.borrow(), 2);
    assert!(a.upstash.zscore(MARKS, "open_until").is_some());
}

/// B opens the breaker first, A a second later; B's report arrives last. The opening still ends
/// when A's does: an opening only ever moves later.
#[test]
fn an_earlier_opening_reported_last_does_not_shorten_a_later_one() {
    let config = [("BREAKER_MIN_REQUESTS", "1"), ("BREAKER_ERROR_PERCENT", "50"), ("BREAKER_OPEN_SECONDS", "30")];
    let a = world(&two_targets(), &config);
    let b = a.another_isolate();
    let slow = |ms, then| Scripted::Delay { ms, then: Box::new(then) };
    // B's calls come first: its primary fails at once, its fallback answers two seconds later.
    scripted(&a, PRIMARY, vec![status(500), slow(1_000, status(500))]);
    scripted(&a, SECONDARY, vec![slow(2_000, ok("secondary"))]);
    let started = a.host.now_ms();
    let (from_b, from_a) = a.host.block_on(futures_util::future::join(chat_on(&b, "b opens"), chat_on(&a, "a opens")));
    assert_eq!((routed(&from_b), routed(&from_a)), ((Some("secondary"), Some("2")), (Some("secondary"), Some("2"))));
    a.host.run_background();
    // Half a second after B's opening ended, A's has not: a new instance still rests the target.
    let later = started + 1_000 + 30_000;
    a.host.advance(later - 500 - a.host.now_ms());
    a.host.set_memory_fleeting(true);
    assert_eq!(routed(&ask(&a.another_isolate(), "between")), (Some("secondary"), Some("1")), "A's opening stands");
    assert_eq!(a.upstash.zscore(MARKS, "open_until"), Some(later as f64));
}

/// A's opening and B's cool-down of the same target are both kept, whatever order they arrive
/// in: neither erases the other.
#[test]
fn an_opening_on_one_isolate_and_a_cool_down_on_another_are_both_kept() {
    // Two failures open the breaker; the one 429 the other isolate sees does not.
    let config = [("BREAKER_MIN_REQUESTS", "2"), ("BREAKER_ERROR_PERCENT", "50"), ("BREAKER_OPEN_SECONDS", "30")];
    for cool_down_first in [false, true] {
        let a = world(&two_targets(), &config);
        let b = a.another_isolate();
        // Two isolates already running (each has read the shared health once, some time ago):
        // a new one would read it before its first routing.
        for w in [&a, &b] {
            w.host.health().last_sync_ms.set(w.host.now_ms());
        }
        scripted(&a, SECONDARY, vec![]);
        let limited = || Scripted::Respond {
            status: 429,
            headers: vec![("retry-after".into(), "10".into())],
            body: Bytes::from("{}"),
        };
        let script = if cool_down_first {
            vec![limited(), status(500), status(500)]
        } else {
            vec![status(500), status(500), limited()]
        };
        scripted(&a, PRIMARY, script);
        let (opener, cooler) = (&a, &b);
        let open = || {
            // Both calls before the first report: A knows nothing of B's cool-down yet.
            for i in 0..2 {
                assert_eq!(routed(&ask(opener, &format!("open {i}"))), (Some("secondary"), Some("2")));
            }
            opener.host.run_background();
        };
        let cool = || {
            assert_eq!(routed(&ask(cooler, "cool")), (Some("secondary"), Some("2")));
            cooler.host.run_background();
        };
        if cool_down_first {
            cool();
            open();
        } else {
            open();
            cool();
        }
        let now = a.host.now_ms();
        let case = if cool_down_first { "cool-down first" } else { "opening first" };
        // What a new instance learns: cooling down for 10 s, then open until the 30 s are over.
        a.host.set_memory_fleeting(true);
        let health = |w: &World| {
            let v = w.admin_get("/admin/health").json();
            let primary = v["targets"].as_array().and_then(|t| t.iter().find(|t| t["id"] == "primary").cloned());
            primary.expect("primary listed")["breaker"].as_str().unwrap_or_default().to_owned()
        };
        assert_eq!(health(&a.another_isolate()), "cooling-down", "{case}");
        a.host.advance(10_000);
        assert_eq!(health(&a.another_isolate()), "open", "{case}");
        a.host.advance(20_000);
        assert_eq!(health(&a.another_isolate()), "half-open", "{case}: the opening ran out, no probe yet");
        assert_eq!(a.upstash.zscore(MARKS, "cool_until"), Some((now + 10_000) as f64), "{case}");
        assert_eq!(a.upstash.zscore(MARKS, "open_until"), Some((now + 30_000) as f64), "{case}");
        assert_eq!(a.upstash.expires_at(MARKS), Some(now + 30_000 + 60_000), "{case}: a window past the latest");
    }
}

#[test]
fn counters_expire_with_the_window() {
    let a = world(&two_targets(), &BREAKER);
    failing_primary(&a);
    ask(&a, "counted");
    a.host.run_background();
    let breaker = BreakerConfig { window_ms: 60_000, ..BreakerConfig::default() };
    let slice = breaker.slice(a.host.now_ms());
    let fail = format!("llmc1:health:primary:{slice}:fail");
    let ok = format!("llmc1:health:secondary:{slice}:ok");
    assert_eq!(a.upstash.raw(&fail).as_deref(), Some("1"));
    assert_eq!(a.upstash.raw(&ok).as_deref(), Some("1"));
    let end_of_window = (slice + 6) * breaker.slice_ms();
    assert_eq!(a.upstash.expires_at(&fail), Some(end_of_window), "the slice leaves the window then");
    a.host.advance(end_of_window - a.host.now_ms());
    a.admin_get("/admin/health");
    let left: Vec<String> = a.upstash.keys().into_iter().filter(|k| k.contains(":health:")).collect();
    assert!(left.is_empty(), "no counter outlives its window: {left:?}");
}

/// Without Redis every isolate routes on what it knows: the breaker still opens on its own
/// failures, and a Spin instance without memory tries the target again.
#[test]
fn a_redis_outage_never_stops_routing() {
    let a = world(&two_targets(), &BREAKER);
    let primary = failing_primary(&a);
    a.upstash.set_down(true);
    for i in 0..4 {
        assert_eq!(routed(&ask(&a, &format!("down {i}"))), (Some("secondary"), Some("2")));
        a.host.advance(5_000);
        a.host.run_background();
    }
    assert_eq!(routed(&ask(&a, "down, open")), (Some("secondary"), Some("1")), "its own failures still count");
    assert_eq!(*primary.borrow(), 4);
    let b = a.another_isolate();
    b.host.set_memory_fleeting(true);
    assert_eq!(routed(&ask(&b, "fresh")), (Some("secondary"), Some("2")), "knows nothing, answers anyway");
    assert_eq!(*primary.borrow(), 5);
}

/// A new isolate or instance (Spin reuses instances, so its memory lasts too) knows nothing:
/// it reads the shared health before its first routing, and skips a target another opened.
/// Its later requests sync in the background only.
#[test]
fn a_new_isolate_reads_the_shared_health_before_its_first_routing() {
    let a = world(&two_targets(), &BREAKER);
    let primary = failing_primary(&a);
    for i in 0..4 {
        assert_eq!(routed(&ask(&a, &format!("a {i}"))), (Some("secondary"), Some("2")));
        a.host.run_background();
    }
    assert!(a.host.logs().iter().any(|l| l.contains("breaker_opened")), "four failures in four calls open it");
    assert_eq!(*primary.borrow(), 4);
    let b = a.another_isolate();
    assert_eq!(routed(&ask(&b, "b first")), (Some("secondary"), Some("1")), "the open target is skipped at once");
    b.host.run_background();
    // Health goes through `/pipeline`; the cache lookup is a single GET.
    let exchanges = || b.host.sent_to(UPSTASH).iter().filter(|r| r.uri().path().ends_with("/pipeline")).count();
    let before = exchanges();
    assert_eq!(routed(&ask(&b, "b second")), (Some("secondary"), Some("1")));
    assert_eq!(exchanges(), before, "no health read before routing any more");
    assert_eq!(*primary.borrow(), 4);
}
