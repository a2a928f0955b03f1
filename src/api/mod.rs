//! The OpenAI wire format as clients speak it: the chat request we accept (`chat` parses it,
//! `messages` and `validate` check it against OpenAI's documented types and ranges) and the error
//! envelope we answer with. No cache or provider logic lives here.

pub mod chat;
pub mod embeddings;
pub mod envelope;
mod messages;
mod validate;

/// How a JSON value's type is named in messages ("a string", "an array").
pub fn json_type_name(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
