//! The failover state machine alone, with no executor: a manual `now`, scripted outcomes, and the
//! actions it answers with (build, send, sleep, done).
#![cfg(not(target_arch = "wasm32"))]

mod support;

use llm_edge_cache::error::{Unsupported, UpstreamError};
use llm_edge_cache::routing::backoff::RetryPolicy;
use llm_edge_cache::routing::breaker::{Breaker, BreakerConfig};
use llm_edge_cache::routing::failover::{Action, Changed, Failover, Failure, Outcome, Settings};
use llm_edge_cache::routing::health::Health;
use llm_edge_cache::routing::table::{ProviderKind, Target};
use support::{target, T0};

type Machine<'a> = Failover<'a, &'static str>;
type Step = Action<&'static str>;

fn named(kind: ProviderKind, id: &str) -> Target {
    Target { id: id.into(), ..target(kind, id) }
}

fn pair() -> Vec<Target> {
    vec![named(ProviderKind::OpenAi, "primary"), named(ProviderKind::OpenAiCompatible, "secondary")]
}

fn settings(deadline_ms: u64) -> Settings {
    Settings {
        retry: RetryPolicy::default(),
        breaker: BreakerConfig::default(),
        timeout_ms: 10_000,
        deadline_ms: T0 + deadline_ms,
    }
}

fn machine<'a>(targets: &'a [Target], health: &'a Health, settings: Settings) -> Machine<'a> {
    Failover::new(targets.iter().collect(), health, settings)
}

fn server(status: u16) -> Result<&'static str, UpstreamError> {
    Err(UpstreamError::Server { status, retry_after_ms: None })
}

fn limited(retry_after_ms: Option<u64>) -> Result<&'static str, UpstreamError> {
    Err(UpstreamError::RateLimited { retry_after_ms })
}

fn rejected(message: &str) -> UpstreamError {
    UpstreamError::ClientRequest {
        status: 400,
        kind: "invalid_request_error".into(),
        message: message.into(),
        param: Some("messages".into()),
    }
}

