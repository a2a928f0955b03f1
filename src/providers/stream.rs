//! Streaming answers from providers that do not speak OpenAI, translated into OpenAI
//! `chat.completion.chunk` server-sent events as they arrive. A stateful translator fed with
//! byte chunks in whatever pieces the network delivers; no IO, no clock.
//!
//! A stream that ends before the provider said it was complete is an error, never a made-up
//! `[DONE]`: the client must be able to tell a cut stream from a finished one. Events are read by
//! `sse::SseParser`, so the work is linear in the stream and one event is bounded by
//! [`MAX_PROVIDER_EVENT_BYTES`].

use serde_json::{json, Value};

use crate::providers::sse::SseParser;
use crate::providers::{anthropic, gemini};
use crate::routing::table::{ProviderKind, Target};

/// The largest provider event read (one line, or one event's data). A Gemini chunk carries whole
/// parts, so this is far above any text or tool call a chunk holds; over it the stream is an error.
pub const MAX_PROVIDER_EVENT_BYTES: usize = 4 << 20;

/// Why a provider's stream cannot be translated further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    #[error("provider sent an unreadable stream: {0}")]
    Unreadable(String),
    /// The provider's own error event, with its message (for logs, never for a client).
    #[error("the provider reported an error mid-stream: {0}")]
    ProviderError(String),
    #[error("the provider's stream ended before it was complete")]
    Unfinished,
}

pub struct SseTranslator {
    kind: ProviderKind,
    parser: SseParser,
    id: String,
    model: String,
    created_s: u64,
    include_usage: bool,
    started: bool,
    finished: bool,
    /// Anthropic content block index → OpenAI tool call index.
    tool_blocks: Vec<(u64, usize)>,
    tools_seen: usize,
    usage: (u64, u64),
}

impl SseTranslator {
    /// A translator for `target`, or `None` when its stream is already OpenAI's.
    pub fn new(target: &Target, model: &str, created_s: u64, include_usage: bool) -> Option<SseTranslator> {
        match target.kind {
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => None,
            kind => Some(SseTranslator {
                kind,
                parser: SseParser::new(MAX_PROVIDER_EVENT_BYTES),
                id: format!("chatcmpl-{created_s}"),
                model: model.to_owned(),
                created_s,
                include_usage,
                started: false,
                finished: false,
                tool_blocks: Vec::new(),
                tools_seen: 0,
                usage: (0, 0),
            }),
        }
    }

