//! The fake upstream's script: scripted actions, rules that hand them out in order, the
//! log of recorded calls, and the global call counter, all behind one lock so that tests
//! running in parallel (each with its own marker string) never see each other's effects.
//!
//! State and JSON parsing only: this module must not do IO or know any wire format.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

/// What to do with one matching call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionKind {
    /// A normal answer (JSON or SSE, as the request asks).
    Ok,
    /// An error status with an optional raw body (default: the format's error envelope).
    Status { status: u16, body: Option<String>, headers: BTreeMap<String, String> },
    /// 200 `application/json` whose body is cut-off, invalid JSON.
    Malformed,
    /// Send `after_chunks` events, then abort the connection (no final chunk, no `[DONE]`).
    CutStream { after_chunks: usize },
    /// A normal stream with `chunk_delay_ms` between events.
    SlowStream { chunk_delay_ms: u64 },
    /// Send `after_chunks` events (never the terminal ones), then nothing, with the connection
    /// kept open until the client goes away (a provider that stalls mid-stream).
    StallStream { after_chunks: usize },
}

/// One scripted action; `delay_ms` applies before the response headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub kind: ActionKind,
    pub delay_ms: u64,
    /// Lengthen the reply's text to this many words (filler words after the usual text), for
    /// long answers; `None`: the usual `fake reply #<n>: <last user text>`.
    pub words: Option<usize>,
    /// The only API key this call accepts; any other (or none) gets the endpoint's
    /// invalid-key error instead of `kind`. `None`: any key the endpoint accepts.
    pub api_key: Option<String>,
}

impl Action {
    pub const OK: Action = Action { kind: ActionKind::Ok, delay_ms: 0, words: None, api_key: None };

    /// Parses `{"kind":"ok","delay_ms":N}`, `{"kind":"status","status":500,
    /// "retry_after":"2","retry_after_ms":"1500","body":"...","headers":{...}}`,
    /// `{"kind":"malformed"}`, `{"kind":"cut_stream","after_chunks":N}`,
    /// `{"kind":"stall_stream","after_chunks":N}` or `{"kind":"slow_stream","chunk_delay_ms":N}`;
    /// any of them may add `"api_key":"K"`, and `"words":N` (a reply text of N words: a long
    /// answer without a long prompt).
    pub fn from_json(value: &Value) -> Result<Action, String> {
        let object = value.as_object().ok_or_else(|| format!("an action must be a JSON object, got {value}"))?;
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("an action needs a string \"kind\": {value}"))?;
        let number = |field: &str| -> Result<Option<u64>, String> {
            match object.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_u64().map(Some).ok_or_else(|| format!("\"{field}\" must be a non-negative integer")),
            }
        };
        let text = |field: &str| -> Result<Option<String>, String> {
            match object.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(_) => Err(format!("\"{field}\" must be a string or number")),
            }
        };
        let delay_ms = number("delay_ms")?.unwrap_or(0);
        let kind = match kind {
            "ok" => ActionKind::Ok,
            "malformed" => ActionKind::Malformed,
            "cut_stream" => ActionKind::CutStream {
                after_chunks: usize::try_from(number("after_chunks")?.unwrap_or(0))
                    .map_err(|_| "\"after_chunks\" is too large".to_string())?,
            },
            "slow_stream" => ActionKind::SlowStream { chunk_delay_ms: number("chunk_delay_ms")?.unwrap_or(100) },
            "stall_stream" => ActionKind::StallStream {
                after_chunks: usize::try_from(number("after_chunks")?.unwrap_or(0))
                    .map_err(|_| "\"after_chunks\" is too large".to_string())?,
            },
            "status" => {
                let status = number("status")?
                    .and_then(|s| u16::try_from(s).ok())
                    .filter(|s| (100..=599).contains(s))
                    .ok_or("a status action needs \"status\" between 100 and 599")?;
                let mut headers = BTreeMap::new();
                if let Some(v) = text("retry_after")? {
                    headers.insert("retry-after".to_string(), v);
                }
                if let Some(v) = text("retry_after_ms")? {
                    headers.insert("retry-after-ms".to_string(), v);
                }
                match object.get("headers") {
                    None | Some(Value::Null) => {}
                    Some(Value::Object(extra)) => {
                        for (name, v) in extra {
                            let v = v.as_str().ok_or("header values must be strings")?;
                            headers.insert(name.to_ascii_lowercase(), v.to_string());
                        }
                    }
                    Some(_) => return Err("\"headers\" must be an object of strings".into()),
                }
                ActionKind::Status { status, body: text("body")?, headers }
            }
            other => {
                return Err(format!(
                    "unknown action kind {other:?} (expected ok, status, malformed, \
                     cut_stream, stall_stream or slow_stream)"
                ))
            }
        };
        let words = number("words")?
            .map(|n| {
                usize::try_from(n)
                    .ok()
                    .filter(|n| *n <= MAX_WORDS)
                    .ok_or(format!("\"words\" must be at most {MAX_WORDS}"))
            })
            .transpose()?;
        Ok(Action { kind, delay_ms, words, api_key: text("api_key")? })
    }
}

