//! The chat completions request a client sends, parsed and validated with clear errors.
//!
//! Fields the cache key treats specially are named; every other field (known to OpenAI or not) is
//! kept in `params` and forwarded unchanged. Known fields are checked against OpenAI's documented
//! types and ranges first (`api::messages` for `messages`, `api::validate` for the rest); unknown
//! ones are not looked at. Adding a named field makes `cache::key` fail to compile until the key
//! decides what to do with it.
//! Must not: drop or rewrite a field the client sent.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::messages;
use super::validate::{self, missing, wrong_type, Expect};
use crate::error::ApiError;

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
            messages::message(i, message)?;
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
        validate::params(&map)?;
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

fn take_typed(map: &mut Map<String, Value>, name: &str, expect: Expect) -> Result<Option<Value>, ApiError> {
    match map.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) if expect.accepts(&v) => Ok(Some(v)),
        Some(v) => Err(wrong_type(name, expect.describe(), &v)),
    }
}
