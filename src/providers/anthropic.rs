//! Anthropic Messages ⇄ OpenAI chat completions.
//!
//! Request: system and developer messages become the top-level `system`; consecutive messages of
//! one role are merged (Anthropic wants alternation); tool results become `tool_result` blocks in a
//! user turn; tool calls become `tool_use` blocks; images become image blocks; `max_tokens` is
//! required, so the target's default is sent when the client gives none. A parameter Anthropic
//! cannot express is refused by name (never dropped), unless it is set to its neutral value.
//! Response: content blocks become the message text and `tool_calls`, `stop_reason` becomes
//! `finish_reason`, usage is renamed. No IO here.

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Map, Value};

use crate::api::chat::ChatRequest;
use crate::error::{Unsupported, UpstreamError};
use crate::providers::content::{self, Part};
use crate::providers::retry_after_ms;
use crate::routing::table::Target;

const P: &str = "anthropic";
pub const API_VERSION: &str = "2023-06-01";

/// Parameters with a direct equivalent.
const MAPPED: &[&str] = &[
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
];

pub fn build_request(target: &Target, request: &ChatRequest) -> Result<http::Request<Bytes>, Unsupported> {
    let params = &request.params;
    for (name, neutral) in [
        ("n", vec![json!(1)]),
        ("presence_penalty", vec![json!(0)]),
        ("frequency_penalty", vec![json!(0)]),
        ("logprobs", vec![json!(false)]),
        ("top_logprobs", vec![json!(0)]),
        ("logit_bias", vec![json!({})]),
        ("response_format", vec![json!({"type": "text"})]),
        ("service_tier", vec![json!("auto"), json!("default")]),
    ] {
        content::refuse_unless_neutral(P, params, name, &neutral)?;
    }
    let neutral_names = [
        "n",
        "presence_penalty",
        "frequency_penalty",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "response_format",
        "service_tier",
    ];
    if let Some(name) = params.keys().find(|k| !MAPPED.contains(&k.as_str()) && !neutral_names.contains(&k.as_str())) {
        return Err(Unsupported::new(P, name, "this provider has no equivalent"));
    }

    let (system, messages) = messages(&request.messages)?;
    let mut body = Map::new();
    body.insert("model".into(), json!(target.model_for(&request.model)));
    let max_tokens = content::max_output_tokens(params).cloned().unwrap_or_else(|| json!(target.default_max_tokens));
    body.insert("max_tokens".into(), max_tokens);
    body.insert("messages".into(), Value::Array(messages));
    if !system.is_empty() {
        body.insert("system".into(), json!(system.join("\n\n")));
    }
    for (from, to) in [("temperature", "temperature"), ("top_p", "top_p")] {
        if let Some(v) = params.get(from).filter(|v| !v.is_null()) {
            body.insert(to.into(), v.clone());
        }
    }
    if let Some(stop) = content::stop_list(params.get("stop")) {
        body.insert("stop_sequences".into(), Value::Array(stop));
    }
    let tools = content::function_tools(P, params.get("tools"))?;
    if !tools.is_empty() {
        let tools: Vec<Value> = tools
            .into_iter()
            .map(|(name, description, parameters)| {
                let mut t = json!({"name": name, "input_schema": parameters});
                if let Some(d) = description {
                    t["description"] = json!(d);
                }
                t
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = tool_choice(params.get("tool_choice"), params.get("parallel_tool_calls"))? {
        body.insert("tool_choice".into(), choice);
    }
    if let Some(Value::String(user)) = &request.user {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    if request.stream {
        body.insert("stream".into(), json!(true));
    }
    let bytes = serde_json::to_vec(&body).expect("a JSON map always serializes");
    let mut builder = http::Request::post(format!("{}/messages", target.base_url))
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("anthropic-version", API_VERSION);
    if let Some(key) = &target.api_key {
        builder = builder.header("x-api-key", key.expose());
    }
    crate::providers::finish(builder, bytes, "anthropic")
}

/// (system texts, Anthropic messages) from OpenAI messages.
fn messages(input: &[Value]) -> Result<(Vec<String>, Vec<Value>), Unsupported> {
    let mut system = Vec::new();
    let mut out: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, message) in input.iter().enumerate() {
        let field = format!("messages[{i}]");
        let role = message.get("role").and_then(Value::as_str).unwrap_or_default();
        let (anthropic_role, blocks) = match role {
            "system" | "developer" => {
                system.push(content::text(P, message.get("content"), &format!("{field}.content"))?);
                continue;
            }
            "user" => ("user", user_blocks(message, &field)?),
            "assistant" => ("assistant", assistant_blocks(message, &field)?),
            "tool" => {
                let id = message.get("tool_call_id").and_then(Value::as_str).ok_or_else(|| {
                    Unsupported::new(P, format!("{field}.tool_call_id"), "a tool message needs tool_call_id")
                })?;
                let text = content::text(P, message.get("content"), &format!("{field}.content"))?;
                ("user", vec![json!({"type": "tool_result", "tool_use_id": id, "content": text})])
            }
            other => {
                return Err(Unsupported::new(
                    P,
                    format!("{field}.role"),
                    format!("role '{other}' cannot be translated"),
                ))
            }
        };
        match out.last_mut() {
            Some((last, existing)) if *last == anthropic_role => existing.extend(blocks),
            _ => out.push((anthropic_role, blocks)),
        }
    }
    let messages = out.into_iter().map(|(role, blocks)| json!({"role": role, "content": blocks})).collect();
    Ok((system, messages))
}

fn user_blocks(message: &Value, field: &str) -> Result<Vec<Value>, Unsupported> {
    Ok(content::parts(P, message.get("content"), &format!("{field}.content"))?
        .into_iter()
        .map(|part| match part {
            Part::Text(text) => json!({"type": "text", "text": text}),
            Part::ImageData { media_type, data } => {
                json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}})
            }
            Part::ImageUrl(url) => json!({"type": "image", "source": {"type": "url", "url": url}}),
        })
        .collect())
}

