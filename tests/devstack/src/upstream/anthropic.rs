//! The Anthropic Messages wire format for the fake upstream: `POST /v1/messages`, checked
//! like the real API (`x-api-key`, `anthropic-version`, required `model`, `max_tokens` and
//! `messages`, no `system` role inside `messages`), `message` objects with a `text` or a
//! `tool_use` block, the named-event SSE stream (`message_start`, `content_block_start`,
//! `ping`, `content_block_delta`..., `content_block_stop`, `message_delta`,
//! `message_stop`), and `{"type":"error","error":{"type","message"},"request_id"}` bodies.
//!
//! Checking and rendering only: this module must not do IO, sleep, or decide which action
//! a call gets.

use serde_json::{json, Value};

use super::format::{sse_event, word_count, ChatCall, Credential, FakeReply, Rejection, RequestHead, Route};
use super::format::{StreamPlan, ToolCallPlan, WireFormat, SSE};

/// `anthropic-version` values the real API accepts.
const VERSIONS: [&str; 2] = ["2023-06-01", "2023-01-01"];

pub struct Anthropic;

impl Anthropic {
    fn id(reply: &FakeReply) -> String {
        format!("msg_fake_{}", reply.n)
    }

    fn tool_id(reply: &FakeReply) -> String {
        format!("toolu_fake_{}", reply.n)
    }

    fn output_tokens(call: &ChatCall, reply: &FakeReply) -> u64 {
        call.tool.as_ref().map_or_else(|| reply.completion_tokens(), ToolCallPlan::tokens)
    }

    fn stop_reason(call: &ChatCall) -> &'static str {
        if call.tool.is_some() {
            "tool_use"
        } else {
            "end_turn"
        }
    }

    fn usage(call: &ChatCall, output_tokens: u64) -> Value {
        json!({
            "input_tokens": call.prompt_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output_tokens,
            "service_tier": "standard"
        })
    }

    /// The message envelope; `content` and the stop fields vary between the JSON answer
    /// and `message_start`.
    fn message(call: &ChatCall, reply: &FakeReply, content: Value, stop: Option<&str>, output_tokens: u64) -> Value {
        json!({
            "id": Self::id(reply),
            "type": "message",
            "role": "assistant",
            "model": call.model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": null,
            "usage": Self::usage(call, output_tokens)
        })
    }

    fn error(kind: &str, message: &str) -> Value {
        json!({ "type": "error", "error": { "type": kind, "message": message } })
    }

    fn request_id(n: u64) -> String {
        format!("req_fake_{n}")
    }

    fn reject(status: u16, kind: &str, message: &str, n: u64) -> Rejection {
        let mut body = Self::error(kind, message);
        body["request_id"] = json!(Self::request_id(n));
        Rejection { status, body }
    }
}

impl WireFormat for Anthropic {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn route(&self, path: &str, _query: Option<&str>) -> Option<Route> {
        (path == "/v1/messages").then(Route::default)
    }

    fn credential(&self, head: &RequestHead<'_>) -> Option<Credential> {
        head.header("x-api-key").filter(|v| !v.is_empty()).map(|value| Credential { source: "x-api-key", value })
    }

    fn check_head(&self, head: &RequestHead<'_>, credential: Option<&Credential>, n: u64) -> Result<(), Rejection> {
        if credential.is_none() {
            return Err(Self::reject(401, "authentication_error", "x-api-key header is required", n));
        }
        match head.header("anthropic-version").filter(|v| !v.is_empty()) {
            None => Err(Self::reject(400, "invalid_request_error", "anthropic-version: header is required", n)),
            Some(v) if !VERSIONS.contains(&v.as_str()) => Err(Self::reject(
                400,
                "invalid_request_error",
                &format!("anthropic-version: \"{v}\" is not a valid version"),
                n,
            )),
            Some(_) => Ok(()),
        }
    }

    fn invalid_key(&self, _credential: Option<&Credential>, n: u64) -> Rejection {
        Self::reject(401, "authentication_error", "invalid x-api-key", n)
    }

