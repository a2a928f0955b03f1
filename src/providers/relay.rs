//! What one provider stream becomes on its way to the client and to the cache: a stateful,
//! sans-IO pipeline fed with the provider's bytes in whatever pieces they arrive.
//!
//! provider bytes → (`stream::SseTranslator`, for Anthropic and Gemini) → OpenAI events → the
//! client, event by event, and beside it the `assemble::Assembler` that builds the completion one
//! cache entry holds. On the way it says:
//! - whether a *content event* has been seen (`started`): a chunk whose delta carries anything
//!   but the role (text, a tool call, a refusal, reasoning...) or a finish reason. Until then the
//!   gateway has shown the client nothing and may still fail over;
//! - whether the provider's own terminal event has been seen (`complete`): `data: [DONE]` for
//!   OpenAI streams, Anthropic `message_stop` or Gemini's final `finishReason` (the translator
//!   then writes the usage chunk and `[DONE]`). Nothing after it is read.
//!
//! The client gets whole events only, each framed `data: <json>\n\n` (comments, `event:` and `id:`
//! lines are not forwarded), so an error event the gateway adds after a cut is never glued to half
//! an event. An OpenAI event's JSON is forwarded byte for byte, except when usage was asked for
//! the cache and not by the client (`hide_usage`): then the usage chunk is withheld and the
//! `usage` member removed from the other chunks, as the client's request would have had it.
//!
//! Must not: forward a provider's error event (it ends the relay with an error, and the gateway
//! decides what the client sees), hold more than one event and the assembler's bound, or end as
//! complete without the provider's terminal event.

use bytes::Bytes;
use serde_json::Value;

use crate::providers::assemble::{Assembler, NotComplete};
use crate::providers::sse::SseParser;
use crate::providers::stream::{SseTranslator, TranslateError, MAX_PROVIDER_EVENT_BYTES};
use crate::providers::Answer;

/// Why a provider stream cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// The stream is not a readable event stream (a translator's error says which part).
    #[error("the provider sent an unreadable stream: {0}")]
    Unreadable(String),
    /// The provider said in the stream that it failed.
    #[error("the provider reported an error in the stream")]
    ErrorEvent,
    /// The stream ended before the provider's terminal event.
    #[error("the stream ended before it was complete")]
    Cut,
}

/// See the module documentation.
pub struct Relay {
    translator: Option<SseTranslator>,
    parser: SseParser,
    assembler: Option<Assembler>,
    hide_usage: bool,
    started: bool,
    complete: bool,
    failed: Option<RelayError>,
}

impl Relay {
    /// A relay for one provider stream. `translator`: the provider's stream is not OpenAI's;
    /// `assembler`: the answer is to be stored; `hide_usage`: usage was asked for the cache and
    /// not by the client.
    pub fn new(translator: Option<SseTranslator>, assembler: Option<Assembler>, hide_usage: bool) -> Relay {
        Relay {
            translator,
            parser: SseParser::new(MAX_PROVIDER_EVENT_BYTES),
            assembler,
            hide_usage,
            started: false,
            complete: false,
            failed: None,
        }
    }

    /// Reads what has arrived; returns the client's events it completes (possibly none).
    pub fn push(&mut self, chunk: &[u8]) -> Result<Bytes, RelayError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.complete {
            return Ok(Bytes::new());
        }
        let result = match self.translator.as_mut() {
            None => self.openai(chunk),
            Some(translator) => match translate(translator, chunk) {
                Ok(events) => self.openai(&events),
                Err(e) => Err(e),
            },
        };
        if let Err(e) = &result {
            self.fail(e.clone());
        }
        result
    }

    /// The provider's stream has ended: the last events, or `Cut` when it ended before its
    /// terminal event.
    pub fn end(&mut self) -> Result<Bytes, RelayError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.complete {
            return Ok(Bytes::new());
        }
        self.fail(RelayError::Cut);
        Err(RelayError::Cut)
    }

    /// Whether a content event has been seen (see the module documentation).
    pub fn started(&self) -> bool {
        self.started
    }

    /// Whether the provider's terminal event has been seen: the stream is whole.
    pub fn complete(&self) -> bool {
        self.complete
    }

    /// The completion to store, once `complete`; `None` when nothing is assembled.
    pub fn answer(&mut self) -> Option<Result<Answer, NotComplete>> {
        let assembler = self.assembler.take()?;
        Some(if self.complete { assembler.finish() } else { Err(NotComplete::Cut) })
    }

    fn fail(&mut self, e: RelayError) {
        self.failed = Some(e);
        // Nothing held is of use any more.
        self.assembler = None;
        self.parser = SseParser::new(0);
    }

    /// Reads OpenAI-format bytes: returns the client's events.
    fn openai(&mut self, sse: &[u8]) -> Result<Bytes, RelayError> {
        let events = self.parser.push(sse).map_err(|e| RelayError::Unreadable(e.to_string()))?;
        let mut out = Vec::new();
        for event in events {
            if event.event.as_deref().map(str::trim) == Some("error") {
                return Err(RelayError::ErrorEvent);
            }
            let data = event.data.trim();
            if data == "[DONE]" {
                self.complete = true;
                if let Some(a) = self.assembler.as_mut() {
                    a.provider_finished();
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                break;
            }
            if data.is_empty() {
                continue;
            }
            let mut chunk: Value =
                serde_json::from_str(data).map_err(|_| RelayError::Unreadable("an event is not JSON".into()))?;
            if chunk.get("error").is_some_and(|e| !e.is_null()) {
                return Err(RelayError::ErrorEvent);
            }
            self.started |= has_content(&chunk);
            if let Some(a) = self.assembler.as_mut() {
                a.push_chunk(&chunk);
            }
            match chunk.as_object_mut() {
                Some(object) if self.hide_usage && object.contains_key("usage") => {
                    let usage_only = object.get("choices").and_then(Value::as_array).is_some_and(Vec::is_empty);
                    if usage_only {
                        continue;
                    }
                    object.remove("usage");
                    frame(&mut out, &serde_json::to_vec(&chunk).expect("JSON serializes"));
                }
                _ => frame(&mut out, data.as_bytes()),
            }
        }
        Ok(Bytes::from(out))
    }
}

/// The OpenAI events `translator` makes of `chunk`, its usage chunk and `[DONE]` included once
/// the provider has finished.
fn translate(translator: &mut SseTranslator, chunk: &[u8]) -> Result<Vec<u8>, RelayError> {
    let relayed = |e: TranslateError| match e {
        TranslateError::Unreadable(why) => RelayError::Unreadable(why),
        TranslateError::ProviderError(_) => RelayError::ErrorEvent,
        TranslateError::Unfinished => RelayError::Cut,
    };
    let mut out = translator.push(chunk).map_err(relayed)?;
    if translator.provider_finished() {
        out.extend(translator.finish().map_err(relayed)?);
    }
    Ok(out)
}

fn frame(out: &mut Vec<u8>, json: &[u8]) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
}

/// Whether a chunk shows the client something: a finish reason, or a delta field other than the
/// role that is not empty.
pub fn has_content(chunk: &Value) -> bool {
    let Some(choices) = chunk.get("choices").and_then(Value::as_array) else { return false };
    choices.iter().any(|choice| {
        let finished = choice.get("finish_reason").is_some_and(|r| !r.is_null());
        let delta = choice.get("delta").and_then(Value::as_object);
        finished || delta.is_some_and(|d| d.iter().any(|(k, v)| k != "role" && !empty(v)))
    })
}

fn empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}
