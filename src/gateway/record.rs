//! The record of one request: filled in along the way (tenant, model, each provider attempt, the
//! answer or the entry that answered, a stream's first token), then finished once: after the
//! response for a whole answer, when the stream ends for a streamed one. Finishing writes the
//! request's one log line (event `request`, with the OpenTelemetry GenAI attribute names where
//! they fit) and adds its counts to the isolate's metrics (`tally`).
//!
//! The answer's usage, cost and the cost a hit avoided are worked out when the record is
//! finished, in background work: never before the client has its answer.
//! Must not: log a key, a URL or a provider's words; decide anything about the request.

use std::cell::RefCell;

use bytes::Bytes;
use http::{HeaderMap, Response};
use serde_json::{json, Value};

use super::tally;
use crate::cache::entry::Entry;
use crate::config::metrics::MetricsConfig;
use crate::config::{Config, UpstashConfig};
use crate::metrics::{self as m, Adds, OutcomeClass};
use crate::ports::{Body, Host};
use crate::prices::{Price, Usage};
use crate::routing::table::Target;

/// One provider call of the request.
#[derive(Debug, Clone)]
struct Attempt {
    target: String,
    class: OutcomeClass,
    ms: u64,
}

/// The answer the client got, kept (shared, not copied) to read its usage after the response.
#[derive(Debug, Clone)]
struct Answer {
    body: Bytes,
    /// The provider kind (or, for an entry, what it names) that produced it.
    provider: String,
    /// The target that answered now; `None` for an answer from the cache.
    target: Option<String>,
    /// The model the tokens are priced at: the model the target asked for.
    priced_model: String,
}

/// What the record holds until it is finished.
#[derive(Debug, Clone, Default)]
struct Line {
    started_ms: u64,
    request_id: String,
    method: String,
    path: String,
    chat: bool,
    tenant: Option<String>,
    model: Option<String>,
    stream: bool,
    attempts: Vec<Attempt>,
    answer: Option<Answer>,
    /// From the request's start to a provider stream's first content.
    first_token_ms: Option<u64>,
    /// The response's outcome, read from its headers (or set when a stream is handed over).
    status: u16,
    x_cache: String,
    tier: Option<String>,
    coalesced: bool,
    fallback: bool,
    /// How a stream ended: `complete`, a failure's code, or `client_gone`.
    stream_end: Option<&'static str>,
    /// The whole request, when it ended with its response (a stream's ends later).
    total_ms: Option<u64>,
    handed_over: bool,
}

/// The record of the request in flight (shared by the parts of `Exchange`, never across an await).
#[derive(Debug, Default)]
pub(super) struct Record(RefCell<Line>);

impl Record {
    pub fn new(started_ms: u64, request_id: &str, request: &http::Request<Body>) -> Record {
        let path: String = request.uri().path().chars().take(100).collect();
        let chat = matches!(path.as_str(), "/v1/chat/completions" | "/chat/completions");
        Record(RefCell::new(Line {
            started_ms,
            request_id: request_id.to_owned(),
            method: request.method().as_str().to_owned(),
            path,
            chat,
            ..Line::default()
        }))
    }

    pub fn tenant(&self, tenant: &str) {
        self.0.borrow_mut().tenant = Some(tenant.to_owned());
    }

    /// The model asked for, once it is known to be served (an unknown name is no label value).
    pub fn model(&self, model: &str, stream: bool) {
        let mut line = self.0.borrow_mut();
        line.model = Some(model.to_owned());
        line.stream = stream;
    }

    /// One provider call and how it ended.
    pub fn attempt(&self, target: &Target, class: OutcomeClass, ms: u64) {
        self.0.borrow_mut().attempts.push(Attempt { target: target.id.clone(), class, ms });
    }

    /// A provider's whole answer (`body`, an OpenAI chat completion), from `target`.
    pub fn answered(&self, target: &Target, requested_model: &str, body: &Bytes) {
        self.0.borrow_mut().answer = Some(Answer {
            body: body.clone(),
            provider: target.kind.as_str().to_owned(),
            target: Some(target.id.clone()),
            priced_model: target.model_for(requested_model).to_owned(),
        });
    }

    /// An entry answered (a hit, a stale answer, another request's call).
    pub fn served_entry(&self, entry: &Entry) {
        self.0.borrow_mut().answer = Some(Answer {
            body: entry.body.clone(),
            provider: entry.provider.clone(),
            target: None,
            priced_model: entry.model.clone(),
        });
    }

    /// A provider's stream from `target` has started: its first content came now.
    pub fn first_token(&self, target: &Target, requested_model: &str, now_ms: u64) {
        let mut line = self.0.borrow_mut();
        line.first_token_ms = Some(now_ms.saturating_sub(line.started_ms));
        line.answer = Some(Answer {
            body: Bytes::new(),
            provider: target.kind.as_str().to_owned(),
            target: Some(target.id.clone()),
            priced_model: target.model_for(requested_model).to_owned(),
        });
    }

