//! Routing decisions as pure functions: the route table's validation, weighted ordering measured
//! over many draws, backoff timing, and the breaker state machine on a manual clock.
#![cfg(not(target_arch = "wasm32"))]

use llm_edge_cache::routing::backoff::{Next, RetryPolicy};
use llm_edge_cache::routing::breaker::{Breaker, BreakerConfig, State};
use llm_edge_cache::routing::health::{Health, Skip};
use llm_edge_cache::routing::select::order;
use llm_edge_cache::routing::sharing::{Added, Counts, Marks, Seen};
use llm_edge_cache::routing::table::{ProviderKind, RouteTable, TargetDefaults};
use llm_edge_cache::testing::MapVars;

const DEFAULTS: TargetDefaults = TargetDefaults { default_max_tokens: 4096 };

fn parse(raw: &str) -> (RouteTable, Vec<String>) {
    let vars = MapVars::new(&[("OPENAI_API_KEY", "sk-o"), ("ANTHROPIC_API_KEY", "sk-a"), ("GEMINI_API_KEY", "g-k")]);
    let mut problems = Vec::new();
    let table = RouteTable::parse(raw, &vars, &DEFAULTS, &mut problems);
    (table, problems)
}

const LITELLM_LIKE: &str = r#"{"gpt-4": [
    {"provider": "openai", "model": "gpt-4o", "key": "OPENAI_API_KEY", "weight": 5},
    {"provider": "anthropic", "model": "claude-sonnet-4-5", "key": "ANTHROPIC_API_KEY", "weight": 3},
    {"provider": "gemini", "model": "gemini-2.5-pro", "key": "GEMINI_API_KEY", "weight": 2},
    {"provider": "openai-compatible", "base_url": "http://127.0.0.1:11434/v1/", "model": "llama3.1", "priority": 1, "timeout_ms": 5000}
]}"#;

#[test]
fn a_valid_table_resolves_targets_and_secrets() {
    let (table, problems) = parse(LITELLM_LIKE);
    assert!(problems.is_empty(), "{problems:?}");
    let targets = table.targets("gpt-4").expect("routed");
    assert_eq!(targets.len(), 4);
    assert_eq!(targets[0].id, "openai:gpt-4o");
    assert_eq!(targets[0].base_url, "https://api.openai.com/v1");
    assert_eq!(targets[0].api_key.as_ref().map(|k| k.expose()), Some("sk-o"));
    assert_eq!(targets[1].kind, ProviderKind::Anthropic);
    assert_eq!(targets[2].base_url, "https://generativelanguage.googleapis.com/v1beta");
    assert_eq!(targets[3].base_url, "http://127.0.0.1:11434/v1", "trailing slash trimmed");
    assert_eq!((targets[3].priority, targets[3].timeout_ms, targets[3].api_key.is_none()), (1, Some(5000), true));
    assert!(table.targets("gpt-3.5").is_none(), "no wildcard: unrouted");
    assert_eq!(table.models().collect::<Vec<_>>(), ["gpt-4"]);
    let (table, problems) = parse(
        r#"{"m": [{"provider": "openai", "model": "o3", "key": "OPENAI_API_KEY", "first_token_timeout_ms": 240000}]}"#,
    );
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(table.targets("m").expect("routed")[0].first_token_timeout_ms, Some(240_000));
}

