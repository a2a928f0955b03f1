//! Replays a stored OpenAI chat completion as the OpenAI stream a client asked for, so one cache
//! entry serves stream and non-stream requests alike. A lazy iterator of SSE frames (one `Bytes`
//! per event), so the gateway streams them without building the whole stream in memory.
//!
//! For each choice, in order: a chunk with `delta.role` and an empty `content` (`null` when the
//! stored content is null) carrying the message's other non-text fields; the message's text
//! fields in pieces (see [`next_piece`]); each tool call as a first delta with its `index`, `id`,
//! `type` and `function.name` (arguments `""`), then its argument fragments; a chunk with an empty
//! delta and the `finish_reason`; the choice's `logprobs` ride on its first chunk. Then, when
//! `include_usage`, a chunk with `choices: []` and the usage (every other chunk then has
//! `usage: null`, as OpenAI sends it; a completion stored without usage has no usage chunk to
//! send); then `data: [DONE]`. Every
//! chunk carries the completion's `id`, `created`, `model`, and `system_fingerprint` and
//! `service_tier` when it has them. `assemble::Assembler` reads the stream back into the completion.
//!
//! Must not: send a text as one giant chunk, or hold more than the stored completion and one frame.

use bytes::Bytes;
use serde_json::{json, Map, Value};

/// The most characters (Unicode scalar values) one content, refusal or argument piece holds.
pub const MAX_PIECE_CHARS: usize = 20;

/// How far a cut inside a long word may move back to keep a character and its combining marks
/// (or an emoji sequence) together: a piece cut inside a word keeps at least
/// `MAX_PIECE_CHARS - MAX_BACKOFF_CHARS + 1` characters.
const MAX_BACKOFF_CHARS: usize = 10;

/// The stored bytes are not a chat completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the stored answer is not a chat completion")]
pub struct NotACompletion;

/// One choice, ready to be streamed.
#[derive(Debug)]
struct Plan {
    index: Value,
    /// The first delta: role, empty content, and every field that is not streamed in pieces.
    first: Map<String, Value>,
    logprobs: Value,
    /// `(field, text)` streamed in pieces; `content` last.
    texts: Vec<(String, String)>,
    tools: Vec<Tool>,
    finish_reason: Value,
}

/// One tool call: its first delta, and the field (`arguments` of `function`, `input` of `custom`)
/// whose text follows in pieces.
#[derive(Debug)]
struct Tool {
    first: Map<String, Value>,
    body_key: Option<String>,
    text_key: &'static str,
    text: String,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Role,
    Text { field: usize, at: usize },
    ToolStart { call: usize },
    ToolText { call: usize, at: usize },
    Finish,
}

#[derive(Debug, Clone, Copy)]
enum Cursor {
    Choice { choice: usize, step: Step },
    Usage,
    Done,
    End,
}

/// The frames of one replayed completion; see the module documentation.
#[derive(Debug)]
pub struct Replay {
    head: Map<String, Value>,
    plans: Vec<Plan>,
    usage: Option<Value>,
    include_usage: bool,
    cursor: Cursor,
}

/// The stream of `body` (an OpenAI chat completion as the cache stores it).
pub fn replay(body: &[u8], include_usage: bool) -> Result<Replay, NotACompletion> {
    let value: Value = serde_json::from_slice(body).map_err(|_| NotACompletion)?;
    let mut completion = match value {
        Value::Object(map) => map,
        _ => return Err(NotACompletion),
    };
    let Some(Value::Array(choices)) = completion.remove("choices") else {
        return Err(NotACompletion);
    };
    let mut head = Map::new();
    head.insert("id".into(), completion.remove("id").unwrap_or_else(|| json!("")));
    head.insert("object".into(), json!("chat.completion.chunk"));
    head.insert("created".into(), completion.remove("created").unwrap_or_else(|| json!(0)));
    head.insert("model".into(), completion.remove("model").unwrap_or_else(|| json!("")));
    for key in ["system_fingerprint", "service_tier"] {
        if let Some(v) = completion.remove(key).filter(|v| !v.is_null()) {
            head.insert(key.into(), v);
        }
    }
    let plans = choices.into_iter().enumerate().map(|(i, c)| plan(i, c)).collect::<Result<_, _>>()?;
    let usage = completion.remove("usage").filter(|u| !u.is_null());
    Ok(Replay { head, plans, usage, include_usage, cursor: Cursor::Choice { choice: 0, step: Step::Role } })
}

