//! What is stored: only answers worth replaying. At least one choice, every `finish_reason` in
//! `stop` / `tool_calls` (`length` only with `CACHE_TRUNCATED_ANSWERS`), no refusal or content
//! filter, tool-call arguments that are valid JSON. A skipped store is served, logged with its
//! reason and counted.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use llm_edge_cache::cache::storable::{replayable, NotReplayable};
use llm_edge_cache::testing::Scripted;
use serde_json::{json, Value};
use support::*;

fn completion(choices: Value) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "m", "choices": choices})
}

fn message_choice(finish: Value, message: Value) -> Value {
    json!([{"index": 0, "message": message, "finish_reason": finish}])
}

fn verdict(v: &Value, allow_truncated: bool) -> Result<(), NotReplayable> {
    replayable(v.to_string().as_bytes(), allow_truncated)
}

#[test]
fn the_rules_one_by_one() {
    let text = json!({"role": "assistant", "content": "hi"});
    let call = |args: &str| json!({"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": args}}]});
    assert_eq!(verdict(&completion(message_choice(json!("stop"), text.clone())), false), Ok(()));
    assert_eq!(verdict(&completion(message_choice(json!("tool_calls"), call(r#"{"a":1}"#))), false), Ok(()));
    assert_eq!(verdict(&completion(json!([])), false), Err(NotReplayable::NoChoices));
    assert_eq!(
        verdict(&completion(message_choice(json!("length"), text.clone())), false),
        Err(NotReplayable::Truncated)
    );
    assert_eq!(verdict(&completion(message_choice(json!("length"), text.clone())), true), Ok(()));
    assert_eq!(
        verdict(&completion(message_choice(json!("content_filter"), text.clone())), true),
        Err(NotReplayable::ContentFilter)
    );
    assert_eq!(verdict(&completion(message_choice(json!(null), text.clone())), false), Err(NotReplayable::Unfinished));
    let refusal = json!({"role": "assistant", "content": null, "refusal": "I can't help with that."});
    assert_eq!(verdict(&completion(message_choice(json!("stop"), refusal)), false), Err(NotReplayable::Refusal));
    assert_eq!(
        verdict(&completion(message_choice(json!("tool_calls"), call(r#"{"a":1"#))), false),
        Err(NotReplayable::InvalidToolArguments)
    );
    let two = json!([
        {"index": 0, "message": text, "finish_reason": "stop"},
        {"index": 1, "message": {"role": "assistant", "content": "cut"}, "finish_reason": "length"}
    ]);
    assert_eq!(verdict(&completion(two), false), Err(NotReplayable::Truncated), "every choice must be complete");
    assert_eq!(replayable(b"not json", false), Err(NotReplayable::NotACompletion));
    for file in ["openai/ok.json", "openai/tool_call.json"] {
        assert_eq!(replayable(fixture(file).as_bytes(), false), Ok(()), "{file}");
    }
}

#[test]
fn an_answer_not_worth_replaying_is_served_logged_counted_and_not_stored() {
    let w = World::new();
    let cases = [
        (
            "filtered",
            completion(message_choice(json!("content_filter"), json!({"role": "assistant", "content": ""}))),
            "content_filter",
        ),
        (
            "cut",
            completion(message_choice(json!("length"), json!({"role": "assistant", "content": "half"}))),
            "truncated",
        ),
        ("empty", completion(json!([])), "no_choices"),
    ];
    for (name, answer, reason) in cases {
        let a = answer.clone();
        w.upstream(move |_| Scripted::json(200, &a));
        let body = body_with(name);
        let r = w.chat(&body, &[]);
        assert_eq!(r.status, 200, "{name}: served");
        assert_eq!(r.json(), answer, "{name}: as the provider sent it");
        assert_eq!(
            r.header("cache-status"),
            Some("redis; fwd=uri-miss, edge-kv; fwd=uri-miss"),
            "{name}: nothing stored"
        );
        w.host.run_background();
        let key = key_for("tenant-a", &body);
        assert!(w.host.kv_raw(key.as_str()).is_none() && w.upstash.raw(&redis_key(&key)).is_none(), "{name}");
        assert!(
            w.host
                .logs()
                .iter()
                .any(|l| l.contains("store_skipped") && l.contains(&format!("\"reason\":\"{reason}\""))),
            "{name}: logged with its reason"
        );
        let health = w.admin_get("/admin/health").json();
        assert_eq!(health["not_stored"][reason], 1, "{name}: counted: {health}");
    }
}

#[test]
fn truncated_answers_are_stored_when_the_operator_allows_it() {
    let w = World::with_config(config_with(&[("CACHE_TRUNCATED_ANSWERS", "true")]));
    let answer = completion(message_choice(json!("length"), json!({"role": "assistant", "content": "half"})));
    w.upstream(move |_| Scripted::json(200, &answer));
    let body = body_with("allowed cut");
    w.chat(&body, &[]);
    w.host.run_background();
    assert_eq!(w.chat(&body, &[]).header("x-cache"), Some("HIT"));
}
