//! Start-up errors: what `spin up` refuses, and what spin-host does not implement, are errors
//! from `spawn` with a message that says why; nothing is silently ignored.

use crate::support::{Scratch, guest_wasm, standard_manifest, write_manifest};

fn start_error(name: &str, manifest: &str, variables: &[(&str, &str)]) -> String {
    let dir = Scratch::new(name);
    let path = write_manifest(dir.path(), manifest);
    let mut options = spin_host::Options::new(path);
    options.variables = variables.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    spin_host::spawn(options).expect_err("must not start").to_string()
}

#[test]
fn refuses_bad_or_unsupported_applications() {
    let base = standard_manifest(guest_wasm());
    let port = [("upstream_port", "1")];
    let e = start_error("missing-var", &base, &[]);
    assert!(e.contains("required variable `upstream_port`") && e.contains("SPIN_VARIABLE_UPSTREAM_PORT"), "{e}");
    let e = start_error("unknown-flag", &base, &[("upstream_port", "1"), ("nope", "x")]);
    assert!(e.contains("no such variable"), "{e}");
    let e = start_error("kv-label", &base.replace(r#"["default"]"#, r#"["default", "cache"]"#), &port);
    assert!(e.contains("\"cache\" is not defined"), "{e}");
    let e = start_error("files", &base.replace("[component.other]\n", "[component.other]\nfiles = [\"x\"]\n"), &port);
    assert!(e.contains("unsupported") && e.contains("files"), "{e}");
    let e = start_error("bad-host", &base.replace("http://127.0.0.1:{{ upstream_port }}", "127.0.0.1"), &port);
    assert!(e.contains("does not contain a scheme"), "{e}");
    let e = start_error("bad-template", &base.replace("{{ greeting }}, world", "{{ nope }}"), &port);
    assert!(e.contains("unknown variable \"nope\""), "{e}");
    let e = start_error("no-wasm", &base.replace(&guest_wasm().display().to_string(), "/nonexistent.wasm"), &port);
    assert!(e.contains("cannot read /nonexistent.wasm"), "{e}");
    let e = start_error("not-a-component", &base.replace(&guest_wasm().display().to_string(), "spin.toml"), &port);
    assert!(e.contains("component `main`"), "{e}");
}
