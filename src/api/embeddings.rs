//! The embeddings request a client sends (`POST /v1/embeddings`), parsed and checked against
//! OpenAI's documented types and limits, with OpenAI's error codes and `param` names.
//!
//! `input` is a string, an array of strings, an array of token ids or an array of token-id
//! arrays; it must not be empty, nor hold more than 2048 items. `encoding_format` is `float` or
//! `base64`, `dimensions` an integer of at least 1. Every other field is kept in `params` and
//! forwarded unchanged. Must not: drop or rewrite a field the client sent.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::validate::{invalid_value, missing, wrong_type};
use crate::error::ApiError;

/// OpenAI's limit on the number of inputs of one request.
pub const MAX_INPUTS: usize = 2048;

/// How the vectors are written in the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Arrays of numbers (OpenAI's default).
    Float,
    /// Each vector as base64 of its little-endian 32-bit floats.
    Base64,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Float => "float",
            Encoding::Base64 => "base64",
        }
    }
}

/// What is to be embedded.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// One or more texts (a single string is one text).
    Texts(Vec<String>),
    /// Token ids, already tokenized for the model: one array per input.
    Tokens(Vec<Vec<u64>>),
}

impl Input {
    pub fn len(&self) -> usize {
        match self {
            Input::Texts(t) => t.len(),
            Input::Tokens(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A validated embeddings request.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingsRequest {
    pub model: String,
    /// `input` exactly as sent (forwarded and keyed as such).
    pub input: Value,
    /// The same input, read.
    pub inputs: Input,
    pub encoding: Encoding,
    /// Whether `encoding_format` was sent (absent means `float`; forwarded only when sent).
    pub encoding_sent: bool,
    pub dimensions: Option<u64>,
    /// Not part of the cache key: it names the end user, it does not change the vectors.
    pub user: Option<Value>,
    /// Every other field, exactly as sent.
    pub params: BTreeMap<String, Value>,
}

impl EmbeddingsRequest {
    /// Validates a request already read as a JSON object.
    pub fn from_object(mut map: Map<String, Value>) -> Result<EmbeddingsRequest, ApiError> {
        let model = match map.remove("model") {
            None | Some(Value::Null) => return Err(missing("model")),
            Some(Value::String(s)) if s.trim().is_empty() => {
                return Err(invalid_value("model", "it must not be empty"))
            }
            Some(Value::String(s)) => s,
            Some(other) => return Err(wrong_type("model", "a string", &other)),
        };
        let input = match map.remove("input") {
            None | Some(Value::Null) => return Err(missing("input")),
            Some(v) => v,
        };
        let inputs = read_input(&input)?;
        let encoding_sent = map.get("encoding_format").is_some_and(|v| !v.is_null());
        let encoding = match map.remove("encoding_format") {
            None | Some(Value::Null) => Encoding::Float,
            Some(Value::String(s)) if s == "float" => Encoding::Float,
            Some(Value::String(s)) if s == "base64" => Encoding::Base64,
            Some(Value::String(_)) => return Err(invalid_value("encoding_format", "it must be 'float' or 'base64'")),
            Some(other) => return Err(wrong_type("encoding_format", "a string", &other)),
        };
        let dimensions = match map.remove("dimensions") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(d) if d >= 1 => Some(d),
                _ => return Err(invalid_value("dimensions", "it must be an integer of at least 1")),
            },
            Some(other) => return Err(wrong_type("dimensions", "an integer", &other)),
        };
        let user = map.remove("user");
        if let Some(u) = user.as_ref().filter(|u| !u.is_null() && !u.is_string()) {
            return Err(wrong_type("user", "a string", u));
        }
        let params = map.into_iter().collect();
        Ok(EmbeddingsRequest { model, input, inputs, encoding, encoding_sent, dimensions, user, params })
    }

    /// The request as JSON, every field the client sent (the model as given).
    pub fn to_json(&self) -> Map<String, Value> {
        let mut json: Map<String, Value> = self.params.clone().into_iter().collect();
        json.insert("model".into(), Value::String(self.model.clone()));
        json.insert("input".into(), self.input.clone());
        if self.encoding_sent {
            json.insert("encoding_format".into(), Value::String(self.encoding.as_str().into()));
        }
        if let Some(d) = self.dimensions {
            json.insert("dimensions".into(), Value::from(d));
        }
        if let Some(user) = &self.user {
            json.insert("user".into(), user.clone());
        }
        json
    }
}

/// Reads `input` in one of its four documented shapes.
fn read_input(input: &Value) -> Result<Input, ApiError> {
    let shape = "a string, an array of strings, an array of integers or an array of integer arrays";
    let empty = |param: &str| invalid_value(param, "it must not be empty");
    match input {
        Value::String(s) if s.is_empty() => Err(empty("input")),
        Value::String(s) => Ok(Input::Texts(vec![s.clone()])),
        Value::Array(items) if items.is_empty() => Err(empty("input")),
        Value::Array(items) if items.len() > MAX_INPUTS => {
            Err(invalid_value("input", format_args!("it holds more than {MAX_INPUTS} items")))
        }
        Value::Array(items) => match &items[0] {
            Value::String(_) => {
                let mut texts = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) if s.is_empty() => return Err(empty(&format!("input[{i}]"))),
                        Value::String(s) => texts.push(s.clone()),
                        other => return Err(wrong_type(&format!("input[{i}]"), "a string", other)),
                    }
                }
                Ok(Input::Texts(texts))
            }
            Value::Number(_) => Ok(Input::Tokens(vec![tokens(items, "input")?])),
            Value::Array(_) => {
                let mut all = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let param = format!("input[{i}]");
                    match item {
                        Value::Array(ids) if ids.is_empty() => return Err(empty(&param)),
                        Value::Array(ids) => all.push(tokens(ids, &param)?),
                        other => return Err(wrong_type(&param, "an array of integers", other)),
                    }
                }
                Ok(Input::Tokens(all))
            }
            other => Err(wrong_type("input[0]", "a string, an integer or an array of integers", other)),
        },
        other => Err(wrong_type("input", shape, other)),
    }
}

/// An array of token ids (non-negative integers).
fn tokens(items: &[Value], param: &str) -> Result<Vec<u64>, ApiError> {
    items
        .iter()
        .enumerate()
        .map(|(i, v)| v.as_u64().ok_or_else(|| wrong_type(&format!("{param}[{i}]"), "a non-negative integer", v)))
        .collect()
}
