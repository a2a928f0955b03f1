//! Builds the OpenAI chat completion a stream of `chat.completion.chunk` events amounts to, so one
//! cache entry serves stream and non-stream requests alike. Fed the same bytes the client gets
//! (an OpenAI provider's own stream, or `stream::SseTranslator`'s output for the others), or
//! chunks already parsed, and told at the end whether the stream ended cleanly.
//!
//! A stream ended cleanly when its end was signalled after every choice had a `finish_reason`:
//! `data: [DONE]` for OpenAI-format streams, or the caller's word that the provider's own terminal
//! event was seen (`provider_finished`: Anthropic `message_stop`, Gemini's final `finishReason`).
//! An error event, a chunk that is not JSON, data after `[DONE]`, or an answer over the byte bound
//! make it not complete; from then on `push` does nothing, so the caller can keep forwarding.
//!
//! Merging: choices by `index`; `role`, and a tool call's `id`, `type` and `function.name`, from
//! the first delta that has them; other strings (content, refusal, argument fragments) are
//! concatenated, arrays (annotations, logprob tokens) extended, other values replaced by the last
//! one; `usage` from the last chunk that has one (the `include_usage` chunk).
//!
//! Must not: hold more than the bound (the answer's own bytes, not the stream's framing), or carry
//! a provider's error text anywhere (a failure says which kind it is, nothing more).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::providers::sse::{SseEvent, SseParser};
use crate::providers::Answer;

/// Room above the answer's bound for one SSE line's framing (ids, model, JSON punctuation).
const LINE_SLACK: usize = 64 << 10;

/// What one new choice or tool call costs against the bound, besides its strings.
const ENTRY_COST: usize = 64;

/// Delta fields taken from the first delta that has them, never concatenated.
const FIRST_WINS: [&str; 4] = ["id", "type", "name", "role"];

/// Why a stream does not amount to a completion that may be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotComplete {
    #[error("the stream ended without its end being signalled")]
    Cut,
    #[error("the stream ended with no choice, or a choice without a finish reason")]
    Unfinished,
    #[error("the stream carried an error event")]
    ErrorEvent,
    #[error("the answer is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the stream is not a chat completion stream: {0}")]
    Malformed(&'static str),
}

impl NotComplete {
    /// A stable snake_case word for logs and counters.
    pub fn word(self) -> &'static str {
        match self {
            NotComplete::Cut => "cut",
            NotComplete::Unfinished => "unfinished",
            NotComplete::ErrorEvent => "error_event",
            NotComplete::TooLarge { .. } => "too_large",
            NotComplete::Malformed(_) => "malformed",
        }
    }
}

#[derive(Debug, Default)]
struct Choice {
    /// The message's fields except `tool_calls`.
    message: Map<String, Value>,
    /// Tool calls by their `index`, each without it.
    tool_calls: BTreeMap<u64, Map<String, Value>>,
    logprobs: Map<String, Value>,
    finish_reason: Option<Value>,
}

/// The completion being assembled; see the module documentation.
#[derive(Debug)]
pub struct Assembler {
    parser: SseParser,
    limit: usize,
    used: usize,
    /// `id`, `created`, `model`, `system_fingerprint`, `service_tier`: the first value seen.
    head: Map<String, Value>,
    choices: BTreeMap<u64, Choice>,
    usage: Option<Value>,
    done: bool,
    provider_finished: bool,
    failed: Option<NotComplete>,
}

impl Assembler {
    /// An assembler that gives up (`TooLarge`) once the answer holds more than `limit` bytes.
    pub fn new(limit: usize) -> Assembler {
        Assembler {
            parser: SseParser::new(limit.saturating_add(LINE_SLACK)),
            limit,
            used: 0,
            head: Map::new(),
            choices: BTreeMap::new(),
            usage: None,
            done: false,
            provider_finished: false,
            failed: None,
        }
    }

    /// Reads OpenAI-format SSE bytes, in whatever pieces they arrive.
    pub fn push(&mut self, sse: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        match self.parser.push(sse) {
            Ok(events) => {
                for event in events {
                    self.event(event);
                }
            }
            Err(_) => self.fail(NotComplete::TooLarge { limit: self.limit }),
        }
    }

