//! Spend budgets as pure arithmetic told the time: which UTC day and month `now` is in, when
//! each ends, and what a tenant's recorded spend means against its daily and monthly budgets
//! (under the soft threshold, past it: warn, past the hard one: refuse or degrade).
//!
//! Money is in nano-dollars (`crate::prices`), as Redis keeps it.
//! Must not: do IO or read a clock (every time is given), or decide the wording of what a
//! client is told (the gateway does).

const DAY_MS: u64 = 86_400_000;

/// The two periods a budget is kept over (UTC calendar days and months).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    Day,
    Month,
}

impl Period {
    /// The word of headers, logs and messages.
    pub fn word(self) -> &'static str {
        match self {
            Period::Day => "daily",
            Period::Month => "monthly",
        }
    }
}

/// A UTC calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date {
    pub year: i64,
    pub month: u32,
    pub day: u32,
}

impl Date {
    /// The date `ms` (since the epoch) falls on.
    pub fn of_ms(ms: u64) -> Date {
        civil_from_days((ms / DAY_MS) as i64)
    }

    /// The label of its day in Redis keys: `2026-12-01`.
    pub fn day_label(self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// The label of its month in Redis keys: `2026-12`.
    pub fn month_label(self) -> String {
        format!("{:04}-{:02}", self.year, self.month)
    }

    /// The label of `period` in Redis keys.
    pub fn label(self, period: Period) -> String {
        match period {
            Period::Day => self.day_label(),
            Period::Month => self.month_label(),
        }
    }
}

/// When the period holding `now_ms` ends (the next UTC midnight, or the first of next month).
pub fn period_end_ms(period: Period, now_ms: u64) -> u64 {
    match period {
        Period::Day => (now_ms / DAY_MS + 1) * DAY_MS,
        Period::Month => {
            let d = Date::of_ms(now_ms);
            let (year, month) = if d.month == 12 { (d.year + 1, 1) } else { (d.year, d.month + 1) };
            days_from_civil(year, month, 1).max(0) as u64 * DAY_MS
        }
    }
}

/// Days since 1970-01-01 → the date (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> Date {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Date { year, month, day }
}

/// The date → days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// One budget's thresholds, in nano-dollars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// The budget itself (for messages).
    pub budget: u64,
    /// Spend at or above this warns.
    pub soft: u64,
    /// Spend at or above this is past the budget (refuse or degrade).
    pub hard: u64,
}

impl Thresholds {
    /// The thresholds of a budget of `usd` with the two percentages of it.
    pub fn of(usd: f64, soft_percent: u64, hard_percent: u64) -> Thresholds {
        let budget = (usd * 1e9).round() as u64;
        let share = |percent: u64| ((budget as u128 * percent as u128) / 100).min(u64::MAX as u128) as u64;
        Thresholds { budget, soft: share(soft_percent), hard: share(hard_percent).max(1) }
    }
}

/// Where one period's spend stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetStanding {
    pub period: Period,
    pub spent: u64,
    pub thresholds: Thresholds,
}

impl BudgetStanding {
    /// The share of the budget spent, in whole percent (rounded down).
    pub fn percent(&self) -> u64 {
        (self.spent as u128 * 100 / self.thresholds.budget.max(1) as u128).min(u64::MAX as u128) as u64
    }

    pub fn past_soft(&self) -> bool {
        self.spent >= self.thresholds.soft
    }

    pub fn past_hard(&self) -> bool {
        self.spent >= self.thresholds.hard
    }
}

/// What a tenant's spend says before a provider call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BudgetVerdict {
    /// The periods past their soft threshold (and not past their hard one), for the warning.
    pub warnings: Vec<BudgetStanding>,
    /// The period past its hard threshold that lasts longest (the month over the day), if any,
    /// and when it ends.
    pub over: Option<(BudgetStanding, u64)>,
}

/// Judges the spend of each period that has a budget, at `now_ms`.
pub fn judge(now_ms: u64, standings: &[BudgetStanding]) -> BudgetVerdict {
    let mut verdict = BudgetVerdict::default();
    for standing in standings {
        if standing.past_hard() {
            let until = period_end_ms(standing.period, now_ms);
            if verdict.over.as_ref().is_none_or(|(_, known)| until > *known) {
                verdict.over = Some((*standing, until));
            }
        } else if standing.past_soft() {
            verdict.warnings.push(*standing);
        }
    }
    verdict
}

/// The `x-budget-warning` header's value: each period past its soft threshold, as
/// `daily=85%` (comma-separated).
pub fn warning_header(warnings: &[BudgetStanding]) -> Option<String> {
    let parts: Vec<String> = warnings.iter().map(|w| format!("{}={}%", w.period.word(), w.percent())).collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}