#[test]
fn every_problem_is_reported_at_once_without_secret_values() {
    let raw = r#"{"m": [
        {"provider": "nope", "model": "x"},
        {"provider": "anthropic", "model": "c", "key": "MISSING_KEY"},
        {"provider": "gemini", "key": "GEMINI_API_KEY"},
        {"provider": "openai-compatible", "model": "l"},
        {"provider": "openai", "model": "gpt-4o", "key": "OPENAI_API_KEY", "weight": 0},
        {"provider": "openai", "model": "gpt-4o", "key": "OPENAI_API_KEY", "timeout_ms": 0},
        {"provider": "openai", "model": "gpt-4o", "key": "OPENAI_API_KEY", "first_token_timeout_ms": 600001}
    ], "empty": []}"#;
    let (_, problems) = parse(raw);
    let all = problems.join("\n");
    for expected in [
        "provider must be one of",
        "MISSING_KEY is not set",
        "gemini target needs a model",
        "openai-compatible target needs a base_url",
        "weight must be from 1 to 1000",
        "timeout_ms must be from 1 to 600000",
        "first_token_timeout_ms must be from 1 to 600000",
        "'empty' has no targets",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    assert!(!all.contains("sk-o") && !all.contains("g-k"), "no secret values: {all}");
    let (_, unknown_field) = parse(r#"{"m": [{"provider": "openai", "modle": "typo"}]}"#);
    assert!(unknown_field[0].contains("'modle' is not a target field"), "{unknown_field:?}");
}

#[test]
fn an_id_names_one_target_only() {
    let (_, problems) = parse(
        r#"{"a": [{"provider": "openai", "model": "gpt-4o", "key": "OPENAI_API_KEY"}],
            "b": [{"provider": "openai", "model": "gpt-4o", "key": "OPENAI_API_KEY", "timeout_ms": 10}]}"#,
    );
    assert!(
        problems.iter().any(|p| p.contains("id 'openai:gpt-4o' is used by a target with other settings")),
        "{problems:?}"
    );
    let (table, problems) = parse(
        r#"{"a": [{"provider": "openai", "model": "gpt-4o", "key": "OPENAI_API_KEY"}],
            "*": [{"provider": "openai", "model": "gpt-4o", "key": "OPENAI_API_KEY"}]}"#,
    );
    assert!(problems.is_empty(), "the same target under two models is fine: {problems:?}");
    assert_eq!(table.targets("anything").expect("wildcard")[0].id, "openai:gpt-4o");
    assert_eq!(table.all_targets().len(), 1);
}

