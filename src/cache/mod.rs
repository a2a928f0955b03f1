//! What makes an exact-match cache correct: the key (what counts as the same request), the entry
//! (what is stored and when it expires), which answers are worth storing, the policy (what a
//! request allows), and the status headers (what happened). Pure functions only: no store access here.

pub mod entry;
pub mod key;
pub mod policy;
pub mod status;
pub mod storable;
