//! Replaying a stored completion as an OpenAI stream: the chunks have OpenAI's shape, text comes
//! in several bounded pieces, and assembling the replay gives back the stored completion.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use bytes::Bytes;
use llm_edge_cache::providers::assemble::Assembler;
use llm_edge_cache::providers::parse_success;
use llm_edge_cache::providers::replay::{next_piece, replay, NotACompletion, MAX_PIECE_CHARS};
use llm_edge_cache::routing::table::ProviderKind;
use serde_json::{json, Value};
use support::{fixture, target};

fn frames(body: &[u8], include_usage: bool) -> Vec<Bytes> {
    replay(body, include_usage).expect("a completion").collect()
}

/// The chunks of a replay, checking each frame is one `data:` event; the last must be `[DONE]`.
fn chunks(frames: &[Bytes]) -> Vec<Value> {
    let (done, rest) = frames.split_last().expect("frames");
    assert_eq!(&done[..], b"data: [DONE]\n\n");
    rest.iter()
        .map(|f| {
            let text = std::str::from_utf8(f).expect("utf-8");
            let data = text.strip_prefix("data: ").and_then(|t| t.strip_suffix("\n\n")).expect("one data event");
            assert!(!data.contains('\n'), "one line per event");
            serde_json::from_str(data).expect("a JSON chunk")
        })
        .collect()
}

fn round_trip(body: &[u8], include_usage: bool) -> Value {
    let mut assembler = Assembler::new(1 << 20);
    for frame in frames(body, include_usage) {
        assembler.push(&frame);
    }
    serde_json::from_slice(&assembler.finish().expect("the replay is complete").body).expect("json")
}

fn stored(path: &str) -> Vec<u8> {
    fixture(path).into_bytes()
}

#[test]
fn replay_then_assemble_gives_back_the_completion() {
    let anthropic = parse_success(
        &target(ProviderKind::Anthropic, "c"),
        Bytes::from(fixture("anthropic/tool_use.json")),
        "c",
        1_700_000_000_000,
    )
    .expect("ok");
    let bodies =
        [stored("openai/ok.json"), stored("openai/tool_call.json"), stored("openai/n2.json"), anthropic.body.to_vec()];
    for body in &bodies {
        let completion: Value = serde_json::from_slice(body).expect("json");
        assert_eq!(round_trip(body, true), completion, "with usage");
        let mut without_usage = completion.clone();
        without_usage.as_object_mut().expect("object").remove("usage");
        assert_eq!(round_trip(body, false), without_usage, "without usage");
    }
}

#[test]
fn chunks_have_openai_shape() {
    let body = stored("openai/ok.json");
    let c = chunks(&frames(&body, true));
    for chunk in &c {
        assert_eq!(chunk["id"], "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG");
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["created"], 1741570283);
        assert_eq!(chunk["model"], "gpt-4o-mini-2024-07-18");
        assert_eq!(chunk["system_fingerprint"], "fp_06737a9306");
    }
    let first = &c[0]["choices"][0];
    assert_eq!(first["index"], 0);
    assert_eq!(first["delta"]["role"], "assistant");
    assert_eq!(first["delta"]["content"], "");
    assert_eq!(first["finish_reason"], Value::Null);
    let (usage, body_chunks) = c.split_last().expect("chunks");
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["total_tokens"], 19);
    assert!(body_chunks.iter().all(|x| x["usage"].is_null() && x.as_object().is_some_and(|o| o.contains_key("usage"))));
    let finish = &body_chunks.last().expect("a finish chunk")["choices"][0];
    assert_eq!(finish["delta"], json!({}));
    assert_eq!(finish["finish_reason"], "stop");
    let text: String = c.iter().filter_map(|x| x["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "Hello! How can I help you today?");

    let plain = chunks(&frames(&body, false));
    assert_eq!(plain.len(), c.len() - 1, "no usage chunk unless asked for");
    assert!(plain.iter().all(|x| x.get("usage").is_none()));
}

#[test]
fn tool_calls_replay_as_a_first_delta_then_argument_fragments() {
    let c = chunks(&frames(&stored("openai/tool_call.json"), false));
    assert_eq!(c[0]["choices"][0]["delta"], json!({"role": "assistant", "content": null}));
    let deltas: Vec<&Value> = c.iter().filter_map(|x| x["choices"][0]["delta"].get("tool_calls")).collect();
    assert!(deltas.len() > 2, "the arguments come in fragments: {deltas:?}");
    assert_eq!(
        deltas[0],
        &json!([{"index": 0, "id": "call_abc123", "type": "function", "function": {"name": "get_current_weather", "arguments": ""}}])
    );
    for d in &deltas[1..] {
        let keys = |v: &Value| {
            let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&d[0]), ["function", "index"]);
        assert_eq!(keys(&d[0]["function"]), ["arguments"]);
    }
    let args: String = deltas[1..].iter().filter_map(|d| d[0]["function"]["arguments"].as_str()).collect();
    assert_eq!(args, "{\n\"location\": \"Boston, MA\"\n}");
    assert_eq!(c.last().expect("chunks")["choices"][0]["finish_reason"], "tool_calls");
}

