//! The chat completions request a client sends, parsed and validated with clear errors.
//!
//! Fields the cache key treats specially are named; every other field (known to OpenAI or not) is
//! kept in `params`, type-checked where OpenAI documents a type, and forwarded unchanged. Adding a
//! named field makes `cache::key` fail to compile until the key decides what to do with it.
//! Must not: drop or rewrite a field the client sent.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::ApiError;

/// The roles OpenAI accepts in `messages`.
const ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool", "function"];

/// The expected JSON type of documented optional parameters; a mistyped one is a 400 naming it.
const TYPED_PARAMS: &[(&str, Expect)] = &[
    ("temperature", Expect::Number),
    ("top_p", Expect::Number),
    ("frequency_penalty", Expect::Number),
    ("presence_penalty", Expect::Number),
    ("n", Expect::Integer),
    ("max_tokens", Expect::Integer),
    ("max_completion_tokens", Expect::Integer),
    ("seed", Expect::Integer),
    ("top_logprobs", Expect::Integer),
    ("logprobs", Expect::Bool),
    ("parallel_tool_calls", Expect::Bool),
    ("stop", Expect::StringOrStrings),
    ("tools", Expect::Array),
    ("functions", Expect::Array),
    ("tool_choice", Expect::StringOrObject),
    ("function_call", Expect::StringOrObject),
    ("response_format", Expect::Object),
    ("logit_bias", Expect::Object),
    ("reasoning_effort", Expect::String),
    ("service_tier", Expect::String),
];

#[derive(Debug, Clone, Copy)]
enum Expect {
    Number,
    Integer,
    Bool,
    String,
    Array,
    Object,
    StringOrStrings,
    StringOrObject,
}

impl Expect {
    fn accepts(self, v: &Value) -> bool {
        match self {
            Expect::Number => v.is_number(),
            Expect::Integer => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
            Expect::Bool => v.is_boolean(),
            Expect::String => v.is_string(),
            Expect::Array => v.is_array(),
            Expect::Object => v.is_object(),
            Expect::StringOrStrings => v.is_string() || v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            Expect::StringOrObject => v.is_string() || v.is_object(),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Expect::Number => "a number",
            Expect::Integer => "an integer",
            Expect::Bool => "a boolean",
            Expect::String => "a string",
            Expect::Array => "an array",
            Expect::Object => "an object",
            Expect::StringOrStrings => "a string or an array of strings",
            Expect::StringOrObject => "a string or an object",
        }
    }
}

/// A validated chat completions request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Value>,
    pub stream: bool,
    /// Not part of the cache key: they change how or where the answer is delivered or recorded,
    /// not the answer itself.
    pub stream_options: Option<Value>,
    pub user: Option<Value>,
    pub metadata: Option<Value>,
    pub store: Option<Value>,
    pub prompt_cache_key: Option<Value>,
    pub safety_identifier: Option<Value>,
    /// Every other field, exactly as sent (null values included).
    pub params: BTreeMap<String, Value>,
}

