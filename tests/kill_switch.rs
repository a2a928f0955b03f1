//! Kill switches: an admin call takes a target out of rotation (for good or until a time) and puts
//! it back; routing moves to the next target; other isolates see it within `KILL_REFRESH_MS` of
//! their next provider call; `DISABLED_TARGETS` does the same at deploy time; `/admin/health`
//! shows it; every change is an audit line naming the admin, never the key.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use serde_json::json;
use support::*;

fn two() -> World {
    let w = world(&two_targets(), &[]);
    w.host.route(PRIMARY, |_| ok("primary"));
    w.host.route(SECONDARY, |_| ok("secondary"));
    w
}

fn asked(w: &World, content: &str) -> Option<String> {
    let reply = ask(w, content);
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.header("x-provider").map(str::to_owned)
}

#[test]
fn a_disabled_target_is_skipped_here_at_once_and_elsewhere_within_the_bound() {
    let w = two();
    let other = w.another_isolate();
    assert_eq!(asked(&w, "a").as_deref(), Some("primary"));
    assert_eq!(asked(&other, "b").as_deref(), Some("primary"));
    let done = w.admin_post("/admin/targets/primary/disable", ADMIN_KEY, "");
    assert_eq!(done.status, 200, "{:?}", done.body);
    assert_eq!(done.json()["disabled"], true);
    assert_eq!(w.upstash.raw("llmc1:kill:primary").as_deref(), Some("0"));
    assert_eq!(asked(&w, "c").as_deref(), Some("secondary"), "the isolate that served the call knows at once");
    // The other isolate read the switches less than KILL_REFRESH_MS ago: it may still send.
    w.host.advance(llm_edge_cache::gateway::KILL_REFRESH_MS);
    assert_eq!(asked(&other, "d").as_deref(), Some("secondary"), "within the bound");
    let audit = w.host.logs().into_iter().find(|l| l.contains("\"admin_audit\"")).expect("an audit line");
    assert!(audit.contains("\"admin\":\"ops\"") && audit.contains("\"action\":\"target_disable\""), "{audit}");
    assert!(!audit.contains(ADMIN_KEY));
    let health = w.admin_get("/admin/health").json();
    let primary = health["targets"].as_array().and_then(|t| t.iter().find(|t| t["id"] == "primary")).cloned();
    assert_eq!(primary.expect("listed")["disabled"], json!({"by": "admin", "until_ms": null}));

    let back = w.admin_post("/admin/targets/primary/enable", ADMIN_KEY, "");
    assert_eq!((back.status, back.json()["disabled"].clone()), (200, json!(false)));
    assert_eq!(asked(&w, "e").as_deref(), Some("primary"));
    w.host.advance(llm_edge_cache::gateway::KILL_REFRESH_MS);
    assert_eq!(asked(&other, "f").as_deref(), Some("primary"));
}

#[test]
fn a_switch_until_a_time_ends_by_itself() {
    let w = two();
    let reply = w.admin_post("/admin/targets/primary/disable", ADMIN_KEY, r#"{"seconds": 30}"#);
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.json()["until_ms"], T0 + 30_000);
    assert_eq!(w.upstash.expires_at("llmc1:kill:primary"), Some(T0 + 30_000));
    assert_eq!(asked(&w, "a").as_deref(), Some("secondary"));
    w.host.advance(30_001);
    assert_eq!(asked(&w, "b").as_deref(), Some("primary"));
    let until = format!(r#"{{"until_ms": {}}}"#, T0 + 60_000);
    assert_eq!(w.admin_post("/admin/targets/primary/disable", ADMIN_KEY, &until).status, 200);
    for bad in [r#"{"seconds": "soon"}"#, r#"{"until_ms": 1}"#, r#"{"seconds": 5, "until_ms": 5}"#] {
        assert_eq!(w.admin_post("/admin/targets/primary/disable", ADMIN_KEY, bad).status, 400, "{bad}");
    }
}

#[test]
fn unknown_targets_and_non_admins_are_refused() {
    let w = two();
    w.admin_post("/admin/targets/nobody/disable", ADMIN_KEY, "").assert_error(404, "target_not_found");
    w.admin_post("/admin/targets/primary/disable", KEY_A, "").assert_error(401, "invalid_admin_key");
    w.admin_post("/admin/targets/primary/explode", ADMIN_KEY, "").assert_error(404, "not_found");
    w.admin_get("/admin/targets/primary/disable").assert_error(405, "method_not_allowed");
    assert!(w.upstash.raw("llmc1:kill:primary").is_none());
}

#[test]
fn every_target_off_is_a_503_listing_them() {
    let w = two();
    for id in ["primary", "secondary"] {
        assert_eq!(w.admin_post(&format!("/admin/targets/{id}/disable"), ADMIN_KEY, "").status, 200);
    }
    let refused = ask(&w, "x");
    refused.assert_error(503, "all_providers_failed");
    assert_eq!(refused.json()["error"]["failures"][0]["code"], "disabled");
    assert_eq!(w.host.sent_to(PRIMARY).len() + w.host.sent_to(SECONDARY).len(), 0);
}

#[test]
fn disabled_targets_setting_takes_a_target_out_at_deploy_time() {
    let w = world(&two_targets(), &[("DISABLED_TARGETS", "primary")]);
    w.host.route(PRIMARY, |_| ok("primary"));
    w.host.route(SECONDARY, |_| ok("secondary"));
    assert_eq!(asked(&w, "a").as_deref(), Some("secondary"));
    // Enabling clears the runtime switch only; the setting still holds.
    let reply = w.admin_post("/admin/targets/primary/enable", ADMIN_KEY, "");
    assert_eq!(reply.json()["disabled_by_config"], true);
    assert_eq!(asked(&w, "b").as_deref(), Some("secondary"));
    let health = w.admin_get("/admin/health").json();
    assert_eq!(health["targets"][0]["disabled"], json!({"by": "config"}), "{health}");
}

#[test]
fn a_redis_outage_keeps_what_was_known_of_the_switches() {
    let w = two();
    assert_eq!(w.admin_post("/admin/targets/primary/disable", ADMIN_KEY, "").status, 200);
    w.upstash.set_down(true);
    w.host.advance(10_000);
    assert_eq!(asked(&w, "a").as_deref(), Some("secondary"));
    assert!(w.host.logs().iter().any(|l| l.contains("\"kill_switch_read_failed\"")));
}
