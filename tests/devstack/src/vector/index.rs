//! The dev stack's vector index: namespaces of items (a vector, optional metadata, optional data
//! text) and Upstash Vector's commands over them, with exact cosine search. Scores are what
//! Upstash reports for a COSINE index: (1 + cos) / 2, from 0 to 1. Each command takes its JSON
//! body and gives the `result` value, or the error message and status Upstash gives.
//! Texts for the `-data` commands are embedded by the caller (`embed`). Must not: do IO.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// One stored item.
#[derive(Debug, Clone, PartialEq)]
struct Item {
    vector: Vec<f32>,
    metadata: Option<Value>,
    data: Option<String>,
}

/// A command's failure: Upstash's message and HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: u16,
    pub message: String,
}

fn bad(message: impl Into<String>) -> Failure {
    Failure { status: 400, message: message.into() }
}

/// Texts to vectors, for `upsert-data` and `query-data`.
pub type Embed<'a> = &'a dyn Fn(&[String]) -> Result<Vec<Vec<f32>>, String>;

/// Every namespace of one index (the default one is `""`, and always exists).
#[derive(Debug)]
pub struct Index {
    dimension: usize,
    namespaces: BTreeMap<String, BTreeMap<String, Item>>,
}

impl Index {
    pub fn new(dimension: usize) -> Index {
        Index { dimension, namespaces: BTreeMap::from([(String::new(), BTreeMap::new())]) }
    }

    /// Runs `command` (the path's first part) in namespace `ns` with `body`.
    pub fn run(
        &mut self,
        command: &str,
        ns: &str,
        all: bool,
        body: &Value,
        embed: Embed<'_>,
    ) -> Result<Value, Failure> {
        match command {
            "upsert" => self.upsert(ns, body, None),
            "upsert-data" => self.upsert(ns, body, Some(embed)),
            "query" => self.query(ns, body, None),
            "query-data" => self.query(ns, body, Some(embed)),
            "fetch" => self.fetch(ns, body),
            "delete" => self.delete(ns, body),
            "range" => self.range(ns, body),
            "reset" if all => {
                *self = Index::new(self.dimension);
                Ok(json!("Success"))
            }
            "reset" => {
                if let Some(items) = self.namespaces.get_mut(ns) {
                    items.clear();
                }
                Ok(json!("Success"))
            }
            "list-namespaces" => Ok(json!(self.namespaces.keys().collect::<Vec<_>>())),
            "delete-namespace" if ns.is_empty() => Err(bad("Cannot delete the default namespace")),
            "delete-namespace" => match self.namespaces.remove(ns) {
                Some(_) => Ok(json!("Success")),
                None => Err(bad(format!("Namespace {ns} does not exist"))),
            },
            "info" => Ok(self.info()),
            _ => Err(Failure { status: 404, message: format!("Unknown command: {command}") }),
        }
    }

    fn info(&self) -> Value {
        let namespaces: Map<String, Value> = self
            .namespaces
            .iter()
            .map(|(name, items)| (name.clone(), json!({"vectorCount": items.len(), "pendingVectorCount": 0})))
            .collect();
        let count: usize = self.namespaces.values().map(BTreeMap::len).sum();
        json!({"vectorCount": count, "pendingVectorCount": 0, "indexSize": count * self.dimension * 4,
               "dimension": self.dimension, "similarityFunction": "COSINE", "namespaces": namespaces})
    }

