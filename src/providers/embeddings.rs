//! Embeddings (`POST /v1/embeddings`) for each provider that has them: OpenAI and every
//! OpenAI-compatible server (forwarded field for field), and Gemini (`batchEmbedContents`,
//! translated both ways). Anthropic has no embeddings API: its targets are skipped as unable to
//! serve the request. Every successful answer leaves here as an OpenAI embeddings list, so the
//! cache holds one format whichever provider answered.
//! Must not: send anything (only the gateway sends), or invent numbers a provider did not give.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::Answer;
use crate::api::embeddings::{EmbeddingsRequest, Encoding, Input};
use crate::error::{Unsupported, UpstreamError};
use crate::routing::table::{ProviderKind, Target};

/// The HTTP request that asks `target` for the embeddings of `request`.
pub fn build_request(target: &Target, request: &EmbeddingsRequest) -> Result<http::Request<Bytes>, Unsupported> {
    match target.kind {
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => openai_request(target, request),
        ProviderKind::Gemini => gemini_request(target, request),
        ProviderKind::Anthropic => Err(Unsupported::new("anthropic", "model", "Anthropic has no embeddings API")),
    }
}

/// Reads a complete 2xx body from `target` as an OpenAI embeddings list.
pub fn parse_success(target: &Target, body: Bytes, request: &EmbeddingsRequest) -> Result<Answer, UpstreamError> {
    let value: Value = serde_json::from_slice(&body).map_err(|e| UpstreamError::Malformed(format!("not JSON: {e}")))?;
    let requested = target.model_for(&request.model);
    match target.kind {
        ProviderKind::Gemini => {
            let list = from_gemini(&value, request, requested)?;
            let body = Bytes::from(serde_json::to_vec(&list).expect("JSON serializes"));
            Ok(Answer { body, model: requested.to_owned() })
        }
        _ => {
            let data = value.get("data").and_then(Value::as_array).ok_or_else(|| malformed("no data array"))?;
            if data.len() != request.inputs.len() {
                return Err(malformed("not one embedding per input"));
            }
            let usable = |item: &Value| match item.get("embedding") {
                Some(Value::Array(v)) => !v.is_empty() && v.iter().all(Value::is_number),
                Some(Value::String(s)) => !s.is_empty(),
                _ => false,
            };
            if !data.iter().all(usable) {
                return Err(malformed("an item has no embedding"));
            }
            let model = value.get("model").and_then(Value::as_str).unwrap_or(requested).to_owned();
            Ok(Answer { body, model })
        }
    }
}

fn malformed(why: &str) -> UpstreamError {
    UpstreamError::Malformed(why.to_owned())
}

fn openai_request(target: &Target, request: &EmbeddingsRequest) -> Result<http::Request<Bytes>, Unsupported> {
    let mut json = request.to_json();
    json.insert("model".into(), Value::String(target.model_for(&request.model).to_owned()));
    let body = serde_json::to_vec(&json).expect("a JSON map always serializes");
    let mut builder = http::Request::post(format!("{}/embeddings", target.base_url))
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json");
    if let Some(key) = &target.api_key {
        builder = builder.header(http::header::AUTHORIZATION, format!("Bearer {}", key.expose()));
    }
    super::finish(builder, body, target.kind.as_str())
}

/// Gemini's `batchEmbedContents`: one request per text. Token ids and fields Gemini has no
/// equivalent for cannot be expressed (the target is skipped, never the field dropped).
fn gemini_request(target: &Target, request: &EmbeddingsRequest) -> Result<http::Request<Bytes>, Unsupported> {
    const P: &str = "gemini";
    let Input::Texts(texts) = &request.inputs else {
        return Err(Unsupported::new(P, "input", "Gemini embeds text, not token ids"));
    };
    if let Some((name, _)) = request.params.iter().find(|(_, v)| !v.is_null()) {
        return Err(Unsupported::new(P, name.clone(), "Gemini's embeddings have no such field"));
    }
    let model = target.model_for(&request.model);
    let requests: Vec<Value> = texts
        .iter()
        .map(|text| {
            let mut one = json!({"model": format!("models/{model}"), "content": {"parts": [{"text": text}]}});
            if let Some(d) = request.dimensions {
                one["outputDimensionality"] = Value::from(d);
            }
            one
        })
        .collect();
    let body = serde_json::to_vec(&json!({ "requests": requests })).expect("JSON serializes");
    let mut builder = http::Request::post(format!("{}/models/{model}:batchEmbedContents", target.base_url))
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some(key) = &target.api_key {
        builder = builder.header("x-goog-api-key", key.expose());
    }
    super::finish(builder, body, P)
}

/// Gemini's `{"embeddings": [{"values": [...]}]}` as an OpenAI list, in the client's encoding.
/// Gemini reports no token counts here, so the list has no `usage` rather than a made-up one.
fn from_gemini(value: &Value, request: &EmbeddingsRequest, model: &str) -> Result<Value, UpstreamError> {
    let embeddings = value.get("embeddings").and_then(Value::as_array).ok_or_else(|| malformed("no embeddings"))?;
    if embeddings.len() != request.inputs.len() {
        return Err(malformed("not one embedding per input"));
    }
    let mut data = Vec::with_capacity(embeddings.len());
    for (index, e) in embeddings.iter().enumerate() {
        let values = e.get("values").and_then(Value::as_array).filter(|v| !v.is_empty());
        let values = values.ok_or_else(|| malformed("an embedding has no values"))?;
        let floats: Option<Vec<f64>> = values.iter().map(Value::as_f64).collect();
        let floats = floats.ok_or_else(|| malformed("an embedding value is not a number"))?;
        let embedding = match request.encoding {
            Encoding::Float => Value::Array(values.clone()),
            Encoding::Base64 => Value::String(to_base64(&floats)),
        };
        data.push(json!({"object": "embedding", "index": index, "embedding": embedding}));
    }
    let mut list = Map::new();
    list.insert("object".into(), json!("list"));
    list.insert("data".into(), Value::Array(data));
    list.insert("model".into(), json!(model));
    Ok(Value::Object(list))
}

/// OpenAI's base64 form: the little-endian bytes of each value as a 32-bit float.
pub fn to_base64(values: &[f64]) -> String {
    let bytes: Vec<u8> = values.iter().flat_map(|v| (*v as f32).to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