    /// Hands the record over to a provider stream about to be returned (`x_cache`: what its
    /// `x-cache` says): the stream finishes it when it ends.
    pub fn hand_over<H: Host>(&self, host: &H, config: &Config, x_cache: &str, fallback: bool) -> Pending<H> {
        let mut line = self.0.borrow_mut();
        line.handed_over = true;
        let mut handed = line.clone();
        (handed.status, handed.x_cache, handed.tier, handed.fallback) =
            (200, x_cache.to_owned(), Some("origin".to_owned()), fallback);
        let price = handed.answer.as_ref().and_then(|a| config.prices.price(&a.priced_model)).copied();
        Pending {
            line: Some(handed),
            host: host.clone(),
            sink: Sink { upstash: config.upstash.clone(), metrics: config.metrics, price },
        }
    }

    /// Finishes the record of a request answered by `response` (unless a stream took it over):
    /// its log line and counts, worked out after the response.
    pub fn finish<H: Host>(&self, host: &H, config: Option<&Config>, response: &Response<Body>, total_ms: u64) {
        let mut line = self.0.take();
        if line.handed_over {
            return;
        }
        line.total_ms = Some(total_ms);
        read_headers(&mut line, response.status().as_u16(), response.headers());
        let price = config.zip(line.answer.as_ref()).and_then(|(c, a)| c.prices.price(&a.priced_model)).copied();
        let sink = Sink {
            upstash: config.and_then(|c| c.upstash.clone()),
            metrics: config.map(|c| c.metrics).unwrap_or_default(),
            price,
        };
        let task_host = host.clone();
        host.spawn_background(Box::pin(async move { write(&task_host, line, &sink) }));
    }
}

fn read_headers(line: &mut Line, status: u16, headers: &HeaderMap) {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    line.status = status;
    line.x_cache = get("x-cache").unwrap_or_default();
    line.tier = get("x-cache-tier");
    line.coalesced = headers.contains_key("x-coalesced");
    line.fallback = headers.contains_key("x-fallback");
}

/// Where a finished record goes, and the price of its answer's model.
struct Sink {
    upstash: Option<UpstashConfig>,
    metrics: MetricsConfig,
    price: Option<Price>,
}

/// The record of a provider stream, finished when the stream ends (or is dropped: the client
/// went away).
pub(super) struct Pending<H: Host> {
    line: Option<Line>,
    host: H,
    sink: Sink,
}

impl<H: Host> Pending<H> {
    /// The stream ended: `how` (`complete` or a failure's code), with the assembled answer when
    /// there is one (its usage is counted). A failure after the first byte marks the call cut.
    pub fn end(mut self, how: &'static str, answer: Option<&Bytes>) {
        let Some(mut line) = self.line.take() else { return };
        line.stream_end = Some(how);
        if how != "complete" {
            if let Some(last) = line.attempts.last_mut() {
                last.class = OutcomeClass::Cut;
            }
        }
        if let (Some(kept), Some(body)) = (line.answer.as_mut(), answer) {
            kept.body = body.clone();
        }
        let sink =
            std::mem::replace(&mut self.sink, Sink { upstash: None, metrics: MetricsConfig::default(), price: None });
        let host = self.host.clone();
        self.host.spawn_background(Box::pin(async move { write(&host, line, &sink) }));
    }
}

impl<H: Host> Drop for Pending<H> {
    fn drop(&mut self) {
        if let Some(mut line) = self.line.take() {
            line.stream_end = Some("client_gone");
            write(&self.host, line, &self.sink);
        }
    }
}

/// Writes the log line and adds the counts of a finished record.
fn write<H: Host>(host: &H, line: Line, sink: &Sink) {
    let now = host.now_ms();
    let total_ms = line.total_ms.unwrap_or_else(|| now.saturating_sub(line.started_ms));
    let parsed =
        line.answer.as_ref().filter(|a| !a.body.is_empty()).and_then(|a| serde_json::from_slice::<Value>(&a.body).ok());
    let usage = parsed.as_ref().and_then(Usage::of_completion);
    let cost = usage.zip(sink.price).map(|(u, p)| p.cost_nanos(&u));
    let outcome = outcome(&line);
    host.log(&log_line(&line, parsed.as_ref(), usage, cost, outcome, total_ms).to_string());
    if line.chat {
        tally::add(host, sink.upstash.as_ref(), sink.metrics, now, adds(&line, usage, cost, outcome, total_ms));
    }
}

/// What became of the request, as `requests` counts it.
fn outcome(line: &Line) -> &'static str {
    match (line.status, line.x_cache.as_str()) {
        (400..=499, _) => "client_error",
        (500.., _) | (0..=199, _) => "error",
        (_, "HIT") => "hit",
        (_, "STALE") => "stale",
        (_, "BYPASS") => "bypass",
        _ if line.coalesced => "coalesced",
        _ => "miss",
    }
}

/// Why the answering target was not the first tried: the first failed call's class, or
/// `skipped` (a breaker or kill switch passed a target over without a call).
fn fallback_reason(line: &Line) -> Option<&'static str> {
    line.fallback
        .then(|| line.attempts.iter().find(|a| a.class != OutcomeClass::Ok).map_or("skipped", |a| a.class.word()))
}

