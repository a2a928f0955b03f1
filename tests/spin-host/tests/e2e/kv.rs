//! spin:key-value: the `default` store over SQLite, Spin's limits as error variants (never a
//! trap), access denied for components that did not list the store, persistence with a kv dir.

use crate::support::{Scratch, Upstream, get, post, start_standard};

#[test]
fn set_get_delete_and_limits() {
    let upstream = Upstream::start();
    let dir = Scratch::new("kv");
    let host = start_standard(&dir, upstream.port, None);
    let url = |p: &str| format!("{}/kv/{p}", host.url());

    assert_eq!(get(&url("get/greeting")).status, 404, "absent at first");
    let r = post(&url("set/greeting"), b"hi there");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    let r = get(&url("get/greeting"));
    assert_eq!((r.status, r.text().as_str()), (200, "hi there"));
    assert_eq!(get(&url("exists/greeting")).text(), "true");
    post(&url("set/second"), b"2");
    assert_eq!(get(&url("keys")).text(), "greeting,second");
    assert_eq!(get(&url("delete/greeting")).text(), "ok");
    assert_eq!(get(&url("delete/greeting")).text(), "ok", "deleting an absent key is fine");
    assert_eq!(get(&url("exists/greeting")).text(), "false");

    // 1 MiB is the limit: exactly 1 MiB is stored, one byte more is an `other` error.
    let r = get(&url(&format!("big/{}", 1024 * 1024)));
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    let r = get(&url(&format!("big/{}", 1024 * 1024 + 1)));
    assert_eq!(r.status, 500);
    assert!(r.text().starts_with("error: Error::Other(") && r.text().contains("1048576"), "{}", r.text());
    // Keys up to 256 bytes.
    assert_eq!(post(&url(&format!("set/{}", "k".repeat(256))), b"v").text(), "ok");
    let r = post(&url(&format!("set/{}", "k".repeat(257))), b"v");
    assert!(r.status == 500 && r.text().contains("256"), "{}", r.text());
    // The instance survived all of that: no trap.
    assert_eq!(get(&url("get/second")).text(), "2");
}

#[test]
fn stores_not_listed_are_refused() {
    let upstream = Upstream::start();
    let dir = Scratch::new("kv-denied");
    let host = start_standard(&dir, upstream.port, None);
    // `main` lists only "default".
    let r = get(&format!("{}/kv/open/archive", host.url()));
    assert_eq!((r.status, r.text().as_str()), (500, "error: Error::AccessDenied"));
    // `other` lists no store at all, so even "default" is denied.
    let r = get(&format!("{}/other/kv/open/default", host.url()));
    assert_eq!((r.status, r.text().as_str()), (500, "error: Error::AccessDenied"));
    assert_eq!(get(&format!("{}/kv/open/default", host.url())).text(), "ok");
}

#[test]
fn kv_dir_persists_across_restarts_and_memory_does_not() {
    let upstream = Upstream::start();
    let dir = Scratch::new("kv-persist");
    let kv_dir = dir.path().join("kv");
    {
        let host = start_standard(&dir, upstream.port, Some(kv_dir.clone()));
        assert_eq!(post(&format!("{}/kv/set/kept", host.url()), b"across restarts").text(), "ok");
    } // dropped: the host shuts down
    assert!(kv_dir.join(spin_host::kv::DB_FILE).is_file());
    let host = start_standard(&dir, upstream.port, Some(kv_dir));
    assert_eq!(get(&format!("{}/kv/get/kept", host.url())).text(), "across restarts");
    drop(host);

    let host = start_standard(&dir, upstream.port, None);
    assert_eq!(post(&format!("{}/kv/set/lost", host.url()), b"x").text(), "ok");
    drop(host);
    let host = start_standard(&dir, upstream.port, None);
    assert_eq!(get(&format!("{}/kv/get/lost", host.url())).status, 404, "in-memory store starts empty");
}