/// The longest reply text an action may ask for, in words (about 1.5 MB of OpenAI stream).
pub const MAX_WORDS: usize = 100_000;

/// A rule: calls whose raw body or path contains `matcher` take the rule's next action.
#[derive(Debug, Clone)]
struct Rule {
    id: u64,
    matcher: String,
    actions: Vec<Action>,
    next: usize,
    repeat_last: bool,
}

impl Rule {
    fn next_action(&mut self) -> Action {
        if let Some(action) = self.actions.get(self.next) {
            self.next += 1;
            return action.clone();
        }
        match self.actions.last() {
            Some(last) if self.repeat_last => last.clone(),
            _ => Action::OK,
        }
    }
}

/// One call the upstream received, as reported by `GET /__control/calls`.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedCall {
    /// Global call number (also in the fake reply's text and id).
    pub n: u64,
    pub path: String,
    pub model: Option<String>,
    /// The raw `authorization` header, whatever the endpoint.
    pub authorization: Option<String>,
    /// Where the endpoint's credential came from: `authorization`, `x-api-key`,
    /// `x-goog-api-key` or `key` (query parameter); `None` if the call had none.
    pub auth_header: Option<String>,
    /// The credential's value as sent.
    pub auth: Option<String>,
    /// The raw request body (lossy UTF-8).
    pub body: String,
    /// Unix time in milliseconds when the call arrived.
    pub received_at_ms: u64,
}

/// What a call should get.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Global call number, starting at 1.
    pub n: u64,
    pub action: Action,
}

/// Rules, calls and the counter.
#[derive(Debug, Default)]
pub struct Script {
    rules: Vec<Rule>,
    calls: Vec<RecordedCall>,
    next_rule_id: u64,
    counter: u64,
}

impl Script {
    /// Adds a rule after the existing ones; the first matching rule wins.
    pub fn add_rule(&mut self, matcher: String, actions: Vec<Action>, repeat_last: bool) -> u64 {
        self.next_rule_id += 1;
        self.rules.push(Rule { id: self.next_rule_id, matcher, actions, next: 0, repeat_last });
        self.next_rule_id
    }

    pub fn clear_rules(&mut self) -> usize {
        std::mem::take(&mut self.rules).len()
    }

    /// Clears rules and recorded calls. The call counter keeps counting, so reply numbers
    /// stay unique for the life of the server.
    pub fn reset(&mut self) {
        self.rules.clear();
        self.calls.clear();
    }

