//! Where and how the numbers were taken: machine, runtimes and their versions, commit, command
//! line and load average, for the report's header.
//!
//! Must not: fail the run (anything it cannot find is reported as "unknown").

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

pub struct Environment {
    pub nproc: String,
    pub uname: String,
    pub cpu: String,
    pub wrangler: String,
    pub workerd: String,
    pub node: String,
    /// The wasmtime the Spin test host links (from Cargo.lock).
    pub wasmtime: String,
    pub date: String,
    pub commit: String,
    pub command: String,
    /// The dev stack's Spin overrides (`devstack::spin`), when set: what else ran on Spin.
    pub spin_overrides: Vec<String>,
}

impl Environment {
    pub fn collect(root: &Path, spin_overrides: Vec<String>) -> Environment {
        let version = |package: &str| {
            std::fs::read(root.join("node_modules").join(package).join("package.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| v["version"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "unknown".to_owned())
        };
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let wasmtime = std::fs::read_to_string(root.join("Cargo.lock"))
            .ok()
            .and_then(|lock| locked_version(&lock, "wasmtime"))
            .unwrap_or_else(|| "unknown".to_owned());
        let mut args: Vec<String> = std::env::args().skip(1).collect();
        if !args.is_empty() {
            args.insert(0, "--".to_owned());
        }
        let command = format!("cargo run -p devstack --release --bin bench {}", args.join(" ")).trim_end().to_owned();
        Environment {
            nproc: run(&["nproc"]),
            uname: run(&["uname", "-srm"]),
            cpu,
            wrangler: version("wrangler"),
            workerd: version("workerd"),
            node: version("node"),
            wasmtime,
            date: run(&["date", "-u", "+%Y-%m-%d %H:%M:%S UTC"]),
            commit: run(&["git", "-C", &root.display().to_string(), "rev-parse", "--short", "HEAD"]),
            command,
            spin_overrides,
        }
    }
}

/// The dev stack's Spin overrides set by the caller (`devstack::spin`), as `VAR=value`.
pub fn spin_overrides() -> Vec<String> {
    [devstack::spin::COMPONENT_VAR, devstack::spin::HOST_ARGS_VAR]
        .into_iter()
        .filter_map(|var| std::env::var(var).ok().map(|value| format!("{var}={value}")))
        .collect()
}

/// The version of `package` in a Cargo.lock (the first entry of that name).
fn locked_version(lock: &str, package: &str) -> Option<String> {
    let name_line = format!("name = \"{package}\"");
    let mut lines = lock.lines();
    lines.find(|l| *l == name_line)?;
    let version = lines.next()?.strip_prefix("version = \"")?.strip_suffix('"')?;
    Some(version.to_owned())
}

/// /proc/loadavg's 1, 5 and 15 minute averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// The trimmed stdout of a command, or "unknown" if it fails.
pub fn run(argv: &[&str]) -> String {
    Command::new(argv[0])
        .args(&argv[1..])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_from_a_lock_file() {
        let lock = "[[package]]\nname = \"wasmtime-environ\"\nversion = \"1\"\n\n[[package]]\nname = \"wasmtime\"\nversion = \"48.0.8\"\n";
        assert_eq!(locked_version(lock, "wasmtime").as_deref(), Some("48.0.8"));
        assert_eq!(locked_version(lock, "tokio"), None);
    }
}
