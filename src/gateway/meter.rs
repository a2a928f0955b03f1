//! What a provider answer used, recorded after the response, in the background: its tokens
//! toward the per-minute token limits of the tenant and end user (`tokens_per_minute`) and of
//! the target when it is paced (`tpm`), and its cost toward the
//! tenant's budgets (`daily_budget_usd`, `monthly_budget_usd`), per tenant and per target, per
//! UTC day and month, in one Redis round trip (`stores::redis::record_usage`).
//!
//! The usage is the provider's (streams: from the relay's assembled answer when the stream ends,
//! never from the client's bytes, which may have had the usage chunk removed); the price is the
//! one of the model the target asked for (`crate::prices`). A cache hit is never metered.
//! Must not: delay the answer, or guess a price (an unpriced model's cost is not recorded; the
//! answer is logged as `spend_unpriced`).

use serde_json::{json, Value};

use super::{log_line, Exchange, WRITE_TIMEOUT_MS};
use crate::config::UpstashConfig;
use crate::limits::{used_tokens, Position};
use crate::ports::Host;
use crate::prices::{Price, Usage};
use crate::routing::pacing::pacing_subject;
use crate::routing::table::Target;
use crate::stores::redis::{Redis, UsageRecord};

/// Records the usage of this request's provider call, after the response.
pub(super) struct Meter<H: Host> {
    host: H,
    upstash: UpstashConfig,
    tenant: String,
    request_id: String,
    /// Whose per-minute token counters the tokens are added to (`tokens_per_minute`).
    token_subjects: Vec<String>,
    /// The targets whose provider token limit is paced (`tpm`): their tokens are counted too.
    paced: Vec<String>,
    /// Whether spend is recorded (a budget), and each target's model and price.
    spend: Option<Vec<(String, String, Option<Price>)>>,
}

impl<H: Host> Exchange<'_, H> {
    /// What records the usage of a call of `model` to `targets` for `tenant`, if anything of it
    /// is kept.
    pub(super) fn meter(
        &self,
        tenant: &str,
        token_subjects: Vec<String>,
        spend: bool,
        model: &str,
        targets: &[Target],
    ) -> Option<Meter<H>> {
        let paced: Vec<String> = targets.iter().filter(|t| t.limits.tpm.is_some()).map(|t| t.id.clone()).collect();
        let upstash =
            self.config.upstash.clone().filter(|_| !token_subjects.is_empty() || spend || !paced.is_empty())?;
        let prices = &self.config.prices;
        let spend = spend.then(|| {
            targets
                .iter()
                .map(|t| {
                    let asked = t.model_for(model);
                    (t.id.clone(), asked.to_owned(), prices.price(asked).copied())
                })
                .collect()
        });
        Some(Meter {
            host: self.host.clone(),
            upstash,
            tenant: tenant.to_owned(),
            request_id: self.request_id.to_owned(),
            token_subjects,
            paced,
            spend,
        })
    }
}

impl<H: Host> Meter<H> {
    /// Records the usage of an answer's body (an OpenAI chat completion) from `target`; nothing
    /// without usage.
    pub fn record(mut self, body: &[u8], target: &str) {
        let Ok(value) = serde_json::from_slice::<Value>(body) else { return };
        let now = self.host.now_ms();
        if self.paced.iter().any(|id| id == target) {
            self.token_subjects.push(pacing_subject(target));
        }
        let tokens = value.get("usage").and_then(used_tokens).filter(|n| !self.token_subjects.is_empty() && *n > 0);
        let mut spend = None;
        if let (Some(targets), Some(usage)) = (&self.spend, Usage::of_completion(&value)) {
            match targets.iter().find(|(id, _, _)| id == target) {
                Some((_, _, Some(price))) => spend = Some((target.to_owned(), price.cost_nanos(&usage))),
                Some((_, model, None)) => {
                    let fields = json!({"tenant": self.tenant, "target": target, "model": model});
                    log_line(&self.host, &self.request_id, "warn", "spend_unpriced", fields);
                }
                None => {}
            }
        }
        let record = UsageRecord {
            tenant: self.tenant,
            token_subjects: self.token_subjects,
            tokens: tokens.map(|n| (Position::at(now).window, n)),
            spend: spend.filter(|(_, nanos)| *nanos > 0),
            at_ms: now,
        };
        if record.tokens.is_none() && record.spend.is_none() {
            return;
        }
        let host = self.host.clone();
        let (upstash, request_id) = (self.upstash, self.request_id);
        self.host.spawn_background(Box::pin(async move {
            let redis = Redis::new(&upstash);
            if let Err(e) = redis.record_usage(&host, &record, WRITE_TIMEOUT_MS).await {
                let fields = json!({"tenant": record.tenant, "tokens": record.tokens.map(|t| t.1), "nanos": record.spend.map(|s| s.1), "detail": e.to_string()});
                log_line(&host, &request_id, "warn", "usage_not_recorded", fields);
            }
        }));
    }
}