fn assistant_blocks(message: &Value, field: &str) -> Result<Vec<Value>, Unsupported> {
    let mut blocks = Vec::new();
    let text = content::text(P, message.get("content"), &format!("{field}.content"))?;
    if !text.is_empty() {
        blocks.push(json!({"type": "text", "text": text}));
    }
    for call in content::tool_calls(P, message, field)? {
        blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}));
    }
    Ok(blocks)
}

fn tool_choice(choice: Option<&Value>, parallel: Option<&Value>) -> Result<Option<Value>, Unsupported> {
    let no_parallel = parallel == Some(&json!(false));
    let mut out = match choice {
        None | Some(Value::Null) => {
            if no_parallel {
                json!({"type": "auto"})
            } else {
                return Ok(None);
            }
        }
        Some(Value::String(s)) => match s.as_str() {
            "auto" => json!({"type": "auto"}),
            "none" => json!({"type": "none"}),
            "required" => json!({"type": "any"}),
            other => return Err(Unsupported::new(P, "tool_choice", format!("'{other}' has no equivalent"))),
        },
        Some(obj) => match obj.get("function").and_then(|f| f.get("name")).and_then(Value::as_str) {
            Some(name) => json!({"type": "tool", "name": name}),
            None => return Err(Unsupported::new(P, "tool_choice", "only a named function can be forced")),
        },
    };
    if no_parallel && out["type"] != "none" {
        out["disable_parallel_tool_use"] = json!(true);
    }
    Ok(Some(out))
}

/// An Anthropic Message as an OpenAI chat completion; `created_s` is the gateway's clock.
pub fn parse_success(body: &[u8], created_s: u64) -> Result<(Value, String), UpstreamError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| UpstreamError::Malformed(format!("not JSON: {e}")))?;
    // Anthropic always sends "type": "message"; some documented examples leave it out.
    if v.get("type").is_some_and(|t| t != "message") {
        return Err(UpstreamError::Malformed("not a message object".into()));
    }
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| UpstreamError::Malformed("no content array".into()))?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or_default()),
            Some("tool_use") => tool_calls.push(json!({
                "id": block.get("id").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {
                    "name": block.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": serde_json::to_string(block.get("input").unwrap_or(&json!({}))).expect("JSON serializes"),
                },
            })),
            // Thinking and other non-answer blocks have no place in a chat completion message.
            _ => {}
        }
    }
    let model = v.get("model").and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { json!(text) }});
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    let usage = v.get("usage").cloned().unwrap_or_default();
    let count = |name: &str| usage.get(name).and_then(Value::as_u64).unwrap_or(0);
    let prompt = count("input_tokens") + count("cache_creation_input_tokens") + count("cache_read_input_tokens");
    let completion = count("output_tokens");
    let out = json!({
        "id": v.get("id").cloned().unwrap_or(Value::Null),
        "object": "chat.completion",
        "created": created_s,
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(v.get("stop_reason").and_then(Value::as_str)),
        }],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": count("cache_read_input_tokens")},
        },
    });
    Ok((out, model))
}

pub fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens") | Some("model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// Classifies a non-2xx answer. The target's model is the gateway's choice, so a 404 is the
/// gateway's fault (fail over), not the client's.
pub fn classify_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> UpstreamError {
    let retry_after = retry_after_ms(headers);
    let details = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        let e = v.get("error")?;
        Some((e.get("type")?.as_str()?.to_owned(), e.get("message")?.as_str()?.to_owned()))
    });
    match status.as_u16() {
        401 | 403 => UpstreamError::Auth { status: status.as_u16() },
        429 => UpstreamError::RateLimited { retry_after_ms: retry_after },
        408 => UpstreamError::Timeout { ms: 0 },
        400 | 413 | 422 => match details {
            Some((kind, message)) => UpstreamError::ClientRequest {
                status: status.as_u16(),
                kind,
                message: content::short(&message),
                param: None,
            },
            None => UpstreamError::Server { status: status.as_u16(), retry_after_ms: retry_after },
        },
        code => UpstreamError::Server { status: code, retry_after_ms: retry_after },
    }
}