    /// Translates the complete events in what has arrived so far.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, TranslateError> {
        let events = self.parser.push(chunk).map_err(|e| TranslateError::Unreadable(e.to_string()))?;
        let mut out = Vec::new();
        for event in events {
            if event.data.is_empty() {
                continue;
            }
            let value: Value = serde_json::from_str(&event.data)
                .map_err(|e| TranslateError::Unreadable(format!("an event is not JSON: {e}")))?;
            match self.kind {
                ProviderKind::Anthropic => self.anthropic(event.event.as_deref().map(str::trim), &value, &mut out)?,
                _ => self.gemini(&value, &mut out)?,
            }
        }
        Ok(out)
    }

    /// Whether the provider's own terminal event has been seen (Anthropic `message_stop`, Gemini's
    /// final `finishReason` or a blocked prompt): from then on the answer is complete.
    pub fn provider_finished(&self) -> bool {
        self.finished
    }

    /// Called when the provider's stream ends: `[DONE]` if it had finished, an error if not.
    pub fn finish(&mut self) -> Result<Vec<u8>, TranslateError> {
        if !self.finished {
            return Err(TranslateError::Unfinished);
        }
        let mut out = Vec::new();
        if self.include_usage {
            let (prompt, completion) = self.usage;
            let usage =
                json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
            self.emit_raw(json!([]), Some(usage), &mut out);
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        Ok(out)
    }

    fn anthropic(&mut self, name: Option<&str>, v: &Value, out: &mut Vec<u8>) -> Result<(), TranslateError> {
        let kind = name.or_else(|| v.get("type").and_then(Value::as_str)).unwrap_or_default();
        match kind {
            "message_start" => {
                let message = &v["message"];
                if let Some(id) = message.get("id").and_then(Value::as_str) {
                    self.id = id.to_owned();
                }
                if let Some(model) = message.get("model").and_then(Value::as_str) {
                    self.model = model.to_owned();
                }
                // Prompt tokens as the non-streamed answer counts them: cache writes and reads included.
                let usage = &message["usage"];
                let n = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
                self.usage.0 = n("input_tokens") + n("cache_creation_input_tokens") + n("cache_read_input_tokens");
                self.start(out);
            }
            "content_block_start" => {
                let block = &v["content_block"];
                if block.get("type").and_then(Value::as_str) == Some("tool_use") {
                    let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                    let tool = self.tools_seen;
                    self.tools_seen += 1;
                    self.tool_blocks.push((index, tool));
                    let call = json!({"index": tool, "id": block["id"], "type": "function", "function": {"name": block["name"], "arguments": ""}});
                    self.emit(json!({"tool_calls": [call]}), None, out);
                }
            }
            "content_block_delta" => {
                let delta = &v["delta"];
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => self.emit(json!({"content": delta["text"]}), None, out),
                    Some("input_json_delta") => {
                        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                        if let Some((_, tool)) = self.tool_blocks.iter().find(|(b, _)| *b == index) {
                            let call = json!({"index": tool, "function": {"arguments": delta["partial_json"]}});
                            self.emit(json!({"tool_calls": [call]}), None, out);
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(n) = v["usage"].get("output_tokens").and_then(Value::as_u64) {
                    self.usage.1 = n;
                }
                if let Some(reason) = v["delta"].get("stop_reason").and_then(Value::as_str) {
                    self.emit(json!({}), Some(anthropic::finish_reason(Some(reason))), out);
                }
            }
            "message_stop" => self.finished = true,
            "error" => {
                let message = v["error"].get("message").and_then(Value::as_str).unwrap_or("unknown error");
                return Err(TranslateError::ProviderError(message.to_owned()));
            }
            _ => {}
        }
        Ok(())
    }

    fn gemini(&mut self, v: &Value, out: &mut Vec<u8>) -> Result<(), TranslateError> {
        if let Some(error) = v.get("error") {
            let message = error.get("message").and_then(Value::as_str).unwrap_or("unknown error");
            return Err(TranslateError::ProviderError(message.to_owned()));
        }
        if let Some(model) = v.get("modelVersion").and_then(Value::as_str) {
            self.model = model.to_owned();
        }
        if let Some(id) = v.get("responseId").and_then(Value::as_str) {
            self.id = id.to_owned();
        }
        self.start(out);
        if let Some(usage) = v.get("usageMetadata") {
            let n = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
            self.usage = (n("promptTokenCount"), n("candidatesTokenCount") + n("thoughtsTokenCount"));
        }
        let Some(candidate) = v.get("candidates").and_then(Value::as_array).and_then(|c| c.first()) else {
            if v.get("promptFeedback").and_then(|f| f.get("blockReason")).is_some() {
                self.emit(json!({}), Some("content_filter"), out);
                self.finished = true;
            }
            return Ok(());
        };
        let parts = candidate["content"].get("parts").and_then(Value::as_array).cloned().unwrap_or_default();
        for part in parts.iter().filter(|p| p.get("thought") != Some(&json!(true))) {
            if let Some(text) = part.get("text").and_then(Value::as_str) {
                self.emit(json!({"content": text}), None, out);
            }
            if let Some(call) = part.get("functionCall") {
                let tool = self.tools_seen;
                self.tools_seen += 1;
                let arguments = serde_json::to_string(call.get("args").unwrap_or(&json!({}))).expect("JSON serializes");
                let call = json!({"index": tool, "id": format!("call_0_{tool}"), "type": "function", "function": {"name": call["name"], "arguments": arguments}});
                self.emit(json!({"tool_calls": [call]}), None, out);
            }
        }
        if let Some(reason) = candidate.get("finishReason").and_then(Value::as_str) {
            self.emit(json!({}), Some(gemini::finish_reason(Some(reason), self.tools_seen > 0)), out);
            self.finished = true;
        }
        Ok(())
    }

    /// The first chunk of every OpenAI stream names the role.
    fn start(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            let choices = json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]);
            self.emit_raw(choices, None, out);
        }
    }

    fn emit(&mut self, delta: Value, finish: Option<&str>, out: &mut Vec<u8>) {
        self.start(out);
        let choices = json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
        self.emit_raw(choices, None, out);
    }

    fn emit_raw(&self, choices: Value, usage: Option<Value>, out: &mut Vec<u8>) {
        let mut chunk = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created_s, "model": self.model, "choices": choices});
        if let Some(usage) = usage {
            chunk["usage"] = usage;
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&serde_json::to_vec(&chunk).expect("JSON serializes"));
        out.extend_from_slice(b"\n\n");
    }
}
