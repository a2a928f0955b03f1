//! A real sentence-embedding model for the fake upstream: all-MiniLM-L6-v2 (a 6-layer BERT, 384
//! dimensions, mean pooling, unit length), loaded with candle from the files `setup-model.sh`
//! unpacks into `EMBED_MODEL_DIR` (default `~/.cache/llm-edge-cache/models/all-minilm-l6-v2`).
//! Loaded once per process, on first use, on the CPU. Nothing is downloaded here.
//! Must not: fetch anything, or stand in silently for the model (`shared` says when it is absent).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{Tokenizer, TruncationParams};

use crate::upstream::embeddings::Embedder;

/// The model's dimensions.
pub const DIMENSIONS: usize = 384;
/// The longest input, in tokens (sentence-transformers' `max_seq_length` for this model).
const MAX_TOKENS: usize = 256;

pub struct MiniLm {
    /// candle's BERT is not `Sync`-safe to call from several threads at once here: one at a time.
    model: Mutex<BertModel>,
    tokenizer: Tokenizer,
}

/// Where the model's files are.
pub fn model_dir() -> PathBuf {
    match std::env::var_os("EMBED_MODEL_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
            home.join(".cache/llm-edge-cache/models/all-minilm-l6-v2")
        }
    }
}

/// The process's model, loaded on first use; the error says why it is not there (run
/// `tests/devstack/scripts/setup.sh`).
pub fn shared() -> Result<Arc<MiniLm>, String> {
    static MODEL: OnceLock<Result<Arc<MiniLm>, String>> = OnceLock::new();
    MODEL.get_or_init(|| MiniLm::load(&model_dir()).map(Arc::new)).clone()
}

impl MiniLm {
    pub fn load(dir: &std::path::Path) -> Result<MiniLm, String> {
        let read = |name: &str| {
            std::fs::read(dir.join(name)).map_err(|e| {
                format!("{}: {e} (tests/devstack/scripts/setup.sh fetches the model)", dir.join(name).display())
            })
        };
        let config: Config = serde_json::from_slice(&read("config.json")?).map_err(|e| format!("config.json: {e}"))?;
        let weights = read("model.safetensors")?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|e| format!("model.safetensors: {e}"))?;
        let model = BertModel::load(vb, &config).map_err(|e| format!("loading BERT: {e}"))?;
        let mut tokenizer =
            Tokenizer::from_bytes(read("tokenizer.json")?).map_err(|e| format!("tokenizer.json: {e}"))?;
        let truncation = TruncationParams { max_length: MAX_TOKENS, ..Default::default() };
        tokenizer.with_truncation(Some(truncation)).map_err(|e| format!("truncation: {e}"))?;
        tokenizer.with_padding(None);
        Ok(MiniLm { model: Mutex::new(model), tokenizer })
    }

    /// One text's unit vector: BERT's last hidden states averaged over the tokens, normalized.
    pub fn embed_one(&self, text: &str) -> Result<Vec<f32>, String> {
        let e = |e: candle_core::Error| e.to_string();
        let encoding = self.tokenizer.encode(text, true).map_err(|e| e.to_string())?;
        let ids = Tensor::new(encoding.get_ids(), &Device::Cpu).map_err(e)?.unsqueeze(0).map_err(e)?;
        let types = ids.zeros_like().map_err(e)?;
        let mask = Tensor::new(encoding.get_attention_mask(), &Device::Cpu).map_err(e)?.unsqueeze(0).map_err(e)?;
        let hidden = {
            let model = self.model.lock().map_err(|_| "the model's lock is poisoned".to_owned())?;
            model.forward(&ids, &types, Some(&mask)).map_err(e)?
        };
        // Mean pooling over the real tokens (the mask is all ones without padding).
        let mask = mask.to_dtype(DType::F32).map_err(e)?.unsqueeze(2).map_err(e)?;
        let summed = hidden.broadcast_mul(&mask).map_err(e)?.sum(1).map_err(e)?;
        let count = mask.sum(1).map_err(e)?;
        let mean = summed.broadcast_div(&count).map_err(e)?.squeeze(0).map_err(e)?;
        let mut v: Vec<f32> = mean.to_vec1().map_err(e)?;
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        v.iter_mut().for_each(|x| *x /= norm);
        Ok(v)
    }
}

impl Embedder for MiniLm {
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
        texts.iter().map(|t| self.embed_one(t)).collect()
    }
}

/// Cosine similarity of two vectors (of unit length here, so their dot product).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b)).max(1e-12)
}
