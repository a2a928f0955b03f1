//! What makes an exact-match cache correct: the key (what counts as the same request), the entry
//! (what is stored), the verdict (what a found entry may do: every freshness, max-age and
//! stale-if-error rule), whether an entry fits a store, which answers are worth storing, the
//! policy (what a request allows), and the status headers (what happened). Pure functions only:
//! no store access here.

pub mod entry;
pub mod fit;
pub mod key;
pub mod policy;
pub mod status;
pub mod storable;
pub mod verdict;

pub use verdict::{decide, Verdict};
