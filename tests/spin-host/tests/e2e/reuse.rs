//! Instance reuse as Spin 4 does it for WASIp3 components: one instance serves up to
//! `--max-instance-reuse-count` requests (128), up to `--max-instance-concurrent-reuse-count` at
//! once (16), and is dropped after `--idle-instance-timeout` (1 s) without work. The guest's
//! `/instance` route answers N, its static request counter (1 on a fresh instance), which is how
//! these tests see which instance served what. Background work of one request goes on while the
//! instance serves others; response bodies are complete however the instance ends.

use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use spin_host::reuse::Range;

use crate::support::{Reply, Scratch, Upstream, eventually, get, standard_options};

fn nth(base: &str) -> u32 {
    let r = get(&format!("{base}/instance"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.text().parse().expect("a counter")
}

/// Start `count` requests that each stay open in the guest (fetching the gated upstream), one
/// after the other: each is sent only once the previous one is waiting on the upstream, so the
/// instance it went to is no longer running guest code (Spin only adds a request to an instance
/// whose requests are all waiting on I/O).
fn held_requests(base: &str, upstream: &Upstream, count: usize) -> Vec<JoinHandle<Reply>> {
    let before = upstream.hits.load(Ordering::SeqCst);
    (0..count)
        .map(|i| {
            let url = format!("{base}/instance?wait={}", upstream.url("/gated"));
            let handle = std::thread::spawn(move || get(&url));
            let waiting = eventually(Duration::from_secs(10), || {
                (upstream.hits.load(Ordering::SeqCst) > before + i).then_some(())
            });
            assert!(waiting.is_some(), "request {i} never reached the upstream");
            handle
        })
        .collect()
}

fn release_all(upstream: &Upstream, held: Vec<JoinHandle<Reply>>) -> Vec<u32> {
    for _ in 0..held.len() {
        upstream.release();
    }
    let mut counters: Vec<u32> = held
        .into_iter()
        .map(|h| {
            let r = h.join().expect("request thread");
            assert_eq!(r.status, 200, "{}", r.text());
            r.text().parse().expect("a counter")
        })
        .collect();
    counters.sort_unstable();
    counters
}

#[test]
fn sequential_requests_share_an_instance_by_default() {
    let upstream = Upstream::start();
    let dir = Scratch::new("reuse-default");
    let host = spin_host::spawn(standard_options(&dir, upstream.port)).expect("host starts");
    let base = host.url();
    assert_eq!(nth(&base), 1, "a fresh instance");
    assert_eq!(nth(&base), 2, "the same instance again (Spin reuses WASIp3 instances by default)");
    assert_eq!(get(&format!("{base}/var/message")).text(), "hello, world");
    assert_eq!(nth(&base), 4, "every request of the instance counts");
}

#[test]
fn reuse_count_one_gives_each_request_a_fresh_instance() {
    let upstream = Upstream::start();
    let dir = Scratch::new("reuse-one");
    let mut options = standard_options(&dir, upstream.port);
    options.reuse.max_requests = Range::Value(1);
    let host = spin_host::spawn(options).expect("host starts");
    for _ in 0..3 {
        assert_eq!(nth(&host.url()), 1);
    }
}

#[test]
fn a_new_instance_starts_once_the_reuse_count_is_reached() {
    let upstream = Upstream::start();
    let dir = Scratch::new("reuse-three");
    let mut options = standard_options(&dir, upstream.port);
    options.reuse.max_requests = Range::Value(3);
    options.reuse.idle_timeout = Range::Value(Duration::from_secs(60));
    let host = spin_host::spawn(options).expect("host starts");
    let counters: Vec<u32> = (0..7).map(|_| nth(&host.url())).collect();
    assert_eq!(counters, [1, 2, 3, 1, 2, 3, 1]);
}

#[test]
fn concurrent_requests_share_an_instance() {
    let upstream = Upstream::start();
    let dir = Scratch::new("reuse-concurrent");
    let host = spin_host::spawn(standard_options(&dir, upstream.port)).expect("host starts");
    let held = held_requests(&host.url(), &upstream, 3);
    assert_eq!(release_all(&upstream, held), [1, 2, 3], "three requests at once in one instance");
    assert_eq!(nth(&host.url()), 4, "and it goes on serving");
}

#[test]
fn the_concurrent_reuse_count_caps_requests_at_once() {
    let upstream = Upstream::start();
    let dir = Scratch::new("reuse-concurrent-two");
    let mut options = standard_options(&dir, upstream.port);
    options.reuse.max_concurrent = Range::Value(2);
    let host = spin_host::spawn(options).expect("host starts");
    let held = held_requests(&host.url(), &upstream, 3);
    assert_eq!(release_all(&upstream, held), [1, 1, 2], "two share an instance, the third gets its own");

    let dir = Scratch::new("reuse-concurrent-one");
    let mut options = standard_options(&dir, upstream.port);
    options.reuse.max_concurrent = Range::Value(1);
    let host = spin_host::spawn(options).expect("host starts");
    let held = held_requests(&host.url(), &upstream, 3);
    assert_eq!(release_all(&upstream, held), [1, 1, 1], "one request at a time: three instances");
}

#[test]
fn background_work_finishes_while_the_instance_serves_others() {
    let upstream = Upstream::start();
    let dir = Scratch::new("reuse-background");
    let host = spin_host::spawn(standard_options(&dir, upstream.port)).expect("host starts");
    let base = host.url();
    assert_eq!(nth(&base), 1);
    // Request 2 answers at once and goes on in the background: a fetch held by the upstream,
    // then a KV write (`wit_bindgen::spawn`, i.e. `spin_sdk::wasip3::spawn`).
    let r = get(&format!("{base}/after?key=bg&url={}", upstream.url("/gated")));
    assert_eq!((r.status, r.text().as_str()), (202, "accepted"));
    let waiting = eventually(Duration::from_secs(10), || (upstream.hits.load(Ordering::SeqCst) == 1).then_some(()));
    assert!(waiting.is_some(), "the background fetch never started");
    // The same instance serves requests 3 and 4 while its background task waits.
    assert_eq!(nth(&base), 3);
    assert_eq!(get(&format!("{base}/kv/get/bg")).status, 404, "not written yet");
    upstream.release();
    let stored = eventually(Duration::from_secs(10), || {
        let r = get(&format!("{base}/kv/get/bg"));
        (r.status == 200).then(|| r.text())
    });
    assert_eq!(stored.as_deref(), Some("released"), "background work did not finish");
    assert!(nth(&base) > 4, "still the same instance");
}

#[test]
fn an_idle_instance_is_dropped_after_the_idle_timeout() {
    let upstream = Upstream::start();
    let dir = Scratch::new("reuse-idle");
    let mut options = standard_options(&dir, upstream.port);
    options.reuse.idle_timeout = Range::Value(Duration::from_millis(100));
    let host = spin_host::spawn(options).expect("host starts");
    assert_eq!(nth(&host.url()), 1);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(nth(&host.url()), 1, "the idle instance was dropped; this is a fresh one");
}

#[test]
fn a_trap_ends_the_instance_and_its_requests_in_flight() {
    let upstream = Upstream::start();
    let dir = Scratch::new("reuse-trap");
    let host = spin_host::spawn(standard_options(&dir, upstream.port)).expect("host starts");
    assert_eq!(nth(&host.url()), 1);
    assert_eq!(nth(&host.url()), 2);
    // Request 3 waits on the upstream in this instance; request 4 traps in the same instance.
    let held = held_requests(&host.url(), &upstream, 1);
    assert_eq!(get(&format!("{}/trap", host.url())).status, 500);
    let r = held.into_iter().next().expect("one").join().expect("request thread");
    assert_eq!(r.status, 500, "a request in flight in a trapped instance fails with it: {}", r.text());
    assert!(r.text().contains("component `main` failed before responding"), "{}", r.text());
    assert_eq!(nth(&host.url()), 1, "a trapped instance is never reused");
}

#[test]
fn bodies_are_complete_however_the_instance_is_used() {
    let upstream = Upstream::start();
    let body = |chunks: usize| -> String { (0..chunks).map(|i| format!("chunk {i}\n")).collect() };
    let check = |r: Reply, expected: &str| {
        assert_eq!(r.status, 200);
        assert!(r.text() == expected, "streamed body truncated: {} of {} bytes", r.body.len(), expected.len());
    };
    // The instance is done after this one request: it must live until the body has been sent.
    let dir = Scratch::new("reuse-body-single");
    let mut options = standard_options(&dir, upstream.port);
    options.reuse.max_requests = Range::Value(1);
    let host = spin_host::spawn(options).expect("host starts");
    check(get(&format!("{}/stream?chunks=20000", host.url())), &body(20000));
    drop(host);
    // Several bodies at once from one reused instance (the post-response timeout counts from the
    // last response of the instance, so it is generous here: debug builds on a busy machine).
    let dir = Scratch::new("reuse-body-many");
    let mut options = standard_options(&dir, upstream.port);
    options.post_response_timeout = Duration::from_secs(120);
    let host = spin_host::spawn(options).expect("host starts");
    let url = format!("{}/stream?chunks=5000", host.url());
    let streams: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || get(&url))
        })
        .collect();
    let expected = body(5000);
    for stream in streams {
        check(stream.join().expect("request thread"), &expected);
    }
}
