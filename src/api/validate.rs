//! Checks the request fields OpenAI documents for POST /v1/chat/completions against their documented
//! types and ranges, so a request OpenAI would refuse is refused here, before it costs a call.
//!
//! Errors are answered as OpenAI answers them: 400, `invalid_request_error`, code `invalid_type`
//! (wrong JSON type), `invalid_value` (out of range, not allowed) or `missing_required_parameter`,
//! with `param` naming the field as OpenAI does (`temperature`, `messages[2].content`,
//! `tools[0].function.name`). Messages and their content parts are checked in `api::messages`.
//!
//! Strictness: never stricter than OpenAI. A null optional parameter means "the default" and is
//! accepted. Unknown fields, unknown tool types and unknown `tool_choice` object types pass
//! through unchecked, so a field OpenAI adds later is not refused by a gateway that predates it.
//! Must not: change a value (the cache key is computed from the request as sent).

use serde_json::{Map, Value};

use crate::error::ApiError;

/// The expected JSON type of a field.
#[derive(Debug, Clone, Copy)]
pub(super) enum Expect {
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
    pub(super) fn accepts(self, v: &Value) -> bool {
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

    pub(super) fn describe(self) -> &'static str {
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

/// A documented optional top-level parameter: its JSON type and, for numbers, its inclusive range.
struct Param {
    name: &'static str,
    expect: Expect,
    min: Option<f64>,
    max: Option<f64>,
}

const fn typed(name: &'static str, expect: Expect) -> Param {
    Param { name, expect, min: None, max: None }
}

const fn ranged(name: &'static str, expect: Expect, min: f64, max: Option<f64>) -> Param {
    Param { name, expect, min: Some(min), max }
}

/// OpenAI's documented types and ranges for the optional parameters of a chat completion.
const PARAMS: &[Param] = &[
    ranged("temperature", Expect::Number, 0.0, Some(2.0)),
    ranged("top_p", Expect::Number, 0.0, Some(1.0)),
    ranged("frequency_penalty", Expect::Number, -2.0, Some(2.0)),
    ranged("presence_penalty", Expect::Number, -2.0, Some(2.0)),
    ranged("n", Expect::Integer, 1.0, Some(128.0)),
    ranged("max_tokens", Expect::Integer, 1.0, None),
    ranged("max_completion_tokens", Expect::Integer, 1.0, None),
    ranged("top_logprobs", Expect::Integer, 0.0, Some(20.0)),
    typed("seed", Expect::Integer),
    typed("logprobs", Expect::Bool),
    typed("parallel_tool_calls", Expect::Bool),
    typed("stop", Expect::StringOrStrings),
    typed("tools", Expect::Array),
    typed("functions", Expect::Array),
    typed("tool_choice", Expect::StringOrObject),
    typed("function_call", Expect::StringOrObject),
    typed("response_format", Expect::Object),
    typed("logit_bias", Expect::Object),
    typed("reasoning_effort", Expect::String),
    typed("service_tier", Expect::String),
];

/// At most this many stop sequences.
const MAX_STOP: usize = 4;
/// At most this many tools.
const MAX_TOOLS: usize = 128;
/// `logit_bias` values lie in -LOGIT_BIAS..=LOGIT_BIAS.
const LOGIT_BIAS: f64 = 100.0;
const RESPONSE_FORMATS: &[&str] = &["text", "json_object", "json_schema"];
const TOOL_CHOICES: &[&str] = &["none", "auto", "required"];
const FUNCTION_CALL_MODES: &[&str] = &["none", "auto"];

/// Checks every documented optional parameter in `params` (the fields `ChatRequest` keeps as sent).
pub fn params(map: &Map<String, Value>) -> Result<(), ApiError> {
    for param in PARAMS {
        let Some(v) = present(map, param.name) else { continue };
        if !param.expect.accepts(v) {
            return Err(wrong_type(param.name, param.expect.describe(), v));
        }
        in_range(param.name, v, param.min, param.max)?;
    }
    if let Some(Value::Array(stop)) = present(map, "stop") {
        if stop.len() > MAX_STOP {
            return Err(invalid_value(
                "stop",
                format!("expected at most {MAX_STOP} stop sequences, but got {}", stop.len()),
            ));
        }
    }
    if let Some(Value::Object(bias)) = present(map, "logit_bias") {
        logit_bias(bias)?;
    }
    if let Some(Value::Array(tools)) = present(map, "tools") {
        self::tools(tools)?;
    }
    if let Some(Value::Array(functions)) = present(map, "functions") {
        for (i, f) in functions.iter().enumerate() {
            let at = format!("functions[{i}]");
            function_definition(&at, as_object(&at, f)?)?;
        }
    }
    if let Some(choice) = present(map, "tool_choice") {
        tool_choice(choice)?;
    }
    if let Some(call) = present(map, "function_call") {
        function_call_choice(call)?;
    }
    if let Some(Value::Object(format)) = present(map, "response_format") {
        response_format(format)?;
    }
    Ok(())
}

fn logit_bias(bias: &Map<String, Value>) -> Result<(), ApiError> {
    for v in bias.values() {
        if !v.is_number() {
            return Err(wrong_type("logit_bias", "an object whose values are numbers", v));
        }
        in_range("logit_bias", v, Some(-LOGIT_BIAS), Some(LOGIT_BIAS))?;
    }
    Ok(())
}

fn tools(tools: &[Value]) -> Result<(), ApiError> {
    if tools.len() > MAX_TOOLS {
        return Err(invalid_value("tools", format!("expected at most {MAX_TOOLS} tools, but got {}", tools.len())));
    }
    for (i, tool) in tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        let tool = as_object(&at, tool)?;
        match required_str(tool, &at, "type")? {
            "function" => function_definition(&format!("{at}.function"), required_object(tool, &at, "function")?)?,
            "custom" => {
                let custom = required_object(tool, &at, "custom")?;
                tool_name(&format!("{at}.custom"), custom)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// A function a tool (or the deprecated `functions`) declares: `name`, `description`, `parameters`.
fn function_definition(at: &str, f: &Map<String, Value>) -> Result<(), ApiError> {
    tool_name(at, f)?;
    optional(f, at, "description", Expect::String)?;
    optional(f, at, "parameters", Expect::Object)?;
    optional(f, at, "strict", Expect::Bool)?;
    Ok(())
}

/// A declared tool or function name: `^[a-zA-Z0-9_-]{1,64}$`, as OpenAI documents it.
fn tool_name(at: &str, obj: &Map<String, Value>) -> Result<(), ApiError> {
    let name = required_str(obj, at, "name")?;
    let ok =
        (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(invalid_value(
            &format!("{at}.name"),
            format!("'{name}' does not match '^[a-zA-Z0-9_-]{{1,64}}$' (letters, digits, '_' and '-', at most 64)"),
        ))
    }
}

fn tool_choice(choice: &Value) -> Result<(), ApiError> {
    match choice {
        Value::String(s) => one_of("tool_choice", s, TOOL_CHOICES),
        Value::Object(obj) => match required_str(obj, "tool_choice", "type")? {
            kind @ ("function" | "custom") => {
                let at = format!("tool_choice.{kind}");
                required_str(required_object(obj, "tool_choice", kind)?, &at, "name").map(drop)
            }
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

fn function_call_choice(call: &Value) -> Result<(), ApiError> {
    match call {
        Value::String(s) => one_of("function_call", s, FUNCTION_CALL_MODES),
        Value::Object(obj) => required_str(obj, "function_call", "name").map(drop),
        _ => Ok(()),
    }
}

fn response_format(format: &Map<String, Value>) -> Result<(), ApiError> {
    let kind = required_str(format, "response_format", "type")?;
    one_of("response_format.type", kind, RESPONSE_FORMATS)?;
    if kind == "json_schema" {
        let at = "response_format.json_schema";
        let schema = required_object(format, "response_format", "json_schema")?;
        tool_name(at, schema)?;
        optional(schema, at, "description", Expect::String)?;
        optional(schema, at, "schema", Expect::Object)?;
        optional(schema, at, "strict", Expect::Bool)?;
    }
    Ok(())
}

/// The field's value unless it is absent or null (null means "the default").
pub(super) fn present<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

pub(super) fn as_object<'a>(at: &str, v: &'a Value) -> Result<&'a Map<String, Value>, ApiError> {
    v.as_object().ok_or_else(|| wrong_type(at, "an object", v))
}

/// A required nested field: absent is `missing_required_parameter`, any other type (null included)
/// is `invalid_type`.
fn required<'a>(obj: &'a Map<String, Value>, at: &str, key: &str, expect: Expect) -> Result<&'a Value, ApiError> {
    match obj.get(key) {
        None => Err(missing(&format!("{at}.{key}"))),
        Some(v) if expect.accepts(v) => Ok(v),
        Some(v) => Err(wrong_type(&format!("{at}.{key}"), expect.describe(), v)),
    }
}

pub(super) fn required_str<'a>(obj: &'a Map<String, Value>, at: &str, key: &str) -> Result<&'a str, ApiError> {
    Ok(required(obj, at, key, Expect::String)?.as_str().unwrap_or_default())
}

pub(super) fn required_object<'a>(
    obj: &'a Map<String, Value>,
    at: &str,
    key: &str,
) -> Result<&'a Map<String, Value>, ApiError> {
    let v = required(obj, at, key, Expect::Object)?;
    as_object(&format!("{at}.{key}"), v)
}

