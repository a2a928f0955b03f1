//! Minimal `--flag value` parsing shared by the devstack binaries (no clap).
//!
//! Parsing only: this module must not start servers or print anything.

use std::collections::BTreeMap;

/// Why the command line was rejected. The message is meant for the user, with usage.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CliError(pub String);

/// Parses `--name value` and `--name=value` pairs. Every name must be in `allowed`;
/// `--help`/`-h` yields an error carrying `usage`.
pub fn parse_flags(
    args: impl IntoIterator<Item = String>,
    allowed: &[&str],
    usage: &str,
) -> Result<BTreeMap<String, String>, CliError> {
    let mut flags = BTreeMap::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--help" || arg == "-h" {
            return Err(CliError(usage.to_string()));
        }
        let Some(flag) = arg.strip_prefix("--") else {
            return Err(CliError(format!("unexpected argument {arg:?}\n{usage}")));
        };
        let (name, value) = match flag.split_once('=') {
            Some((name, value)) => (name.to_string(), value.to_string()),
            None => {
                let value = args.next().ok_or_else(|| CliError(format!("--{flag} needs a value\n{usage}")))?;
                (flag.to_string(), value)
            }
        };
        if !allowed.contains(&name.as_str()) {
            return Err(CliError(format!("unknown flag --{name}\n{usage}")));
        }
        flags.insert(name, value);
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_both_forms_and_rejects_unknown() {
        let f = parse_flags(strings(&["--a", "1", "--b=2"]), &["a", "b"], "u").unwrap();
        assert_eq!(f.get("a").map(String::as_str), Some("1"));
        assert_eq!(f.get("b").map(String::as_str), Some("2"));
        assert!(parse_flags(strings(&["--c", "1"]), &["a"], "u").is_err());
        assert!(parse_flags(strings(&["--a"]), &["a"], "u").is_err());
        assert!(parse_flags(strings(&["x"]), &["a"], "u").is_err());
    }
}
