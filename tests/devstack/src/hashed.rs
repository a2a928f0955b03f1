//! A stand-in sentence embedder for the fake upstream: each lower-cased word is hashed into one
//! of 384 dimensions and the sum normalized (a bag of words). It has no notion of meaning; it
//! only gives stable, distinct vectors for wire-format tests.
//! Must not: be mistaken for a model (semantic tests need a real one).

use std::hash::{Hash, Hasher};

use crate::upstream::embeddings::Embedder;

pub const DIMENSIONS: usize = 384;

pub struct Hashed;

impl Embedder for Hashed {
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
        Ok(texts.iter().map(|t| bag_of_words(t)).collect())
    }
}

fn bag_of_words(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; DIMENSIONS];
    for word in text.split_whitespace() {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        word.to_lowercase().hash(&mut h);
        v[(h.finish() % DIMENSIONS as u64) as usize] += 1.0;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}