    /// Records a call and decides its action, atomically. `credential` is `(source,
    /// value)`.
    pub fn on_call(
        &mut self,
        path: &str,
        model: Option<String>,
        authorization: Option<String>,
        credential: Option<(&str, &str)>,
        body: &str,
    ) -> Decision {
        self.counter += 1;
        let n = self.counter;
        self.calls.push(RecordedCall {
            n,
            path: path.to_string(),
            model,
            authorization,
            auth_header: credential.map(|(source, _)| source.to_string()),
            auth: credential.map(|(_, value)| value.to_string()),
            body: body.to_string(),
            received_at_ms: unix_ms(),
        });
        // The path counts too: Gemini names the model there, not in the body.
        let action = self
            .rules
            .iter_mut()
            .find(|rule| body.contains(&rule.matcher) || path.contains(&rule.matcher))
            .map_or(Action::OK, Rule::next_action);
        Decision { n, action }
    }

    /// Calls whose raw body or path contains `matcher` (all calls for `None`).
    pub fn calls(&self, matcher: Option<&str>) -> Vec<RecordedCall> {
        self.calls
            .iter()
            .filter(|call| matcher.is_none_or(|m| call.body.contains(m) || call.path.contains(m)))
            .cloned()
            .collect()
    }

    /// `[{"id","match","remaining","repeat_last"}]`, for debugging scripts.
    pub fn rules_json(&self) -> Value {
        Value::Array(
            self.rules
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "id": r.id,
                        "match": r.matcher,
                        "remaining": r.actions.len().saturating_sub(r.next),
                        "repeat_last": r.repeat_last,
                    })
                })
                .collect(),
        )
    }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_actions() {
        let a = Action::from_json(&json!({"kind":"status","status":429,"retry_after":2})).unwrap();
        match a.kind {
            ActionKind::Status { status, headers, .. } => {
                assert_eq!(status, 429);
                assert_eq!(headers.get("retry-after").map(String::as_str), Some("2"));
            }
            other => panic!("{other:?}"),
        }
        assert!(Action::from_json(&json!({"kind":"nope"})).is_err());
        assert!(Action::from_json(&json!({"kind":"status"})).is_err());
        assert_eq!(Action::from_json(&json!({"kind":"ok","delay_ms":5})).unwrap().delay_ms, 5);
        let stall = Action::from_json(&json!({"kind":"stall_stream","after_chunks":2})).unwrap();
        assert_eq!(stall.kind, ActionKind::StallStream { after_chunks: 2 });
        let keyed = Action::from_json(&json!({"kind":"malformed","api_key":"k1"})).unwrap();
        assert_eq!((keyed.kind, keyed.api_key.as_deref()), (ActionKind::Malformed, Some("k1")));
        assert_eq!(Action::from_json(&json!({"kind":"ok","words":2000})).unwrap().words, Some(2000));
        assert!(Action::from_json(&json!({"kind":"ok","words":-1})).is_err());
        assert!(Action::from_json(&json!({"kind":"ok","words":MAX_WORDS + 1})).is_err());
    }

    #[test]
    fn rules_hand_out_actions_in_order_then_fall_back() {
        let mut s = Script::default();
        let malformed = Action { kind: ActionKind::Malformed, delay_ms: 0, words: None, api_key: None };
        s.add_rule("m1".into(), vec![malformed.clone()], false);
        s.add_rule("m2".into(), vec![malformed.clone()], true);
        assert_eq!(s.on_call("/", None, None, None, "x m1").action, malformed);
        assert_eq!(s.on_call("/", None, None, None, "x m1").action, Action::OK);
        assert_eq!(s.on_call("/", None, None, None, "m2").action, malformed);
        assert_eq!(s.on_call("/", None, None, None, "m2").action, malformed);
        assert_eq!(s.on_call("/", None, None, None, "other").n, 5);
        assert_eq!(s.calls(Some("m1")).len(), 2);
        assert_eq!(s.calls(None).len(), 5);
        s.reset();
        assert_eq!(s.calls(None).len(), 0);
        assert_eq!(s.on_call("/", None, None, None, "m1").n, 6);
    }
}