    fn parse(&self, body: &Value, route: &Route) -> Result<ChatCall, String> {
        let object = body.as_object().ok_or("body: Input should be a valid dictionary")?;
        let model = match object.get("model") {
            None | Some(Value::Null) => return Err("model: Field required".into()),
            Some(v) => v.as_str().ok_or("model: Input should be a valid string")?,
        };
        match object.get("max_tokens") {
            None | Some(Value::Null) => return Err("max_tokens: Field required".into()),
            Some(v) => match v.as_i64() {
                None => return Err("max_tokens: Input should be a valid integer".into()),
                Some(n) if n < 1 => return Err("max_tokens: Input should be greater than or equal to 1".into()),
                Some(_) => {}
            },
        }
        let messages = match object.get("messages") {
            None | Some(Value::Null) => return Err("messages: Field required".into()),
            Some(v) => v.as_array().ok_or("messages: Input should be a valid list")?,
        };
        if messages.is_empty() {
            return Err("messages: at least one message is required".into());
        }
        let mut texts = Vec::new();
        let mut last_user_text = String::new();
        for (i, message) in messages.iter().enumerate() {
            match message.get("role").and_then(Value::as_str) {
                Some("user") => {
                    last_user_text = blocks_text(message.get("content"));
                    texts.push(last_user_text.clone());
                }
                Some("assistant") => texts.push(blocks_text(message.get("content"))),
                Some("system") => {
                    return Err("messages: Unexpected role \"system\". The Messages API accepts a top-level `system` \
                                parameter, not \"system\" as an input message role."
                        .into())
                }
                _ => return Err(format!("messages.{i}.role: Input should be 'user' or 'assistant'")),
            }
        }
        texts.push(blocks_text(object.get("system")));
        let first_tool = object.get("tools").and_then(Value::as_array).and_then(|tools| tools.first());
        let first_tool =
            first_tool.and_then(|t| t.get("name").and_then(Value::as_str).map(|name| (name, t.get("input_schema"))));
        Ok(ChatCall {
            model: model.to_string(),
            stream: object.get("stream").and_then(Value::as_bool).unwrap_or(false),
            include_usage: false,
            tool: ToolCallPlan::when_asked(&last_user_text, first_tool),
            last_user_text,
            prompt_tokens: word_count(&texts.join(" ")),
            route: route.clone(),
        })
    }

    fn completion(&self, call: &ChatCall, reply: &FakeReply) -> Value {
        let content = match &call.tool {
            Some(tool) => {
                json!([{ "type": "tool_use", "id": Self::tool_id(reply), "name": tool.name, "input": tool.args }])
            }
            None => json!([{ "type": "text", "text": reply.content }]),
        };
        Self::message(call, reply, content, Some(Self::stop_reason(call)), Self::output_tokens(call, reply))
    }

    fn stream(&self, call: &ChatCall, reply: &FakeReply) -> StreamPlan {
        let start = Self::message(call, reply, json!([]), None, 1);
        let mut events = vec![sse_event("message_start", &json!({ "type": "message_start", "message": start }))];
        let (block, deltas) = match &call.tool {
            Some(tool) => {
                let block = json!({ "type": "tool_use", "id": Self::tool_id(reply), "name": tool.name, "input": {} });
                // Like the real stream: an empty first fragment, then the JSON in pieces.
                let input = tool.args.to_string();
                let mid = (1..input.len()).find(|i| input.is_char_boundary(*i) && *i >= input.len() / 2);
                let (a, b) = input.split_at(mid.unwrap_or(input.len()));
                let pieces = [""].into_iter().chain([a, b].into_iter().filter(|p| !p.is_empty()));
                let deltas: Vec<Value> =
                    pieces.map(|p| json!({ "type": "input_json_delta", "partial_json": p })).collect();
                (block, deltas)
            }
            None => {
                let deltas = reply.pieces().into_iter().map(|p| json!({ "type": "text_delta", "text": p })).collect();
                (json!({ "type": "text", "text": "" }), deltas)
            }
        };
        let block_start = json!({ "type": "content_block_start", "index": 0, "content_block": block });
        events.push(sse_event("content_block_start", &block_start));
        events.push(sse_event("ping", &json!({ "type": "ping" })));
        for delta in deltas {
            events.push(sse_event(
                "content_block_delta",
                &json!({ "type": "content_block_delta", "index": 0, "delta": delta }),
            ));
        }
        let terminal_from = events.len();
        events.push(sse_event("content_block_stop", &json!({ "type": "content_block_stop", "index": 0 })));
        let message_delta = json!({
            "type": "message_delta",
            "delta": { "stop_reason": Self::stop_reason(call), "stop_sequence": null },
            "usage": { "output_tokens": Self::output_tokens(call, reply) }
        });
        events.push(sse_event("message_delta", &message_delta));
        events.push(sse_event("message_stop", &json!({ "type": "message_stop" })));
        StreamPlan { events, terminal_from, content_type: SSE }
    }

