//! What an answer cost: the price table (`PRICES` over a built-in table) and the cost of one
//! answer's usage under it. Pure: the one place that turns tokens into money, for budgets
//! (`TENANTS`), metrics and the cost a cache hit avoided.
//!
//! Money is counted in whole nano-dollars (`u64`, 1e-9 USD), so that counters add up exactly in
//! Redis (`INCRBY`) and a single short answer is not rounded to nothing.
//! Must not: read variables, or guess a price for a model it has none for (cost is then `None`,
//! and callers count the tokens alone).

use std::collections::BTreeMap;

use serde_json::Value;

/// Prices of one model, in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    /// Input tokens the provider served from its own prompt cache; `input` when not given.
    pub cached_input: f64,
    pub output: f64,
}

impl Price {
    /// What `usage` cost at this price, in nano-dollars.
    pub fn cost_nanos(&self, usage: &Usage) -> u64 {
        let cached = usage.cached_input.min(usage.input);
        // USD per million tokens is nano-dollars per thousandth of a token: tokens x price x 1000.
        let nanos = (usage.input - cached) as f64 * self.input
            + cached as f64 * self.cached_input
            + usage.output as f64 * self.output;
        (nanos * 1000.0).round() as u64
    }
}

/// Tokens of one answer, as the provider reported them (OpenAI's `usage`, which translated
/// answers carry too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Every input token, the cached ones included (`prompt_tokens`).
    pub input: u64,
    /// Of `input`, those read from the provider's prompt cache.
    pub cached_input: u64,
    pub output: u64,
}

impl Usage {
    /// The usage of an OpenAI-shaped `usage` object; `None` without `prompt_tokens`.
    pub fn from_openai(usage: &Value) -> Option<Usage> {
        let n = |v: Option<&Value>| v.and_then(Value::as_u64);
        let input = n(usage.get("prompt_tokens"))?;
        let output = n(usage.get("completion_tokens")).unwrap_or(0);
        let cached = n(usage.pointer("/prompt_tokens_details/cached_tokens")).unwrap_or(0).min(input);
        Some(Usage { input, cached_input: cached, output })
    }

    /// The usage of an OpenAI-shaped completion body (`{"usage": {...}}`).
    pub fn of_completion(body: &Value) -> Option<Usage> {
        Usage::from_openai(body.get("usage")?)
    }

    pub fn total(&self) -> u64 {
        self.input.saturating_add(self.output)
    }
}

/// The built-in table: list prices per million tokens as the providers published them in 2025
/// (input, cached input, output). `PRICES` overrides or adds models; it is the operator's
/// contract with the provider that counts.
const BUILT_IN: &[(&str, f64, f64, f64)] = &[
    ("gpt-4o", 2.50, 1.25, 10.00),
    ("gpt-4o-mini", 0.15, 0.075, 0.60),
    ("gpt-4.1", 2.00, 0.50, 8.00),
    ("gpt-4.1-mini", 0.40, 0.10, 1.60),
    ("gpt-4.1-nano", 0.10, 0.025, 0.40),
    ("gpt-5", 1.25, 0.125, 10.00),
    ("gpt-5-mini", 0.25, 0.025, 2.00),
    ("gpt-5-nano", 0.05, 0.005, 0.40),
    ("o3-mini", 1.10, 0.55, 4.40),
    ("o4-mini", 1.10, 0.275, 4.40),
    ("claude-3-5-haiku", 0.80, 0.08, 4.00),
    ("claude-haiku-4-5", 1.00, 0.10, 5.00),
    ("claude-3-7-sonnet", 3.00, 0.30, 15.00),
    ("claude-sonnet-4", 3.00, 0.30, 15.00),
    ("claude-sonnet-4-5", 3.00, 0.30, 15.00),
    ("claude-opus-4", 15.00, 1.50, 75.00),
    ("gemini-2.0-flash", 0.10, 0.025, 0.40),
    ("gemini-2.0-flash-lite", 0.075, 0.075, 0.30),
    ("gemini-2.5-flash", 0.30, 0.075, 2.50),
    ("gemini-2.5-flash-lite", 0.10, 0.025, 0.40),
    ("gemini-2.5-pro", 1.25, 0.31, 10.00),
];

/// The largest price accepted, per million tokens (a typo guard, not a market view).
const MAX_PRICE: f64 = 10_000.0;

/// Every model's price.
#[derive(Debug, Clone, PartialEq)]
pub struct Prices {
    by_model: BTreeMap<String, Price>,
}

impl Default for Prices {
    fn default() -> Self {
        let by_model = BUILT_IN
            .iter()
            .map(|(model, input, cached_input, output)| {
                ((*model).to_owned(), Price { input: *input, cached_input: *cached_input, output: *output })
            })
            .collect();
        Prices { by_model }
    }
}

