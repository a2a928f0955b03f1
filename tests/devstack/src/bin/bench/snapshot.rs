//! Copies of the artefacts a run measures, taken at its start: `build/` (the worker) and the Spin
//! component, under `target/<tag>/` with the same relative paths and modification times, and the
//! dev stack pointed at them (`DEVSTACK_WORKER_BUILD`, `DEVSTACK_SPIN_COMPONENT`). A rebuild
//! during the run then changes nothing it measures: `wrangler dev` reloads, and crashes on a
//! half-written module, when the build it serves is rewritten (shared TOOLCHAIN.md).
//!
//! Must not: build anything, or leave the copies behind (they go when the snapshot is dropped).

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use devstack::{spin, worker};

pub const WORKER_BUILD: &str = "build";
pub const SPIN_COMPONENT: &str = "target/wasm32-wasip2/spin/llm_edge_cache.wasm";

/// The copies; removed on drop.
pub struct Snapshot {
    /// Holds `build/` and the component at their usual relative paths.
    pub root: PathBuf,
}

impl Snapshot {
    /// Copies the worker build and the component (the one `DEVSTACK_SPIN_COMPONENT` names, if
    /// set) and points the dev stack at the copies. Call before any thread starts.
    pub fn take(root: &Path, tag: &str) -> anyhow::Result<Snapshot> {
        let dir = root.join("target").join(tag);
        let snapshot = Snapshot { root: dir.clone() };
        copy_tree(&root.join(WORKER_BUILD), &dir.join(WORKER_BUILD)).context("copy build/ (build it first)")?;
        let component = std::env::var_os(spin::COMPONENT_VAR).map_or_else(|| root.join(SPIN_COMPONENT), PathBuf::from);
        copy_file(&component, &dir.join(SPIN_COMPONENT)).context("copy the Spin component (build it first)")?;
        // Safe here: the bench sets these before it starts any thread.
        std::env::set_var(worker::BUILD_VAR, dir.join(WORKER_BUILD));
        std::env::set_var(spin::COMPONENT_VAR, dir.join(SPIN_COMPONENT));
        Ok(snapshot)
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(to).with_context(|| format!("create {}", to.display()))?;
    for entry in fs::read_dir(from).with_context(|| format!("read {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            copy_file(&entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Copies a file and keeps its modification time (the report says when each artefact was built).
fn copy_file(from: &Path, to: &Path) -> anyhow::Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    }
    fs::copy(from, to).with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
    let modified = fs::metadata(from)?.modified()?;
    File::options().write(true).open(to)?.set_modified(modified)?;
    Ok(())
}
