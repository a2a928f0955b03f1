//! Shared pieces of the host tests: fixtures, a configured in-memory host, and request helpers.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use bytes::Bytes;
use llm_edge_cache::config::Config;
use llm_edge_cache::gateway;
use llm_edge_cache::ports::Body;
use llm_edge_cache::routing::table::{ProviderKind, Target};
use llm_edge_cache::testing::{MapVars, MemHost, MemUpstash, Scripted};
use serde_json::{json, Value};

pub const KEY_A: &str = "sk-test-tenant-a";
pub const KEY_B: &str = "sk-test-tenant-b";
pub const ADMIN_KEY: &str = "adm-test-operator-key";
pub const UPSTREAM: &str = "http://upstream.test/v1";
pub const UPSTASH: &str = "http://upstash.test";
pub const UPSTASH_TOKEN: &str = "upstash-token";
/// 2026-01-01T00:00:00Z: a plausible "now" so ages and TTLs look real.
pub const T0: u64 = 1_767_225_600_000;

pub fn fixture(path: &str) -> String {
    let full = format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("fixture {full}: {e}"))
}

pub fn config_with(extra: &[(&str, &str)]) -> Config {
    let keys = format!(r#"{{"{KEY_A}":"tenant-a","{KEY_B}":"tenant-b"}}"#);
    let admins = format!(r#"{{"{ADMIN_KEY}":"ops"}}"#);
    let mut vars: Vec<(&str, &str)> = vec![
        ("GATEWAY_KEYS", keys.as_str()),
        ("ADMIN_KEYS", admins.as_str()),
        ("UPSTREAM_BASE_URL", UPSTREAM),
        ("OPENAI_API_KEY", "sk-upstream-secret"),
        ("UPSTASH_REDIS_REST_URL", UPSTASH),
        ("UPSTASH_REDIS_REST_TOKEN", UPSTASH_TOKEN),
        ("MODELS", "gpt-4o-mini,gpt-4o"),
        ("CORS_ALLOWED_ORIGINS", "https://app.example"),
        // One attempt per call keeps upstream call counts exact; retries have tests of their own.
        ("RETRIES_PER_TARGET", "0"),
    ];
    vars.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    vars.extend_from_slice(extra);
    let config = Config::from_vars(&MapVars::new(&vars)).expect("test configuration can serve");
    assert!(config.problems.is_empty(), "test configuration has problems: {:?}", config.problems);
    config
}

/// The cache key of a chat body for `tenant`, without namespace or generation.
pub fn key_for(tenant: &str, body: &str) -> llm_edge_cache::cache::key::CacheKey {
    let request = llm_edge_cache::api::chat::ChatRequest::parse(body.as_bytes()).expect("valid request");
    llm_edge_cache::cache::key::CacheKey::chat(tenant, "", &request)
}

/// The Redis key of a cache entry under the default deployment prefix.
pub fn redis_key(key: &llm_edge_cache::cache::key::CacheKey) -> String {
    llm_edge_cache::stores::redis::entry_key(llm_edge_cache::stores::redis::DEFAULT_PREFIX, key)
}

/// A response with its body read.
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// Asserts the OpenAI error envelope with this status and code.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "status; body {:?}", self.body);
        let v = self.json();
        let e = &v["error"];
        assert_eq!(e["code"], code, "code; body {v}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "message; body {v}");
        assert!(e["type"].as_str().is_some_and(|m| !m.is_empty()), "type; body {v}");
    }
}

pub struct World {
    pub host: MemHost,
    pub config: Config,
    pub upstash: MemUpstash,
}

impl World {
    pub fn new() -> World {
        World::with_config(config_with(&[]))
    }

    pub fn with_config(config: Config) -> World {
        let host = MemHost::new(T0);
        let upstash = MemUpstash::serve(&host, UPSTASH, UPSTASH_TOKEN);
        World { host, config, upstash }
    }

    /// The provider answers every chat call with `reply`.
    pub fn upstream(&self, reply: impl Fn(&http::Request<Bytes>) -> Scripted + 'static) {
        self.host.route(UPSTREAM, reply);
    }

    /// The provider answers with the OK fixture.
    pub fn upstream_ok(&self) {
        let body = fixture("openai/ok.json");
        self.upstream(move |_| Scripted::Respond {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(body.clone()),
        });
    }

    /// Another isolate (or Spin instance) of the same deployment: the same clock, stores,
    /// providers and Redis, and a memory of its own.
    pub fn another_isolate(&self) -> World {
        World { host: self.host.another_isolate(), config: self.config.clone(), upstash: self.upstash.clone() }
    }

    pub fn upstream_calls(&self) -> usize {
        self.host.sent_to(UPSTREAM).len()
    }

    pub fn send(&self, request: http::Request<Body>) -> Reply {
        let response = self.host.block_on(gateway::handle(&self.host, Ok(&self.config), request));
        let (parts, body) = response.into_parts();
        let body = self.host.block_on(body.collect(usize::MAX)).expect("body reads");
        Reply { status: parts.status.as_u16(), headers: parts.headers, body }
    }

    /// GETs an admin path with the admin key.
    pub fn admin_get(&self, path: &str) -> Reply {
        let req = http::Request::get(format!("https://gw.test{path}"))
            .header("authorization", format!("Bearer {ADMIN_KEY}"))
            .body(Body::empty())
            .expect("valid request");
        self.send(req)
    }

    /// POSTs a JSON body to an admin path with `key`.
    pub fn admin_post(&self, path: &str, key: &str, body: &str) -> Reply {
        let req = http::Request::post(format!("https://gw.test{path}"))
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(Body::Full(Bytes::from(body.to_owned())))
            .expect("valid request");
        self.send(req)
    }

    /// POSTs a chat body with tenant A's key and extra headers.
    pub fn chat(&self, body: &str, headers: &[(&str, &str)]) -> Reply {
        self.chat_as(KEY_A, body, headers)
    }

    pub fn chat_as(&self, key: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = http::Request::post("https://gw.test/v1/chat/completions")
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(Body::Full(Bytes::from(body.to_owned()))).expect("valid request"))
    }
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

/// Whether Redis holds no cache entry (health counters and marks, and claims of calls in flight,
/// aside).
pub fn no_entries(w: &World) -> bool {
    w.upstash.keys().iter().all(|k| k.contains(":health:") || k.contains(":flight:"))
}

pub fn body_with(content: &str) -> String {
    serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}).to_string()
}

