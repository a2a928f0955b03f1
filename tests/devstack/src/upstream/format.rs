//! The seam between the fake upstream's engine and each provider's wire format. A format
//! says which paths it serves, where the credential is and which headers the real API
//! insists on, reads the few request fields the engine needs, and renders replies, stream
//! events and error bodies; the engine (in `upstream.rs`) applies the scripted action
//! (delays, statuses, cuts) the same way for every format.
//!
//! Formats: `openai` (chat completions), `anthropic` (Messages), `gemini`
//! (generateContent). Adding one means one new file implementing [`WireFormat`] and one
//! line in `upstream::formats()`. This module must not do IO.

use bytes::Bytes;
use http::HeaderMap;
use serde_json::Value;

/// What a format learned from the request path and query.
#[derive(Debug, Clone, Default)]
pub struct Route {
    /// Model named in the path (Gemini style), if any.
    pub model: Option<String>,
    /// The path itself asks for a stream (Gemini's `:streamGenerateContent`).
    pub stream: bool,
    /// The stream is one JSON array instead of SSE (Gemini's stream without `alt=sse`).
    pub json_array: bool,
}

/// The request head, as a format sees it to find the credential and check headers.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
}

impl RequestHead<'_> {
    /// A header's value (lossy UTF-8, trimmed); `None` if absent.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
    }
}

/// The credential a call carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// Where it came from: `authorization`, `x-api-key`, `x-goog-api-key`, or `key` (the
    /// query parameter).
    pub source: &'static str,
    /// The value as sent (for `authorization`, including `Bearer `).
    pub value: String,
}

impl Credential {
    /// The key itself: the value without a leading `Bearer `.
    pub fn key(&self) -> &str {
        self.value.strip_prefix("Bearer ").unwrap_or(&self.value).trim()
    }
}

/// A call refused before its body is looked at (missing key, missing header, wrong key).
#[derive(Debug, Clone)]
pub struct Rejection {
    pub status: u16,
    pub body: Value,
}

/// The tool call a fake reply makes instead of answering with text.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallPlan {
    /// The first declared tool's name.
    pub name: String,
    /// `{}`, or `{"city":"Paris"}` if that tool declares a `city` property.
    pub args: Value,
}

impl ToolCallPlan {
    /// The plan for a request that declares `first_tool` (with its parameters' JSON
    /// schema) and whose last user text is `last_user_text`: a call only if the text
    /// contains `TOOL_CALL`.
    pub fn when_asked(last_user_text: &str, first_tool: Option<(&str, Option<&Value>)>) -> Option<ToolCallPlan> {
        let (name, schema) = first_tool?;
        if !last_user_text.contains("TOOL_CALL") {
            return None;
        }
        let has_city = schema.and_then(|s| s.get("properties")).and_then(|p| p.get("city")).is_some();
        let args = if has_city { serde_json::json!({ "city": "Paris" }) } else { serde_json::json!({}) };
        Some(ToolCallPlan { name: name.to_string(), args })
    }

    /// Output tokens the call is billed as.
    pub fn tokens(&self) -> u64 {
        word_count(&format!("{} {}", self.name, self.args))
    }
}

/// The request fields the engine needs.
#[derive(Debug, Clone)]
pub struct ChatCall {
    pub model: String,
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`.
    pub include_usage: bool,
    /// Text of the last user message.
    pub last_user_text: String,
    /// A rough token count of the prompt (words in all messages).
    pub prompt_tokens: u64,
    /// Answer with this tool call instead of text (formats that support tools).
    pub tool: Option<ToolCallPlan>,
    /// What the path said.
    pub route: Route,
}

/// The fake answer to one call.
#[derive(Debug, Clone)]
pub struct FakeReply {
    /// Global call number.
    pub n: u64,
    /// Unix seconds.
    pub created: u64,
    /// `fake reply #<n>: <last user text>`
    pub content: String,
}