    /// One item or an array of items: `{id, vector, metadata?, data?}`, or `{id, data, metadata?}`
    /// with `embed`.
    fn upsert(&mut self, ns: &str, body: &Value, embed: Option<Embed<'_>>) -> Result<Value, Failure> {
        let items: Vec<&Value> = match body {
            Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        let mut ready = Vec::with_capacity(items.len());
        for item in items {
            let id = id_of(item.get("id")).ok_or_else(|| bad("Invalid request: every item needs an id"))?;
            let metadata = item.get("metadata").filter(|m| !m.is_null()).cloned();
            let data = item.get("data").and_then(Value::as_str).map(str::to_owned);
            let vector = match embed {
                Some(embed) => {
                    let text = data.clone().ok_or_else(|| bad("Invalid request: data is required"))?;
                    embed(&[text]).map_err(bad)?.pop().ok_or_else(|| bad("no embedding"))?
                }
                None => self.vector_of(item.get("vector"))?,
            };
            ready.push((id, Item { vector, metadata, data }));
        }
        let items = self.namespaces.entry(ns.to_owned()).or_default();
        items.extend(ready);
        Ok(json!("Success"))
    }

    fn vector_of(&self, v: Option<&Value>) -> Result<Vec<f32>, Failure> {
        let v = v.and_then(Value::as_array).ok_or_else(|| bad("Invalid request: vector is required"))?;
        if v.len() != self.dimension {
            return Err(bad(format!("Invalid vector dimension: {}, expected: {}", v.len(), self.dimension)));
        }
        v.iter()
            .map(|x| x.as_f64().map(|f| f as f32))
            .collect::<Option<Vec<f32>>>()
            .ok_or_else(|| bad("Invalid vector"))
    }

    /// One query or an array of queries (then an array of result lists).
    fn query(&self, ns: &str, body: &Value, embed: Option<Embed<'_>>) -> Result<Value, Failure> {
        match body {
            Value::Array(queries) => {
                let results: Result<Vec<Value>, Failure> =
                    queries.iter().map(|q| self.query_one(ns, q, embed)).collect();
                Ok(Value::Array(results?))
            }
            one => self.query_one(ns, one, embed),
        }
    }

    fn query_one(&self, ns: &str, q: &Value, embed: Option<Embed<'_>>) -> Result<Value, Failure> {
        if q.get("filter").and_then(Value::as_str).is_some_and(|f| !f.is_empty()) {
            return Err(bad("Metadata filters are not supported by the dev stack's vector endpoint"));
        }
        let vector = match embed {
            Some(embed) => {
                let text =
                    q.get("data").and_then(Value::as_str).ok_or_else(|| bad("Invalid request: data is required"))?;
                embed(&[text.to_owned()]).map_err(bad)?.pop().ok_or_else(|| bad("no embedding"))?
            }
            None => self.vector_of(q.get("vector"))?,
        };
        let top_k = q.get("topK").and_then(Value::as_u64).unwrap_or(10) as usize;
        let Some(items) = self.namespaces.get(ns) else { return Ok(json!([])) };
        let mut scored: Vec<(f32, &String, &Item)> =
            items.iter().map(|(id, item)| ((1.0 + cosine(&vector, &item.vector)) / 2.0, id, item)).collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        let shown = scored.into_iter().take(top_k).map(|(score, id, item)| {
            let mut out = render(id, item, q);
            out.insert("score".into(), json!(score));
            Value::Object(out)
        });
        Ok(Value::Array(shown.collect()))
    }

    /// `{ids: [...]}` (a `null` for each absent id) or `{prefix}`.
    fn fetch(&self, ns: &str, body: &Value) -> Result<Value, Failure> {
        let empty = BTreeMap::new();
        let items = self.namespaces.get(ns).unwrap_or(&empty);
        if let Some(prefix) = body.get("prefix").and_then(Value::as_str) {
            let found = items.iter().filter(|(id, _)| id.starts_with(prefix));
            return Ok(Value::Array(found.map(|(id, item)| Value::Object(render(id, item, body))).collect()));
        }
        let ids = body.get("ids").and_then(Value::as_array).ok_or_else(|| bad("Invalid request: ids are required"))?;
        let found = ids.iter().map(|id| match id_of(Some(id)).and_then(|id| items.get_key_value(&id)) {
            Some((id, item)) => Value::Object(render(id, item, body)),
            None => Value::Null,
        });
        Ok(Value::Array(found.collect()))
    }

    /// `{ids: [...]}` or `{prefix}`: how many were deleted.
    fn delete(&mut self, ns: &str, body: &Value) -> Result<Value, Failure> {
        let Some(items) = self.namespaces.get_mut(ns) else { return Ok(json!({"deleted": 0})) };
        let before = items.len();
        if let Some(prefix) = body.get("prefix").and_then(Value::as_str) {
            items.retain(|id, _| !id.starts_with(prefix));
        } else {
            let ids = match body {
                Value::Array(ids) => ids,
                _ => {
                    body.get("ids").and_then(Value::as_array).ok_or_else(|| bad("Invalid request: ids are required"))?
                }
            };
            for id in ids.iter().filter_map(|id| id_of(Some(id))) {
                items.remove(&id);
            }
        }
        Ok(json!({"deleted": before - items.len()}))
    }

    /// `{cursor, limit, prefix?}`: items in id order from `cursor` (an offset), and the next one
    /// (`""` at the end).
    fn range(&self, ns: &str, body: &Value) -> Result<Value, Failure> {
        let limit =
            body.get("limit").and_then(Value::as_u64).ok_or_else(|| bad("Invalid request: limit is required"))?;
        let cursor = match body.get("cursor") {
            Some(Value::String(s)) if s.is_empty() => 0,
            Some(Value::String(s)) => s.parse::<usize>().map_err(|_| bad("Invalid cursor"))?,
            Some(Value::Number(n)) => n.as_u64().unwrap_or(0) as usize,
            _ => 0,
        };
        let prefix = body.get("prefix").and_then(Value::as_str).unwrap_or("");
        let empty = BTreeMap::new();
        let matching: Vec<(&String, &Item)> =
            self.namespaces.get(ns).unwrap_or(&empty).iter().filter(|(id, _)| id.starts_with(prefix)).collect();
        let end = (cursor + limit as usize).min(matching.len());
        let vectors: Vec<Value> = matching
            .get(cursor..end)
            .unwrap_or(&[])
            .iter()
            .map(|(id, item)| Value::Object(render(id, item, body)))
            .collect();
        let next = if end < matching.len() { end.to_string() } else { String::new() };
        Ok(json!({"nextCursor": next, "vectors": vectors}))
    }
}

/// An id as Upstash keeps it: a string (numbers are written out).
fn id_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An item as answered: its id, then what `options` asked to include.
fn render(id: &str, item: &Item, options: &Value) -> Map<String, Value> {
    let asked = |name: &str| options.get(name).and_then(Value::as_bool).unwrap_or(false);
    let mut out = Map::new();
    out.insert("id".into(), json!(id));
    if asked("includeVectors") {
        out.insert("vector".into(), json!(item.vector));
    }
    if let Some(metadata) = item.metadata.as_ref().filter(|_| asked("includeMetadata")) {
        out.insert("metadata".into(), metadata.clone());
    }
    if let Some(data) = item.data.as_ref().filter(|_| asked("includeData")) {
        out.insert("data".into(), json!(data));
    }
    out
}

/// Exact cosine similarity.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b)).max(1e-12)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_model(_: &[String]) -> Result<Vec<Vec<f32>>, String> {
        Err("no model".into())
    }

    #[test]
    fn scores_are_one_plus_cosine_over_two_in_namespaces_of_their_own() {
        let mut index = Index::new(2);
        let run = |i: &mut Index, c: &str, ns: &str, b: Value| i.run(c, ns, false, &b, &no_model);
        run(&mut index, "upsert", "a", json!([{"id": "x", "vector": [1, 0]}, {"id": "y", "vector": [0, 1]}])).unwrap();
        run(&mut index, "upsert", "b", json!({"id": "z", "vector": [-1, 0], "metadata": {"k": 1}})).unwrap();
        let r = run(&mut index, "query", "a", json!({"vector": [1, 0], "topK": 2})).unwrap();
        assert_eq!(r, json!([{"id": "x", "score": 1.0}, {"id": "y", "score": 0.5}]));
        let r = run(&mut index, "query", "b", json!({"vector": [1, 0], "topK": 5, "includeMetadata": true})).unwrap();
        assert_eq!(r, json!([{"id": "z", "score": 0.0, "metadata": {"k": 1}}]));
        let e = run(&mut index, "upsert", "a", json!({"id": "w", "vector": [1]})).unwrap_err();
        assert_eq!(e.message, "Invalid vector dimension: 1, expected: 2");
        assert_eq!(run(&mut index, "list-namespaces", "", json!([])).unwrap(), json!(["", "a", "b"]));
    }
}
