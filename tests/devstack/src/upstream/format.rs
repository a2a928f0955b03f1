//! The seam between the fake upstream's engine and each provider's wire format. A format
//! says which paths it serves, reads the few request fields the engine needs, and renders
//! replies, stream events and error bodies; the engine (in `upstream.rs`) applies the
//! scripted action (delays, statuses, cuts) the same way for every format.
//!
//! Adding Anthropic (`POST /v1/messages`) or Gemini (`/v1beta/models/{model}:generateContent`
//! and `:streamGenerateContent`) means one new file implementing [`WireFormat`] and one
//! line in `upstream::formats()`. This module must not do IO.

use bytes::Bytes;
use serde_json::Value;

/// What a format learned from the request path.
#[derive(Debug, Clone, Default)]
pub struct Route {
    /// Model named in the path (Gemini style), if any.
    pub model: Option<String>,
    /// The path itself asks for a stream (Gemini's `:streamGenerateContent`).
    pub stream: bool,
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
}

/// One provider's wire format.
pub trait WireFormat: Send + Sync {
    /// Short name for logs, e.g. `"openai"`.
    fn name(&self) -> &'static str;

    /// `Some` if this format serves `POST path`.
    fn route(&self, path: &str) -> Option<Route>;

    /// Reads the request; `Err` is a message for a 400 in this format's error shape.
    fn parse(&self, body: &Value, route: &Route) -> Result<ChatCall, String>;

    /// The non-streaming success body.
    fn completion(&self, call: &ChatCall, reply: &FakeReply) -> Value;

    /// The streaming success events.
    fn stream(&self, call: &ChatCall, reply: &FakeReply) -> StreamPlan;

    /// The error body for `status`, with `message` or a default that fits the status.
    fn error_body(&self, status: u16, message: Option<&str>) -> Value;
}

/// Whitespace-separated words, at least 1 (token counts are never 0 for non-empty use).
pub fn word_count(text: &str) -> u64 {
    u64::try_from(text.split_whitespace().count()).unwrap_or(u64::MAX).max(1)
}

/// `data: <json>\n\n`
pub fn sse_data(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}
