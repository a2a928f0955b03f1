//! Runs the scenarios: starts the shared stack per host, runs scenarios on a few threads, catches
//! each scenario's panic as its failure, stops every stack, prints libtest's summary line.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use devstack::stack::{HostKind, Stack, StackOptions};

/// The hosts every scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    Cloudflare,
    Spin,
}

impl Host {
    pub fn all() -> &'static [Host] {
        &[Host::Cloudflare, Host::Spin]
    }

    /// The host a scenario's peer runs on: the other one.
    pub fn other(self) -> Host {
        match self {
            Host::Cloudflare => Host::Spin,
            Host::Spin => Host::Cloudflare,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Host::Cloudflare => "cloudflare",
            Host::Spin => "spin",
        }
    }

    pub fn kind(self) -> HostKind {
        match self {
            Host::Cloudflare => HostKind::Cloudflare,
            Host::Spin => HostKind::Spin,
        }
    }

    /// A stack on this host.
    pub fn stack(self, vars: Vec<(String, String)>, kv_unbound: bool) -> Result<Stack, devstack::stack::StackError> {
        Stack::start(StackOptions { host: self.kind(), kv_unbound, vars, ..StackOptions::default() })
    }
}

/// What a scenario gets: the host, the shared stacks of that host, and a way to start its own.
pub struct Ctx<'a> {
    pub host: Host,
    /// One OpenAI-compatible target (no `ROUTES`).
    pub shared: &'a Stack,
    /// `ROUTES` with a route of its own for each routing scenario (see `routing::routes`).
    pub routed: &'a Stack,
}

impl Ctx<'_> {
    /// A stack of this scenario's own, with these worker vars over the shared stack's.
    pub fn own_stack(&self, vars: &[(&str, &str)]) -> Stack {
        self.stack_with(shared_vars(), vars)
    }

    /// A stack of this scenario's own, with these worker vars over `base`.
    pub fn stack_with(&self, base: Vec<(String, String)>, vars: &[(&str, &str)]) -> Stack {
        let mut all = base;
        all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self.host.stack(all, false).unwrap_or_else(|e| panic!("own stack for {:?}: {e}", self.host))
    }

    /// A stack of this scenario's own deployed without tier 1.
    pub fn stack_without_kv(&self) -> Stack {
        self.host.stack(shared_vars(), true).unwrap_or_else(|e| panic!("own stack for {:?}: {e}", self.host))
    }
}

/// Worker vars of the shared stack: small limits so limits and timeouts are quick to hit. Its
/// scenarios share one upstream target, so nothing one scenario does to that target may change
/// another's answers: one attempt per call and a breaker that never opens. Retries, cool-downs
/// and breakers are exercised on stacks of their own.
pub fn shared_vars() -> Vec<(String, String)> {
    [
        ("RETRIES_PER_TARGET", "0"),
        ("BREAKER_ERROR_PERCENT", "100"),
        ("MAX_BODY_BYTES", "65536"),
        ("UPSTREAM_TIMEOUT_MS", "3000"),
        ("UPSTREAM_STREAM_IDLE_TIMEOUT_MS", "1500"),
        ("CORS_ALLOWED_ORIGINS", "https://app.example"),
        // Tier 2 only after tier 1 has answered (hedging off): the Cache-Status strings asserted
        // here, and compared across hosts, must not depend on whether a loaded machine's local KV
        // answered within the 25 ms default. Hedging has its host tests (tests/hedge.rs).
        ("TIER2_HEDGE_MS", "60000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

pub type Scenario = (&'static str, fn(&Ctx));

fn scenarios() -> Vec<Scenario> {
    let mut all = Vec::new();
    all.extend(crate::cache::scenarios());
    all.extend(crate::failopen::scenarios());
    all.extend(crate::upstream::scenarios());
    all.extend(crate::streams::scenarios());
    all.extend(crate::coalesce::scenarios());
    all.extend(crate::input::scenarios());
    all.extend(crate::routing::scenarios());
    all.extend(crate::admin::scenarios());
    all.extend(crate::guard::scenarios());
    all.extend(crate::embeddings::scenarios());
    all.extend(crate::budget::scenarios());
    all.extend(crate::browser::scenarios());
    all.extend(crate::pacing::scenarios());
    all.extend(crate::observe::scenarios());
    all
}

const THREADS: usize = 4;

pub fn main() {
    let started = Instant::now();
    // Names given on the command line (not flags) select scenarios by substring.
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let selected: Vec<Scenario> = scenarios()
        .into_iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    let filtered_out = (scenarios().len() - selected.len()) * Host::all().len();
    let passed = AtomicUsize::new(0);
    let failures: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

    // Silence the default panic message: failures are reported once, below, with their name.
    std::panic::set_hook(Box::new(|_| {}));
    // Every host's shared stacks, started on this thread, which outlives them: wrangler and the
    // Spin host are told to stop when the thread that started them ends (see devstack::worker).
    let mut stacks: Vec<(Host, Stack, Stack)> = Vec::new();
    for &host in Host::all() {
        println!("starting the shared {} stacks...", host.name());
        match (host.stack(shared_vars(), false), host.stack(crate::routing::vars(), false)) {
            (Ok(shared), Ok(routed)) => stacks.push((host, shared, routed)),
            (Err(e), _) | (_, Err(e)) => {
                println!("a shared {} stack did not start: {e}", host.name());
                failures.lock().expect("lock").push((format!("{}::<stack>", host.name()), e.to_string()));
            }
        }
    }
    let record = |full: String, t: Instant, outcome: std::thread::Result<()>| match outcome {
        Ok(()) => {
            passed.fetch_add(1, Ordering::SeqCst);
            println!("test {full} ... ok ({:.1}s)", t.elapsed().as_secs_f64());
        }
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into());
            println!("test {full} ... FAILED ({:.1}s)", t.elapsed().as_secs_f64());
            failures.lock().expect("lock").push((full, why));
        }
    };
    for (host, shared, routed) in &stacks {
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..THREADS {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some((name, run)) = selected.get(i) else { break };
                    let t = Instant::now();
                    let ctx = Ctx { host: *host, shared, routed };
                    record(format!("{}::{name}", host.name()), t, catch_unwind(AssertUnwindSafe(|| run(&ctx))));
                });
            }
        });
    }
    // The same requests on both hosts, compared.
    if let [(_, cf, _), (_, spin, _)] = stacks.as_slice() {
        for (name, run) in crate::parity::scenarios() {
            if filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())) {
                let t = Instant::now();
                record(name.to_owned(), t, catch_unwind(AssertUnwindSafe(|| run(cf, spin))));
            }
        }
    }
    if !failures.lock().expect("lock").is_empty() {
        for (host, shared, _) in &stacks {
            let log = shared.worker.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            println!("\n--- last lines of the shared {} gateway log ---", host.name());
            for line in tail.iter().rev() {
                println!("{line}");
            }
        }
    }
    drop(stacks);
    let failures = failures.into_inner().expect("lock");
    for (name, why) in &failures {
        println!("\n---- {name} ----\n{why}");
    }
    let passed = passed.load(Ordering::SeqCst);
    let status = if failures.is_empty() { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {status}. {passed} passed; {} failed; 0 ignored; 0 measured; {filtered_out} filtered out; finished in {:.2}s",
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        std::process::exit(1);
    }
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `limit`.
pub fn eventually<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
