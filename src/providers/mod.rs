//! Providers translate between the client's OpenAI request and one provider's wire format, and
//! classify the provider's answer. They only translate: building a request and reading a response
//! are pure functions, and only the gateway sends. Every successful answer leaves here as an
//! OpenAI chat completion, so the cache holds one format whichever provider answered.
//!
//! Streams: `sse` reads server-sent events, `stream` translates other providers' streams into
//! OpenAI chunks, `assemble` turns a chunk stream into the completion one cache entry holds,
//! `relay` carries one provider stream to the client and the assembler, and `replay` turns a
//! stored completion back into a chunk stream.

pub mod anthropic;
pub mod assemble;
pub mod content;
pub mod embeddings;
pub mod gemini;
pub mod openai;
pub mod relay;
pub mod replay;
pub mod sse;
pub mod stream;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::api::chat::ChatRequest;
use crate::error::{Unsupported, UpstreamError};
use crate::routing::table::{ProviderKind, Target};

/// Reads a provider's advice on when to retry: `retry-after-ms` (OpenAI) or `retry-after` in
/// seconds. An HTTP-date form is ignored (no clock here to compare it with).
pub fn retry_after_ms(headers: &HeaderMap) -> Option<u64> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(ms.ceil() as u64);
        }
    }
    header("retry-after").and_then(|v| v.parse::<u64>().ok()).map(|s| s.saturating_mul(1000))
}

/// The HTTP request that asks `target` for `request`.
pub fn build_request(target: &Target, request: &ChatRequest) -> Result<http::Request<Bytes>, Unsupported> {
    match target.kind {
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => openai::build_request(target, request),
        ProviderKind::Anthropic => anthropic::build_request(target, request),
        ProviderKind::Gemini => gemini::build_request(target, request),
    }
}

/// Whether the client asked for a stream's usage chunk (`stream_options.include_usage`).
pub fn client_wants_usage(request: &ChatRequest) -> bool {
    let options = request.stream_options.as_ref();
    options.and_then(|o| o.get("include_usage")).and_then(serde_json::Value::as_bool).unwrap_or(false)
}

/// Whether a stream from `target` whose answer is to be stored (`storing`) gets usage the client
/// did not ask for, so that the stored answer has it (and the client is then not shown it):
/// - OpenAI's own API is asked (`stream_options.include_usage`, documented there);
/// - an OpenAI-compatible server is not: some reject the field, and a rejection would look like
///   the client's own bad request; its answer is stored without usage when the client did not
///   ask for it;
/// - Anthropic and Gemini always stream usage; their translator writes the usage chunk.
pub fn asks_usage(target: &Target, request: &ChatRequest, storing: bool) -> bool {
    storing && request.stream && !client_wants_usage(request) && target.kind != ProviderKind::OpenAiCompatible
}

/// The HTTP request that asks `target` for a stream; `storing`: its answer is to be stored (see
/// `asks_usage`).
pub fn build_stream_request(
    target: &Target,
    request: &ChatRequest,
    storing: bool,
) -> Result<http::Request<Bytes>, Unsupported> {
    match target.kind {
        ProviderKind::OpenAi if asks_usage(target, request, storing) => {
            openai::build_request_asking_usage(target, request)
        }
        _ => build_request(target, request),
    }
}

/// The request a builder describes. Base URLs, models and keys are checked when the configuration
/// is read, so this cannot fail for a configured target; should it ever, the target is skipped as
/// unable to serve the request, never a panic.
pub(crate) fn finish(
    builder: http::request::Builder,
    body: Vec<u8>,
    provider: &'static str,
) -> Result<http::Request<Bytes>, Unsupported> {
    builder
        .body(Bytes::from(body))
        .map_err(|_| Unsupported::new(provider, "model", "the target's settings cannot form an HTTP request"))
}

/// A successful answer, as the client will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// An OpenAI chat completion (the provider's own bytes when it already speaks OpenAI).
    pub body: Bytes,
    /// The model the provider says answered.
    pub model: String,
}

/// Reads a complete 2xx body from `target`.
pub fn parse_success(
    target: &Target,
    body: Bytes,
    requested_model: &str,
    now_ms: u64,
) -> Result<Answer, UpstreamError> {
    let created_s = now_ms / 1000;
    let (json, model) = match target.kind {
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => {
            let model = openai::parse_success(&body, target.model_for(requested_model))?.model;
            return Ok(Answer { body, model });
        }
        ProviderKind::Anthropic => anthropic::parse_success(&body, created_s)?,
        ProviderKind::Gemini => gemini::parse_success(&body, target.model_for(requested_model), created_s)?,
    };
    Ok(Answer { body: Bytes::from(serde_json::to_vec(&json).expect("JSON serializes")), model })
}

/// Classifies a non-2xx answer from `target`.
pub fn classify_error(target: &Target, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> UpstreamError {
    match target.kind {
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => openai::classify_error(status, headers, body),
        ProviderKind::Anthropic => anthropic::classify_error(status, headers, body),
        ProviderKind::Gemini => gemini::classify_error(status, headers, body),
    }
}