#[test]
fn choices_replay_by_index() {
    let c = chunks(&frames(&stored("openai/n2.json"), false));
    for (index, expected) in [(0, "Red sky at night."), (1, "Blue sky, no rain.")] {
        let mine: Vec<&Value> = c.iter().map(|x| &x["choices"][0]).filter(|ch| ch["index"] == index).collect();
        let text: String = mine.iter().filter_map(|ch| ch["delta"]["content"].as_str()).collect();
        assert_eq!(text, expected);
        assert_eq!(mine.last().expect("a finish")["finish_reason"], "stop");
    }
}

const PARAGRAPH: &str = "Caching a streamed answer means assembling it first: the gateway tees the origin's \
    stream, forwards every chunk to the client as it arrives, and keeps a bounded copy. Only when the \
    provider says the answer is complete is the copy stored. Naïve café owners in Zürich 👩‍👩‍👧‍👦🇨🇭 \
    read https://example.com/a/very/long/path/without/any/spaces/at/all/in/it?query=string&x=1 and \
    e\u{301}e\u{301}e\u{301}e\u{301}e\u{301}e\u{301}e\u{301}e\u{301}e\u{301}e\u{301}e\u{301}e\u{301}.";

#[test]
fn text_replays_in_several_bounded_pieces() {
    let body = json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": PARAGRAPH}, "logprobs": null, "finish_reason": "stop"}]});
    let c = chunks(&frames(body.to_string().as_bytes(), false));
    let pieces: Vec<&str> = c[1..].iter().filter_map(|x| x["choices"][0]["delta"]["content"].as_str()).collect();
    let chars = PARAGRAPH.chars().count();
    assert_eq!(pieces.concat(), PARAGRAPH);
    assert!(pieces.len() >= chars / MAX_PIECE_CHARS, "{} pieces for {chars} characters", pieces.len());
    assert!(pieces.len() <= chars / 5 + 2, "{} pieces for {chars} characters", pieces.len());
    for piece in &pieces {
        assert!(!piece.is_empty());
        assert!(piece.chars().count() <= MAX_PIECE_CHARS, "piece too long: {piece:?}");
    }
    let at_words = pieces.iter().filter(|p| p.starts_with(' ')).count();
    assert!(at_words > pieces.len() / 2, "cuts fall between words where they can: {pieces:?}");
    assert!(!pieces.iter().any(|p| p.starts_with('\u{301}') || p.starts_with('\u{200D}')), "{pieces:?}");
}

#[test]
fn pieces_keep_words_and_marks_together() {
    assert_eq!(next_piece(""), 0);
    assert_eq!(next_piece("short"), 5);
    let words = "one two three four five six";
    assert_eq!(&words[..next_piece(words)], "one two three four");
    let exact = "abcdefghijklmnopqrst uvw";
    assert_eq!(&exact[..next_piece(exact)], "abcdefghijklmnopqrst", "a word ending at the bound");
    let long = "a".repeat(50);
    assert_eq!(next_piece(&long), MAX_PIECE_CHARS);
    let accents = "e\u{301}".repeat(20);
    let cut = next_piece(&accents);
    assert!(accents[..cut].ends_with('\u{301}'), "an accent stays with its letter");
    let marks = format!("a{}", "\u{301}".repeat(40));
    assert_eq!(marks[..next_piece(&marks)].chars().count(), MAX_PIECE_CHARS, "no safe cut: cut at the bound");
    let flags = "x🇨🇭🇫🇷🇩🇪🇮🇹🇪🇸🇵🇹🇳🇱🇧🇪🇦🇹🇬🇧🇮🇪";
    let cut = next_piece(flags);
    assert_eq!(flags[..cut].chars().count(), MAX_PIECE_CHARS - 1, "the 20th character would split a flag");
    assert!(next_piece(&flags[1..]) == flags[1..].char_indices().nth(MAX_PIECE_CHARS).expect("long").0);
}

#[test]
fn what_is_not_a_completion_is_refused() {
    for body in [&b"not json"[..], b"[]", b"{\"choices\": 3}", b"{\"choices\": [{\"message\": \"x\"}]}"] {
        assert_eq!(replay(body, false).map(|_| ()), Err(NotACompletion), "{}", String::from_utf8_lossy(body));
    }
}