    /// Reads one chunk already parsed from its `data:` line.
    pub fn push_chunk(&mut self, chunk: &Value) {
        if self.failed.is_some() {
            return;
        }
        if self.done {
            return self.fail(NotComplete::Malformed("a chunk after [DONE]"));
        }
        let Some(chunk) = chunk.as_object() else {
            return self.fail(NotComplete::Malformed("a chunk is not a JSON object"));
        };
        if chunk.get("error").is_some_and(|e| !e.is_null()) {
            return self.fail(NotComplete::ErrorEvent);
        }
        for key in ["id", "created", "model", "system_fingerprint", "service_tier"] {
            if let Some(v) = chunk.get(key).filter(|v| !v.is_null()) {
                if !self.head.contains_key(key) {
                    self.used += weight(v);
                    self.head.insert(key.to_owned(), v.clone());
                }
            }
        }
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.used += weight(usage);
            self.usage = Some(usage.clone());
        }
        if let Some(choices) = chunk.get("choices") {
            let Some(choices) = choices.as_array() else {
                return self.fail(NotComplete::Malformed("choices is not an array"));
            };
            for choice in choices {
                let Some(choice) = choice.as_object() else {
                    return self.fail(NotComplete::Malformed("a choice is not a JSON object"));
                };
                if let Err(e) = self.choice(choice) {
                    return self.fail(e);
                }
            }
        }
        if self.used > self.limit {
            self.fail(NotComplete::TooLarge { limit: self.limit });
        }
    }

    /// The caller saw the provider's own terminal event: for a stream that has no `[DONE]` of its
    /// own, this is the clean end.
    pub fn provider_finished(&mut self) {
        self.provider_finished = true;
    }

    /// Whether the stream can no longer amount to a completion (the reason is `finish`'s error):
    /// the caller may drop the assembler and keep forwarding.
    pub fn abandoned(&self) -> Option<NotComplete> {
        self.failed
    }

    /// Bytes of the answer held so far, as counted against the bound.
    pub fn bytes_held(&self) -> usize {
        self.used
    }

    /// The completion, when the stream ended cleanly; called when the stream has ended.
    pub fn finish(self) -> Result<Answer, NotComplete> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if !self.done && !self.provider_finished {
            return Err(NotComplete::Cut);
        }
        if self.choices.is_empty() || self.choices.values().any(|c| c.finish_reason.is_none()) {
            return Err(NotComplete::Unfinished);
        }
        let model = self.head.get("model").and_then(Value::as_str).unwrap_or_default().to_owned();
        let mut out = Map::new();
        out.insert("id".into(), self.head.get("id").cloned().unwrap_or_else(|| json!("")));
        out.insert("object".into(), json!("chat.completion"));
        out.insert("created".into(), self.head.get("created").cloned().unwrap_or_else(|| json!(0)));
        out.insert("model".into(), json!(model));
        let choices: Vec<Value> = self.choices.into_iter().map(|(index, c)| c.into_json(index)).collect();
        out.insert("choices".into(), Value::Array(choices));
        if let Some(usage) = self.usage {
            out.insert("usage".into(), usage);
        }
        for key in ["system_fingerprint", "service_tier"] {
            if let Some(v) = self.head.get(key) {
                out.insert(key.into(), v.clone());
            }
        }
        Ok(Answer { body: Bytes::from(Value::Object(out).to_string()), model })
    }

    fn event(&mut self, event: SseEvent) {
        if self.failed.is_some() {
            return;
        }
        if event.event.as_deref() == Some("error") {
            return self.fail(NotComplete::ErrorEvent);
        }
        let data = event.data.trim();
        if data == "[DONE]" {
            if self.done {
                return self.fail(NotComplete::Malformed("a second [DONE]"));
            }
            self.done = true;
            return;
        }
        if self.done {
            return self.fail(NotComplete::Malformed("a chunk after [DONE]"));
        }
        if data.is_empty() {
            return;
        }
        match serde_json::from_str::<Value>(data) {
            Ok(chunk) => self.push_chunk(&chunk),
            Err(_) => self.fail(NotComplete::Malformed("a chunk is not JSON")),
        }
    }

    fn choice(&mut self, choice: &Map<String, Value>) -> Result<(), NotComplete> {
        let index = match choice.get("index") {
            None => 0,
            Some(i) => i.as_u64().ok_or(NotComplete::Malformed("a choice index is not a number"))?,
        };
        let slot = self.choices.entry(index).or_insert_with(|| {
            self.used += ENTRY_COST;
            Choice::default()
        });
        if let Some(delta) = choice.get("delta").filter(|d| !d.is_null()) {
            let delta = delta.as_object().ok_or(NotComplete::Malformed("a delta is not a JSON object"))?;
            for (key, value) in delta {
                if key == "tool_calls" {
                    self.used += tool_calls(slot, value)?;
                } else {
                    self.used += weight(value);
                    merge(&mut slot.message, key, value);
                }
            }
        }
        if let Some(logprobs) = choice.get("logprobs").and_then(Value::as_object) {
            for (key, value) in logprobs {
                self.used += weight(value);
                merge(&mut slot.logprobs, key, value);
            }
        }
        if let Some(reason) = choice.get("finish_reason").filter(|r| !r.is_null()) {
            slot.finish_reason = Some(reason.clone());
        }
        Ok(())
    }

    fn fail(&mut self, why: NotComplete) {
        self.failed = Some(why);
        // Nothing held is needed any more: free it while the stream goes on.
        self.parser = SseParser::new(0);
        self.head = Map::new();
        self.choices = BTreeMap::new();
        self.usage = None;
    }
}