fn failures(list: &[(&str, &'static str)]) -> Vec<Failure> {
    list.iter().map(|(target, code)| Failure { target: (*target).into(), code }).collect()
}

/// Builds and admits `index` at `now`; asserts the machine then sends to it.
fn send(m: &mut Machine, now: u64, step: Step, index: usize) -> u64 {
    assert!(matches!(step, Action::Build { target } if target == index), "build {index}: {step:?}");
    match m.on_built(now, Ok(())) {
        Action::Send { target, retry: 0, budget_ms } if target == index => budget_ms,
        other => panic!("expected a first send to {index}, got {other:?}"),
    }
}

fn done(step: Step) -> Outcome<&'static str> {
    match step {
        Action::Done(outcome) => outcome,
        other => panic!("expected done, got {other:?}"),
    }
}

#[test]
fn a_server_error_is_retried_once_after_a_jittered_backoff_then_the_next_target_answers() {
    let (targets, health) = (pair(), Health::default());
    let mut m = machine(&targets, &health, settings(60_000));
    let start = m.start(T0);
    assert_eq!(send(&mut m, T0, start, 0), 10_000, "the attempt's timeout");
    assert!(matches!(m.on_outcome(T0 + 5, server(500), 100), Action::Sleep { ms: 100 }), "jitter in [0, base]");
    assert_eq!(m.changed(), Changed { failed: true, ..Changed::default() });
    assert!(matches!(m.on_wake(T0 + 105), Action::Send { target: 0, retry: 1, budget_ms: 10_000 }));
    let next = m.on_outcome(T0 + 110, server(529), 7);
    assert_eq!(send(&mut m, T0 + 110, next, 1), 10_000);
    match done(m.on_outcome(T0 + 120, Ok("hello"), 0)) {
        Outcome::Answered { value, target, attempts, fallback } => {
            assert_eq!((value, target.id.as_str(), attempts, fallback), ("hello", "secondary", 3, true));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn our_rejected_key_a_malformed_or_too_large_answer_moves_on_at_once() {
    for error in [
        UpstreamError::Auth { status: 401 },
        UpstreamError::Auth { status: 403 },
        UpstreamError::Malformed("no choices".into()),
        UpstreamError::TooLarge { limit: 1024 },
    ] {
        let (targets, health) = (pair(), Health::default());
        let mut m = machine(&targets, &health, settings(60_000));
        let start = m.start(T0);
        send(&mut m, T0, start, 0);
        let next = m.on_outcome(T0 + 1, Err(error.clone()), 0);
        assert!(matches!(next, Action::Build { target: 1 }), "{error:?}: {next:?}");
        assert!(m.changed().failed);
        assert_ne!(health.breaker("primary"), Some(Breaker::default()), "counted as a failure");
    }
}

#[test]
fn a_429_with_a_short_retry_after_sleeps_that_long_then_retries_the_same_target() {
    let (targets, health) = (pair(), Health::default());
    let mut m = machine(&targets, &health, settings(60_000));
    let start = m.start(T0);
    send(&mut m, T0, start, 0);
    assert!(matches!(m.on_outcome(T0, limited(Some(200)), 999), Action::Sleep { ms: 200 }), "the advice, no jitter");
    assert!(m.changed().cooled_down);
    assert!(matches!(m.on_wake(T0 + 200), Action::Send { target: 0, retry: 1, .. }), "the cool-down is over");
}

#[test]
fn a_429_with_a_long_or_no_retry_after_moves_on_and_cools_the_target_down() {
    for (advice, cooled_for) in [(Some(30_000), 30_000), (None, RetryPolicy::default().default_cooldown_ms)] {
        let (targets, health) = (pair(), Health::default());
        let mut m = machine(&targets, &health, settings(60_000));
        let start = m.start(T0);
        send(&mut m, T0, start, 0);
        assert!(matches!(m.on_outcome(T0, limited(advice), 0), Action::Build { target: 1 }));
        assert_eq!(m.changed(), Changed { failed: true, breaker_opened: false, cooled_down: true });
        assert_eq!(health.marks("primary").cool_until_ms, T0 + cooled_for);

        // The next request skips the target while it rests.
        let mut again = machine(&targets, &health, settings(60_000));
        let start = again.start(T0 + 1_000);
        assert!(matches!(again.on_built(T0 + 1_000, Ok(())), Action::Build { target: 1 }), "{start:?}");
        let next = again.on_built(T0 + 1_000, Ok(()));
        assert!(matches!(next, Action::Send { target: 1, .. }));
    }
}

#[test]
fn when_every_target_rests_the_client_is_told_when_the_first_is_back() {
    let targets = vec![named(ProviderKind::OpenAi, "only")];
    let health = Health::default();
    let mut m = machine(&targets, &health, settings(60_000));
    let start = m.start(T0);
    send(&mut m, T0, start, 0);
    match done(m.on_outcome(T0, limited(Some(9_000)), 0)) {
        Outcome::AllFailed { failures: f, retry_after_ms, attempts, last } => {
            assert_eq!(f, failures(&[("only", "upstream_rate_limited")]));
            assert_eq!((retry_after_ms, attempts), (Some(9_000), 1));
            assert_eq!(last, Some(UpstreamError::RateLimited { retry_after_ms: Some(9_000) }));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_deadline_ends_the_request_and_names_the_targets_not_tried() {
    let (targets, health) = (pair(), Health::default());
    let mut m = machine(&targets, &health, settings(1_000));
    let start = m.start(T0);
    assert_eq!(send(&mut m, T0, start, 0), 1_000, "the attempt gets what is left of the deadline");
    let next = m.on_outcome(T0 + 1_000, Err(UpstreamError::Timeout { ms: 1_000 }), 0);
    assert!(matches!(next, Action::Build { target: 1 }));
    match done(m.on_built(T0 + 1_000, Ok(()))) {
        Outcome::AllFailed { failures: f, retry_after_ms: None, attempts: 1, .. } => {
            assert_eq!(f, failures(&[("primary", "upstream_timeout"), ("secondary", "deadline_exceeded")]));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_backoff_that_would_end_past_the_deadline_moves_on_instead() {
    let (targets, health) = (pair(), Health::default());
    let mut m = machine(&targets, &health, settings(1_000));
    let start = m.start(T0);
    send(&mut m, T0, start, 0);
    assert!(matches!(m.on_outcome(T0 + 900, server(503), 200), Action::Build { target: 1 }));
}

#[test]
fn a_stall_moves_on_at_once_and_only_the_last_target_is_retried_with_room_for_a_whole_attempt() {
    let (targets, health) = (pair(), Health::default());
    let stall = || Err(UpstreamError::Timeout { ms: 10_000 });
    let mut m = machine(&targets, &health, settings(60_000));
    let start = m.start(T0);
    send(&mut m, T0, start, 0);
    let next = m.on_outcome(T0 + 10_000, stall(), 0);
    send(&mut m, T0 + 10_000, next, 1);
    assert!(matches!(m.on_outcome(T0 + 20_000, stall(), 50), Action::Sleep { ms: 50 }), "the last target");
    assert!(matches!(m.on_wake(T0 + 20_050), Action::Send { target: 1, retry: 1, budget_ms: 10_000 }));

    // 25 s left: a backoff and a whole 10 s attempt fit. 10.1 s left: they do not.
    let mut m = machine(&targets[1..], &health, settings(35_000));
    let start = m.start(T0);
    send(&mut m, T0, start, 0);
    assert!(matches!(m.on_outcome(T0 + 10_000, stall(), 100), Action::Sleep { ms: 100 }));
    let mut m = machine(&targets[1..], &health, settings(20_100));
    let start = m.start(T0);
    send(&mut m, T0, start, 0);
    match done(m.on_outcome(T0 + 10_000, stall(), 200)) {
        Outcome::AllFailed { failures: f, attempts: 1, .. } => {
            assert_eq!(f, failures(&[("secondary", "upstream_timeout")]));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_open_breaker_skips_its_target_without_a_call() {
    let (targets, health) = (pair(), Health::default());
    let config = BreakerConfig { min_requests: 1, ..BreakerConfig::default() };
    assert!(health.record("primary", T0, false, &config), "opened");
    let mut m = machine(&targets, &health, Settings { breaker: config, ..settings(60_000) });
    assert!(matches!(m.start(T0 + 1), Action::Build { target: 0 }));
    let next = m.on_built(T0 + 1, Ok(()));
    send(&mut m, T0 + 1, next, 1);
    // The secondary's one failure opens its breaker too: no retry, no waiting.
    let outcome = done(m.on_outcome(T0 + 2, Err(UpstreamError::Connect("refused".into())), 0));
    assert_eq!(m.changed(), Changed { failed: true, breaker_opened: true, cooled_down: false });
    match outcome {
        Outcome::AllFailed { failures: f, attempts: 1, retry_after_ms, .. } => {
            assert_eq!(f, failures(&[("primary", "circuit_open"), ("secondary", "upstream_unreachable")]));
            assert_eq!(retry_after_ms, None, "a target that failed is not merely resting");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_target_rested_during_the_backoff_is_left_with_its_own_failure() {
    let targets = vec![named(ProviderKind::OpenAi, "only")];
    let health = Health::default();
    let mut m = machine(&targets, &health, settings(60_000));
    let start = m.start(T0);
    send(&mut m, T0, start, 0);
    assert!(matches!(m.on_outcome(T0, server(502), 120), Action::Sleep { ms: 120 }));
    health.cool_down("only", T0 + 5_000); // another request learned the target is rate limited
    match done(m.on_wake(T0 + 120)) {
        Outcome::AllFailed { failures: f, attempts: 1, .. } => {
            assert_eq!(f, failures(&[("only", "upstream_server_error")]));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_rejected_translation_moves_on_and_when_every_target_rejects_the_first_rejection_is_returned() {
    let targets = vec![named(ProviderKind::Anthropic, "anthropic"), named(ProviderKind::Gemini, "gemini")];
    let health = Health::default();
    let mut m = machine(&targets, &health, settings(60_000));
    let start = m.start(T0);
    send(&mut m, T0, start, 0);
    let next = m.on_outcome(T0 + 1, Err(rejected("first")), 0);
    assert_eq!(m.changed(), Changed { failed: true, ..Changed::default() });
    send(&mut m, T0 + 1, next, 1);
    match done(m.on_outcome(T0 + 2, Err(rejected("second")), 0)) {
        Outcome::ClientError { error, attempts: 2 } => assert_eq!(error, rejected("first")),
        other => panic!("{other:?}"),
    }
    for id in ["anthropic", "gemini"] {
        assert_eq!(health.breaker(id), Some(Breaker::default()), "{id}: nothing recorded");
    }
}

#[test]
fn a_rejected_translation_then_an_answer_is_a_fallback() {
    let targets = vec![named(ProviderKind::Gemini, "gemini"), named(ProviderKind::OpenAi, "openai")];
    let health = Health::default();
    let mut m = machine(&targets, &health, settings(60_000));
    let start = m.start(T0);
    send(&mut m, T0, start, 0);
    let next = m.on_outcome(T0, Err(rejected("translation")), 0);
    send(&mut m, T0, next, 1);
    assert!(matches!(
        done(m.on_outcome(T0, Ok("answer"), 0)),
        Outcome::Answered { value: "answer", attempts: 2, fallback: true, .. }
    ));
}

#[test]
fn a_rejection_of_the_clients_own_request_stops_at_once_and_counts_as_the_targets_success() {
    let (targets, health) = (pair(), Health::default());
    let mut m = machine(&targets, &health, settings(60_000));
    let start = m.start(T0);
    send(&mut m, T0, start, 0);
    match done(m.on_outcome(T0, Err(rejected("bad temperature")), 0)) {
        Outcome::ClientError { error, attempts: 1 } => assert_eq!(error, rejected("bad temperature")),
        other => panic!("{other:?}"),
    }
    assert_ne!(health.breaker("primary"), Some(Breaker::default()), "recorded");
    assert_eq!(health.breaker("secondary"), None, "never admitted");
}

#[test]
fn targets_that_cannot_express_the_request_are_skipped_before_admission() {
    let targets = vec![named(ProviderKind::Anthropic, "anthropic"), named(ProviderKind::Gemini, "gemini")];
    let health = Health::default();
    let why = |p| Unsupported::new(p, "logit_bias", "no equivalent");
    let mut m = machine(&targets, &health, settings(60_000));
    assert!(matches!(m.start(T0), Action::Build { target: 0 }));
    assert!(matches!(m.on_built(T0, Err(why("anthropic"))), Action::Build { target: 1 }));
    match done(m.on_built(T0, Err(why("gemini")))) {
        Outcome::Unsupported(reasons) => assert_eq!(reasons, vec![why("anthropic"), why("gemini")]),
        other => panic!("{other:?}"),
    }
    assert_eq!(health.breaker("anthropic"), None, "no probe claimed, nothing admitted");
}

#[test]
fn no_retries_configured_means_one_attempt_per_target() {
    let (targets, health) = (pair(), Health::default());
    let no_retries = RetryPolicy { retries: 0, ..RetryPolicy::default() };
    let mut m = machine(&targets, &health, Settings { retry: no_retries, ..settings(60_000) });
    let start = m.start(T0);
    send(&mut m, T0, start, 0);
    let next = m.on_outcome(T0, server(500), 0);
    send(&mut m, T0, next, 1);
    match done(m.on_outcome(T0, Err(UpstreamError::Connect("refused".into())), 0)) {
        Outcome::AllFailed { failures: f, attempts: 2, last, .. } => {
            assert_eq!(f, failures(&[("primary", "upstream_server_error"), ("secondary", "upstream_unreachable")]));
            assert_eq!(last, Some(UpstreamError::Connect("refused".into())));
        }
        other => panic!("{other:?}"),
    }
}
