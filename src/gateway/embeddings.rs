//! `POST /v1/embeddings`: the way of one embeddings request. Authenticated like chat, keyed like
//! chat (tenant, namespace, generation, then the request without `user`: `CacheKey::embeddings_in`),
//! looked up in both tiers with the same hedged read (`lookup`), routed through the same route
//! table, failover and breakers (`origin::call_whole`), and written back to both tiers after the
//! response (`writes`). Embeddings are deterministic, so every complete answer is worth storing.
//! A stale entry answers when every provider fails, as for chat.
//!
//! Not here (yet): single flight and the tenant's rate limits, which count chat tokens.
//! Must not: do IO except through the ports, or answer with anything but OpenAI's shapes.

use http::{Request, Response, StatusCode};

use super::origin::routing_headers;
use super::reply::{self, Form};
use super::{model_not_found, no_route, Exchange};
use crate::api::embeddings::EmbeddingsRequest;
use crate::cache::entry::Entry;
use crate::cache::key::{CacheKey, KeyScope};
use crate::cache::policy::Policy;
use crate::cache::status::{CacheReport, Served};
use crate::ports::{Body, Host};
use crate::providers::embeddings;
use crate::routing::table::Target;

impl<'a, H: Host> Exchange<'a, H> {
    pub(super) async fn embeddings(&mut self, request: Request<Body>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let caller = match self.authenticate(&parts.headers) {
            Ok(caller) => caller,
            Err(e) => return reply::error(&e),
        };
        let tenant = caller.tenant;
        self.record.tenant(tenant);
        let parsed = match self.read_json(&parts.headers, body, self.config.max_body_bytes).await {
            Ok(object) => EmbeddingsRequest::from_object(object),
            Err(e) => Err(e),
        };
        let parsed = match parsed {
            Ok(p) => p,
            Err(e) => return reply::error(&e),
        };
        let config: &'a crate::config::Config = self.config;
        let allowed = config.tenant_policies.policy(tenant).allows_model(&parsed.model)
            && caller.end_user.as_ref().is_none_or(|u| u.policy.allows_model(&parsed.model));
        if !allowed {
            return reply::error(&model_not_found(&parsed.model));
        }
        let policy = match Policy::from_headers(&parts.headers) {
            Ok(p) => p,
            Err(e) => return reply::error(&e),
        };
        let targets = match config.routes.route(&parsed.model) {
            Ok(targets) => targets,
            Err(e) => return reply::error(&no_route(e, &parsed.model)),
        };
        let scope = KeyScope { generation: &config.generation, tenant, namespace: &policy.namespace };
        let key = CacheKey::embeddings_in(&scope, &parsed);
        self.cached_embeddings(&parsed, &policy, key, targets).await
    }

    /// The layered lookup and, on a double miss, the providers; the answer stored after the
    /// response.
    async fn cached_embeddings(
        &mut self,
        request: &EmbeddingsRequest,
        policy: &Policy,
        key: CacheKey,
        targets: &[Target],
    ) -> Response<Body> {
        let mut report = CacheReport::new();
        let stale = match self.read_tiers(policy, &key, &mut report, Form::Json).await {
            Ok(stale) => stale,
            Err(hit) => return hit,
        };
        if policy.only_if_cached {
            return reply::cache_miss("No fresh cached answer exists and the request said only-if-cached.", &report);
        }
        let live = match self.live_targets(targets).await {
            Ok(live) => live,
            Err(e) => return reply::error_with_cache(&e, &report),
        };
        let deadline = self.origin_deadline(stale.is_some());
        report.served = if policy.bypass.is_some() { Served::Bypass } else { Served::Origin };
        let started = self.host.now_ms();
        let build = |target: &Target| embeddings::build_request(target, request);
        let parse = |target: &Target, body, _now_ms| embeddings::parse_success(target, body, request);
        let outcome = self.call_whole(&live, deadline, build, parse).await;
        self.timing.origin_ms = Some(self.host.now_ms().saturating_sub(started));
        let answered = match outcome.answer() {
            Ok(answered) => answered,
            Err(failed) => return self.unanswered(*failed, stale, report, Form::Json, None),
        };
        let answer = answered.value;
        if policy.write {
            let c = self.config;
            let now = self.host.now_ms();
            let entry =
                Entry::new(now, c.fresh_ttl_s, c.stale_ttl_s, &answered.target.id, &answer.model, answer.body.clone());
            let stored = self.writes().store(key, entry);
            (report.kv.stored, report.redis.stored) = (stored.kv, stored.redis);
        }
        let mut response = reply::json(StatusCode::OK, answer.body);
        reply::cache_headers(response.headers_mut(), &report);
        routing_headers(response.headers_mut(), &answered.target.id, answered.attempts, answered.fallback);
        response
    }
}