/// xorshift64*: a deterministic stream of draws for measuring the weighted order.
fn rng(mut x: u64) -> impl FnMut() -> u64 {
    move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn weights_share_load_and_priorities_are_fallbacks() {
    let (table, _) = parse(LITELLM_LIKE);
    let targets = table.targets("gpt-4").expect("routed");
    let mut draw = rng(42);
    let mut first = [0u32; 3];
    const N: u32 = 100_000;
    for _ in 0..N {
        let ordered = order(targets, &mut draw);
        assert_eq!(ordered.len(), 4, "every target is still tried");
        assert_eq!(ordered[3].priority, 1, "the priority-1 fallback always comes last");
        let i = targets.iter().position(|t| t.id == ordered[0].id).expect("known");
        first[i] += 1;
    }
    for (i, expected) in [0.5, 0.3, 0.2].into_iter().enumerate() {
        let share = f64::from(first[i]) / f64::from(N);
        assert!((share - expected).abs() < 0.01, "target {i}: {share} vs {expected}");
    }
}

#[test]
fn backoff_is_jittered_capped_and_honours_retry_after() {
    let p = RetryPolicy { retries: 3, base_ms: 100, max_ms: 300, retry_after_cap_ms: 2_000, default_cooldown_ms: 1 };
    let mut draw = rng(7);
    for attempt in 0..3 {
        let ceiling = (100u64 << attempt).min(300);
        let mut seen_max = 0;
        for _ in 0..10_000 {
            match p.next(attempt, None, draw()) {
                Next::RetryAfter { ms } => {
                    assert!(ms <= ceiling, "attempt {attempt}: {ms} > {ceiling}");
                    seen_max = seen_max.max(ms);
                }
                Next::NextTarget => panic!("retries remain"),
            }
        }
        assert!(seen_max > ceiling * 9 / 10, "full jitter reaches near the ceiling");
    }
    assert_eq!(p.next(3, None, 1), Next::NextTarget, "out of retries");
    assert_eq!(p.next(0, Some(1_500), 1), Next::RetryAfter { ms: 1_500 }, "the provider's advice wins");
    assert_eq!(p.next(0, Some(2_001), 1), Next::NextTarget, "too long a wait: go elsewhere");
}

const CFG: BreakerConfig = BreakerConfig { error_rate: 0.05, window_ms: 60_000, min_requests: 20, open_ms: 30_000 };

#[test]
fn the_breaker_needs_enough_requests_and_enough_errors() {
    let mut b = Breaker::default();
    for i in 0..19 {
        assert!(b.allow(i, &CFG), "closed");
        assert!(!b.record(i, false, &CFG), "fewer than 20 requests never open it");
    }
    assert!(b.record(19, false, &CFG), "the 20th error opens it");
    assert_eq!(b.state(), State::Open { until_ms: 30_019 });

    // 1 error in 20 is exactly 5%: not past the threshold; 2 in 21 is.
    let mut b = Breaker::default();
    for i in 0..19 {
        b.record(i, true, &CFG);
    }
    assert!(!b.record(19, false, &CFG));
    assert!(b.record(20, false, &CFG));
}

#[test]
fn the_breaker_probes_then_closes_or_reopens() {
    let mut b = Breaker::default();
    for i in 0..20 {
        b.record(i, false, &CFG);
    }
    assert!(!b.allow(1_000, &CFG), "open");
    assert!(!b.allow(30_018, &CFG));
    assert!(b.allow(30_019, &CFG), "the open period is over: one probe");
    assert!(!b.allow(30_020, &CFG), "only one probe at a time");
    assert!(b.record(30_500, false, &CFG), "a failed probe reopens it");
    assert_eq!(b.state(), State::Open { until_ms: 60_500 });
    assert!(b.allow(60_500, &CFG));
    assert!(!b.record(61_000, true, &CFG), "a good probe closes it");
    assert_eq!(b.state(), State::Closed);
    assert!(b.allow(61_001, &CFG) && b.allow(61_002, &CFG), "closed with a clean window");
    assert!(!b.record(61_003, false, &CFG), "old errors were forgotten");
}

/// A probe whose outcome never comes (its request was dropped, or the deadline passed before
/// the call) must not strand the target: after an open period another probe may go.
#[test]
fn a_lost_probe_is_given_up_after_an_open_period() {
    let mut b = Breaker::default();
    for i in 0..20 {
        b.record(i, false, &CFG);
    }
    assert!(b.allow(30_019, &CFG), "a probe goes");
    assert!(!b.allow(45_000, &CFG), "while it is in flight, nothing else");
    assert!(b.allow(60_019, &CFG), "its outcome never came: another probe may go");
    assert!(!b.record(60_100, true, &CFG));
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn errors_leave_the_window_as_time_passes() {
    let mut b = Breaker::default();
    for i in 0..19 {
        b.record(i, false, &CFG);
    }
    // A minute later those 19 errors have left the window: one more error is 1 of 1.
    assert!(!b.record(70_000, false, &CFG));
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn health_combines_breakers_cooldowns_and_shared_state() {
    let h = Health::default();
    assert_eq!(h.admit("t", 0, &CFG), Ok(()));
    h.cool_down("t", 5_000);
    assert_eq!(h.admit("t", 4_999, &CFG), Err(Skip::CoolingDown));
    assert_eq!(h.admit("t", 5_000, &CFG), Ok(()));
    assert_eq!(h.describe("t", 5_000), "closed");
    // Another isolate saw the target fail: adopt its opening.
    let opened = Seen { slices: vec![], marks: Marks { open_until_ms: 9_000, ..Marks::default() } };
    assert!(!h.merge("u", &opened, 1_000, &CFG), "learned, not opened here");
    assert_eq!(h.admit("u", 2_000, &CFG), Err(Skip::CircuitOpen));
    assert_eq!(h.describe("u", 2_000), "open");
    assert_eq!(h.marks("u"), Marks { open_until_ms: 9_000, ..Marks::default() });
    let reports = h.report(2_000, &CFG);
    assert_eq!(reports.iter().map(|r| r.target.as_str()).collect::<Vec<_>>(), ["t"], "a learned opening is no news");
    assert_eq!(reports[0].marks, Marks { cool_until_ms: 5_000, ..Marks::default() }, "t's own cool-down is");
    // A cool-down that has already passed changes nothing.
    h.merge("v", &Seen { slices: vec![], marks: Marks { cool_until_ms: 500, ..Marks::default() } }, 1_000, &CFG);
    assert_eq!(h.admit("v", 1_000, &CFG), Ok(()));
}

/// Counts read from Redis add to what this isolate saw: together they open the breaker.
#[test]
fn shared_counts_add_to_this_isolates_own() {
    let h = Health::default();
    for t in 0..10 {
        h.record("t", t, false, &CFG);
    }
    let slice = CFG.slice(10);
    // Others' failures: the slice's total is 10 of theirs (this isolate has reported nothing).
    let seen = Seen { slices: vec![(slice, Counts { ok: 0, fail: 10 })], marks: Marks::default() };
    assert!(h.merge("t", &seen, 20, &CFG), "10 here and 10 elsewhere: 20 failures");
    assert_eq!(h.admit("t", 21, &CFG), Err(Skip::CircuitOpen));
    let report = h.report(21, &CFG);
    assert_eq!(report.len(), 1);
    assert_eq!(report[0].marks.open_until_ms, 20 + CFG.open_ms, "the opening is news to report");
    assert!(report[0].slices.is_empty(), "the outcomes that opened it are history");
}

/// What this isolate reported and Redis confirmed is counted once: in the total Redis returned.
#[test]
fn a_confirmed_report_is_not_counted_twice() {
    let h = Health::default();
    for t in 0..10 {
        h.record("t", t, false, &CFG);
    }
    let reports = h.report(10, &CFG);
    assert_eq!(reports[0].slices[0].counts, Counts { ok: 0, fail: 10 });
    assert!(reports[0].slices[0].ttl_ms > 0 && reports[0].slices[0].ttl_ms <= CFG.window_ms);
    // Redis's total after the addition: these 10 and 9 from elsewhere.
    let added = vec![vec![Added { ok: None, fail: Some(19) }]];
    assert!(h.confirm(&reports, Some(&added), 11, &CFG).is_empty(), "19 failures: not yet 20");
    assert_eq!(h.breaker("t").expect("known").counted(11, &CFG), Counts { ok: 0, fail: 19 });
    assert!(h.record("t", 12, false, &CFG), "the 20th opens it");
}

/// A report that failed stays counted here (and is not sent again).
#[test]
fn a_failed_report_stays_counted_here() {
    let h = Health::default();
    for t in 0..19 {
        h.record("t", t, false, &CFG);
    }
    let reports = h.report(20, &CFG);
    assert!(h.confirm(&reports, None, 20, &CFG).is_empty());
    assert!(h.report(21, &CFG).is_empty(), "not sent twice");
    assert!(h.record("t", 22, false, &CFG), "19 kept here and one more");
}

/// An opening that ran out with no closing since leaves the target half-open: one probe goes.
#[test]
fn a_run_out_opening_learned_from_others_is_half_open() {
    let h = Health::default();
    let marks = Marks { open_until_ms: 40_000, ..Marks::default() };
    h.merge("t", &Seen { slices: vec![], marks }, 50_000, &CFG);
    assert_eq!(h.describe("t", 50_000), "half-open");
    assert_eq!(h.admit("t", 50_000, &CFG), Ok(()), "the probe");
    assert_eq!(h.admit("t", 50_001, &CFG), Err(Skip::CircuitOpen), "one at a time");
    assert!(!h.record("t", 50_002, true, &CFG), "it closes");
    assert_eq!(h.report(50_003, &CFG)[0].marks.closed_at_ms, 50_002, "the closing is news to report");
    // An isolate that learns that closing is closed too; one that learns only the opening is not.
    let closed = Health::default();
    let marks = Marks { open_until_ms: 40_000, closed_at_ms: 50_002, ..Marks::default() };
    closed.merge("t", &Seen { slices: vec![], marks }, 50_010, &CFG);
    assert_eq!(closed.describe("t", 50_010), "closed");
}

/// A closing never undoes a later opening, whichever is read last.
#[test]
fn a_closing_does_not_undo_a_later_opening() {
    let h = Health::default();
    let later = Marks { open_until_ms: 90_000, ..Marks::default() };
    h.merge("t", &Seen { slices: vec![], marks: later }, 61_000, &CFG);
    let straggler = Marks { closed_at_ms: 60_000, ..Marks::default() };
    h.merge("t", &Seen { slices: vec![], marks: straggler }, 61_500, &CFG);
    assert_eq!(h.admit("t", 62_000, &CFG), Err(Skip::CircuitOpen));
}

/// Counts of the slices that led to an opening do not open the breaker again after it closed.
#[test]
fn an_opening_starts_a_clean_window() {
    let h = Health::default();
    let slice = CFG.slice(1_000);
    let failing = Seen {
        slices: vec![(slice, Counts { ok: 0, fail: 30 })],
        marks: Marks { open_until_ms: 31_000, ..Marks::default() },
    };
    h.merge("t", &failing, 1_000, &CFG);
    assert_eq!(h.admit("t", 31_000, &CFG), Ok(()), "the probe");
    h.record("t", 31_000, true, &CFG);
    // The 30 failures are still in the window (and in Redis), but they led to the opening.
    h.merge("t", &failing, 32_000, &CFG);
    assert_eq!(h.describe("t", 32_000), "closed");
    assert!(!h.record("t", 32_001, false, &CFG));
    assert_eq!(h.breaker("t").expect("known").counted(32_002, &CFG), Counts { ok: 0, fail: 1 });
}
