//! OpenAI chat completions and every OpenAI-compatible endpoint (a base URL ending in the API
//! version, such as `https://api.openai.com/v1` or a local Ollama's `http://127.0.0.1:11434/v1`).
//!
//! The client already speaks this format, so the request is forwarded field for field; the work
//! here is classifying answers: which failures are the client's (returned as they are), which are
//! the gateway's or the provider's (retryable, never shown as the client's own fault).

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::api::chat::ChatRequest;
use crate::error::{Unsupported, UpstreamError};
use crate::providers::retry_after_ms;
use crate::routing::table::Target;

/// Longest provider error message passed on to a client.
const MAX_MESSAGE_CHARS: usize = 500;

/// The HTTP request for `request` against an OpenAI-compatible target: the client's request
/// field for field, with the target's model when it names one.
pub fn build_request(target: &Target, request: &ChatRequest) -> Result<http::Request<Bytes>, Unsupported> {
    build(target, request, false)
}

/// Like `build_request`, for a stream whose answer is to be stored: also asks for the usage chunk
/// (`stream_options.include_usage`), the client's other stream options kept.
pub fn build_request_asking_usage(target: &Target, request: &ChatRequest) -> Result<http::Request<Bytes>, Unsupported> {
    build(target, request, true)
}

fn build(target: &Target, request: &ChatRequest, ask_usage: bool) -> Result<http::Request<Bytes>, Unsupported> {
    let mut json = request.to_json();
    json.insert("model".into(), Value::String(target.model_for(&request.model).to_owned()));
    if ask_usage {
        let options = json.entry("stream_options").or_insert_with(|| Value::Object(serde_json::Map::new()));
        if let Value::Object(options) = options {
            options.insert("include_usage".into(), Value::Bool(true));
        }
    }
    let body = serde_json::to_vec(&json).expect("a JSON map always serializes");
    let accept = if request.stream { "text/event-stream" } else { "application/json" };
    let mut builder = http::Request::post(format!("{}/chat/completions", target.base_url))
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, accept);
    if let Some(key) = &target.api_key {
        builder = builder.header(http::header::AUTHORIZATION, format!("Bearer {}", key.expose()));
    }
    crate::providers::finish(builder, body, target.kind.as_str())
}

/// What a successful answer says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The model the provider says answered (may be more specific than the one requested).
    pub model: String,
}

/// Checks a complete 2xx body: only a JSON object with a `choices` array is a chat completion.
pub fn parse_success(body: &[u8], requested_model: &str) -> Result<Answer, UpstreamError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| UpstreamError::Malformed(format!("not JSON: {e}")))?;
    let obj = value.as_object().ok_or_else(|| UpstreamError::Malformed("not a JSON object".into()))?;
    if !obj.get("choices").is_some_and(Value::is_array) {
        return Err(UpstreamError::Malformed("no choices array".into()));
    }
    let model = obj.get("model").and_then(Value::as_str).unwrap_or(requested_model).to_owned();
    Ok(Answer { model })
}

/// Classifies a non-2xx answer. `body` is read only for the error message of a client error.
pub fn classify_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> UpstreamError {
    let retry_after = retry_after_ms(headers);
    match status.as_u16() {
        401 | 403 => UpstreamError::Auth { status: status.as_u16() },
        429 => UpstreamError::RateLimited { retry_after_ms: retry_after },
        408 => UpstreamError::Timeout { ms: 0 },
        400..=499 => match error_details(body) {
            // A provider-shaped error: the provider judged the client's request.
            Some((kind, message, param)) => {
                UpstreamError::ClientRequest { status: status.as_u16(), kind, message, param }
            }
            // A bare 404 or 405 without the provider's error shape: a wrong base URL, our fault.
            None => UpstreamError::Server { status: status.as_u16(), retry_after_ms: retry_after },
        },
        code => UpstreamError::Server { status: code, retry_after_ms: retry_after },
    }
}

/// `(type, message, param)` of an OpenAI-shaped error body.
fn error_details(body: &[u8]) -> Option<(String, String, Option<String>)> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let error = value.get("error")?;
    let message = error.get("message")?.as_str()?;
    let message: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
    let kind = error.get("type").and_then(Value::as_str).unwrap_or("invalid_request_error").to_owned();
    let param = error.get("param").and_then(Value::as_str).map(str::to_owned);
    Some((kind, message, param))
}