impl Choice {
    fn into_json(mut self, index: u64) -> Value {
        let tool_calls: Vec<Value> = self
            .tool_calls
            .into_values()
            .map(|mut call| {
                if !call.contains_key("type") {
                    call.insert("type".into(), json!("function"));
                }
                if let Some(Value::Object(function)) = call.get_mut("function") {
                    function.entry("arguments").or_insert_with(|| json!(""));
                }
                Value::Object(call)
            })
            .collect();
        let refused = self.message.get("refusal").and_then(Value::as_str).is_some_and(|r| !r.is_empty());
        // The empty content of a role chunk is no answer when the answer is tool calls or a refusal.
        let content = match self.message.remove("content") {
            Some(Value::String(s)) if s.is_empty() && (!tool_calls.is_empty() || refused) => Value::Null,
            Some(content) => content,
            None => Value::Null,
        };
        let role = self.message.remove("role").unwrap_or_else(|| json!("assistant"));
        let mut message = Map::new();
        message.insert("role".into(), role);
        message.insert("content".into(), content);
        message.append(&mut self.message);
        if !tool_calls.is_empty() {
            message.insert("tool_calls".into(), Value::Array(tool_calls));
        }
        let logprobs = if self.logprobs.is_empty() { Value::Null } else { Value::Object(self.logprobs) };
        json!({
            "index": index,
            "message": message,
            "logprobs": logprobs,
            "finish_reason": self.finish_reason.unwrap_or(Value::Null),
        })
    }
}

/// Merges a delta's `tool_calls` into `choice`; returns the bytes added.
fn tool_calls(choice: &mut Choice, value: &Value) -> Result<usize, NotComplete> {
    let Some(calls) = value.as_array() else {
        return Ok(0);
    };
    let mut added = 0;
    for call in calls {
        let call = call.as_object().ok_or(NotComplete::Malformed("a tool call is not a JSON object"))?;
        // A provider that sends whole calls without an index means a new call each time.
        let index = match call.get("index") {
            Some(i) => i.as_u64().ok_or(NotComplete::Malformed("a tool call index is not a number"))?,
            None => choice.tool_calls.keys().next_back().map_or(0, |last| last + 1),
        };
        let slot = choice.tool_calls.entry(index).or_insert_with(|| {
            added += ENTRY_COST;
            Map::new()
        });
        for (key, value) in call.iter().filter(|(k, _)| *k != "index") {
            added += weight(value);
            merge(slot, key, value);
        }
    }
    Ok(added)
}

/// Merges one delta field into what was assembled; see the module documentation for the rules.
fn merge(into: &mut Map<String, Value>, key: &str, value: &Value) {
    let Some(existing) = into.get_mut(key) else {
        into.insert(key.to_owned(), value.clone());
        return;
    };
    match (existing, value) {
        (_, Value::Null) => {}
        (Value::String(old), Value::String(new)) => {
            if !FIRST_WINS.contains(&key) {
                old.push_str(new);
            }
        }
        (Value::Array(old), Value::Array(new)) => old.extend(new.iter().cloned()),
        (Value::Object(old), Value::Object(new)) => {
            for (k, v) in new {
                merge(old, k, v);
            }
        }
        (existing, value) => *existing = value.clone(),
    }
}

/// About how many bytes `v` adds to the answer: what the bound counts.
fn weight(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len() + 2,
        Value::Array(a) => a.iter().map(weight).sum::<usize>() + 2,
        Value::Object(o) => o.iter().map(|(k, v)| k.len() + 3 + weight(v)).sum::<usize>() + 2,
        _ => 8,
    }
}
