//! The Gemini API wire format for the fake upstream: `POST
//! /v1beta/models/{model}:generateContent` and `:streamGenerateContent` (SSE with
//! `?alt=sse`, one streamed JSON array without it), also under `/v1/`. Checked like the
//! real API: a key in `x-goog-api-key` or `?key=`, no unknown top-level fields, non-empty
//! `contents` with roles `user`/`model` and non-empty `parts`. Answers are
//! `GenerateContentResponse` objects (text or a `functionCall` part); errors are
//! `google.rpc.Status` envelopes `{"error":{"code","message","status"}}`.
//!
//! Checking and rendering only: this module must not do IO, sleep, or decide which action
//! a call gets.

use bytes::Bytes;
use serde_json::{json, Value};

use super::format::{word_count, ChatCall, Credential, FakeReply, Rejection, RequestHead, Route, StreamPlan};
use super::format::{ToolCallPlan, WireFormat, SSE};
use crate::urlcodec::{percent_decode, query_param};

/// Top-level `GenerateContentRequest` fields (proto JSON accepts both spellings).
const KNOWN_FIELDS: [&str; 13] = [
    "model",
    "contents",
    "tools",
    "toolConfig",
    "tool_config",
    "safetySettings",
    "safety_settings",
    "systemInstruction",
    "system_instruction",
    "generationConfig",
    "generation_config",
    "cachedContent",
    "cached_content",
];

const MISSING_KEY: &str = "Method doesn't allow unregistered callers (callers without established identity). \
                           Please use API Key or other form of API consumer identity to call this API.";
const BAD_OAUTH: &str = "Request had invalid authentication credentials. Expected OAuth 2 access token, login \
                         cookie or other valid authentication credential. See \
                         https://developers.google.com/identity/sign-in/web/devconsole-project.";
const INVALID_KEY: &str = "API key not valid. Please pass a valid API key.";
const RATE_LIMITS: &str = "https://ai.google.dev/gemini-api/docs/rate-limits";

pub struct Gemini;

impl Gemini {
    fn usage(call: &ChatCall, candidates: u64) -> Value {
        json!({
            "promptTokenCount": call.prompt_tokens,
            "candidatesTokenCount": candidates,
            "totalTokenCount": call.prompt_tokens + candidates,
            "promptTokensDetails": [{ "modality": "TEXT", "tokenCount": call.prompt_tokens }]
        })
    }

    /// One `GenerateContentResponse` with a single candidate holding `parts`.
    fn response(call: &ChatCall, reply: &FakeReply, parts: Value, finish: Option<&str>, usage: Value) -> Value {
        let mut candidate = json!({ "content": { "parts": parts, "role": "model" }, "index": 0 });
        if let Some(finish) = finish {
            candidate["finishReason"] = json!(finish);
        }
        json!({
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": call.model,
            "responseId": format!("fake-response-{}", reply.n)
        })
    }

    fn function_call(tool: &ToolCallPlan) -> Value {
        json!([{ "functionCall": { "name": tool.name, "args": tool.args } }])
    }

    fn output_tokens(call: &ChatCall, reply: &FakeReply) -> u64 {
        call.tool.as_ref().map_or_else(|| reply.completion_tokens(), ToolCallPlan::tokens)
    }

    fn status_name(status: u16) -> &'static str {
        match status {
            400 | 413 => "INVALID_ARGUMENT",
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            409 => "ABORTED",
            412 => "FAILED_PRECONDITION",
            429 => "RESOURCE_EXHAUSTED",
            499 => "CANCELLED",
            501 => "UNIMPLEMENTED",
            503 => "UNAVAILABLE",
            504 => "DEADLINE_EXCEEDED",
            500..=599 => "INTERNAL",
            _ => "INVALID_ARGUMENT",
        }
    }

    fn error(status: u16, message: &str) -> Value {
        json!({ "error": { "code": status, "message": message, "status": Self::status_name(status) } })
    }
}

