//! Assembling streams into the completion one cache entry holds: OpenAI streams from fixtures give
//! the non-streamed completion; Anthropic and Gemini streams, translated, give what their
//! non-streamed answers give; cut, failed, malformed and oversized streams are not complete.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use bytes::Bytes;
use llm_edge_cache::providers::assemble::{Assembler, NotComplete};
use llm_edge_cache::providers::parse_success;
use llm_edge_cache::providers::stream::SseTranslator;
use llm_edge_cache::routing::table::{ProviderKind, Target};
use serde_json::{json, Value};
use support::{fixture, target};

const LIMIT: usize = 1 << 20;

/// Assembles `sse` fed in pieces of `step` bytes.
fn assemble(sse: &str, step: usize) -> Result<Value, NotComplete> {
    let mut assembler = Assembler::new(LIMIT);
    for piece in sse.as_bytes().chunks(step) {
        assembler.push(piece);
    }
    let answer = assembler.finish()?;
    Ok(serde_json::from_slice(&answer.body).expect("the completion is JSON"))
}

fn json_fixture(path: &str) -> Value {
    serde_json::from_str(&fixture(path)).expect("fixture is JSON")
}

#[test]
fn the_openai_stream_fixture_assembles_into_its_completion() {
    let sse = fixture("openai/stream_ok.sse");
    let expected = json!({
        "id": "chatcmpl-123", "object": "chat.completion", "created": 1694268190, "model": "gpt-4o-mini",
        "system_fingerprint": "fp_44709d6fcb",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "logprobs": null, "finish_reason": "stop"}]
    });
    for step in [1, 5, 77, sse.len()] {
        assert_eq!(assemble(&sse, step), Ok(expected.clone()), "pieces of {step} bytes");
    }
    let mut assembler = Assembler::new(LIMIT);
    assembler.push(sse.as_bytes());
    assert_eq!(assembler.finish().expect("complete").model, "gpt-4o-mini");
}

#[test]
fn a_stream_with_usage_assembles_into_the_non_streamed_answer() {
    let mut expected = json_fixture("openai/ok.json");
    // The one field a stream does not carry: an empty annotations list.
    expected["choices"][0]["message"].as_object_mut().expect("message").remove("annotations");
    assert_eq!(assemble(&fixture("openai/stream_usage.sse"), 9), Ok(expected));
}

#[test]
fn tool_call_deltas_merge_by_index_into_the_non_streamed_tool_call() {
    let mut expected = json_fixture("openai/tool_call.json");
    expected["choices"][0]["message"]["refusal"] = Value::Null;
    let got = assemble(&fixture("openai/stream_tool_call.sse"), 13).expect("complete");
    assert_eq!(got, expected);

    // Two calls whose fragments interleave; the id and name come from the first delta only.
    let chunk = |calls: Value| json!({"id": "c", "created": 1, "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": calls}}]});
    let mut assembler = Assembler::new(LIMIT);
    assembler.push_chunk(&chunk(
        json!([{"index": 1, "id": "b", "type": "function", "function": {"name": "two", "arguments": ""}}]),
    ));
    assembler.push_chunk(&chunk(
        json!([{"index": 0, "id": "a", "type": "function", "function": {"name": "one", "arguments": "{\"x\""}}]),
    ));
    assembler.push_chunk(&chunk(json!([{"index": 1, "function": {"arguments": "{}"}}, {"index": 0, "id": "a", "function": {"name": "one", "arguments": ":1}"}}])));
    assembler.push_chunk(&json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}));
    assembler.provider_finished();
    let v: Value = serde_json::from_slice(&assembler.finish().expect("complete").body).expect("json");
    assert_eq!(
        v["choices"][0]["message"],
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "one", "arguments": "{\"x\":1}"}},
            {"id": "b", "type": "function", "function": {"name": "two", "arguments": "{}"}}
        ]})
    );
}

#[test]
fn interleaved_choices_assemble_by_index() {
    let mut expected = json_fixture("openai/n2.json");
    expected.as_object_mut().expect("object").remove("usage");
    assert_eq!(assemble(&fixture("openai/stream_n2.sse"), 31), Ok(expected));
}