/// An optional nested field: absent or null is fine, any other type must be `expect`.
pub(super) fn optional(obj: &Map<String, Value>, at: &str, key: &str, expect: Expect) -> Result<(), ApiError> {
    match present(obj, key) {
        Some(v) if !expect.accepts(v) => Err(wrong_type(&format!("{at}.{key}"), expect.describe(), v)),
        _ => Ok(()),
    }
}

fn in_range(param: &str, v: &Value, min: Option<f64>, max: Option<f64>) -> Result<(), ApiError> {
    let Some(x) = v.as_f64() else { return Ok(()) };
    if let Some(min) = min.filter(|min| x < *min) {
        return Err(invalid_value(param, format!("expected a value >= {min}, but got {v} instead")));
    }
    if let Some(max) = max.filter(|max| x > *max) {
        return Err(invalid_value(param, format!("expected a value <= {max}, but got {v} instead")));
    }
    Ok(())
}

pub(super) fn one_of(param: &str, got: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if allowed.contains(&got) {
        Ok(())
    } else {
        let allowed = allowed.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(", ");
        Err(invalid_value(param, format!("'{got}' is not one of the supported values: {allowed}")))
    }
}

pub(super) fn missing(param: &str) -> ApiError {
    ApiError::bad_request("missing_required_parameter", format!("Missing required parameter: '{param}'."))
        .with_param(param)
}

pub(super) fn wrong_type(param: &str, expected: &str, got: &Value) -> ApiError {
    let got = super::json_type_name(got);
    ApiError::bad_request("invalid_type", format!("Invalid type for '{param}': expected {expected}, but got {got}."))
        .with_param(param)
}

pub(super) fn invalid_value(param: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_value", format!("Invalid '{param}': {why}.")).with_param(param)
}
