//! Checks each entry of `messages` against OpenAI's documented shapes: its role, its `content`
//! (a string, an array of content parts, or null where OpenAI allows null), and the fields each role
//! requires (`tool_call_id` on tool messages, well-formed `tool_calls` on assistant messages).
//!
//! Strictness: never stricter than OpenAI. `content` may be null or absent only on an assistant
//! message that carries `tool_calls`, `function_call`, `audio` or `refusal`, and may be null (but
//! must be present) on the deprecated `function` role. Content parts of a type this gateway does
//! not know, and tool calls of an unknown type, pass through unchecked; which part types a role
//! accepts (an image in a system message) is left to the provider. Errors name the field as
//! OpenAI does, e.g. `messages[1].tool_calls[0].function.arguments`.

use serde_json::{Map, Value};

use super::validate::{
    as_object, invalid_value, missing, one_of, optional, present, required_object, required_str, wrong_type, Expect,
};
use crate::error::ApiError;

/// The roles OpenAI accepts in `messages`.
const ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool", "function"];

/// How a message's `content` may be left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Content {
    /// Present, and a string or an array of parts.
    Required,
    /// Present, but null is allowed (the deprecated `function` role).
    Nullable,
    /// May be absent or null (an assistant message that calls a tool).
    Optional,
}

/// Checks `messages[i]`.
pub fn message(i: usize, message: &Value) -> Result<(), ApiError> {
    let at = format!("messages[{i}]");
    let obj = as_object(&at, message)?;
    let role = required_str(obj, &at, "role")?;
    one_of(&format!("{at}.role"), role, ROLES)?;
    optional(obj, &at, "name", Expect::String)?;
    match role {
        "assistant" => assistant(&at, obj),
        "tool" => {
            required_str(obj, &at, "tool_call_id")?;
            content(&at, obj, Content::Required)
        }
        "function" => {
            required_str(obj, &at, "name")?;
            content(&at, obj, Content::Nullable)
        }
        _ => content(&at, obj, Content::Required),
    }
}

fn assistant(at: &str, obj: &Map<String, Value>) -> Result<(), ApiError> {
    let speaks_otherwise =
        ["tool_calls", "function_call", "audio", "refusal"].iter().any(|k| present(obj, k).is_some());
    content(at, obj, if speaks_otherwise { Content::Optional } else { Content::Required })?;
    optional(obj, at, "refusal", Expect::String)?;
    optional(obj, at, "audio", Expect::Object)?;
    if let Some(call) = present(obj, "function_call") {
        let call_at = format!("{at}.function_call");
        let call = as_object(&call_at, call)?;
        required_str(call, &call_at, "name")?;
        required_str(call, &call_at, "arguments")?;
    }
    let Some(calls) = present(obj, "tool_calls") else { return Ok(()) };
    let calls_at = format!("{at}.tool_calls");
    let calls = calls.as_array().ok_or_else(|| wrong_type(&calls_at, "an array", calls))?;
    if calls.is_empty() {
        return Err(invalid_value(&calls_at, "expected an array with at least 1 tool call, but got an empty array"));
    }
    for (j, call) in calls.iter().enumerate() {
        tool_call(&format!("{calls_at}[{j}]"), call)?;
    }
    Ok(())
}

/// One of an assistant message's `tool_calls`: `id`, `type` and the call itself.
fn tool_call(at: &str, call: &Value) -> Result<(), ApiError> {
    let call = as_object(at, call)?;
    required_str(call, at, "id")?;
    let (kind, input) = match required_str(call, at, "type")? {
        "function" => ("function", "arguments"),
        "custom" => ("custom", "input"),
        _ => return Ok(()),
    };
    let inner_at = format!("{at}.{kind}");
    let inner = required_object(call, at, kind)?;
    if required_str(inner, &inner_at, "name")?.is_empty() {
        return Err(invalid_value(&format!("{inner_at}.name"), "expected a non-empty string"));
    }
    required_str(inner, &inner_at, input)?;
    Ok(())
}

fn content(at: &str, obj: &Map<String, Value>, rule: Content) -> Result<(), ApiError> {
    let content_at = format!("{at}.content");
    match obj.get("content") {
        None if rule == Content::Optional => Ok(()),
        None => Err(missing(&content_at)),
        Some(Value::Null) if rule != Content::Required => Ok(()),
        Some(Value::String(_)) => Ok(()),
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                content_part(&format!("{content_at}[{j}]"), part)?;
            }
            Ok(())
        }
        Some(other) => Err(wrong_type(&content_at, "a string or an array of content parts", other)),
    }
}

/// One content part: an object with a `type`, and the field that type names.
fn content_part(at: &str, part: &Value) -> Result<(), ApiError> {
    let part = as_object(at, part)?;
    match required_str(part, at, "type")? {
        "text" => required_str(part, at, "text").map(drop),
        "refusal" => required_str(part, at, "refusal").map(drop),
        "image_url" => {
            let image = required_object(part, at, "image_url")?;
            let image_at = format!("{at}.image_url");
            required_str(image, &image_at, "url")?;
            optional(image, &image_at, "detail", Expect::String)
        }
        "input_audio" => {
            let audio = required_object(part, at, "input_audio")?;
            let audio_at = format!("{at}.input_audio");
            required_str(audio, &audio_at, "data")?;
            required_str(audio, &audio_at, "format").map(drop)
        }
        "file" => {
            let file = required_object(part, at, "file")?;
            let file_at = format!("{at}.file");
            for key in ["file_data", "file_id", "filename"] {
                optional(file, &file_at, key, Expect::String)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
