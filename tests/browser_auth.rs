//! Browser callers: signed tokens (HS256 with a shared secret, EdDSA with a public key) checked
//! for signature, algorithm (`none` and algorithm confusion refused), expiry (required and
//! bounded), not-before and audience; their per-end-user limits and models applied on top of the
//! tenant's; publishable keys working only from their origins and within their own limits; and
//! every bad setting reported without its value.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, Mac};
use llm_edge_cache::config::Config;
use llm_edge_cache::limits::WINDOW_MS;
use llm_edge_cache::testing::MapVars;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::*;

const SECRET: &str = "a-shared-secret-of-at-least-32-bytes!!";
const ED_SEED: [u8; 32] = [7; 32];
const PK: &str = "pk_test_browser_only_0001";
const ORIGIN: &str = "https://app.example";
const NOW_S: u64 = T0 / 1000;

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn hs256(header: Value, claims: Value, secret: &[u8]) -> String {
    let signed = format!("{}.{}", b64(&header), b64(&claims));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

fn eddsa(claims: Value) -> String {
    let signed = format!("{}.{}", b64(&json!({"alg": "EdDSA", "typ": "JWT"})), b64(&claims));
    let signature = SigningKey::from_bytes(&ED_SEED).sign(signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

fn public_pem() -> String {
    let mut der = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
    der.extend_from_slice(SigningKey::from_bytes(&ED_SEED).verifying_key().as_bytes());
    format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", STANDARD.encode(der))
}

fn claims(sub: &str, extra: Value) -> Value {
    let mut c = json!({"tenant": "tenant-a", "sub": sub, "aud": "llm-edge-cache", "iat": NOW_S, "exp": NOW_S + 600});
    if let (Some(c), Value::Object(extra)) = (c.as_object_mut(), extra) {
        c.extend(extra);
    }
    c
}

fn token(sub: &str, extra: Value) -> String {
    hs256(json!({"alg": "HS256", "typ": "JWT"}), claims(sub, extra), SECRET.as_bytes())
}

fn world() -> World {
    let pem = public_pem();
    let publishable = json!({PK: {"name": "web", "tenant": "tenant-b", "origins": [ORIGIN], "requests_per_minute": 1}});
    let w = World::with_config(config_with(&[
        ("BROWSER_TOKEN_SECRET", SECRET),
        ("BROWSER_TOKEN_PUBLIC_KEY", &pem),
        ("PUBLISHABLE_KEYS", &publishable.to_string()),
    ]));
    w.upstream_ok();
    w
}

fn with_origin(w: &World, key: &str, body: &str, origin: Option<&str>) -> Reply {
    match origin {
        Some(o) => w.chat_as(key, body, &[("origin", o)]),
        None => w.chat_as(key, body, &[]),
    }
}

fn subject(sub: &str) -> String {
    let d = Sha256::digest(sub.as_bytes());
    format!("tenant-a.u.{}", d[..8].iter().map(|b| format!("{b:02x}")).collect::<String>())
}

#[test]
fn a_valid_token_is_its_tenants_end_user_within_the_tokens_own_limits() {
    let w = world();
    let alice = token("alice@example.com", json!({"rpm": 1, "tpm": 1000}));
    let r = w.chat_as(&alice, &body_with("t1"), &[]);
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.header("x-ratelimit-limit-requests"), Some("1"), "the end user's limit is shown");
    w.host.run_background();
    let tokens = format!("llmc1:limit:{}:tokens:{}", subject("alice@example.com"), T0 / WINDOW_MS);
    assert_eq!(w.upstash.raw(&tokens).as_deref(), Some("19"), "tokens counted for the end user");
    w.chat_as(&alice, &body_with("t2"), &[]).assert_error(429, "rate_limit_exceeded");
    // Another end user of the same tenant has limits of its own; the tenant's key has none.
    assert_eq!(w.chat_as(&token("bob", json!({"rpm": 1})), &body_with("t3"), &[]).status, 200);
    assert_eq!(w.chat(&body_with("t4"), &[]).status, 200);
    // A token shares its tenant's cache: the tenant's key gets a hit for the same question.
    assert_eq!(w.chat(&body_with("t1"), &[]).header("x-cache"), Some("HIT"));
    // Models the token does not allow are absent.
    let narrow = token("carol", json!({"models": ["gpt-4o-mini"]}));
    w.chat_as(&narrow, &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "m"}]}).to_string(), &[])
        .assert_error(404, "model_not_found");
    // EdDSA with the public key.
    let ed = eddsa(claims("dave", json!({})));
    assert_eq!(w.chat_as(&ed, &body_with("ed"), &[]).status, 200);
}