impl ChatRequest {
    /// Parses and validates a request body.
    pub fn parse(body: &[u8]) -> Result<ChatRequest, ApiError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request("invalid_json", format!("The request body is not valid JSON: {e}.")))?;
        let Value::Object(map) = value else {
            return Err(ApiError::bad_request("invalid_request", "The request body must be a JSON object."));
        };
        ChatRequest::from_object(map)
    }

    /// Validates a request already read as a JSON object.
    pub fn from_object(mut map: Map<String, Value>) -> Result<ChatRequest, ApiError> {
        let model = match map.remove("model") {
            None | Some(Value::Null) => return Err(missing("model")),
            Some(Value::String(s)) if s.trim().is_empty() => {
                return Err(ApiError::bad_request("invalid_value", "'model' must not be empty.").with_param("model"))
            }
            Some(Value::String(s)) => s,
            Some(other) => return Err(wrong_type("model", "a string", &other)),
        };
        let messages = match map.remove("messages") {
            None | Some(Value::Null) => return Err(missing("messages")),
            Some(Value::Array(a)) => a,
            Some(other) => return Err(wrong_type("messages", "an array", &other)),
        };
        if messages.is_empty() {
            return Err(ApiError::bad_request("invalid_value", "'messages' must contain at least one message.")
                .with_param("messages"));
        }
        for (i, message) in messages.iter().enumerate() {
            validate_message(i, message)?;
        }
        let stream = match map.remove("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => b,
            Some(other) => return Err(wrong_type("stream", "a boolean", &other)),
        };
        let stream_options = take_typed(&mut map, "stream_options", Expect::Object)?;
        let user = take_typed(&mut map, "user", Expect::String)?;
        let metadata = take_typed(&mut map, "metadata", Expect::Object)?;
        let store = take_typed(&mut map, "store", Expect::Bool)?;
        let prompt_cache_key = take_typed(&mut map, "prompt_cache_key", Expect::String)?;
        let safety_identifier = take_typed(&mut map, "safety_identifier", Expect::String)?;
        for (name, expect) in TYPED_PARAMS {
            if let Some(v) = map.get(*name) {
                if !v.is_null() && !expect.accepts(v) {
                    return Err(wrong_type(name, expect.describe(), v));
                }
            }
        }
        Ok(ChatRequest {
            model,
            messages,
            stream,
            stream_options,
            user,
            metadata,
            store,
            prompt_cache_key,
            safety_identifier,
            params: map.into_iter().collect(),
        })
    }

    /// The request as a JSON object again, every field the client sent included.
    pub fn to_json(&self) -> Map<String, Value> {
        let ChatRequest {
            model,
            messages,
            stream,
            stream_options,
            user,
            metadata,
            store,
            prompt_cache_key,
            safety_identifier,
            params,
        } = self;
        let mut map: Map<String, Value> = params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        map.insert("model".into(), Value::String(model.clone()));
        map.insert("messages".into(), Value::Array(messages.clone()));
        if *stream {
            map.insert("stream".into(), Value::Bool(true));
        }
        let optional = [
            ("stream_options", stream_options),
            ("user", user),
            ("metadata", metadata),
            ("store", store),
            ("prompt_cache_key", prompt_cache_key),
            ("safety_identifier", safety_identifier),
        ];
        for (name, value) in optional {
            if let Some(v) = value {
                map.insert(name.into(), v.clone());
            }
        }
        map
    }
}

fn validate_message(i: usize, message: &Value) -> Result<(), ApiError> {
    let Some(obj) = message.as_object() else {
        return Err(wrong_type(&format!("messages[{i}]"), "an object", message));
    };
    match obj.get("role") {
        None => Err(missing(&format!("messages[{i}].role"))),
        Some(Value::String(role)) if ROLES.contains(&role.as_str()) => Ok(()),
        Some(Value::String(role)) => Err(ApiError::bad_request(
            "invalid_value",
            format!("'{role}' is not a valid role in 'messages[{i}].role'; expected one of {}.", ROLES.join(", ")),
        )
        .with_param(format!("messages[{i}].role"))),
        Some(other) => Err(wrong_type(&format!("messages[{i}].role"), "a string", other)),
    }
}

fn take_typed(map: &mut Map<String, Value>, name: &str, expect: Expect) -> Result<Option<Value>, ApiError> {
    match map.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) if expect.accepts(&v) => Ok(Some(v)),
        Some(v) => Err(wrong_type(name, expect.describe(), &v)),
    }
}

fn missing(param: &str) -> ApiError {
    ApiError::bad_request("missing_required_parameter", format!("Missing required parameter: '{param}'."))
        .with_param(param)
}

fn wrong_type(param: &str, expected: &str, got: &Value) -> ApiError {
    let got = super::json_type_name(got);
    ApiError::bad_request("invalid_type", format!("Invalid type for '{param}': expected {expected}, but got {got}."))
        .with_param(param)
}
