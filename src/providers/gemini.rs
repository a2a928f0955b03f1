//! Google Gemini `generateContent` ⇄ OpenAI chat completions.
//!
//! Request: system and developer messages become `systemInstruction`; `assistant` is role
//! `model`; tool calls become `functionCall` parts and tool results `functionResponse` parts
//! (named by looking up the call they answer); sampling parameters go to `generationConfig`;
//! `response_format` JSON modes become `responseMimeType` (+ `responseJsonSchema`). Images must be
//! inline data URLs (Gemini cannot fetch arbitrary URLs). The key goes in `x-goog-api-key`.
//! Response: candidates become choices, `finishReason` becomes `finish_reason`, usage metadata is
//! renamed; a prompt blocked by safety filters is a `content_filter` choice. No IO here.

use std::collections::HashMap;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Map, Value};

use crate::api::chat::ChatRequest;
use crate::error::{Unsupported, UpstreamError};
use crate::providers::content::{self, Part};
use crate::providers::retry_after_ms;
use crate::routing::table::Target;

const P: &str = "gemini";

/// OpenAI parameter → `generationConfig` field.
const GENERATION: &[(&str, &str)] = &[
    ("temperature", "temperature"),
    ("top_p", "topP"),
    ("n", "candidateCount"),
    ("seed", "seed"),
    ("presence_penalty", "presencePenalty"),
    ("frequency_penalty", "frequencyPenalty"),
];
const OTHER_MAPPED: &[&str] = &[
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "tools",
    "tool_choice",
    "response_format",
    "logprobs",
    "top_logprobs",
];

pub fn build_request(target: &Target, request: &ChatRequest) -> Result<http::Request<Bytes>, Unsupported> {
    let params = &request.params;
    content::refuse_unless_neutral(P, params, "parallel_tool_calls", &[json!(true)])?;
    content::refuse_unless_neutral(P, params, "logit_bias", &[json!({})])?;
    content::refuse_unless_neutral(P, params, "service_tier", &[json!("auto"), json!("default")])?;
    let known = |k: &str| {
        GENERATION.iter().any(|(from, _)| *from == k)
            || OTHER_MAPPED.contains(&k)
            || ["parallel_tool_calls", "logit_bias", "service_tier"].contains(&k)
    };
    if let Some(name) = params.keys().find(|k| !known(k)) {
        return Err(Unsupported::new(P, name, "this provider has no equivalent"));
    }

    // Streamed answers are translated one choice at a time; several would be merged wrongly.
    if request.stream {
        content::refuse_unless_neutral(P, params, "n", &[json!(1)])?;
    }
    let (system, contents) = contents(&request.messages)?;
    let mut body = Map::new();
    body.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({"parts": [{"text": system.join("\n\n")}]}));
    }
    let mut generation = Map::new();
    for (from, to) in GENERATION {
        if let Some(v) = params.get(*from).filter(|v| !v.is_null()) {
            generation.insert((*to).into(), v.clone());
        }
    }
    if let Some(v) = content::max_output_tokens(params) {
        generation.insert("maxOutputTokens".into(), v.clone());
    }
    if let Some(stop) = content::stop_list(params.get("stop")) {
        generation.insert("stopSequences".into(), Value::Array(stop));
    }
    if params.get("logprobs") == Some(&json!(true)) {
        generation.insert("responseLogprobs".into(), json!(true));
        if let Some(n) = params.get("top_logprobs").filter(|v| !v.is_null()) {
            generation.insert("logprobs".into(), n.clone());
        }
    }
    match params.get("response_format") {
        None | Some(Value::Null) => {}
        Some(format) => match format.get("type").and_then(Value::as_str) {
            Some("text") => {}
            Some("json_object") => {
                generation.insert("responseMimeType".into(), json!("application/json"));
            }
            Some("json_schema") => {
                let schema = format.get("json_schema").and_then(|s| s.get("schema")).ok_or_else(|| {
                    Unsupported::new(P, "response_format.json_schema.schema", "a JSON schema is required")
                })?;
                generation.insert("responseMimeType".into(), json!("application/json"));
                generation.insert("responseJsonSchema".into(), schema.clone());
            }
            _ => {
                return Err(Unsupported::new(
                    P,
                    "response_format",
                    "only text, json_object and json_schema are translated",
                ))
            }
        },
    }
    if !generation.is_empty() {
        body.insert("generationConfig".into(), Value::Object(generation));
    }
    let tools = content::function_tools(P, params.get("tools"))?;
    if !tools.is_empty() {
        let declarations: Vec<Value> = tools
            .into_iter()
            .map(|(name, description, parameters)| {
                let mut d = json!({"name": name, "parametersJsonSchema": parameters});
                if let Some(desc) = description {
                    d["description"] = json!(desc);
                }
                d
            })
            .collect();
        body.insert("tools".into(), json!([{"functionDeclarations": declarations}]));
    }
    if let Some(config) = tool_config(params.get("tool_choice"))? {
        body.insert("toolConfig".into(), config);
    }
    let model = target.model_for(&request.model);
    let url = if request.stream {
        format!("{}/models/{model}:streamGenerateContent?alt=sse", target.base_url)
    } else {
        format!("{}/models/{model}:generateContent", target.base_url)
    };
    let bytes = serde_json::to_vec(&body).expect("a JSON map always serializes");
    let mut builder = http::Request::post(url).header(http::header::CONTENT_TYPE, "application/json");
    if let Some(key) = &target.api_key {
        builder = builder.header("x-goog-api-key", key.expose());
    }
    builder.body(Bytes::from(bytes)).map_err(|_| Unsupported::new(P, "model", "the model name cannot be put in a URL"))
}