fn log_line(
    line: &Line,
    parsed: Option<&Value>,
    usage: Option<Usage>,
    cost: Option<u64>,
    outcome: &str,
    total_ms: u64,
) -> Value {
    let mut out = json!({
        "level": "info",
        "event": "request",
        "request_id": line.request_id,
        "method": line.method,
        "path": line.path,
        "status": line.status,
        "duration_ms": total_ms,
    });
    let fields = out.as_object_mut().expect("a JSON object");
    if !line.chat {
        return out;
    }
    let from_cache = line.answer.as_ref().is_some_and(|a| a.target.is_none());
    let attempts: Vec<Value> = line
        .attempts
        .iter()
        .map(|a| json!({"target": a.target, "outcome": a.class.word(), "duration_ms": a.ms}))
        .collect();
    fields.extend([
        ("tenant".to_owned(), json!(line.tenant)),
        ("gen_ai.operation.name".to_owned(), json!("chat")),
        ("gen_ai.request.model".to_owned(), json!(line.model)),
        ("stream".to_owned(), json!(line.stream)),
        ("cache".to_owned(), json!({"outcome": outcome, "tier": line.tier, "x_cache": line.x_cache})),
        ("attempts".to_owned(), Value::Array(attempts)),
        ("fallback".to_owned(), json!({"used": line.fallback, "reason": fallback_reason(line)})),
    ]);
    if let Some(answer) = &line.answer {
        fields.insert("gen_ai.provider.name".into(), json!(answer.provider));
        fields.insert("target".into(), json!(answer.target));
    }
    if let Some(body) = parsed {
        fields.insert("gen_ai.response.model".into(), body.get("model").cloned().unwrap_or(Value::Null));
        let reasons: Vec<Value> = body
            .get("choices")
            .and_then(Value::as_array)
            .map(|choices| {
                choices.iter().filter_map(|c| c.get("finish_reason").cloned()).filter(|r| !r.is_null()).collect()
            })
            .unwrap_or_default();
        fields.insert("gen_ai.response.finish_reasons".into(), Value::Array(reasons));
    }
    if let Some(usage) = usage {
        fields.insert("gen_ai.usage.input_tokens".into(), json!(usage.input));
        fields.insert("gen_ai.usage.output_tokens".into(), json!(usage.output));
    }
    if let Some(ms) = line.first_token_ms {
        fields.insert("ttft_ms".into(), json!(ms));
    }
    if let Some(how) = line.stream_end {
        fields.insert("stream_end".into(), json!(how));
    }
    if let Some(nanos) = cost {
        let key = if from_cache { "cost_avoided_usd" } else { "cost_usd" };
        fields.insert(key.into(), json!(crate::prices::usd(nanos)));
    }
    out
}

/// The counts of a finished chat request.
fn adds(line: &Line, usage: Option<Usage>, cost: Option<u64>, outcome: &str, total_ms: u64) -> Adds {
    let mut adds = Adds::default();
    let tenant = line.tenant.as_deref().unwrap_or("-");
    let model = line.model.as_deref().unwrap_or("-");
    adds.count(&m::REQUESTS, &[tenant, model, outcome], 1);
    let tier = line.tier.as_deref().unwrap_or("none");
    let hit_tier = match outcome {
        "hit" => Some(tier),
        "coalesced" => Some("coalesced"),
        _ => None,
    };
    if let Some(hit_tier) = hit_tier {
        adds.count(&m::HITS, &[hit_tier], 1);
        adds.count(&m::AVOIDED, &[tenant, hit_tier], cost.unwrap_or(0));
        adds.count(&m::AVOIDED_TOKENS, &[tenant, hit_tier], usage.map_or(0, |u| u.total()));
    }
    if outcome == "stale" {
        adds.count(&m::STALE, &[tier], 1);
    }
    for attempt in &line.attempts {
        adds.count(&m::CALLS, &[&attempt.target, attempt.class.word()], 1);
        adds.observe(&m::ORIGIN_MS, &[&attempt.target], attempt.ms);
    }
    if let Some(reason) = fallback_reason(line) {
        adds.count(&m::FAILOVERS, &[reason], 1);
    }
    let target = line.answer.as_ref().and_then(|a| a.target.as_deref());
    if let (Some(target), Some(usage)) = (target, usage) {
        adds.count(&m::TOKENS, &[tenant, target, "input"], usage.input);
        adds.count(&m::TOKENS, &[tenant, target, "output"], usage.output);
        adds.count(&m::COST, &[tenant, target], cost.unwrap_or(0));
        adds.observe(&m::TOKEN_USAGE, &[target, "input"], usage.input);
        adds.observe(&m::TOKEN_USAGE, &[target, "output"], usage.output);
    }
    adds.observe(&m::TOTAL_MS, &[tier], total_ms);
    if line.stream && line.status == 200 {
        let first = line.first_token_ms.unwrap_or(total_ms);
        adds.observe(&m::TTFB_TIER_MS, &[tier], first);
        if let (Some(target), Some(ms)) = (target, line.first_token_ms) {
            adds.observe(&m::TTFT_TARGET_MS, &[target], ms);
        }
    }
    adds
}
