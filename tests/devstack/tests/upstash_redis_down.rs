//! The Upstash endpoint when Redis is stopped, absent or hung: a quick 5xx `{"error"}`,
//! never a hang, and recovery once Redis is back (stale pooled connections are dropped).

use std::net::TcpListener;
use std::time::{Duration, Instant};

use devstack::{spawn_upstash, try_spawn_upstash_with, HttpRequest, HttpResponse, RedisServer, UpstashOptions};
use serde_json::{json, Value};

const TOKEN: &str = "down-test-token";

fn post(url: &str, path: &str, body: Value) -> (HttpResponse, Duration) {
    let started = Instant::now();
    let response = HttpRequest::post(&format!("{url}{path}"))
        .header("authorization", &format!("Bearer {TOKEN}"))
        .timeout(Duration::from_secs(10))
        .json(&body)
        .send()
        .expect("the endpoint answers even when redis is down");
    (response, started.elapsed())
}

fn assert_quick_5xx(response: &HttpResponse, elapsed: Duration, what: &str) {
    assert!((500..600).contains(&response.status), "{what}: status {}", response.status);
    let value = response.json().expect("JSON error body");
    assert!(value["error"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {value}");
    assert!(elapsed < Duration::from_secs(2), "{what} took {elapsed:?}");
}

#[test]
fn stopped_redis_gives_a_quick_5xx_and_recovers_after_restart() {
    let mut redis = RedisServer::start().expect("start redis-server");
    let upstash = spawn_upstash(redis.addr(), TOKEN);
    let url = upstash.url();
    // Warm the pool so the next requests meet a dead pooled connection first.
    let (ok, _) = post(&url, "/", json!(["SET", "k", "v"]));
    assert_eq!(ok.json().unwrap(), json!({"result": "OK"}));

    redis.stop();
    assert!(!redis.is_running());
    let (single, t) = post(&url, "/", json!(["GET", "k"]));
    assert_quick_5xx(&single, t, "single command");
    let (pipeline, t) = post(&url, "/pipeline", json!([["GET", "k"], ["INCR", "n"]]));
    assert_quick_5xx(&pipeline, t, "pipeline");
    let (multi, t) = post(&url, "/multi-exec", json!([["GET", "k"]]));
    assert_quick_5xx(&multi, t, "multi-exec");

    redis.restart().expect("restart redis-server");
    let (set, _) = post(&url, "/", json!(["SET", "k", "again"]));
    assert_eq!((set.status, set.json().unwrap()), (200, json!({"result": "OK"})));
    let (get, _) = post(&url, "/", json!(["GET", "k"]));
    assert_eq!(get.json().unwrap(), json!({"result": "again"}));
}

#[test]
fn restart_with_warm_pool_does_not_surface_stale_connections() {
    let mut redis = RedisServer::start().expect("start redis-server");
    let upstash = spawn_upstash(redis.addr(), TOKEN);
    let url = upstash.url();
    // Several idle connections in the pool.
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| post(&url, "/", json!(["PING"])));
        }
    });
    redis.restart().expect("restart redis-server");
    for _ in 0..6 {
        let (response, _) = post(&url, "/", json!(["PING"]));
        assert_eq!((response.status, response.json().unwrap()), (200, json!({"result": "PONG"})));
    }
}

#[test]
fn nothing_listening_is_a_quick_503() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let upstash = spawn_upstash(([127, 0, 0, 1], port).into(), TOKEN);
    let (response, t) = post(&upstash.url(), "/", json!(["PING"]));
    assert_quick_5xx(&response, t, "no redis");
    assert_eq!(response.status, 503);
}

#[test]
fn hung_redis_times_out_with_504_instead_of_hanging() {
    // Accepts connections and reads, but never answers.
    let blackhole = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = blackhole.local_addr().unwrap();
    let options = UpstashOptions { command_timeout: Duration::from_millis(300), ..UpstashOptions::default() };
    let upstash = try_spawn_upstash_with(addr, TOKEN, options).expect("start endpoint");
    let (response, t) = post(&upstash.url(), "/", json!(["PING"]));
    assert_quick_5xx(&response, t, "hung redis");
    assert_eq!(response.status, 504);
    assert!(t >= Duration::from_millis(250), "answered before the timeout: {t:?}");
    drop(blackhole);
}

#[test]
fn redis_killed_under_load_gives_quick_5xx_then_recovers() {
    let mut redis = RedisServer::start().expect("start redis-server");
    let upstash = spawn_upstash(redis.addr(), TOKEN);
    let url = upstash.url();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (ok, failed) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|i| {
                let (url, stop) = (&url, &stop);
                scope.spawn(move || {
                    let (mut ok, mut failed) = (0u32, 0u32);
                    let paths = ["/", "/pipeline", "/multi-exec"];
                    for n in 0..2000 {
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        let path = paths[(i + n) % paths.len()];
                        let command = if path == "/" { json!(["INCR", "load"]) } else { json!([["INCR", "load"]]) };
                        let (response, t) = post(url, path, command);
                        if response.status == 200 {
                            ok += 1;
                        } else {
                            assert_quick_5xx(&response, t, path);
                            failed += 1;
                        }
                    }
                    (ok, failed)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        redis.stop();
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        workers.into_iter().map(|w| w.join().expect("worker")).fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    });
    assert!(ok > 0 && failed > 0, "load before and after the kill: {ok} ok, {failed} failed");
    redis.restart().expect("restart redis-server");
    for path in ["/", "/pipeline", "/multi-exec", "/"] {
        let command = if path == "/" { json!(["PING"]) } else { json!([["PING"]]) };
        let (response, _) = post(&url, path, command);
        assert_eq!(response.status, 200, "{path} after restart: {}", response.text());
    }
}
