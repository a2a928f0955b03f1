//! The relay of one provider stream (`providers::relay`): whole events to the client whatever the
//! network pieces, the first content event, the provider's terminal event, usage kept from a
//! client that did not ask for it, and errors that never pass through.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use llm_edge_cache::providers::assemble::{Assembler, NotComplete};
use llm_edge_cache::providers::relay::{has_content, Relay, RelayError};
use llm_edge_cache::providers::stream::SseTranslator;
use llm_edge_cache::routing::table::ProviderKind;
use serde_json::{json, Value};
use support::{fixture, target};

/// Feeds `sse` in pieces of `step` bytes; returns what the client got, and the relay.
fn relay_all(mut relay: Relay, sse: &str, step: usize) -> (Result<String, RelayError>, Relay) {
    let mut out = Vec::new();
    for piece in sse.as_bytes().chunks(step) {
        match relay.push(piece) {
            Ok(bytes) => out.extend_from_slice(&bytes),
            Err(e) => return (Err(e), relay),
        }
    }
    let result = relay.end().map(|last| {
        out.extend_from_slice(&last);
        String::from_utf8(out).expect("utf-8")
    });
    (result, relay)
}

fn openai(storing: bool, hide_usage: bool) -> Relay {
    Relay::new(None, storing.then(|| Assembler::new(1 << 20)), hide_usage)
}

#[test]
fn openai_events_pass_byte_for_byte_in_whole_events_whatever_the_pieces() {
    let sse = fixture("openai/stream_usage.sse");
    for step in [1, 7, 100, sse.len()] {
        let (out, _) = relay_all(openai(false, false), &sse, step);
        assert_eq!(out.expect("complete"), sse, "pieces of {step}");
    }
    // Comments, `event:` names, `id:` lines and CRLF framing are not forwarded; the data is.
    let framed = "  : keep-alive\r\nid: 7\r\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\r\n\r\ndata: [DONE]\r\n\r\n";
    let (out, _) = relay_all(openai(false, false), framed, 3);
    assert_eq!(
        out.expect("complete"),
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"
    );
}

#[test]
fn the_first_content_event_and_the_terminal_event_are_seen() {
    let sse = fixture("openai/stream_ok.sse");
    let events: Vec<&str> = sse.split_inclusive("\n\n").collect();
    let mut relay = openai(true, false);
    relay.push(events[0].as_bytes()).expect("role");
    assert!(!relay.started(), "a role chunk shows nothing");
    relay.push(events[1].as_bytes()).expect("content");
    assert!(relay.started());
    assert!(!relay.complete());
    relay.push(events[2].as_bytes()).expect("finish");
    relay.push(events[3].as_bytes()).expect("[DONE]");
    assert!(relay.complete());
    assert!(relay.push(b"data: {\"late\": true}\n\n").expect("ignored").is_empty(), "nothing after the end is read");
    let answer = relay.answer().expect("assembled").expect("complete");
    let v: Value = serde_json::from_slice(&answer.body).expect("json");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello");
}

