//! Outbound wasi:http: `allowed_outbound_hosts` (with a `{{ variable }}` template) lets the
//! guest reach the loopback upstream; anything else fails with HTTP-request-denied, and the
//! denied request never reaches the network.

use std::sync::atomic::Ordering;

use crate::support::{Scratch, Upstream, get, start_standard, unused_addr};

#[test]
fn allowed_hosts_are_enforced() {
    let upstream = Upstream::start();
    let dir = Scratch::new("outbound");
    let host = start_standard(&dir, upstream.port, None);
    let fetch = |component: &str, url: &str| {
        let r = get(&format!("{}{component}/fetch?url={url}", host.url()));
        (r.status, r.text())
    };
    assert_eq!(fetch("", &upstream.url("/hello")), (200, "status 200\nhello from upstream".into()));
    assert_eq!(upstream.hits.load(Ordering::SeqCst), 1);

    // Same host, another port: not in the list.
    let other_port = unused_addr().port();
    let (status, text) = fetch("", &format!("http://127.0.0.1:{other_port}/hello"));
    assert_eq!((status, text.as_str()), (502, "error: ErrorCode::HttpRequestDenied"));
    // Another host and scheme.
    assert_eq!(
        fetch("", &format!("http://localhost:{}/hello", upstream.port)).1,
        "error: ErrorCode::HttpRequestDenied"
    );
    assert_eq!(
        fetch("", &format!("https://127.0.0.1:{}/hello", upstream.port)).1,
        "error: ErrorCode::HttpRequestDenied"
    );
    // A component without allowed_outbound_hosts may reach nothing.
    assert_eq!(fetch("/other", &upstream.url("/hello")).1, "error: ErrorCode::HttpRequestDenied");
    assert_eq!(upstream.hits.load(Ordering::SeqCst), 1, "denied requests never leave the host");
    // Still serving.
    assert_eq!(fetch("", &upstream.url("/hello")).0, 200);
}
