//! What the benchmark sends and what each answer must be: a `Probe` is one request plus the
//! check its answer has to pass (a cache hit from a given tier, whole or streamed, with its text;
//! a `/admin/health` with given tier states; an answer from a given provider target; a streamed
//! provider answer, through the gateway or from the fake upstream itself), and `seed` puts an
//! entry in the cache before a hit series starts.
//!
//! Must not: time anything (the checks run outside the timed part) or reach a real provider
//! (seeding polls with `only-if-cached` once the one MISS went to the fake upstream).

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use devstack::stack::{Stack, KEY_A};
use devstack::HttpRequest;
use serde_json::{json, Value};

use crate::http::Response;
use crate::sse;

const SEED_POLL_LIMIT: Duration = Duration::from_secs(15);

/// A request of the benchmark and what its answer must be.
pub struct Probe {
    pub method: &'static str,
    pub path: &'static str,
    /// Sent besides `host` (and, on a POST, authorization, content type and length).
    pub headers: Vec<(&'static str, &'static str)>,
    pub body: Vec<u8>,
    check: Check,
}

/// The dev stack's admin key (`devstack::stack::ADMIN_KEY`) as a header value.
const ADMIN_AUTH: &str = "Bearer adm-local-operator-key";

enum Check {
    /// `x-cache: HIT` from this `x-cache-tier`, with this text when given.
    Hit { tier: &'static str, text: Option<String> },
    /// A stream (`text/event-stream`, whole events ending with `data: [DONE]`) whose text is
    /// `text`, from the cache or not as `cache` says.
    Stream { cache: Cache, text: Text },
    /// `/admin/health` reporting these states of edge KV and Redis.
    Health { kv: &'static str, redis: &'static str },
    /// Answered by this target (`x-provider`) after this many provider calls (`x-attempts`),
    /// with `x-fallback: true` exactly when `fallback`.
    Provider { id: &'static str, attempts: &'static str, fallback: bool },
}

/// Where a streamed answer must come from.
#[derive(Clone, Copy)]
pub enum Cache {
    /// A hit from this tier.
    Hit(&'static str),
    /// The provider, through the gateway (not a hit, not stale).
    Miss,
    /// The fake upstream itself (no gateway headers).
    Direct,
}

/// What a streamed answer's text must be.
pub enum Text {
    Exact(String),
    /// A fake upstream reply (`fake reply #<n>: ...`) of this many words.
    Reply {
        words: usize,
    },
}

impl Probe {
    /// A chat completion that must be a cache hit from `tier`.
    pub fn hit(body: &[u8], tier: &'static str) -> Probe {
        Probe {
            method: "POST",
            path: "/v1/chat/completions",
            headers: Vec::new(),
            body: body.to_vec(),
            check: Check::Hit { tier, text: None },
        }
    }

    /// A whole chat completion that must be a cache hit from `tier` whose text is `text`.
    pub fn hit_text(body: &[u8], tier: &'static str, text: &str) -> Probe {
        Probe { check: Check::Hit { tier, text: Some(text.to_owned()) }, ..Probe::hit(body, tier) }
    }

    /// A streamed chat completion (`body` must ask for `stream: true`): `cache-control: no-store`
    /// unless it must be a hit; sent to `path`.
    pub fn stream(path: &'static str, body: &[u8], cache: Cache, text: Text) -> Probe {
        let headers = match cache {
            Cache::Miss => vec![("cache-control", "no-store")],
            Cache::Hit(_) | Cache::Direct => Vec::new(),
        };
        Probe { method: "POST", path, headers, body: body.to_vec(), check: Check::Stream { cache, text } }
    }

    /// `GET /admin/health` (the detailed view; `/healthz` is liveness only and reads no store),
    /// which must report edge KV as `kv` and Redis as `redis`.
    pub fn health(kv: &'static str, redis: &'static str) -> Probe {
        Probe {
            method: "GET",
            path: "/admin/health",
            headers: vec![("authorization", ADMIN_AUTH)],
            body: Vec::new(),
            check: Check::Health { kv, redis },
        }
    }

    /// A chat completion for `model` with `cache-control: no-store` (no cache read or write, so
    /// every request goes to the provider), which target `id` must answer after `attempts`
    /// provider calls.
    pub fn routed(model: &str, id: &'static str, attempts: &'static str, fallback: bool) -> Probe {
        Probe {
            method: "POST",
            path: "/v1/chat/completions",
            headers: vec![("cache-control", "no-store")],
            body: chat_body(model, "benchmark: routed request, never cached"),
            check: Check::Provider { id, attempts, fallback },
        }
    }

