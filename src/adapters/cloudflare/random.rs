//! The `Random` port: `crypto.getRandomValues` through getrandom.

use super::CfHost;
use crate::ports::Random;

impl Random for CfHost {
    fn random_u64(&self) -> u64 {
        let mut bytes = [0u8; 8];
        // getrandom only fails where no source exists; Workers always have crypto. A zero id is
        // still a valid id, so a failure is not worth failing a request for.
        let _ = getrandom::fill(&mut bytes);
        u64::from_le_bytes(bytes)
    }
}
