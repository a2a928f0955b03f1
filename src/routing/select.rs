//! The order in which a request tries targets: lowest `priority` first; within one priority a
//! weighted random order (drawn without replacement, so every target of the group is still tried
//! if the first fails). Randomness comes from the caller (the host).

use crate::routing::table::Target;

/// Orders `targets`, drawing from `random` (a fresh random u64 per call).
pub fn order(targets: &[Target], mut random: impl FnMut() -> u64) -> Vec<&Target> {
    let mut priorities: Vec<u32> = targets.iter().map(|t| t.priority).collect();
    priorities.sort_unstable();
    priorities.dedup();
    let mut out = Vec::with_capacity(targets.len());
    for p in priorities {
        let mut group: Vec<&Target> = targets.iter().filter(|t| t.priority == p).collect();
        while !group.is_empty() {
            let total: u64 = group.iter().map(|t| u64::from(t.weight)).sum();
            let mut pick = random() % total;
            let index = group
                .iter()
                .position(|t| {
                    let w = u64::from(t.weight);
                    if pick < w {
                        true
                    } else {
                        pick -= w;
                        false
                    }
                })
                .expect("pick < total weight always lands in the group");
            out.push(group.remove(index));
        }
    }
    out
}