/// Feeds a provider's stream through the translator and the translated bytes to an assembler;
/// `with_end` also feeds the translator's end (usage chunk and `[DONE]`), else the caller says
/// when the provider's terminal event was seen.
fn translate_and_assemble(t: &Target, sse: &str, with_end: bool) -> Result<Value, NotComplete> {
    let mut translator = SseTranslator::new(t, "requested", 1_700_000_000, with_end).expect("translated");
    let mut assembler = Assembler::new(LIMIT);
    for piece in sse.as_bytes().chunks(11) {
        assembler.push(&translator.push(piece).expect("translates"));
    }
    if with_end {
        if let Ok(end) = translator.finish() {
            assembler.push(&end);
        }
    } else if translator.provider_finished() {
        assembler.provider_finished();
    }
    let answer = assembler.finish()?;
    Ok(serde_json::from_slice(&answer.body).expect("json"))
}

#[test]
fn translated_streams_assemble_like_their_non_streamed_answers() {
    let cases = [
        (ProviderKind::Anthropic, "anthropic/stream_ok"),
        (ProviderKind::Anthropic, "anthropic/stream_tool_use"),
        (ProviderKind::Gemini, "gemini/stream_ok"),
    ];
    for (kind, name) in cases {
        let t = target(kind, "requested");
        let whole =
            parse_success(&t, Bytes::from(fixture(&format!("{name}.whole.json"))), "requested", 1_700_000_000_000)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        let whole: Value = serde_json::from_slice(&whole.body).expect("json");
        let sse = fixture(&format!("{name}.sse"));
        for with_end in [true, false] {
            let got = translate_and_assemble(&t, &sse, with_end).unwrap_or_else(|e| panic!("{name}: {e}"));
            for field in ["id", "object", "created", "model"] {
                assert_eq!(got[field], whole[field], "{name}: {field}");
            }
            let (g, w) = (&got["choices"][0], &whole["choices"][0]);
            assert_eq!(g["finish_reason"], w["finish_reason"], "{name}");
            assert_eq!(g["message"]["content"], w["message"]["content"], "{name}");
            let calls = |v: &Value| -> Vec<(Value, Value, Value, Value)> {
                v["message"]["tool_calls"].as_array().map_or_else(Vec::new, |calls| {
                    calls
                        .iter()
                        .map(|c| {
                            let args = c["function"]["arguments"].as_str().expect("string arguments");
                            let args: Value = serde_json::from_str(args).expect("arguments are JSON");
                            (c["id"].clone(), c["type"].clone(), c["function"]["name"].clone(), args)
                        })
                        .collect()
                })
            };
            assert_eq!(calls(g), calls(w), "{name}");
            if with_end {
                for count in ["prompt_tokens", "completion_tokens", "total_tokens"] {
                    assert_eq!(got["usage"][count], whole["usage"][count], "{name}: {count}");
                }
            } else {
                assert!(got.get("usage").is_none(), "{name}: no usage chunk was asked for");
            }
        }
    }
}

#[test]
fn a_stream_without_its_end_is_not_complete() {
    let sse = fixture("openai/stream_ok.sse");
    let without_done = sse.replace("data: [DONE]\n\n", "");
    assert_eq!(assemble(&without_done, 7), Err(NotComplete::Cut));
    let without_finish: String = sse.split_inclusive("\n\n").filter(|e| !e.contains("\"stop\"")).collect();
    assert_eq!(assemble(&without_finish, 7), Err(NotComplete::Unfinished), "[DONE] before any finish_reason");
    assert_eq!(assemble("", 1), Err(NotComplete::Cut));
    assert_eq!(assemble("data: [DONE]\n\n", 1), Err(NotComplete::Unfinished), "no choice at all");
    let n2 = fixture("openai/stream_n2.sse");
    let one_unfinished: String =
        n2.split_inclusive("\n\n").filter(|e| !(e.contains("\"index\":1") && e.contains("\"stop\""))).collect();
    assert_eq!(assemble(&one_unfinished, 50), Err(NotComplete::Unfinished), "choice 1 never finished");

    // Anthropic cut before message_stop: the translator never saw the end, so neither did we.
    let t = target(ProviderKind::Anthropic, "c");
    let anthropic = fixture("anthropic/stream_ok.sse");
    let cut = &anthropic[..anthropic.find("event: message_stop").expect("has a stop")];
    assert_eq!(translate_and_assemble(&t, cut, false), Err(NotComplete::Cut));
    assert_eq!(translate_and_assemble(&t, cut, true), Err(NotComplete::Cut));
    let gemini = fixture("gemini/stream_ok.sse");
    let no_finish: String = gemini.split_inclusive("\r\n\r\n").filter(|e| !e.contains("finishReason")).collect();
    assert_eq!(translate_and_assemble(&target(ProviderKind::Gemini, "g"), &no_finish, false), Err(NotComplete::Cut));
}

