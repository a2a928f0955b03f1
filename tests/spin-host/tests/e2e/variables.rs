//! spin:variables: component variables are templates over application variables; values come
//! from `--variable` (here: `Options::variables`) or defaults; errors use Spin's variants.
//! (`SPIN_VARIABLE_*` is checked in `cli.rs`, in a child process, not to race on this one's env.)

use crate::support::{Scratch, Upstream, get, start_standard};

#[test]
fn component_variables_resolve_templates_and_report_errors() {
    let upstream = Upstream::start();
    let dir = Scratch::new("vars");
    let host = start_standard(&dir, upstream.port, None);
    let var = |name: &str| {
        let r = get(&format!("{}/var/{name}", host.url()));
        (r.status, r.text())
    };
    assert_eq!(var("message"), (200, "hello, world".into()), "template over a default");
    assert_eq!(var("token"), (200, "t0ken".into()), "secret variables are readable by the guest");
    let (status, text) = var("greeting");
    assert_eq!(status, 500, "application variables are not visible directly: {text}");
    assert!(text.starts_with("error: Error::Undefined("), "{text}");
    let (status, text) = var("Bad-Name");
    assert_eq!(status, 500);
    assert!(text.starts_with("error: Error::InvalidName("), "{text}");
    // Each component sees only its own variables.
    let r = get(&format!("{}/other/var/who", host.url()));
    assert_eq!((r.status, r.text().as_str()), (200, "other"));
    let r = get(&format!("{}/other/var/message", host.url()));
    assert!(r.text().starts_with("error: Error::Undefined("), "{}", r.text());
}

#[test]
fn variable_flags_override_defaults() {
    let upstream = Upstream::start();
    let dir = Scratch::new("vars-flag");
    let manifest =
        crate::support::write_manifest(dir.path(), &crate::support::standard_manifest(crate::support::guest_wasm()));
    let mut options = spin_host::Options::new(manifest);
    options.variables.push(("upstream_port".into(), upstream.port.to_string()));
    options.variables.push(("greeting".into(), "bonjour".into()));
    let host = spin_host::spawn(options).expect("host starts");
    let r = get(&format!("{}/var/message", host.url()));
    assert_eq!((r.status, r.text().as_str()), (200, "bonjour, world"));
}