impl WireFormat for Gemini {
    fn name(&self) -> &'static str {
        "gemini"
    }

    fn route(&self, path: &str, query: Option<&str>) -> Option<Route> {
        let rest = path.strip_prefix("/v1beta/models/").or_else(|| path.strip_prefix("/v1/models/"))?;
        let rest = String::from_utf8_lossy(&percent_decode(rest)).into_owned();
        let (model, method) = rest.rsplit_once(':')?;
        if model.is_empty() || model.contains('/') {
            return None;
        }
        let model = Some(model.to_string());
        match method {
            "generateContent" => Some(Route { model, stream: false, json_array: false }),
            "streamGenerateContent" => {
                let sse = query_param(query, "alt").as_deref() == Some("sse");
                Some(Route { model, stream: true, json_array: !sse })
            }
            _ => None,
        }
    }

    fn credential(&self, head: &RequestHead<'_>) -> Option<Credential> {
        if let Some(value) = head.header("x-goog-api-key").filter(|v| !v.is_empty()) {
            return Some(Credential { source: "x-goog-api-key", value });
        }
        query_param(head.query, "key").filter(|v| !v.is_empty()).map(|value| Credential { source: "key", value })
    }

    fn check_head(&self, head: &RequestHead<'_>, credential: Option<&Credential>, _n: u64) -> Result<(), Rejection> {
        match (credential, head.header("authorization")) {
            (Some(_), _) => Ok(()),
            // An API key sent as a bearer token is read as a (bad) OAuth token.
            (None, Some(_)) => Err(Rejection { status: 401, body: Self::error(401, BAD_OAUTH) }),
            (None, None) => Err(Rejection { status: 403, body: Self::error(403, MISSING_KEY) }),
        }
    }

    fn invalid_key(&self, _credential: Option<&Credential>, _n: u64) -> Rejection {
        let mut body = Self::error(400, INVALID_KEY);
        body["error"]["details"] = json!([
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": { "service": "generativelanguage.googleapis.com" }
            },
            { "@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": INVALID_KEY }
        ]);
        Rejection { status: 400, body }
    }

    fn parse(&self, body: &Value, route: &Route) -> Result<ChatCall, String> {
        let object = body
            .as_object()
            .ok_or("Invalid JSON payload received. Unknown name \"\": Root element must be a message.")?;
        if let Some(unknown) = object.keys().find(|k| !KNOWN_FIELDS.contains(&k.as_str())) {
            return Err(format!("Invalid JSON payload received. Unknown name \"{unknown}\": Cannot find field."));
        }
        let contents = match object.get("contents") {
            None | Some(Value::Null) => &Vec::new(),
            Some(v) => v.as_array().ok_or("Invalid value at 'contents': expected a list of Content")?,
        };
        if contents.is_empty() {
            return Err("* GenerateContentRequest.contents: contents is not specified\n".into());
        }
        let mut texts = Vec::new();
        let mut last_user_text = String::new();
        for (i, content) in contents.iter().enumerate() {
            let role = content.get("role").and_then(Value::as_str).unwrap_or("user");
            if !matches!(role, "user" | "model" | "function") {
                return Err("Please use a valid role: user, model.".into());
            }
            let parts = content.get("parts").and_then(Value::as_array).filter(|p| !p.is_empty());
            let parts = parts.ok_or_else(|| {
                format!("* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n")
            })?;
            let text = parts_text(parts);
            if role != "model" {
                last_user_text.clone_from(&text);
            }
            texts.push(text);
        }
        let system = object.get("systemInstruction").or_else(|| object.get("system_instruction"));
        if let Some(parts) = system.and_then(|s| s.get("parts")).and_then(Value::as_array) {
            texts.push(parts_text(parts));
        }
        let declaration = object.get("tools").and_then(Value::as_array).and_then(|tools| {
            tools.iter().find_map(|tool| {
                let list = tool.get("functionDeclarations").or_else(|| tool.get("function_declarations"));
                list.and_then(Value::as_array).and_then(|d| d.first())
            })
        });
        let first_tool = declaration.and_then(|d| {
            let schema =
                ["parameters", "parametersJsonSchema", "parameters_json_schema"].iter().find_map(|field| d.get(*field));
            d.get("name").and_then(Value::as_str).map(|name| (name, schema))
        });
        Ok(ChatCall {
            model: route.model.clone().unwrap_or_default(),
            stream: route.stream,
            include_usage: false,
            tool: ToolCallPlan::when_asked(&last_user_text, first_tool),
            last_user_text,
            prompt_tokens: word_count(&texts.join(" ")),
            route: route.clone(),
        })
    }

    fn completion(&self, call: &ChatCall, reply: &FakeReply) -> Value {
        let parts = match &call.tool {
            Some(tool) => Self::function_call(tool),
            None => json!([{ "text": reply.content }]),
        };
        Self::response(call, reply, parts, Some("STOP"), Self::usage(call, Self::output_tokens(call, reply)))
    }

    fn stream(&self, call: &ChatCall, reply: &FakeReply) -> StreamPlan {
        let full_usage = Self::usage(call, Self::output_tokens(call, reply));
        let mut chunks = Vec::new();
        match &call.tool {
            Some(tool) => chunks.push(Self::response(call, reply, Self::function_call(tool), Some("STOP"), full_usage)),
            None => {
                let pieces = reply.pieces();
                let last = pieces.len() - 1;
                // Every chunk reports the prompt; only the last one has the full counts.
                let partial = json!({ "promptTokenCount": call.prompt_tokens, "totalTokenCount": call.prompt_tokens });
                for (i, piece) in pieces.into_iter().enumerate() {
                    let (finish, usage) =
                        if i == last { (Some("STOP"), full_usage.clone()) } else { (None, partial.clone()) };
                    chunks.push(Self::response(call, reply, json!([{ "text": piece }]), finish, usage));
                }
            }
        }
        let terminal_from = chunks.len() - 1;
        if !call.route.json_array {
            let events = chunks.iter().map(|c| Bytes::from(format!("data: {c}\r\n\r\n"))).collect();
            return StreamPlan { events, terminal_from, content_type: SSE };
        }
        let mut events: Vec<Bytes> = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| Bytes::from(format!("{}{c}", if i == 0 { "[" } else { ",\r\n" })))
            .collect();
        events.push(Bytes::from_static(b"]"));
        StreamPlan { events, terminal_from, content_type: "application/json" }
    }

    fn error_body(&self, status: u16, message: Option<&str>) -> Value {
        let default_message = match status {
            400 => "Request contains an invalid argument.",
            401 => BAD_OAUTH,
            403 => "The caller does not have permission",
            404 => "Requested entity was not found.",
            413 => "Request payload size exceeds the limit: 20971520 bytes.",
            429 => {
                "You exceeded your current quota, please check your plan and billing details. For more \
                 information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
            }
            499 => "The operation was cancelled.",
            503 => "The model is overloaded. Please try again later.",
            504 => "Deadline expired before operation could complete.",
            500..=599 => {
                "An internal error has occurred. Please retry or report in \
                 https://developers.generativeai.google/guide/troubleshooting"
            }
            _ => "Request contains an invalid argument.",
        };
        let mut body = Self::error(status, message.unwrap_or(default_message));
        if status == 429 {
            body["error"]["details"] = json!([
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [{
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
                    }]
                },
                {
                    "@type": "type.googleapis.com/google.rpc.Help",
                    "links": [{ "description": "Learn more about Gemini API quotas", "url": RATE_LIMITS }]
                }
            ]);
        }
        body
    }

    fn call_error_body(&self, status: u16, message: Option<&str>, _n: u64, retry_after: Option<&str>) -> Value {
        let mut body = self.error_body(status, message);
        // The real API says when to retry in the body (RetryInfo), not in a header.
        let seconds = retry_after.and_then(|s| s.trim().parse::<u64>().ok());
        if let (429, Some(seconds), Some(details)) = (status, seconds, body["error"]["details"].as_array_mut()) {
            details.push(
                json!({ "@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{seconds}s") }),
            );
        }
        body
    }
}

