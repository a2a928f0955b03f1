//! Reading OpenAI chat messages for translation: text of a content field, content parts, tool
//! calls, data URLs. Shared by the Anthropic and Gemini translators; no provider format here.

use serde_json::Value;

use crate::error::Unsupported;

/// One piece of user or assistant content.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    /// An image given inline as a data URL.
    ImageData {
        media_type: String,
        data: String,
    },
    /// An image given by URL.
    ImageUrl(String),
}

/// The parts of a message's `content` (a string, an array of parts, or null).
pub fn parts(provider: &'static str, content: Option<&Value>, field: &str) -> Result<Vec<Part>, Unsupported> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![Part::Text(s.clone())]),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let at = format!("{field}[{i}]");
                match item.get("type").and_then(Value::as_str) {
                    Some("text") => item
                        .get("text")
                        .and_then(Value::as_str)
                        .map(|t| Part::Text(t.to_owned()))
                        .ok_or_else(|| Unsupported::new(provider, &at, "a text part needs a string 'text'")),
                    Some("image_url") => {
                        let url = item
                            .get("image_url")
                            .and_then(|u| u.get("url").or(Some(u)))
                            .and_then(Value::as_str)
                            .ok_or_else(|| Unsupported::new(provider, &at, "an image_url part needs a url"))?;
                        Ok(match parse_data_url(url) {
                            Some((media_type, data)) => Part::ImageData { media_type, data },
                            None => Part::ImageUrl(url.to_owned()),
                        })
                    }
                    Some(other) => Err(Unsupported::new(
                        provider,
                        &at,
                        format!("content parts of type '{other}' cannot be translated"),
                    )),
                    None => Err(Unsupported::new(provider, &at, "a content part needs a type")),
                }
            })
            .collect(),
        Some(_) => Err(Unsupported::new(provider, field, "content must be a string, an array of parts or null")),
    }
}

/// All text of a content field, parts joined by newlines; anything but text is refused.
pub fn text(provider: &'static str, content: Option<&Value>, field: &str) -> Result<String, Unsupported> {
    let mut out = Vec::new();
    for part in parts(provider, content, field)? {
        match part {
            Part::Text(t) => out.push(t),
            _ => return Err(Unsupported::new(provider, field, "only text is allowed here")),
        }
    }
    Ok(out.join("\n"))
}

/// `data:<media type>;base64,<data>` → (media type, data).
fn parse_data_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    Some((media_type.to_owned(), data.to_owned()))
}

/// An assistant message's tool call: (id, function name, parsed arguments).
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: Value,
}

pub fn tool_calls(provider: &'static str, message: &Value, field: &str) -> Result<Vec<ToolCall>, Unsupported> {
    let Some(calls) = message.get("tool_calls") else { return Ok(Vec::new()) };
    let Some(calls) = calls.as_array() else {
        return Err(Unsupported::new(provider, format!("{field}.tool_calls"), "must be an array"));
    };
    calls
        .iter()
        .enumerate()
        .map(|(i, call)| {
            let at = format!("{field}.tool_calls[{i}]");
            let function = call.get("function").ok_or_else(|| Unsupported::new(provider, &at, "needs a function"))?;
            let name = function
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| Unsupported::new(provider, &at, "needs function.name"))?;
            let raw = function.get("arguments").and_then(Value::as_str).unwrap_or("{}");
            let arguments: Value = if raw.trim().is_empty() {
                Value::Object(Default::default())
            } else {
                serde_json::from_str(raw).map_err(|_| {
                    Unsupported::new(provider, format!("{at}.function.arguments"), "must be a JSON string")
                })?
            };
            let id = call.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
            Ok(ToolCall { id, name: name.to_owned(), arguments })
        })
        .collect()
}

/// The `{name, description, parameters}` of each OpenAI function tool.
pub fn function_tools(
    provider: &'static str,
    tools: Option<&Value>,
) -> Result<Vec<(String, Option<String>, Value)>, Unsupported> {
    let Some(tools) = tools.filter(|t| !t.is_null()) else { return Ok(Vec::new()) };
    let Some(tools) = tools.as_array() else { return Err(Unsupported::new(provider, "tools", "must be an array")) };
    tools
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            let at = format!("tools[{i}]");
            if tool.get("type").and_then(Value::as_str) != Some("function") {
                return Err(Unsupported::new(provider, &at, "only function tools can be translated"));
            }
            let f = tool.get("function").ok_or_else(|| Unsupported::new(provider, &at, "needs a function"))?;
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| Unsupported::new(provider, &at, "needs function.name"))?;
            let description = f.get("description").and_then(Value::as_str).map(str::to_owned);
            let parameters =
                f.get("parameters").cloned().unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}}));
            Ok((name.to_owned(), description, parameters))
        })
        .collect()
}

/// Refuses a parameter set to anything but its neutral value (the value that changes nothing).
pub fn refuse_unless_neutral(
    provider: &'static str,
    params: &std::collections::BTreeMap<String, Value>,
    name: &str,
    neutral: &[Value],
) -> Result<(), Unsupported> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(()),
        Some(v) if neutral.iter().any(|n| numbers_equal(n, v) || n == v) => Ok(()),
        Some(_) => Err(Unsupported::new(provider, name, "this provider has no equivalent")),
    }
}

fn numbers_equal(a: &Value, b: &Value) -> bool {
    matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y)
}

/// A `stop` parameter as a list.
pub fn stop_list(value: Option<&Value>) -> Option<Vec<Value>> {
    match value {
        Some(Value::String(s)) => Some(vec![Value::String(s.clone())]),
        Some(Value::Array(a)) if !a.is_empty() => Some(a.clone()),
        _ => None,
    }
}

/// The error message of a provider error body, shortened for a client.
pub fn short(message: &str) -> String {
    message.chars().take(500).collect()
}

/// The client's limit on answer length: `max_completion_tokens`, else the older `max_tokens`;
/// a `null` counts as not given, whichever field it is in.
pub fn max_output_tokens(params: &std::collections::BTreeMap<String, Value>) -> Option<&Value> {
    ["max_completion_tokens", "max_tokens"].iter().find_map(|name| params.get(*name).filter(|v| !v.is_null()))
}
