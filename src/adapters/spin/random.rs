//! The `Random` port: `wasi:random` through getrandom.

use super::SpinHost;
use crate::ports::Random;

impl Random for SpinHost {
    fn random_u64(&self) -> u64 {
        let mut bytes = [0u8; 8];
        // WASI always has a random source; a zero id is still a valid id.
        let _ = getrandom::fill(&mut bytes);
        u64::from_le_bytes(bytes)
    }
}