impl Prices {
    /// The built-in table with `raw` (`PRICES`: a JSON object of model -> `{"input", "output",
    /// "cached_input"?}` in USD per million tokens) over it. Every problem is reported, naming
    /// the model and the field; an entry with a problem is left out (the built-in price, if
    /// any, stays).
    pub fn parse(raw: &str, problems: &mut Vec<String>) -> Prices {
        let mut prices = Prices::default();
        let object = match serde_json::from_str::<Value>(raw) {
            Ok(Value::Object(object)) => object,
            _ => {
                problems.push("PRICES must be a JSON object of model -> {input, output, cached_input} (USD per million tokens); the built-in prices apply".into());
                return prices;
            }
        };
        for (model, entry) in object {
            let shown: String = model.chars().take(64).collect();
            let Value::Object(fields) = entry else {
                problems.push(format!("PRICES: '{shown}' must be an object with input and output"));
                continue;
            };
            let mut bad = Vec::new();
            let mut read = |name: &str, required: bool| -> Option<f64> {
                match fields.get(name) {
                    None if !required => None,
                    Some(v) => match v.as_f64().filter(|p| p.is_finite() && *p >= 0.0 && *p <= MAX_PRICE) {
                        Some(p) => Some(p),
                        None => {
                            bad.push(format!("PRICES: '{shown}'.{name} must be a number from 0 to {MAX_PRICE}"));
                            None
                        }
                    },
                    None => {
                        bad.push(format!("PRICES: '{shown}' needs {name}"));
                        None
                    }
                }
            };
            let (input, output, cached) = (read("input", true), read("output", true), read("cached_input", false));
            if let Some(unknown) = fields.keys().find(|k| !matches!(k.as_str(), "input" | "output" | "cached_input")) {
                let unknown: String = unknown.chars().take(32).collect();
                bad.push(format!("PRICES: '{shown}' has an unknown field '{unknown}'"));
            }
            if model.is_empty() || model.len() > 256 {
                bad.push("PRICES: a model name must be 1 to 256 characters".into());
            }
            match (input, output) {
                (Some(input), Some(output)) if bad.is_empty() => {
                    let cached_input = cached.unwrap_or(input);
                    prices.by_model.insert(model, Price { input, cached_input, output });
                }
                _ => problems.extend(bad),
            }
        }
        prices
    }

    /// The price of `model`: its own entry, else the entry of the longest name it extends with a
    /// dated or versioned suffix (`gpt-4o-mini-2024-07-18` is priced as `gpt-4o-mini`), else
    /// none.
    pub fn price(&self, model: &str) -> Option<&Price> {
        if let Some(price) = self.by_model.get(model) {
            return Some(price);
        }
        let mut end = model.len();
        while let Some(dash) = model[..end].rfind('-') {
            if let Some(price) = self.by_model.get(&model[..dash]) {
                return Some(price);
            }
            end = dash;
        }
        None
    }

    /// What `usage` of `model` cost, in nano-dollars; `None` when the model has no price.
    pub fn cost_nanos(&self, model: &str, usage: &Usage) -> Option<u64> {
        Some(self.price(model)?.cost_nanos(usage))
    }

    /// Every model with a price, for the documentation and `/admin` pages.
    pub fn models(&self) -> impl Iterator<Item = (&str, &Price)> {
        self.by_model.iter().map(|(m, p)| (m.as_str(), p))
    }
}

/// Nano-dollars as US dollars, for headers, logs and pages.
pub fn usd(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_short_answer_costs_its_tokens_at_the_list_price() {
        let usage = Usage::from_openai(&json!({"prompt_tokens": 1000, "completion_tokens": 500})).unwrap();
        // gpt-4o-mini: 1000 x 0.15 + 500 x 0.60 per million = 0.00045 USD.
        assert_eq!(Prices::default().cost_nanos("gpt-4o-mini", &usage), Some(450_000));
        assert_eq!(usd(450_000), 0.00045);
    }

    #[test]
    fn cached_input_is_priced_apart_and_never_more_than_the_input() {
        let usage = Usage::from_openai(&json!({
            "prompt_tokens": 2000, "completion_tokens": 0, "prompt_tokens_details": {"cached_tokens": 1000}
        }))
        .unwrap();
        assert_eq!(usage, Usage { input: 2000, cached_input: 1000, output: 0 });
        // gpt-4o: 1000 x 2.50 + 1000 x 1.25 per million.
        assert_eq!(Prices::default().cost_nanos("gpt-4o", &usage), Some(3_750_000));
        let odd = Usage::from_openai(&json!({"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 99}}));
        assert_eq!(odd.unwrap().cached_input, 10);
    }

    #[test]
    fn a_dated_model_name_takes_its_family_price_and_an_unknown_model_has_none() {
        let prices = Prices::default();
        assert_eq!(prices.price("gpt-4o-mini-2024-07-18"), prices.price("gpt-4o-mini"));
        assert_eq!(prices.price("gpt-4o-2024-08-06"), prices.price("gpt-4o"));
        assert_eq!(prices.price("claude-3-5-haiku-20241022").map(|p| p.output), Some(4.00));
        assert!(prices.price("my-local-llama").is_none());
        assert_eq!(prices.cost_nanos("my-local-llama", &Usage::default()), None);
    }

    #[test]
    fn prices_override_and_add_models_and_report_every_problem() {
        let mut problems = Vec::new();
        let prices = Prices::parse(
            r#"{"gpt-4o-mini": {"input": 1, "output": 2},
                "local": {"input": 0, "output": 0},
                "bad": {"input": -1, "output": "x", "colour": 1},
                "half": {"input": 1}}"#,
            &mut problems,
        );
        assert_eq!(prices.price("gpt-4o-mini"), Some(&Price { input: 1.0, cached_input: 1.0, output: 2.0 }));
        assert_eq!(prices.cost_nanos("local", &Usage { input: 5, cached_input: 0, output: 5 }), Some(0));
        assert!(prices.price("bad").is_none() && prices.price("half").is_none());
        assert!(prices.price("gpt-4o").is_some(), "the built-in table stays under PRICES");
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("'bad'.input")));
        assert!(problems.iter().any(|p| p.contains("'bad'.output")));
        assert!(problems.iter().any(|p| p.contains("unknown field 'colour'")));
        assert!(problems.iter().any(|p| p.contains("'half' needs output")));

        let mut problems = Vec::new();
        let prices = Prices::parse("[1]", &mut problems);
        assert_eq!(problems.len(), 1);
        assert_eq!(prices, Prices::default());
    }
}