    pub fn verify(&self, response: &Response) -> anyhow::Result<()> {
        if response.status != 200 {
            bail!("{} {} answered {}: {}", self.method, self.path, response.status, response.text());
        }
        match &self.check {
            Check::Hit { tier, text } => {
                expect_hit(response, tier)?;
                if let Some(text) = text {
                    let body: Value = serde_json::from_slice(&response.body).context("a whole hit's body")?;
                    if body["choices"][0]["message"]["content"].as_str() != Some(text) {
                        bail!("the hit's text is not the seeded answer's");
                    }
                }
            }
            Check::Stream { cache, text } => {
                match cache {
                    Cache::Hit(tier) => expect_hit(response, tier)?,
                    Cache::Miss => {
                        let cache = response.header("x-cache");
                        if cache == Some("HIT") || cache == Some("STALE") || cache.is_none() {
                            bail!("a no-store stream must come from the provider, got x-cache {cache:?}");
                        }
                    }
                    Cache::Direct => {}
                }
                let got = sse::streamed_text(response)?;
                match text {
                    Text::Exact(text) if got != *text => bail!("the stream's text is not the seeded answer's"),
                    Text::Reply { words } if !got.starts_with("fake reply #") || got.split(' ').count() != *words => {
                        bail!("expected a fake reply of {words} words, got {} words: {got:.60}", got.split(' ').count())
                    }
                    _ => {}
                }
            }
            Check::Health { kv, redis } => {
                let body: Value = serde_json::from_slice(&response.body).context("/admin/health body")?;
                if body["tiers"]["edge_kv"]["state"] != *kv || body["tiers"]["redis"]["state"] != *redis {
                    bail!("expected /admin/health with edge_kv {kv} and redis {redis}, got {body}");
                }
            }
            Check::Provider { id, attempts, fallback } => {
                let provider = response.header("x-provider");
                let got_attempts = response.header("x-attempts");
                let got_fallback = response.header("x-fallback") == Some("true");
                let cache = response.header("x-cache");
                if provider != Some(id) || got_attempts != Some(attempts) || got_fallback != *fallback {
                    bail!(
                        "expected x-provider {id}, x-attempts {attempts} and x-fallback {fallback}, got {provider:?}, \
                         {got_attempts:?} and {:?}",
                        response.header("x-fallback")
                    );
                }
                if cache == Some("HIT") || cache == Some("STALE") {
                    bail!("a no-store request was answered from the cache (x-cache {cache:?})");
                }
            }
        }
        Ok(())
    }
}

fn expect_hit(response: &Response, tier: &str) -> anyhow::Result<()> {
    let (cache, got_tier) = (response.header("x-cache"), response.header("x-cache-tier"));
    if cache != Some("HIT") || got_tier != Some(tier) {
        bail!("expected x-cache HIT and x-cache-tier {tier}, got {cache:?} and {got_tier:?}");
    }
    Ok(())
}

/// A chat completion body with one user message.
pub fn chat_body(model: &str, message: &str) -> Vec<u8> {
    json!({ "model": model, "messages": [{ "role": "user", "content": message }] }).to_string().into_bytes()
}

/// The same request as [`chat_body`] with `stream: true` (the same cache key: `stream` is not
/// part of it).
pub fn stream_body(model: &str, message: &str) -> Vec<u8> {
    json!({ "model": model, "stream": true, "messages": [{ "role": "user", "content": message }] })
        .to_string()
        .into_bytes()
}

/// One MISS, then polls with `only-if-cached` (never reaching the provider) until it is a HIT
/// from `tier`.
pub fn seed(stack: &Stack, body: &[u8], tier: &str) -> anyhow::Result<()> {
    let url = format!("{}/v1/chat/completions", stack.url());
    let request = HttpRequest::post(&url)
        .header("authorization", &format!("Bearer {KEY_A}"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    let first = request.send()?;
    if first.status != 200 || first.header("x-cache") != Some("MISS") {
        bail!("seeding: expected a 200 MISS, got {} {:?}: {}", first.status, first.header("x-cache"), first.text());
    }
    let started = Instant::now();
    while started.elapsed() < SEED_POLL_LIMIT {
        let poll = request.clone().header("cache-control", "only-if-cached").send()?;
        match poll.status {
            200 if poll.header("x-cache") == Some("HIT") && poll.header("x-cache-tier") == Some(tier) => return Ok(()),
            200 => bail!(
                "seeding: expected a HIT from {tier}, got {:?} from {:?}",
                poll.header("x-cache"),
                poll.header("x-cache-tier")
            ),
            504 => std::thread::sleep(Duration::from_millis(100)),
            other => bail!("seeding: only-if-cached answered {other}: {}", poll.text()),
        }
    }
    bail!("seeding: no HIT from {tier} within {SEED_POLL_LIMIT:?}; worker log:\n{}", stack.worker.log())
}

/// Checks a stack's `/admin/health` once, with devstack's client, before a series relies on it.
pub fn expect_health(stack: &Stack, kv: &str, redis: &str, what: &str) -> anyhow::Result<()> {
    let health = HttpRequest::get(&format!("{}/admin/health", stack.url()))
        .header("authorization", ADMIN_AUTH)
        .send()?
        .json()?;
    if health["tiers"]["edge_kv"]["state"] != kv || health["tiers"]["redis"]["state"] != redis {
        bail!("{what}: expected /admin/health with edge_kv {kv} and redis {redis}, got {health}");
    }
    Ok(())
}
