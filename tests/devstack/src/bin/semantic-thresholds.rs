//! Measures where the semantic tier's threshold should sit: embeds each labelled question pair of
//! `fixtures/semantic/pairs.json` (paraphrases that should hit, near-misses that must not: a
//! negation, another number, another entity, another audience) with the dev stack's real
//! all-MiniLM-L6-v2, and prints, for each cosine threshold, the paraphrases that would hit and the
//! near-misses that would falsely hit, as markdown (`tests/devstack/SEMANTIC_THRESHOLDS.md`).
//! Usage: `cargo run -p devstack --bin semantic-thresholds > tests/devstack/SEMANTIC_THRESHOLDS.md`
//! Must not: decide anything itself; it measures.

use std::collections::BTreeMap;
use std::time::Instant;

use devstack::minilm::{self, cosine};
use serde_json::Value;

const THRESHOLDS: [f32; 6] = [0.80, 0.85, 0.88, 0.90, 0.92, 0.95];

fn main() -> Result<(), String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/semantic/pairs.json");
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let pairs: Vec<Value> = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let model = minilm::shared()?;
    let mut scored = Vec::with_capacity(pairs.len());
    let mut embed_ms = Vec::new();
    for p in &pairs {
        let field = |name: &str| p[name].as_str().map(str::to_owned).ok_or(format!("a pair without {name}: {p}"));
        let (a, b, kind) = (field("a")?, field("b")?, field("kind")?);
        let started = Instant::now();
        let va = model.embed_one(&a)?;
        embed_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        let vb = model.embed_one(&b)?;
        scored.push((kind, p["same"].as_bool().unwrap_or(false), cosine(&va, &vb), a, b));
    }
    let same = scored.iter().filter(|s| s.1).count();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for s in scored.iter().filter(|s| !s.1) {
        *kinds.entry(s.0.as_str()).or_default() += 1;
    }
    embed_ms.sort_by(f64::total_cmp);
    println!("# Semantic threshold: labelled pairs through all-MiniLM-L6-v2\n");
    println!("Produced by `cargo run -p devstack --bin semantic-thresholds` from `fixtures/semantic/pairs.json`:");
    println!(
        "{} pairs, {same} paraphrases (should hit) and {} near-misses (must not) by kind: {kinds:?}.",
        scored.len(),
        scored.len() - same
    );
    println!("Cosine of the two questions' unit vectors (the gateway compares the last user message only; the");
    println!("partition makes everything else match exactly, so other system prompts or models never meet).");
    println!("Upstash Vector reports these as scores (1 + cos) / 2.\n");
    let mut header = String::from("| cosine ≥ | paraphrases hit | false hits |");
    let mut rule = String::from("|---|---|---|");
    for kind in kinds.keys() {
        header.push_str(&format!(" {kind} |"));
        rule.push_str("---|");
    }
    println!("{header}\n{rule}");
    for t in THRESHOLDS {
        let hits = scored.iter().filter(|s| s.1 && s.2 >= t).count();
        let false_hits = scored.iter().filter(|s| !s.1 && s.2 >= t).count();
        let mut row = format!(
            "| {t:.2} | {hits} / {same} ({:.0} %) | {false_hits} / {} |",
            100.0 * hits as f64 / same as f64,
            scored.len() - same
        );
        for (kind, n) in &kinds {
            let k = scored.iter().filter(|s| !s.1 && s.0 == *kind && s.2 >= t).count();
            row.push_str(&format!(" {k} / {n} |"));
        }
        println!("{row}");
    }
    println!("\nNear-misses at or above 0.90, the highest first:\n");
    let mut worst: Vec<_> = scored.iter().filter(|s| !s.1 && s.2 >= 0.90).collect();
    worst.sort_by(|a, b| b.2.total_cmp(&a.2));
    for s in worst {
        println!("- {:.4} ({}) \"{}\" / \"{}\"", s.2, s.0, s.3, s.4);
    }
    let pct = |q: f64| embed_ms[((embed_ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "\nEmbedding one question on this machine's CPU (candle, {} runs, while other builds shared the two cores): p50 {:.1} ms, p95 {:.1} ms.",
        embed_ms.len(),
        pct(0.5),
        pct(0.95)
    );
    Ok(())
}