/// Text of `parts`: `text` parts (not thoughts) and `functionResponse.response` as JSON,
/// joined by newlines.
fn parts_text(parts: &[Value]) -> String {
    parts
        .iter()
        .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
        .filter_map(|p| {
            if let Some(text) = p.get("text").and_then(Value::as_str) {
                return Some(text.to_string());
            }
            let response = p.get("functionResponse").or_else(|| p.get("function_response"))?;
            response.get("response").map(Value::to_string)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_models_methods_and_framing() {
        let r = Gemini.route("/v1beta/models/gemini-2.0-flash:generateContent", None).unwrap();
        assert_eq!((r.model.as_deref(), r.stream), (Some("gemini-2.0-flash"), false));
        let r = Gemini.route("/v1beta/models/gemini-2.5-pro:streamGenerateContent", Some("alt=sse&key=k")).unwrap();
        assert!(r.stream && !r.json_array);
        assert!(Gemini.route("/v1beta/models/m:streamGenerateContent", None).unwrap().json_array);
        assert!(Gemini.route("/v1beta/models/m%3AgenerateContent", None).is_some());
        assert!(Gemini.route("/v1beta/models/m:countTokens", None).is_none());
        assert!(Gemini.route("/v1beta/models/:generateContent", None).is_none());
    }

    #[test]
    fn parses_roles_parts_and_tools() {
        let route = Gemini.route("/v1beta/models/m:generateContent", None).unwrap();
        let c = Gemini
            .parse(
                &json!({"systemInstruction":{"parts":[{"text":"be brief"}]},
                "tools":[{"googleSearch":{}},{"functionDeclarations":[{"name":"f","parameters":{"properties":{"city":{}}}}]}],
                "contents":[{"role":"user","parts":[{"text":"hi"}]},{"role":"model","parts":[{"text":"yo"}]},
                    {"parts":[{"text":"x","thought":true},{"text":"TOOL_CALL now"}]}]}),
                &route,
            )
            .unwrap();
        assert_eq!((c.model.as_str(), c.last_user_text.as_str()), ("m", "TOOL_CALL now"));
        assert_eq!(c.tool.unwrap().args, json!({"city":"Paris"}));
        let err = |body: Value| Gemini.parse(&body, &route).unwrap_err();
        assert!(err(json!({"contents":[]})).contains("contents is not specified"));
        assert!(err(json!({"messages":[]})).contains("Unknown name \"messages\""));
        assert!(err(json!({"contents":[{"role":"assistant","parts":[{"text":"x"}]}]})).contains("valid role"));
        assert!(err(json!({"contents":[{"role":"user","parts":[]}]})).contains("contents[0].parts"));
    }
}