    fn error_body(&self, status: u16, message: Option<&str>) -> Value {
        let (kind, default_message) = match status {
            401 => ("authentication_error", "invalid x-api-key"),
            402 => (
                "billing_error",
                "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to \
                 upgrade or purchase credits.",
            ),
            403 => ("permission_error", "Your API key does not have permission to use the specified resource."),
            404 => ("not_found_error", "The requested resource could not be found."),
            413 => ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
            429 => (
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit \
                 (https://docs.claude.com/en/api/rate-limits); see the response headers for current usage. Please \
                 reduce the prompt length or the maximum tokens requested, or try again later.",
            ),
            504 => ("timeout_error", "Request timed out."),
            529 => ("overloaded_error", "Overloaded"),
            500..=599 => ("api_error", "Internal server error"),
            _ => ("invalid_request_error", "Invalid request."),
        };
        Self::error(kind, message.unwrap_or(default_message))
    }

    fn call_error_body(&self, status: u16, message: Option<&str>, n: u64, _retry_after: Option<&str>) -> Value {
        let mut body = self.error_body(status, message);
        body["request_id"] = json!(Self::request_id(n));
        body
    }

    fn response_headers(&self, n: u64) -> Vec<(&'static str, String)> {
        vec![("request-id", Self::request_id(n))]
    }
}

/// Text of a `content` or `system` field: a string, or its `text` blocks (and the text of
/// `tool_result` blocks) joined by newlines.
fn blocks_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|block| match block.get("type").and_then(Value::as_str) {
                Some("text") => block.get("text").and_then(Value::as_str).map(str::to_string),
                Some("tool_result") => Some(blocks_text(block.get("content"))),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(body: Value) -> ChatCall {
        Anthropic.parse(&body, &Route::default()).unwrap()
    }

    #[test]
    fn reads_last_user_text_system_and_tools() {
        let c = call(json!({"model":"m","max_tokens":5,"system":[{"type":"text","text":"be brief"}],
            "tools":[{"name":"get_weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],
            "messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"},
                {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"TOOL_CALL b"}]}]}));
        assert_eq!(c.last_user_text, "a\nTOOL_CALL b");
        assert_eq!(c.tool, Some(ToolCallPlan { name: "get_weather".into(), args: json!({"city":"Paris"}) }));
        assert_eq!(c.prompt_tokens, 7);
        let err = |body: Value| Anthropic.parse(&body, &Route::default()).unwrap_err();
        assert_eq!(err(json!({"model":"m","messages":[]})), "max_tokens: Field required");
        assert!(
            err(json!({"model":"m","max_tokens":1,"messages":[{"role":"system","content":"x"}]})).contains("system")
        );
    }

    #[test]
    fn tool_input_deltas_rebuild_the_input() {
        let c = call(json!({"model":"m","max_tokens":5,"stream":true,
            "tools":[{"name":"t","input_schema":{"properties":{"city":{}}}}],
            "messages":[{"role":"user","content":"TOOL_CALL"}]}));
        let plan = Anthropic.stream(&c, &FakeReply::new(3, &c, 1));
        let mut json_text = String::new();
        for event in &plan.events[..plan.terminal_from] {
            let data = std::str::from_utf8(event).unwrap().lines().nth(1).unwrap().strip_prefix("data: ").unwrap();
            let v: Value = serde_json::from_str(data).unwrap();
            if let Some(p) = v["delta"]["partial_json"].as_str() {
                json_text.push_str(p);
            }
        }
        assert_eq!(serde_json::from_str::<Value>(&json_text).unwrap(), json!({"city":"Paris"}));
        assert_eq!(plan.events.len() - plan.terminal_from, 3);
    }
}
