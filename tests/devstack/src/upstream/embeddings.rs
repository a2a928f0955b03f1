//! The fake upstream's embeddings, in two wire formats: OpenAI's `POST /v1/embeddings` (and
//! `/embeddings`; `float` or `base64` encoding, `dimensions` as a truncation renormalized, as
//! text-embedding-3 models do) and Gemini's `POST /v1beta/models/{model}:batchEmbedContents`
//! (`outputDimensionality` likewise). The vectors come from an `Embedder` (the engine passes the
//! real model, `minilm`). Token-id inputs are embedded as their ids written out in decimal, separated by spaces.
//! This module must not do IO: it reads requests and renders answers.

use base64::Engine as _;
use serde_json::{json, Value};

/// Turns texts into unit vectors.
pub trait Embedder: Send + Sync {
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String>;
}

/// Which embeddings call a path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbedRoute {
    OpenAi,
    Gemini { model: String },
}

/// The embeddings call `path` asks for, if any.
pub fn route(path: &str) -> Option<EmbedRoute> {
    if matches!(path, "/v1/embeddings" | "/embeddings") {
        return Some(EmbedRoute::OpenAi);
    }
    let rest = path.strip_prefix("/v1beta/models/").or_else(|| path.strip_prefix("/v1/models/"))?;
    let model = rest.strip_suffix(":batchEmbedContents")?;
    (!model.is_empty() && !model.contains('/')).then(|| EmbedRoute::Gemini { model: model.to_owned() })
}

/// What one embeddings call asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedCall {
    pub model: String,
    pub texts: Vec<String>,
    pub base64: bool,
    pub dimensions: Option<usize>,
}

/// Reads a request body in the route's format; the error is the message the real API gives.
pub fn parse(route: &EmbedRoute, body: &Value) -> Result<EmbedCall, String> {
    match route {
        EmbedRoute::OpenAi => parse_openai(body),
        EmbedRoute::Gemini { model } => parse_gemini(model, body),
    }
}

fn parse_openai(body: &Value) -> Result<EmbedCall, String> {
    let model = body.get("model").and_then(Value::as_str).ok_or("you must provide a model parameter")?;
    let texts =
        match body.get("input") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) if items.iter().all(Value::is_string) && !items.is_empty() => {
                items.iter().filter_map(Value::as_str).map(str::to_owned).collect()
            }
            Some(Value::Array(items)) if items.iter().all(Value::is_u64) && !items.is_empty() => vec![ids(items)],
            Some(Value::Array(items)) if items.iter().all(Value::is_array) && !items.is_empty() => {
                items.iter().map(|i| ids(i.as_array().map_or(&[][..], Vec::as_slice))).collect()
            }
            _ => return Err(
                "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
                    .into(),
            ),
        };
    let base64 = match body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return Err(format!("Invalid value for 'encoding_format': '{other}'.")),
    };
    let dimensions = body.get("dimensions").and_then(Value::as_u64).map(|d| d as usize);
    Ok(EmbedCall { model: model.to_owned(), texts, base64, dimensions })
}

fn ids(items: &[Value]) -> String {
    items.iter().filter_map(Value::as_u64).map(|i| i.to_string()).collect::<Vec<_>>().join(" ")
}

fn parse_gemini(model: &str, body: &Value) -> Result<EmbedCall, String> {
    let requests = body.get("requests").and_then(Value::as_array).filter(|r| !r.is_empty());
    let requests = requests.ok_or("* BatchEmbedContentsRequest.requests: must not be empty")?;
    let mut texts = Vec::with_capacity(requests.len());
    let mut dimensions = None;
    for (i, r) in requests.iter().enumerate() {
        let parts = r.get("content").and_then(|c| c.get("parts")).and_then(Value::as_array);
        let text: Vec<&str> =
            parts.into_iter().flatten().filter_map(|p| p.get("text").and_then(Value::as_str)).collect();
        if text.is_empty() {
            return Err(format!(
                "* BatchEmbedContentsRequest.requests[{i}].content.parts: contents.parts must not be empty."
            ));
        }
        texts.push(text.join("\n"));
        dimensions = r.get("outputDimensionality").and_then(Value::as_u64).map(|d| d as usize).or(dimensions);
    }
    Ok(EmbedCall { model: model.to_owned(), texts, base64: false, dimensions })
}

/// The vectors of `call`, cut to its dimensions and renormalized.
pub fn vectors(embedder: &dyn Embedder, call: &EmbedCall) -> Result<Vec<Vec<f32>>, String> {
    let mut all = embedder.embed(&call.texts)?;
    if let Some(d) = call.dimensions {
        for v in &mut all {
            v.truncate(d.max(1));
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm > 0.0 {
                v.iter_mut().for_each(|x| *x /= norm);
            }
        }
    }
    Ok(all)
}

/// The answer in the route's format.
pub fn render(route: &EmbedRoute, call: &EmbedCall, vectors: &[Vec<f32>]) -> Value {
    match route {
        EmbedRoute::OpenAi => {
            let data: Vec<Value> = vectors
                .iter()
                .enumerate()
                .map(|(index, v)| {
                    let embedding = match call.base64 {
                        true => {
                            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                            json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                        }
                        false => json!(v),
                    };
                    json!({"object": "embedding", "index": index, "embedding": embedding})
                })
                .collect();
            let tokens: usize = call.texts.iter().map(|t| t.split_whitespace().count()).sum();
            json!({"object": "list", "data": data, "model": call.model,
                   "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
        }
        EmbedRoute::Gemini { .. } => {
            let embeddings: Vec<Value> = vectors.iter().map(|v| json!({"values": v})).collect();
            json!({ "embeddings": embeddings })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_both_formats_and_nothing_else() {
        assert_eq!(route("/v1/embeddings"), Some(EmbedRoute::OpenAi));
        assert_eq!(
            route("/v1beta/models/text-embedding-004:batchEmbedContents"),
            Some(EmbedRoute::Gemini { model: "text-embedding-004".into() })
        );
        assert_eq!(route("/v1beta/models/m:generateContent"), None);
        assert_eq!(route("/v1/chat/completions"), None);
    }

    #[test]
    fn reads_every_openai_input_shape_and_refuses_an_empty_one() {
        let c =
            parse_openai(&json!({"model": "m", "input": "hi", "encoding_format": "base64", "dimensions": 8})).unwrap();
        assert_eq!((c.texts, c.base64, c.dimensions), (vec!["hi".to_owned()], true, Some(8)));
        assert_eq!(parse_openai(&json!({"model": "m", "input": [1, 2]})).unwrap().texts, vec!["1 2"]);
        assert_eq!(parse_openai(&json!({"model": "m", "input": [[1], [2]]})).unwrap().texts, vec!["1", "2"]);
        assert!(parse_openai(&json!({"model": "m", "input": []})).is_err());
    }
}