fn plan(i: usize, choice: Value) -> Result<Plan, NotACompletion> {
    let Value::Object(mut choice) = choice else {
        return Err(NotACompletion);
    };
    let Some(Value::Object(mut message)) = choice.remove("message") else {
        return Err(NotACompletion);
    };
    let tools = match message.remove("tool_calls") {
        Some(Value::Array(calls)) => calls.into_iter().enumerate().map(|(k, c)| tool(k, c)).collect(),
        _ => Vec::new(),
    };
    let mut first = Map::new();
    first.insert("role".into(), message.remove("role").unwrap_or_else(|| json!("assistant")));
    let mut texts = Vec::new();
    let content = message.remove("content");
    for (key, value) in message {
        match value {
            Value::String(s) if !s.is_empty() => texts.push((key, s)),
            other => {
                first.insert(key, other);
            }
        }
    }
    match content {
        Some(Value::String(s)) => {
            first.insert("content".into(), json!(""));
            texts.push(("content".into(), s));
        }
        Some(other) => {
            first.insert("content".into(), other);
        }
        None => {
            first.insert("content".into(), Value::Null);
        }
    }
    Ok(Plan {
        index: choice.remove("index").unwrap_or_else(|| json!(i)),
        first,
        logprobs: choice.remove("logprobs").unwrap_or(Value::Null),
        texts,
        tools,
        finish_reason: choice.remove("finish_reason").unwrap_or(Value::Null),
    })
}

fn tool(k: usize, call: Value) -> Tool {
    let mut first = match call {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    first.insert("index".into(), json!(k));
    let kind = first.get("type").and_then(Value::as_str).unwrap_or("function").to_owned();
    let mut body_key = None;
    let mut text_key = "arguments";
    let mut text = String::new();
    if let Some(Value::Object(body)) = first.get_mut(&kind) {
        text_key = if kind == "custom" { "input" } else { "arguments" };
        if let Some(Value::String(s)) = body.get_mut(text_key) {
            text = std::mem::take(s);
        }
        body_key = Some(kind);
    }
    Tool { first, body_key, text_key, text }
}

impl Iterator for Replay {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        loop {
            let (frame, next) = match self.cursor {
                Cursor::Choice { choice, step } => match self.plans.get(choice) {
                    None => (None, Cursor::Usage),
                    Some(plan) => {
                        let (frame, step) = self.step(plan, step);
                        let next = match step {
                            Some(step) => Cursor::Choice { choice, step },
                            None => Cursor::Choice { choice: choice + 1, step: Step::Role },
                        };
                        (frame, next)
                    }
                },
                Cursor::Usage => {
                    let frame = match (&self.usage, self.include_usage) {
                        (Some(usage), true) => Some(self.frame(json!([]), usage.clone())),
                        _ => None,
                    };
                    (frame, Cursor::Done)
                }
                Cursor::Done => (Some(Bytes::from_static(b"data: [DONE]\n\n")), Cursor::End),
                Cursor::End => return None,
            };
            self.cursor = next;
            if frame.is_some() {
                return frame;
            }
        }
    }
}

impl Replay {
    /// The frame for `step` of `plan` (if it has one) and the step after it (`None`: next choice).
    fn step(&self, plan: &Plan, step: Step) -> (Option<Bytes>, Option<Step>) {
        let delta = |delta: Value, logprobs: &Value, finish: &Value| {
            let choice = json!({"index": plan.index, "delta": delta, "logprobs": logprobs, "finish_reason": finish});
            Some(self.frame(json!([choice]), Value::Null))
        };
        match step {
            Step::Role => (
                delta(Value::Object(plan.first.clone()), &plan.logprobs, &Value::Null),
                Some(Step::Text { field: 0, at: 0 }),
            ),
            Step::Text { field, at } => match plan.texts.get(field) {
                None => (None, Some(Step::ToolStart { call: 0 })),
                Some((_, text)) if at >= text.len() => (None, Some(Step::Text { field: field + 1, at: 0 })),
                Some((key, text)) => {
                    let end = at + next_piece(&text[at..]);
                    let frame = delta(one(key, json!(&text[at..end])), &Value::Null, &Value::Null);
                    (frame, Some(Step::Text { field, at: end }))
                }
            },
            Step::ToolStart { call } => match plan.tools.get(call) {
                None => (None, Some(Step::Finish)),
                Some(tool) => {
                    let frame = delta(json!({"tool_calls": [tool.first]}), &Value::Null, &Value::Null);
                    (frame, Some(Step::ToolText { call, at: 0 }))
                }
            },
            Step::ToolText { call, at } => match plan.tools.get(call) {
                Some(tool) if at < tool.text.len() => {
                    let end = at + next_piece(&tool.text[at..]);
                    let piece = one(tool.text_key, json!(&tool.text[at..end]));
                    let mut call_delta = json!({"index": tool.first["index"]});
                    if let Some(body) = &tool.body_key {
                        call_delta[body.as_str()] = piece;
                    }
                    let frame = delta(json!({"tool_calls": [call_delta]}), &Value::Null, &Value::Null);
                    (frame, Some(Step::ToolText { call, at: end }))
                }
                _ => (None, Some(Step::ToolStart { call: call + 1 })),
            },
            Step::Finish => (delta(json!({}), &Value::Null, &plan.finish_reason), None),
        }
    }