#[test]
fn an_error_event_is_not_complete() {
    let failed = fixture("openai/stream_error.sse");
    let mut assembler = Assembler::new(LIMIT);
    assembler.push(failed.as_bytes());
    assert_eq!(assembler.abandoned(), Some(NotComplete::ErrorEvent), "known as soon as it arrives");
    // Whatever follows, even a proper end, changes nothing.
    assembler.push(fixture("openai/stream_ok.sse").as_bytes());
    assert_eq!(assembler.finish().map(|_| ()), Err(NotComplete::ErrorEvent));

    let named = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\nevent: error\ndata: {\"message\":\"overloaded\"}\n\n";
    assert_eq!(assemble(named, 4), Err(NotComplete::ErrorEvent));
    let rendered = NotComplete::ErrorEvent.to_string();
    assert!(!rendered.contains("Sorry") && !rendered.contains("overloaded"), "no provider text: {rendered}");
}

#[test]
fn malformed_streams_are_not_complete() {
    let sse = fixture("openai/stream_ok.sse");
    let garbled = sse.replacen("{\"content\":\"Hello\"}", "{\"content\":", 1);
    assert!(matches!(assemble(&garbled, 10), Err(NotComplete::Malformed(_))));
    let after_done = format!("{sse}{}", sse.lines().next().expect("a chunk line")) + "\n\n";
    assert!(matches!(assemble(&after_done, 10), Err(NotComplete::Malformed(_))), "a chunk after [DONE]");
    assert!(matches!(assemble("data: [1,2]\n\n", 3), Err(NotComplete::Malformed(_))));
}

#[test]
fn the_size_bound_stops_accumulation() {
    let sse = fixture("openai/stream_usage.sse");
    let mut small = Assembler::new(200);
    let mut gave_up_at = None;
    for (i, line) in sse.split_inclusive("\n\n").enumerate() {
        small.push(line.as_bytes());
        if gave_up_at.is_none() && small.abandoned().is_some() {
            gave_up_at = Some(i);
        }
    }
    assert!(gave_up_at.is_some_and(|i| i > 0), "gave up part way: {gave_up_at:?}");
    assert_eq!(small.abandoned(), Some(NotComplete::TooLarge { limit: 200 }));
    assert_eq!(small.bytes_held(), small.bytes_held().min(200 + 600), "held no more than the bound and one chunk");
    // The caller goes on forwarding: a long stream after giving up costs nothing.
    let held = small.bytes_held();
    for _ in 0..1000 {
        small.push(sse.as_bytes());
    }
    assert_eq!(small.bytes_held(), held);
    assert_eq!(small.finish().map(|_| ()), Err(NotComplete::TooLarge { limit: 200 }));

    // One endless line is stopped by the parser's bound, not held.
    let mut endless = Assembler::new(1000);
    endless.push(b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"");
    for _ in 0..100 {
        endless.push(&[b'a'; 1024]);
    }
    assert_eq!(endless.abandoned(), Some(NotComplete::TooLarge { limit: 1000 }));

    // The bound counts the answer, not the stream's framing: a 2 kB answer in 400 chunks fits 4 kB.
    let chunk = |c: &str| {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-framing-is-long", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": c}, "logprobs": null, "finish_reason": null}]})
        )
    };
    let mut stream: String = (0..400).map(|_| chunk("abcde")).collect();
    stream.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
    assert!(stream.len() > 40_000);
    let mut fits = Assembler::new(4_000);
    fits.push(stream.as_bytes());
    assert!(fits.finish().is_ok());
}
