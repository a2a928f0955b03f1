//! Which answers are worth replaying: the one place that decides whether a provider's answer may
//! be stored at all (size limits per tier are the stores' concern). An answer is stored only when
//! it has at least one choice, each with a message object (what a replay streams), every choice
//! finished with `stop` or `tool_calls` (`length` only where the operator allows truncated
//! answers), none is a refusal, and every tool call's arguments are valid JSON. Anything else is
//! served once and not stored.
//!
//! Must not: look at anything but the answer (the request's cache controls are `policy`'s).

use serde_json::Value;

/// Why an answer is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReplayable {
    /// Not a JSON chat completion at all.
    NotACompletion,
    NoChoices,
    /// `finish_reason: length` while truncated answers are not stored.
    Truncated,
    ContentFilter,
    Refusal,
    /// A finish reason that is missing or not one of the above.
    Unfinished,
    InvalidToolArguments,
}

impl NotReplayable {
    pub const ALL: [NotReplayable; 7] = [
        NotReplayable::NotACompletion,
        NotReplayable::NoChoices,
        NotReplayable::Truncated,
        NotReplayable::ContentFilter,
        NotReplayable::Refusal,
        NotReplayable::Unfinished,
        NotReplayable::InvalidToolArguments,
    ];

    /// A stable snake_case word for logs and counters.
    pub fn word(self) -> &'static str {
        match self {
            NotReplayable::NotACompletion => "not_a_completion",
            NotReplayable::NoChoices => "no_choices",
            NotReplayable::Truncated => "truncated",
            NotReplayable::ContentFilter => "content_filter",
            NotReplayable::Refusal => "refusal",
            NotReplayable::Unfinished => "unfinished",
            NotReplayable::InvalidToolArguments => "invalid_tool_arguments",
        }
    }
}

/// Whether an OpenAI chat completion (as bytes) may be stored; `allow_truncated` lets
/// `finish_reason: length` through.
pub fn replayable(body: &[u8], allow_truncated: bool) -> Result<(), NotReplayable> {
    let value: Value = serde_json::from_slice(body).map_err(|_| NotReplayable::NotACompletion)?;
    let choices = value.get("choices").and_then(Value::as_array).ok_or(NotReplayable::NotACompletion)?;
    if choices.is_empty() {
        return Err(NotReplayable::NoChoices);
    }
    for choice in choices {
        // Every choice carries its message: it is what a replay streams.
        let message = choice.get("message").filter(|m| m.is_object());
        if message.is_none() {
            return Err(NotReplayable::NotACompletion);
        }
        if message.and_then(|m| m.get("refusal")).is_some_and(|r| r.as_str().is_some_and(|r| !r.is_empty())) {
            return Err(NotReplayable::Refusal);
        }
        match choice.get("finish_reason").and_then(Value::as_str) {
            Some("stop" | "tool_calls" | "function_call") => {}
            Some("length") if allow_truncated => {}
            Some("length") => return Err(NotReplayable::Truncated),
            Some("content_filter") => return Err(NotReplayable::ContentFilter),
            _ => return Err(NotReplayable::Unfinished),
        }
        let calls = message.and_then(|m| m.get("tool_calls")).and_then(Value::as_array);
        let legacy = message.and_then(|m| m.get("function_call"));
        let functions = calls.into_iter().flatten().filter_map(|c| c.get("function")).chain(legacy);
        for function in functions {
            let arguments = function.get("arguments").and_then(Value::as_str);
            if arguments.is_none_or(|a| serde_json::from_str::<Value>(a).is_err()) {
                return Err(NotReplayable::InvalidToolArguments);
            }
        }
    }
    Ok(())
}
