//! Reads a streamed chat completion back, to check a stream's answer (outside the timed part):
//! the events must be whole `data:` events of OpenAI `chat.completion.chunk`s, with no error
//! event, ending with `data: [DONE]`; the text is the concatenation of every
//! `choices[0].delta.content`.
//!
//! Checking only: nothing here times or sends anything.

use anyhow::{bail, Context as _};
use serde_json::Value;

use crate::http::Response;

/// The text a streamed answer carries, once its framing and end are checked.
pub fn streamed_text(response: &Response) -> anyhow::Result<String> {
    let kind = response.header("content-type").unwrap_or("");
    if !kind.starts_with("text/event-stream") {
        bail!("expected a text/event-stream answer, got content-type {kind:?}: {:.200}", response.text());
    }
    text_of(&response.body)
}

fn text_of(body: &[u8]) -> anyhow::Result<String> {
    let body = std::str::from_utf8(body).context("the stream is not UTF-8")?;
    let Some(events) = body.strip_suffix("data: [DONE]\n\n") else {
        bail!("the stream does not end with data: [DONE]: ...{}", tail(body));
    };
    let mut text = String::new();
    for event in events.split_terminator("\n\n") {
        let data = event.strip_prefix("data: ").filter(|d| !d.contains('\n'));
        let Some(data) = data else { bail!("not one data line: {event:.200}") };
        let chunk: Value =
            serde_json::from_str(data).with_context(|| format!("an event that is not JSON: {data:.200}"))?;
        if chunk.get("error").is_some() {
            bail!("an error event: {data:.300}");
        }
        if chunk["object"] != "chat.completion.chunk" {
            bail!("not a chat.completion.chunk: {data:.200}");
        }
        if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str() {
            text.push_str(piece);
        }
    }
    Ok(text)
}

fn tail(body: &str) -> &str {
    let mut at = body.len().saturating_sub(200);
    while !body.is_char_boundary(at) {
        at += 1;
    }
    &body[at..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_of_a_stream() {
        let chunk = |c: &str| {
            format!("data: {{\"object\":\"chat.completion.chunk\",\"choices\":[{{\"delta\":{{\"content\":\"{c}\"}}}}]}}\n\n")
        };
        let body = format!("{}{}{}data: [DONE]\n\n", chunk(""), chunk("Hello "), chunk("world"));
        assert_eq!(text_of(body.as_bytes()).unwrap(), "Hello world");
        // Cut, an error event, an event over two lines: refused.
        assert!(text_of(chunk("Hello").as_bytes()).is_err());
        let error =
            format!("{}data: {{\"error\":{{\"code\":\"upstream_stream_error\"}}}}\n\ndata: [DONE]\n\n", chunk("a"));
        assert!(text_of(error.as_bytes()).is_err());
        assert!(text_of(b"data: {}\ndata: {}\n\ndata: [DONE]\n\n").is_err());
    }
}