#[test]
fn content_is_text_a_tool_call_a_refusal_or_a_finish() {
    let chunk =
        |delta: Value, finish: Value| json!({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    assert!(!has_content(&chunk(json!({"role": "assistant", "content": "", "refusal": null}), Value::Null)));
    assert!(!has_content(&chunk(json!({}), Value::Null)));
    assert!(!has_content(&json!({"choices": [], "usage": {"total_tokens": 3}})));
    assert!(has_content(&chunk(json!({"content": "a"}), Value::Null)));
    assert!(has_content(&chunk(json!({"tool_calls": [{"index": 0, "id": "c"}]}), Value::Null)));
    assert!(has_content(&chunk(json!({"refusal": "no"}), Value::Null)));
    assert!(has_content(&chunk(json!({"reasoning_content": "hmm"}), Value::Null)));
    assert!(has_content(&chunk(json!({}), json!("stop"))), "an empty answer is an answer");
}

#[test]
fn usage_asked_for_the_cache_is_kept_from_the_client_and_stored() {
    let sse = fixture("openai/stream_usage.sse");
    let (out, mut relay) = relay_all(openai(true, true), &sse, 11);
    let out = out.expect("complete");
    assert!(!out.contains("usage"), "{out}");
    let expected: String = sse
        .split_inclusive("\n\n")
        .filter(|e| !e.contains("\"choices\":[]"))
        .map(|e| {
            let data = e.trim().strip_prefix("data: ").expect("data");
            match serde_json::from_str::<Value>(data) {
                Ok(mut v) => {
                    v.as_object_mut().expect("object").remove("usage");
                    format!("data: {v}\n\n")
                }
                Err(_) => e.to_owned(),
            }
        })
        .collect();
    assert_eq!(out, expected);
    let answer = relay.answer().expect("assembled").expect("complete");
    let v: Value = serde_json::from_slice(&answer.body).expect("json");
    assert_eq!(v["usage"]["total_tokens"], 19);
}

#[test]
fn errors_end_the_relay_and_never_pass_through() {
    let (out, mut relay) = relay_all(openai(true, false), &fixture("openai/stream_error.sse"), 5);
    assert_eq!(out, Err(RelayError::ErrorEvent));
    assert!(relay.answer().is_none(), "nothing assembled is kept");
    assert_eq!(relay.push(b"data: [DONE]\n\n"), Err(RelayError::ErrorEvent), "and it stays failed");
    let named = "event: error\ndata: {\"message\": \"overloaded\"}\n\n";
    assert_eq!(relay_all(openai(false, false), named, 4).0, Err(RelayError::ErrorEvent));
    let garbage = "data: {\"choices\": [\n\n";
    assert!(matches!(relay_all(openai(false, false), garbage, 4).0, Err(RelayError::Unreadable(_))));
}

#[test]
fn a_stream_without_its_terminal_event_is_cut() {
    let sse = fixture("openai/stream_ok.sse").replace("data: [DONE]\n\n", "");
    let (out, mut relay) = relay_all(openai(true, false), &sse, 9);
    assert_eq!(out, Err(RelayError::Cut));
    assert!(relay.answer().is_none());
    let mut relay = openai(true, false);
    relay.push(sse.as_bytes()).expect("events");
    assert!(relay.started() && !relay.complete());
    assert_eq!(relay.answer().map(|a| a.map(|_| ())), Some(Err(NotComplete::Cut)), "not complete: not stored");
}

#[test]
fn translated_streams_end_at_the_providers_terminal_event() {
    let t = target(ProviderKind::Anthropic, "c");
    let sse = fixture("anthropic/stream_ok.sse");
    // The cache asked for usage (the translator writes it); the client did not.
    let translator = SseTranslator::new(&t, "c", 1_700_000_000, true);
    let relay = Relay::new(translator, Some(Assembler::new(1 << 20)), true);
    let (out, mut relay) = relay_all(relay, &sse, 13);
    let out = out.expect("complete at message_stop");
    assert!(out.ends_with("data: [DONE]\n\n") && !out.contains("usage"), "{out}");
    assert!(relay.complete());
    let v: Value = serde_json::from_slice(&relay.answer().expect("assembled").expect("complete").body).expect("json");
    assert!(v["usage"]["total_tokens"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    let cut = &sse[..sse.find("event: message_stop").expect("a stop")];
    let translator = SseTranslator::new(&t, "c", 1_700_000_000, false);
    let (out, _) = relay_all(Relay::new(translator, None, false), cut, 13);
    assert_eq!(out, Err(RelayError::Cut));
    let error = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    let translator = SseTranslator::new(&t, "c", 1_700_000_000, false);
    assert_eq!(relay_all(Relay::new(translator, None, false), error, 13).0, Err(RelayError::ErrorEvent));
}