fn contents(input: &[Value]) -> Result<(Vec<String>, Vec<Value>), Unsupported> {
    let mut system = Vec::new();
    let mut out: Vec<(&'static str, Vec<Value>)> = Vec::new();
    // Gemini names function responses by function, OpenAI by call id: remember which is which.
    let mut call_names: HashMap<String, String> = HashMap::new();
    for (i, message) in input.iter().enumerate() {
        let field = format!("messages[{i}]");
        let role = message.get("role").and_then(Value::as_str).unwrap_or_default();
        let (gemini_role, parts) = match role {
            "system" | "developer" => {
                system.push(content::text(P, message.get("content"), &format!("{field}.content"))?);
                continue;
            }
            "user" => ("user", user_parts(message, &field)?),
            "assistant" => {
                let mut parts = Vec::new();
                let text = content::text(P, message.get("content"), &format!("{field}.content"))?;
                if !text.is_empty() {
                    parts.push(json!({"text": text}));
                }
                for call in content::tool_calls(P, message, &field)? {
                    call_names.insert(call.id.clone(), call.name.clone());
                    parts.push(json!({"functionCall": {"name": call.name, "args": call.arguments}}));
                }
                ("model", parts)
            }
            "tool" => {
                let id = message.get("tool_call_id").and_then(Value::as_str).unwrap_or_default();
                let name = call_names.get(id).ok_or_else(|| {
                    Unsupported::new(
                        P,
                        format!("{field}.tool_call_id"),
                        "it must answer a tool call of an earlier assistant message",
                    )
                })?;
                let text = content::text(P, message.get("content"), &format!("{field}.content"))?;
                // functionResponse.response must be an object: JSON objects pass as they are.
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(map)) => Value::Object(map),
                    _ => json!({"content": text}),
                };
                ("user", vec![json!({"functionResponse": {"name": name, "response": response}})])
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
            Some((last, existing)) if *last == gemini_role => existing.extend(parts),
            _ => out.push((gemini_role, parts)),
        }
    }
    Ok((system, out.into_iter().map(|(role, parts)| json!({"role": role, "parts": parts})).collect()))
}

fn user_parts(message: &Value, field: &str) -> Result<Vec<Value>, Unsupported> {
    content::parts(P, message.get("content"), &format!("{field}.content"))?
        .into_iter()
        .map(|part| match part {
            Part::Text(text) => Ok(json!({"text": text})),
            Part::ImageData { media_type, data } => Ok(json!({"inlineData": {"mimeType": media_type, "data": data}})),
            Part::ImageUrl(_) => {
                Err(Unsupported::new(P, format!("{field}.content"), "images must be data URLs for this provider"))
            }
        })
        .collect()
}

fn tool_config(choice: Option<&Value>) -> Result<Option<Value>, Unsupported> {
    let config = match choice {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => json!({"mode": "AUTO"}),
            "none" => json!({"mode": "NONE"}),
            "required" => json!({"mode": "ANY"}),
            other => return Err(Unsupported::new(P, "tool_choice", format!("'{other}' has no equivalent"))),
        },
        Some(obj) => match obj.get("function").and_then(|f| f.get("name")).and_then(Value::as_str) {
            Some(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
            None => return Err(Unsupported::new(P, "tool_choice", "only a named function can be forced")),
        },
    };
    Ok(Some(json!({"functionCallingConfig": config})))
}