impl FakeReply {
    pub fn new(n: u64, call: &ChatCall, created: u64) -> FakeReply {
        FakeReply { n, created, content: format!("fake reply #{n}: {}", call.last_user_text) }
    }

    /// The same reply lengthened to `words` words with filler words of a few lengths (a long
    /// answer to a short prompt); a reply that already has that many is left as it is.
    pub fn lengthened(mut self, words: usize) -> FakeReply {
        const FILLER: [&str; 8] = ["the", "cached", "answer", "streams", "back", "in", "small", "pieces."];
        let have = self.content.split_whitespace().count();
        for i in 0..words.saturating_sub(have) {
            self.content.push(' ');
            self.content.push_str(FILLER[i % FILLER.len()]);
        }
        self
    }

    /// The content split into words, each keeping its trailing space, so that the pieces
    /// concatenate back to the exact content.
    pub fn pieces(&self) -> Vec<&str> {
        self.content.split_inclusive(' ').collect()
    }

    pub fn completion_tokens(&self) -> u64 {
        word_count(&self.content)
    }
}

/// A complete stream, ready to be sent event by event.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    /// Every event, fully framed (e.g. `data: {...}\n\n`), in order.
    pub events: Vec<Bytes>,
    /// Index of the first event that ends the stream (finish reason, usage, `[DONE]`); a
    /// cut stream never sends events from here on.
    pub terminal_from: usize,
    /// `text/event-stream`, or `application/json` for a JSON-array stream.
    pub content_type: &'static str,
}

/// One provider's wire format.
pub trait WireFormat: Send + Sync {
    /// Short name for logs, e.g. `"openai"`.
    fn name(&self) -> &'static str;

    /// `Some` if this format serves `POST path` (with this query string).
    fn route(&self, path: &str, query: Option<&str>) -> Option<Route>;

    /// The credential, looked up where the real API looks (default: `authorization`).
    fn credential(&self, head: &RequestHead<'_>) -> Option<Credential> {
        head.header("authorization").map(|value| Credential { source: "authorization", value })
    }

    /// Refuses call number `n` as the real API would for a missing credential or a
    /// missing or bad required header. Default: accept everything.
    fn check_head(&self, _head: &RequestHead<'_>, _credential: Option<&Credential>, _n: u64) -> Result<(), Rejection> {
        Ok(())
    }

    /// The answer to call number `n` whose credential is not the one a rule requires.
    fn invalid_key(&self, _credential: Option<&Credential>, n: u64) -> Rejection {
        Rejection { status: 401, body: self.call_error_body(401, None, n, None) }
    }

    /// Reads the request; `Err` is a message for a 400 in this format's error shape.
    fn parse(&self, body: &Value, route: &Route) -> Result<ChatCall, String>;

    /// The non-streaming success body.
    fn completion(&self, call: &ChatCall, reply: &FakeReply) -> Value;

    /// The streaming success events.
    fn stream(&self, call: &ChatCall, reply: &FakeReply) -> StreamPlan;

    /// The error body for `status`, with `message` or a default that fits the status.
    fn error_body(&self, status: u16, message: Option<&str>) -> Value;

    /// The error body for call number `n`, whose response will carry `retry_after`
    /// (seconds) if the rule set one. Default: [`WireFormat::error_body`].
    fn call_error_body(&self, status: u16, message: Option<&str>, _n: u64, _retry_after: Option<&str>) -> Value {
        self.error_body(status, message)
    }

    /// Extra response headers the real API sends on every answer to call `n`.
    fn response_headers(&self, _n: u64) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

/// Whitespace-separated words, at least 1 (token counts are never 0 for non-empty use).
pub fn word_count(text: &str) -> u64 {
    u64::try_from(text.split_whitespace().count()).unwrap_or(u64::MAX).max(1)
}

/// `data: <json>\n\n`
pub fn sse_data(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// `event: <name>\ndata: <json>\n\n`
pub fn sse_event(name: &str, value: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {value}\n\n"))
}

/// `text/event-stream`
pub const SSE: &str = "text/event-stream";