pub fn headers_map(pairs: &HashMap<String, String>) -> Vec<(&str, &str)> {
    pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Two OpenAI-compatible targets of routing tests.
pub const PRIMARY: &str = "http://primary.test/v1";
pub const SECONDARY: &str = "http://secondary.test/v1";

/// A chat completion that says which target produced it.
pub fn ok(who: &str) -> Scripted {
    Scripted::json(
        200,
        &json!({"object": "chat.completion", "model": who, "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("from {who}")}, "finish_reason": "stop"}]}),
    )
}

/// An OpenAI-shaped error with this status.
pub fn status(code: u16) -> Scripted {
    Scripted::json(code, &json!({"error": {"message": format!("status {code}"), "type": "server_error"}}))
}

/// A target of `kind` at the provider's real base URL, with a test key.
pub fn target(kind: ProviderKind, model: &str) -> Target {
    Target {
        id: format!("{}:{model}", kind.as_str()),
        kind,
        model: Some(model.into()),
        base_url: match kind {
            ProviderKind::Anthropic => "https://api.anthropic.com/v1".into(),
            ProviderKind::Gemini => "https://generativelanguage.googleapis.com/v1beta".into(),
            _ => "https://api.openai.com/v1".into(),
        },
        api_key: Some(llm_edge_cache::config::Secret::new("k-123")),
        weight: 1,
        priority: 0,
        timeout_ms: None,
        first_byte_timeout_ms: None,
        first_token_timeout_ms: None,
        default_max_tokens: 1024,
        limits: Default::default(),
    }
}

/// The JSON body of a request the gateway built.
pub fn wire(req: &http::Request<Bytes>) -> Value {
    serde_json::from_slice(req.body()).expect("JSON body")
}

/// Translating targets of routing tests.
pub const ANTHROPIC: &str = "http://anthropic.test/v1";
pub const GEMINI: &str = "http://gemini.test/v1beta";

/// `ROUTES` sending `gpt-4o` to `targets`.
pub fn routes(targets: Value) -> String {
    json!({"gpt-4o": targets}).to_string()
}

/// `primary`, then `secondary` as a fallback: two OpenAI-compatible targets with their own keys.
pub fn two_targets() -> String {
    routes(json!([
        {"provider": "openai-compatible", "id": "primary", "base_url": PRIMARY, "model": "p-model", "key": "PRIMARY_KEY"},
        {"provider": "openai-compatible", "id": "secondary", "base_url": SECONDARY, "model": "s-model", "key": "SECONDARY_KEY", "priority": 1}
    ]))
}

/// A gateway with these `ROUTES`, the keys they name, and `extra` settings.
pub fn world(routes: &str, extra: &[(&str, &str)]) -> World {
    let mut vars = vec![
        ("ROUTES", routes),
        ("PRIMARY_KEY", "sk-primary"),
        ("SECONDARY_KEY", "sk-secondary"),
        ("ANTHROPIC_KEY", "sk-ant-key"),
        ("GEMINI_KEY", "gemini-key"),
    ];
    vars.extend_from_slice(extra);
    World::with_config(config_with(&vars))
}

/// Answers with the given scripts in turn, then with OK; counts calls.
pub fn scripted(w: &World, prefix: &str, scripts: Vec<Scripted>) -> Rc<RefCell<usize>> {
    let calls = Rc::new(RefCell::new(0usize));
    let queue = RefCell::new(scripts.into_iter().collect::<VecDeque<_>>());
    let (c, name) = (calls.clone(), prefix.to_owned());
    w.host.route(prefix, move |_| {
        *c.borrow_mut() += 1;
        queue.borrow_mut().pop_front().unwrap_or_else(|| ok(&name))
    });
    calls
}

/// A non-streaming `gpt-4o` request with this content.
pub fn ask(w: &World, content: &str) -> Reply {
    w.chat(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}).to_string(), &[])
}
