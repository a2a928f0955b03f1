//! The OpenAI chat completions wire format for the fake upstream: `POST
//! /v1/chat/completions` (and `/chat/completions`), `chat.completion` objects,
//! `chat.completion.chunk` SSE events ending with `data: [DONE]`, and OpenAI error envelopes.
//!
//! Rendering only: this module must not do IO, sleep, or decide which action a call gets.

use bytes::Bytes;
use serde_json::{json, Value};

use super::format::{sse_data, word_count, ChatCall, FakeReply, Route, StreamPlan, WireFormat, SSE};

const FINGERPRINT: &str = "fp_devstack";

pub struct OpenAi;

impl OpenAi {
    fn id(reply: &FakeReply) -> String {
        format!("chatcmpl-fake-{}", reply.n)
    }

    fn usage(call: &ChatCall, reply: &FakeReply) -> Value {
        let completion = reply.completion_tokens();
        json!({
            "prompt_tokens": call.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": call.prompt_tokens + completion,
            "prompt_tokens_details": { "cached_tokens": 0, "audio_tokens": 0 },
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0
            }
        })
    }

    fn chunk(call: &ChatCall, reply: &FakeReply, delta: Value, finish: Option<&str>) -> Value {
        let mut chunk = json!({
            "id": Self::id(reply),
            "object": "chat.completion.chunk",
            "created": reply.created,
            "model": call.model,
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
            "choices": [{
                "index": 0,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish,
            }],
        });
        if call.include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    }
}

impl WireFormat for OpenAi {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn route(&self, path: &str, _query: Option<&str>) -> Option<Route> {
        matches!(path, "/v1/chat/completions" | "/chat/completions").then(Route::default)
    }

    fn parse(&self, body: &Value, route: &Route) -> Result<ChatCall, String> {
        let object = body.as_object().ok_or("The request body must be a JSON object.")?;
        let model = object.get("model").and_then(Value::as_str).ok_or("you must provide a model parameter")?;
        let messages =
            object.get("messages").and_then(Value::as_array).ok_or("Missing required parameter: 'messages'.")?;
        let stream = object.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let include_usage =
            object.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false);
        let texts: Vec<(Option<&str>, String)> =
            messages.iter().map(|m| (m.get("role").and_then(Value::as_str), content_text(m))).collect();
        let last_user_text = texts
            .iter()
            .rev()
            .find(|(role, _)| *role == Some("user"))
            .map(|(_, text)| text.clone())
            .unwrap_or_default();
        let all_text: Vec<&str> = texts.iter().map(|(_, t)| t.as_str()).collect();
        Ok(ChatCall {
            model: model.to_string(),
            stream,
            include_usage,
            last_user_text,
            prompt_tokens: word_count(&all_text.join(" ")),
            tool: None,
            route: route.clone(),
        })
    }

    fn completion(&self, call: &ChatCall, reply: &FakeReply) -> Value {
        json!({
            "id": Self::id(reply),
            "object": "chat.completion",
            "created": reply.created,
            "model": call.model,
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": reply.content,
                    "refusal": null,
                    "annotations": []
                },
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": Self::usage(call, reply),
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT
        })
    }

    fn stream(&self, call: &ChatCall, reply: &FakeReply) -> StreamPlan {
        let mut events = vec![sse_data(&Self::chunk(
            call,
            reply,
            json!({ "role": "assistant", "content": "", "refusal": null }),
            None,
        ))];
        for piece in reply.pieces() {
            events.push(sse_data(&Self::chunk(call, reply, json!({ "content": piece }), None)));
        }
        let terminal_from = events.len();
        events.push(sse_data(&Self::chunk(call, reply, json!({}), Some("stop"))));
        if call.include_usage {
            let mut usage = Self::chunk(call, reply, json!({}), None);
            usage["choices"] = json!([]);
            usage["usage"] = Self::usage(call, reply);
            events.push(sse_data(&usage));
        }
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        StreamPlan { events, terminal_from, content_type: SSE }
    }

    fn error_body(&self, status: u16, message: Option<&str>) -> Value {
        let (default_message, kind, code) = match status {
            400 => ("Invalid request.", "invalid_request_error", Value::Null),
            401 => (
                "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                json!("invalid_api_key"),
            ),
            403 => (
                "You are not allowed to access this resource.",
                "invalid_request_error",
                json!("unsupported_country_region_territory"),
            ),
            404 => (
                "The model does not exist or you do not have access to it.",
                "invalid_request_error",
                json!("model_not_found"),
            ),
            408 => ("Request timed out.", "timeout", Value::Null),
            409 => ("Conflict.", "invalid_request_error", Value::Null),
            413 => ("Request too large.", "invalid_request_error", Value::Null),
            429 => (
                "Rate limit reached for requests. Please try again later.",
                "requests",
                json!("rate_limit_exceeded"),
            ),
            503 => (
                "The engine is currently overloaded, please try again later.",
                "server_error",
                Value::Null,
            ),
            500..=599 => (
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
                Value::Null,
            ),
            _ => ("Unexpected status.", "invalid_request_error", Value::Null),
        };
        json!({
            "error": {
                "message": message.unwrap_or(default_message),
                "type": kind,
                "param": null,
                "code": code
            }
        })
    }
}

/// Text of a message's `content`: a string, or the `text` of its text parts joined by
/// newlines.
fn content_text(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(body: Value) -> ChatCall {
        OpenAi.parse(&body, &Route::default()).unwrap()
    }

    #[test]
    fn reads_last_user_message_in_both_shapes() {
        let c = call(json!({"model":"m","messages":[
            {"role":"user","content":"first"},
            {"role":"assistant","content":"x"},
            {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}
        ]}));
        assert_eq!(c.last_user_text, "a\nb");
        assert!(!c.stream);
        assert!(OpenAi.parse(&json!({"messages":[]}), &Route::default()).is_err());
    }

    #[test]
    fn stream_pieces_rebuild_the_content() {
        let c = call(json!({"model":"m","stream":true,"stream_options":{"include_usage":true},
            "messages":[{"role":"user","content":"hello there"}]}));
        let reply = FakeReply::new(7, &c, 1);
        let plan = OpenAi.stream(&c, &reply);
        let mut text = String::new();
        for event in &plan.events[..plan.terminal_from] {
            let data = std::str::from_utf8(event).unwrap();
            let v: Value = serde_json::from_str(data.trim().strip_prefix("data: ").unwrap()).unwrap();
            if let Some(piece) = v["choices"][0]["delta"]["content"].as_str() {
                text.push_str(piece);
            }
        }
        assert_eq!(text, "fake reply #7: hello there");
        assert_eq!(plan.events.len() - plan.terminal_from, 3); // stop, usage, [DONE]
    }
}
