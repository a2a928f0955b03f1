//! The `Vars` port: Worker vars and secrets (both are string bindings on `env`).

use super::CfHost;
use crate::ports::Vars;

impl Vars for CfHost {
    fn var(&self, name: &str) -> Option<String> {
        self.inner.env.var(name).ok().map(|v| v.to_string())
    }
}