/// A GenerateContentResponse as an OpenAI chat completion.
pub fn parse_success(body: &[u8], requested_model: &str, created_s: u64) -> Result<(Value, String), UpstreamError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| UpstreamError::Malformed(format!("not JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| UpstreamError::Malformed("not a JSON object".into()))?;
    let model = obj.get("modelVersion").and_then(Value::as_str).unwrap_or(requested_model).to_owned();
    let candidates = obj.get("candidates").and_then(Value::as_array).cloned().unwrap_or_default();
    let choices: Vec<Value> = if candidates.is_empty() {
        // No candidate: the prompt itself was blocked (promptFeedback.blockReason).
        if obj.get("promptFeedback").and_then(|f| f.get("blockReason")).is_none() {
            return Err(UpstreamError::Malformed("no candidates and no block reason".into()));
        }
        vec![
            json!({"index": 0, "message": {"role": "assistant", "content": null}, "logprobs": null, "finish_reason": "content_filter"}),
        ]
    } else {
        candidates.iter().enumerate().map(|(i, c)| choice(i, c)).collect()
    };
    let usage = obj.get("usageMetadata").cloned().unwrap_or_default();
    let count = |name: &str| usage.get(name).and_then(Value::as_u64).unwrap_or(0);
    let prompt = count("promptTokenCount");
    let completion = count("candidatesTokenCount") + count("thoughtsTokenCount");
    let out = json!({
        "id": obj.get("responseId").map_or_else(|| json!(format!("gemini-{created_s}")), |id| json!(id)),
        "object": "chat.completion",
        "created": created_s,
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": count("totalTokenCount").max(prompt + completion),
            "prompt_tokens_details": {"cached_tokens": count("cachedContentTokenCount")},
        },
    });
    Ok((out, model))
}

fn choice(i: usize, candidate: &Value) -> Value {
    let parts =
        candidate.get("content").and_then(|c| c.get("parts")).and_then(Value::as_array).cloned().unwrap_or_default();
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for part in &parts {
        // Thought summaries are not part of the answer.
        if part.get("thought") == Some(&json!(true)) {
            continue;
        }
        if let Some(t) = part.get("text").and_then(Value::as_str) {
            text.push_str(t);
        }
        if let Some(call) = part.get("functionCall") {
            tool_calls.push(json!({
                "id": format!("call_{i}_{}", tool_calls.len()),
                "type": "function",
                "function": {
                    "name": call.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": serde_json::to_string(call.get("args").unwrap_or(&json!({}))).expect("JSON serializes"),
                },
            }));
        }
    }
    let index = candidate.get("index").and_then(Value::as_u64).unwrap_or(i as u64);
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { json!(text) }});
    let finish = finish_reason(candidate.get("finishReason").and_then(Value::as_str), !tool_calls.is_empty());
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    json!({"index": index, "message": message, "logprobs": null, "finish_reason": finish})
}

pub fn finish_reason(reason: Option<&str>, has_tool_calls: bool) -> &'static str {
    match reason {
        Some("MAX_TOKENS") => "length",
        Some("SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY") => {
            "content_filter"
        }
        _ if has_tool_calls => "tool_calls",
        _ => "stop",
    }
}

/// Classifies a non-2xx answer. Gemini reports a bad API key as a 400 with reason
/// `API_KEY_INVALID`: that is the gateway's fault, not the client's.
pub fn classify_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> UpstreamError {
    let error = serde_json::from_slice::<Value>(body).ok().and_then(|v| v.get("error").cloned());
    // Gemini puts its advice in the body (`RetryInfo.retryDelay`, e.g. "17s"), not in a header.
    let retry_after = retry_after_ms(headers).or_else(|| error.as_ref().and_then(retry_delay_ms));
    let key_invalid = error.as_ref().is_some_and(|e| {
        e.get("details")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|x| x.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID")))
    });
    match status.as_u16() {
        _ if key_invalid => UpstreamError::Auth { status: status.as_u16() },
        401 | 403 => UpstreamError::Auth { status: status.as_u16() },
        429 => UpstreamError::RateLimited { retry_after_ms: retry_after },
        408 => UpstreamError::Timeout { ms: 0 },
        400 | 413 => match error.as_ref().and_then(|e| e.get("message")).and_then(Value::as_str) {
            Some(message) => UpstreamError::ClientRequest {
                status: status.as_u16(),
                kind: "invalid_request_error".into(),
                message: content::short(message),
                param: None,
            },
            None => UpstreamError::Server { status: status.as_u16(), retry_after_ms: retry_after },
        },
        code => UpstreamError::Server { status: code, retry_after_ms: retry_after },
    }
}

/// `details[].retryDelay` of a Google RPC error (`"17s"`, `"1.5s"`) in milliseconds.
fn retry_delay_ms(error: &Value) -> Option<u64> {
    error.get("details")?.as_array()?.iter().find_map(|d| {
        let seconds: f64 = d.get("retryDelay")?.as_str()?.strip_suffix('s')?.parse().ok()?;
        (seconds.is_finite() && seconds >= 0.0).then(|| (seconds * 1000.0).ceil() as u64)
    })
}
