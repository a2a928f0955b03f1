//! Browser callers on the real runtimes: tokens minted by a backend with node:crypto (HS256 and
//! EdDSA) accepted and a forged one refused, then a page in the real browser (Debian chromium,
//! driven by playwright-core) served from a loopback origin, calling the gateway cross-origin
//! (CORS) with a token its backend minted and with a publishable key, which is refused without
//! its origin. The checks themselves are in `tests/devstack/js/browser-token-check.mjs`.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use devstack::node::run_script;
use ed25519_dalek::SigningKey;
use serde_json::json;

use crate::client::marker;
use crate::runner::{Ctx, Scenario};

pub fn scenarios() -> Vec<Scenario> {
    vec![("browser::tokens_and_publishable_keys_from_a_real_browser", from_a_browser)]
}

const SECRET: &str = "e2e-shared-secret-of-at-least-32-bytes";
const PUBLISHABLE: &str = "pk_e2e_browser_only_key_1";

fn pem(label: &str, der: &[u8]) -> String {
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", STANDARD.encode(der))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn from_a_browser(ctx: &Ctx) {
    let seed = [9u8; 32];
    let mut private =
        vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    private.extend_from_slice(&seed);
    let mut public = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
    public.extend_from_slice(SigningKey::from_bytes(&seed).verifying_key().as_bytes());
    let port = free_port();
    let origin = format!("http://127.0.0.1:{port}");
    let publishable =
        json!({PUBLISHABLE: {"name": "web", "tenant": "tenant-b", "origins": [origin], "requests_per_minute": 5}})
            .to_string();
    let s = ctx.own_stack(&[
        ("BROWSER_TOKEN_SECRET", SECRET),
        ("BROWSER_TOKEN_PUBLIC_KEY", &pem("PUBLIC KEY", &public)),
        ("PUBLISHABLE_KEYS", &publishable),
        ("CORS_ALLOWED_ORIGINS", &origin),
    ]);
    let env = [
        ("GATEWAY_URL", s.url()),
        ("HS_SECRET", SECRET.to_owned()),
        ("ED_PRIVATE_PEM", pem("PRIVATE KEY", &private)),
        ("PUBLISHABLE_KEY", PUBLISHABLE.to_owned()),
        ("PAGE_PORT", port.to_string()),
        ("MARKER", marker("browser")),
    ];
    let out = run_script("browser-token-check.mjs", "playwright-core", &env, &[], Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "the browser checks failed:\n{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("browser checks passed"), "{}\n{}", out.stdout, out.stderr);
    let log = s.worker.log();
    assert!(!log.contains(SECRET) && !log.contains(PUBLISHABLE), "no secret or key in the log");
}
