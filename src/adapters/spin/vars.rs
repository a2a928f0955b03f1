//! The `Vars` port over Spin variables. Spin reads variables asynchronously and only those the
//! component declares, with lowercase names; the core reads synchronously with the names used on
//! every host (`GATEWAY_KEYS`). So every name the configuration reads (`config::VARIABLES`, plus
//! the key secrets `ROUTES` names) is fetched once, up front, and looked up lowercased.

use std::collections::HashMap;

use crate::config::{Config, VARIABLES};
use crate::ports::Vars;

pub struct SpinVars(HashMap<String, String>);

impl SpinVars {
    pub async fn load() -> SpinVars {
        let mut values = HashMap::new();
        for name in VARIABLES {
            if let Some(v) = fetch(name).await {
                values.insert((*name).to_owned(), v);
            }
        }
        let keys = values.get("ROUTES").map(|routes| Config::variables_for(routes)).unwrap_or_default();
        for name in keys {
            if let Some(v) = fetch(&name).await {
                values.insert(name, v);
            }
        }
        SpinVars(values)
    }
}

/// A variable the manifest does not declare, or leaves empty, reads as unset.
async fn fetch(name: &str) -> Option<String> {
    spin_sdk::variables::get(name.to_ascii_lowercase()).await.ok().filter(|v| !v.is_empty())
}

impl Vars for SpinVars {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}