    fn frame(&self, choices: Value, usage: Value) -> Bytes {
        let mut chunk = self.head.clone();
        chunk.insert("choices".into(), choices);
        if self.include_usage {
            chunk.insert("usage".into(), usage);
        }
        Bytes::from(format!("data: {}\n\n", Value::Object(chunk)))
    }
}

/// `{key: value}`.
fn one(key: &str, value: Value) -> Value {
    let mut map = Map::new();
    map.insert(key.to_owned(), value);
    Value::Object(map)
}

/// The byte length of the next piece of `text`: as many whole words as fit in
/// [`MAX_PIECE_CHARS`] characters (a cut falls before a space that ends a word), a word longer
/// than that cut at a character boundary that keeps combining marks, variation selectors, joiners
/// and skin tones with the character before them where possible. Never empty when `text` is not,
/// never more than [`MAX_PIECE_CHARS`] characters; for ordinary text a piece averages over
/// half the bound, so a text of `n` characters makes at most about `n / 5 + 2` pieces.
pub fn next_piece(text: &str) -> usize {
    let mut word_cut = 0;
    let mut cuts = [0usize; MAX_PIECE_CHARS + 1];
    let mut prev: Option<char> = None;
    for (n, (at, c)) in text.char_indices().enumerate() {
        if n == MAX_PIECE_CHARS {
            if c.is_whitespace() && prev.is_some_and(|p| !p.is_whitespace()) {
                return at;
            }
            if word_cut > 0 {
                return word_cut;
            }
            // One word longer than the bound: cut it, keeping a character with what extends it.
            cuts[n] = at;
            return (1..=MAX_BACKOFF_CHARS)
                .map(|back| n - back + 1)
                .find(|&k| safe_cut(text, cuts[k]))
                .map_or(at, |k| cuts[k]);
        }
        cuts[n] = at;
        if c.is_whitespace() && prev.is_some_and(|p| !p.is_whitespace()) {
            word_cut = at;
        }
        prev = Some(c);
    }
    text.len()
}

/// Whether cutting `text` at byte `at` (a character boundary) keeps every character with what
/// extends it (a best effort without Unicode's grapheme tables: the client joins pieces anyway).
fn safe_cut(text: &str, at: usize) -> bool {
    let (before, after) = text.split_at(at);
    match (before.chars().next_back(), after.chars().next()) {
        // Regional indicators pair into flags: a cut between two falls between flags only after an
        // even run of them.
        (Some(b), Some(a)) if regional(b) && regional(a) => {
            before.chars().rev().take_while(|&c| regional(c)).count() % 2 == 0
        }
        (Some(b), Some(a)) => !(extends(a) || b == '\u{200D}'),
        _ => false,
    }
}

fn extends(c: char) -> bool {
    matches!(c as u32,
        0x0300..=0x036F | 0x0483..=0x0489 | 0x0591..=0x05BD | 0x0610..=0x061A | 0x064B..=0x065F
        | 0x0900..=0x0903 | 0x093A..=0x094F | 0x0E31..=0x0E3A | 0x0E47..=0x0E4E | 0x1160..=0x11FF
        | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x200C..=0x200D | 0x20D0..=0x20FF | 0x3099..=0x309A
        | 0xFE00..=0xFE0F | 0xFE20..=0xFE2F | 0x1F3FB..=0x1F3FF | 0xE0020..=0xE007F | 0xE0100..=0xE01EF)
}

fn regional(c: char) -> bool {
    matches!(c as u32, 0x1F1E6..=0x1F1FF)
}
