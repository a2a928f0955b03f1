//! Inbound wasi:http: routing and Spin's request headers, streamed bodies, traps, and work the
//! guest does after returning its response (WASIp3 lets it; the host keeps the store alive).

use std::time::{Duration, Instant};

use crate::support::{Scratch, Upstream, eventually, get, standard_options, start_standard, time_to_first};

#[test]
fn routes_and_spin_headers() {
    let upstream = Upstream::start();
    let dir = Scratch::new("headers");
    let host = start_standard(&dir, upstream.port, None);
    let addr = host.addr();
    let r = get(&format!("{}/other/headers?x=1", host.url()));
    assert_eq!(r.status, 200);
    let text = r.text();
    for expected in [
        format!("host: {addr}"),
        format!("spin-full-url: http://{addr}/other/headers?x=1"),
        "spin-path-info: /headers".to_string(),
        "spin-matched-route: /other/...".to_string(),
        "spin-component-route: /other".to_string(),
        "spin-raw-component-route: /other/...".to_string(),
        "spin-base-path: /".to_string(),
        format!("uri: http://{addr}/other/headers?x=1"),
    ] {
        assert!(text.lines().any(|l| l == expected), "missing {expected:?} in:\n{text}");
    }
    assert!(text.lines().any(|l| l.starts_with("spin-client-addr: 127.0.0.1:")), "{text}");
    let r = get(&format!("{}/headers", host.url()));
    assert!(r.text().contains("spin-matched-route: /..."), "{}", r.text());
    assert!(r.text().contains("spin-path-info: /headers"), "{}", r.text());
}

#[test]
fn bodies_stream_and_arrive_whole() {
    let upstream = Upstream::start();
    let dir = Scratch::new("stream");
    let host = start_standard(&dir, upstream.port, None);
    // Five chunks 300 ms apart: the first must arrive long before the last is written.
    let (first, text) = time_to_first(&format!("{}/stream?chunks=5&delay_ms=300", host.url()), "chunk 0");
    assert!(first < Duration::from_millis(900), "first chunk after {first:?}: not streamed");
    for i in 0..5 {
        assert!(text.contains(&format!("chunk {i}\n")), "chunk {i} missing:\n{text}");
    }
    // Many chunks: the body is complete (the store lives until it has been sent).
    let r = get(&format!("{}/stream?chunks=20000", host.url()));
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.get("transfer-encoding").map(String::as_str), Some("chunked"), "{:?}", r.headers);
    let expected: String = (0..20000).map(|i| format!("chunk {i}\n")).collect();
    assert!(r.text() == expected, "streamed body truncated: {} of {} bytes", r.body.len(), expected.len());
}

#[test]
fn work_after_the_response_completes() {
    let upstream = Upstream::start();
    let dir = Scratch::new("after");
    let host = start_standard(&dir, upstream.port, None);
    let r = get(&format!("{}/after?key=later&url={}", host.url(), upstream.url("/gated")));
    assert_eq!((r.status, r.text().as_str()), (202, "accepted"));
    // The response is here while the guest's post-response fetch is still held by the upstream.
    assert_eq!(get(&format!("{}/kv/get/later", host.url())).status, 404);
    upstream.release();
    let stored = eventually(Duration::from_secs(10), || {
        let r = get(&format!("{}/kv/get/later", host.url()));
        (r.status == 200).then(|| r.text())
    });
    assert_eq!(stored.as_deref(), Some("released"), "post-response work did not finish");
}

#[test]
fn post_response_work_is_bounded() {
    let upstream = Upstream::start();
    let dir = Scratch::new("after-timeout");
    let mut options = standard_options(&dir, upstream.port);
    options.post_response_timeout = Duration::from_millis(500);
    let host = spin_host::spawn(options).expect("host starts");
    let r = get(&format!("{}/after?key=never&url={}", host.url(), upstream.url("/gated")));
    assert_eq!(r.status, 202);
    std::thread::sleep(Duration::from_millis(1500));
    upstream.release(); // too late: the instance was stopped at 500 ms
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get(&format!("{}/kv/get/never", host.url())).status, 404);
    let stopping = Instant::now();
    drop(host);
    assert!(stopping.elapsed() < Duration::from_secs(3), "shutdown waited for a stopped instance");
}

#[test]
fn a_body_cut_by_the_post_response_timeout_is_not_a_complete_response() {
    let upstream = Upstream::start();
    let dir = Scratch::new("cut-body");
    let mut options = standard_options(&dir, upstream.port);
    options.post_response_timeout = Duration::from_millis(300);
    let host = spin_host::spawn(options).expect("host starts");
    // Four chunks a second apart; the instance is stopped 300 ms after the response.
    let (_, raw) = time_to_first(&format!("{}/stream?chunks=4&delay_ms=1000", host.url()), "chunk 0");
    assert!(!raw.contains("chunk 3"), "the body was not cut:\n{raw}");
    assert!(!raw.ends_with("0\r\n\r\n"), "a cut body must not end like a complete one:\n{raw}");
    assert_eq!(get(&format!("{}/var/message", host.url())).text(), "hello, world", "still serving");
}

#[test]
fn a_trap_is_a_500_and_the_host_keeps_serving() {
    let upstream = Upstream::start();
    let dir = Scratch::new("trap");
    let host = start_standard(&dir, upstream.port, None);
    let r = get(&format!("{}/trap", host.url()));
    assert_eq!(r.status, 500);
    assert!(r.text().contains("main"), "{}", r.text());
    assert_eq!(get(&format!("{}/var/message", host.url())).text(), "hello, world");
}