#[test]
fn bad_tokens_are_refused_without_echoing_them() {
    let w = world();
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let ed_public = SigningKey::from_bytes(&ED_SEED).verifying_key().to_bytes();
    let unsigned = format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&claims("eve", json!({}))));
    let cases = [
        ("alg none", unsigned),
        ("wrong secret", hs256(header.clone(), claims("eve", json!({})), b"another-secret-of-at-least-32-bytes!!")),
        (
            "algorithm confusion: HS256 keyed with the Ed25519 public key",
            hs256(header.clone(), claims("eve", json!({})), &ed_public),
        ),
        ("HS512", hs256(json!({"alg": "HS512"}), claims("eve", json!({})), SECRET.as_bytes())),
        ("expired", token("eve", json!({"exp": NOW_S - 60, "iat": NOW_S - 600}))),
        ("not yet", token("eve", json!({"nbf": NOW_S + 600}))),
        ("wrong audience", token("eve", json!({"aud": "another-service"}))),
        (
            "no exp",
            hs256(
                header.clone(),
                json!({"tenant": "tenant-a", "sub": "eve", "aud": "llm-edge-cache"}),
                SECRET.as_bytes(),
            ),
        ),
        ("too long", token("eve", json!({"exp": NOW_S + 7200, "iat": NOW_S}))),
        ("no such tenant", token("eve", json!({"tenant": "ghost"}))),
        ("tampered", {
            let t = token("eve", json!({}));
            let (head, rest) = t.split_once('.').expect("dots");
            let (_, sig) = rest.split_once('.').expect("dots");
            format!("{head}.{}.{sig}", b64(&claims("eve", json!({"rpm": 100000}))))
        }),
    ];
    for (what, t) in cases {
        let r = w.chat_as(&t, &body_with("bad"), &[]);
        r.assert_error(401, "invalid_token");
        let text = String::from_utf8_lossy(&r.body).to_string();
        assert!(!text.contains(&t) && !text.contains("eve"), "{what}: echoed: {text}");
    }
    assert_eq!(w.upstream_calls(), 0);
    // With only a secret configured, an EdDSA token has no key: refused as an algorithm.
    let hs_only = World::with_config(config_with(&[("BROWSER_TOKEN_SECRET", SECRET)]));
    let r = hs_only.chat_as(&eddsa(claims("eve", json!({}))), &body_with("bad"), &[]);
    r.assert_error(401, "invalid_token");
    assert!(r.json()["error"]["message"].as_str().is_some_and(|m| m.contains("algorithm")));
}

#[test]
fn a_publishable_key_works_only_from_its_origins_and_within_its_own_limits() {
    let w = world();
    w.chat_as(PK, &body_with("p0"), &[]).assert_error(403, "origin_not_allowed");
    with_origin(&w, PK, &body_with("p0"), Some("https://evil.example")).assert_error(403, "origin_not_allowed");
    let r = with_origin(&w, PK, &body_with("p1"), Some(ORIGIN));
    assert_eq!((r.status, r.header("x-ratelimit-limit-requests")), (200, Some("1")), "{:?}", r.body);
    with_origin(&w, PK, &body_with("p2"), Some(ORIGIN)).assert_error(429, "rate_limit_exceeded");
    // Its tenant's own key is not held back by the publishable key's limit.
    assert_eq!(w.chat_as(KEY_B, &body_with("p3"), &[]).status, 200);
    assert_eq!(w.upstream_calls(), 2);
}

#[test]
fn every_bad_browser_setting_is_reported_without_its_value() {
    let keys = format!(r#"{{"{KEY_A}":"tenant-a"}}"#);
    let publishable = json!({
        "sk-LEAK-short": {"name": "a", "tenant": "tenant-a", "origins": [ORIGIN], "requests_per_minute": 1},
        "pk_LEAK_long_enough_1": {"name": "b", "tenant": "ghost", "origins": [], "tokens_per_minute": "x"},
        "pk_LEAK_long_enough_2": {"name": "c", "tenant": "tenant-a", "origins": [ORIGIN], "requests_per_minute": 2, "colour": 1},
    })
    .to_string();
    let config = Config::from_vars(&MapVars::new(&[
        ("GATEWAY_KEYS", &keys),
        ("BROWSER_TOKEN_SECRET", "LEAK-too-short"),
        ("BROWSER_TOKEN_PUBLIC_KEY", "LEAK-not-a-key"),
        ("BROWSER_TOKEN_MAX_TTL_SECONDS", "5"),
        ("PUBLISHABLE_KEYS", &publishable),
    ]))
    .expect("serves");
    let all = config.problems.join("\n");
    assert!(!all.contains("LEAK"), "a value was echoed: {all}");
    for expected in [
        "BROWSER_TOKEN_SECRET must be at least 32 bytes",
        "BROWSER_TOKEN_PUBLIC_KEY must be an Ed25519 public key",
        "BROWSER_TOKEN_MAX_TTL_SECONDS must be a whole number from 60 to 86400",
        "PUBLISHABLE_KEYS: 'a' is dropped: its key must be at least 16 characters",
        "PUBLISHABLE_KEYS: 'b' is dropped: 'tenant' must name a tenant of GATEWAY_KEYS; 'origins' must list",
        "'requests_per_minute' is required",
        "'tokens_per_minute' must be a whole number from 1",
        "PUBLISHABLE_KEYS: 'c' is dropped: it has an unknown field",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    assert!(!config.browser.takes_tokens());
}
