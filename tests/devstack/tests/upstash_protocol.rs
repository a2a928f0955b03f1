//! Raw protocol details of the Upstash REST endpoint, checked over HTTP against a real
//! redis-server: auth, methods, error envelopes, encodings, path-style commands,
//! pipelines, transactions, binary safety and the request size limit.

use base64::Engine as _;
use devstack::urlcodec::percent_encode;
use devstack::{spawn_upstash, HttpRequest, HttpResponse, RedisServer, UpstashHandle};
use serde_json::{json, Value};

const TOKEN: &str = "protocol-test-token";

struct Stack {
    upstash: UpstashHandle,
    _redis: RedisServer,
}

impl Stack {
    fn start() -> Stack {
        let redis = RedisServer::start().expect("start redis-server");
        let upstash = spawn_upstash(redis.addr(), TOKEN);
        Stack { upstash, _redis: redis }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.upstash.url())
    }

    fn authed(&self, method: &str, path: &str) -> HttpRequest {
        HttpRequest::new(method, &self.url(path)).header("authorization", &format!("Bearer {TOKEN}"))
    }

    /// `POST /` with a JSON command, optionally base64-encoded replies.
    fn command(&self, command: Value, base64: bool) -> HttpResponse {
        let mut request = self.authed("POST", "/").json(&command);
        if base64 {
            request = request.header("upstash-encoding", "base64");
        }
        request.send().expect("request")
    }
}

fn body(response: &HttpResponse) -> Value {
    response.json().expect("JSON body")
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn missing_or_wrong_token_is_401_with_upstash_message() {
    let s = Stack::start();
    let expected = json!({"error": "WRONGPASS invalid or missing auth token"});

    let missing = HttpRequest::post(&s.url("/")).json(&json!(["PING"])).send().unwrap();
    assert_eq!(missing.status, 401);
    assert_eq!(missing.header("content-type"), Some("application/json"));
    assert_eq!(body(&missing), expected);

    let wrong =
        HttpRequest::post(&s.url("/")).header("authorization", "Bearer nope").json(&json!(["PING"])).send().unwrap();
    assert_eq!((wrong.status, body(&wrong)), (401, expected.clone()));

    let not_bearer =
        HttpRequest::post(&s.url("/")).header("authorization", TOKEN).json(&json!(["PING"])).send().unwrap();
    assert_eq!(not_bearer.status, 401);

    let wrong_query = HttpRequest::get(&s.url("/ping?_token=nope")).send().unwrap();
    assert_eq!((wrong_query.status, body(&wrong_query)), (401, expected.clone()));

    // A wrong header is not rescued by a right _token.
    let header_wins = HttpRequest::get(&s.url(&format!("/ping?_token={TOKEN}")))
        .header("authorization", "Bearer nope")
        .send()
        .unwrap();
    assert_eq!(header_wins.status, 401);
}

#[test]
fn token_query_parameter_authorizes() {
    let s = Stack::start();
    let set = HttpRequest::get(&s.url(&format!("/set/qkey/qvalue?_token={TOKEN}"))).send().unwrap();
    assert_eq!((set.status, body(&set)), (200, json!({"result": "OK"})));
    let get = HttpRequest::get(&s.url(&format!("/get/qkey?_token={TOKEN}"))).send().unwrap();
    assert_eq!((get.status, body(&get)), (200, json!({"result": "qvalue"})));
    let post = HttpRequest::post(&s.url(&format!("/?_token={TOKEN}"))).json(&json!(["GET", "qkey"])).send().unwrap();
    assert_eq!(body(&post), json!({"result": "qvalue"}));
}

#[test]
fn methods_other_than_head_get_post_put_are_405() {
    let s = Stack::start();
    for method in ["DELETE", "PATCH", "OPTIONS"] {
        let response = s.authed(method, "/get/x").send().unwrap();
        assert_eq!(response.status, 405, "{method}");
        assert!(body(&response)["error"].is_string(), "{method}");
        assert_eq!(response.header("allow"), Some("HEAD, GET, POST, PUT"));
    }
    // Upstash documents PUT as allowed: it behaves like POST.
    let put = s.authed("PUT", "/set/putkey").body("put-value").send().unwrap();
    assert_eq!((put.status, body(&put)), (200, json!({"result": "OK"})));
    assert_eq!(body(&s.command(json!(["GET", "putkey"]), false)), json!({"result": "put-value"}));
    let head = s.authed("HEAD", "/get/putkey").send().unwrap();
    assert_eq!((head.status, head.body.len()), (200, 0));
}

#[test]
fn redis_errors_are_400_with_the_redis_message() {
    let s = Stack::start();
    let arity = s.command(json!(["GET"]), false);
    assert_eq!(arity.status, 400);
    assert_eq!(body(&arity), json!({"error": "ERR wrong number of arguments for 'get' command"}));

    s.command(json!(["SET", "text", "abc"]), false);
    let incr = s.command(json!(["INCR", "text"]), false);
    assert_eq!((incr.status, body(&incr)), (400, json!({"error": "ERR value is not an integer or out of range"})));

    let unknown = s.command(json!(["NOSUCHCOMMAND", "x"]), true);
    assert_eq!(unknown.status, 400);
    let message = body(&unknown)["error"].as_str().unwrap().to_string();
    assert!(message.starts_with("ERR unknown command 'NOSUCHCOMMAND'"), "{message}");
}

#[test]
fn malformed_requests_are_400_with_an_error_envelope() {
    let s = Stack::start();
    let cases: [(&str, &[u8]); 7] = [
        ("/", b"[\"GET\", \"k\""),
        ("/", b"{\"GET\": 1}"),
        ("/", b"[]"),
        ("/", b"[\"GET\", null]"),
        ("/", b""),
        ("/pipeline", b"[\"GET\", \"k\"]"),
        ("/multi-exec", b"[]"),
    ];
    for (path, raw) in cases {
        let response = s.authed("POST", path).header("content-type", "application/json").body(raw).send().unwrap();
        let label = format!("{path} {}", String::from_utf8_lossy(raw));
        assert_eq!(response.status, 400, "{label}");
        let value = body(&response);
        let message = value["error"].as_str().unwrap_or_else(|| panic!("{label}: {value}"));
        assert!(message.starts_with("ERR "), "{label}: {message}");
        assert_eq!(value.as_object().unwrap().len(), 1, "{label}: {value}");
    }
    let resp2 = s.authed("POST", "/").header("upstash-response-format", "resp2").json(&json!(["PING"])).send().unwrap();
    assert_eq!(resp2.status, 400);
}

#[test]
fn json_arguments_may_be_numbers_and_booleans() {
    let s = Stack::start();
    let set = s.command(json!(["SET", "n", 42, "EX", 60]), false);
    assert_eq!(body(&set), json!({"result": "OK"}));
    assert_eq!(body(&s.command(json!(["GET", "n"]), false)), json!({"result": "42"}));
    assert_eq!(body(&s.command(json!(["TTL", "n"]), false)), json!({"result": 60}));
    s.command(json!(["SET", "f", 1.5]), false);
    assert_eq!(body(&s.command(json!(["GET", "f"]), false)), json!({"result": "1.5"}));
    s.command(json!(["SET", "b", true]), false);
    assert_eq!(body(&s.command(json!(["GET", "b"]), false)), json!({"result": "true"}));
}

#[test]
fn base64_encoding_header_encodes_every_string_but_ok() {
    let s = Stack::start();
    assert_eq!(body(&s.command(json!(["SET", "k", "bar"]), true)), json!({"result": "OK"}));
    assert_eq!(body(&s.command(json!(["GET", "k"]), true)), json!({"result": "YmFy"}));
    assert_eq!(body(&s.command(json!(["GET", "k"]), false)), json!({"result": "bar"}));
    assert_eq!(body(&s.command(json!(["PING"]), true)), json!({"result": "UE9ORw=="}));
    assert_eq!(body(&s.command(json!(["PING"]), false)), json!({"result": "PONG"}));
    assert_eq!(body(&s.command(json!(["INCR", "counter"]), true)), json!({"result": 1}));
    assert_eq!(body(&s.command(json!(["GET", "missing"]), true)), json!({"result": null}));
    // A stored value "OK" is a bulk string, not the OK status: it is encoded.
    s.command(json!(["SET", "okvalue", "OK"]), false);
    assert_eq!(body(&s.command(json!(["GET", "okvalue"]), true)), json!({"result": "T0s="}));
    // Arrays, nested.
    s.command(json!(["RPUSH", "list", "a", "b"]), false);
    assert_eq!(
        body(&s.command(json!(["MGET", "k", "missing", "okvalue"]), true)),
        json!({"result": ["YmFy", null, "T0s="]})
    );
    assert_eq!(body(&s.command(json!(["LRANGE", "list", 0, -1]), false)), json!({"result": ["a", "b"]}));
    let scan = body(&s.command(json!(["SCAN", 0, "MATCH", "lis*", "COUNT", 1000]), true));
    assert_eq!(scan, json!({"result": [b64(b"0"), [b64(b"list")]]}));
    // Errors are never encoded.
    let error = s.command(json!(["INCR", "k"]), true);
    assert_eq!(body(&error), json!({"error": "ERR value is not an integer or out of range"}));
}

#[test]
fn path_style_commands_are_percent_decoded_and_take_body_and_query() {
    let s = Stack::start();
    let key = "path key/with?odd&chars";
    let set = s.authed("GET", &format!("/set/{}/{}", percent_encode(key.as_bytes()), "v%201")).send().unwrap();
    assert_eq!((set.status, body(&set)), (200, json!({"result": "OK"})));
    assert_eq!(body(&s.command(json!(["GET", key]), false)), json!({"result": "v 1"}));

    let json_value = r#"{"a":[1,2],"b":"c d"}"#;
    let post = s.authed("POST", "/set/jsonkey?EX=100").body(json_value).send().unwrap();
    assert_eq!(body(&post), json!({"result": "OK"}));
    assert_eq!(body(&s.authed("GET", "/get/jsonkey").send().unwrap()), json!({"result": json_value}));
    assert_eq!(body(&s.authed("GET", "/ttl/jsonkey").send().unwrap()), json!({"result": 100}));

    let nx = s.authed("POST", "/set/jsonkey?NX").body("other").send().unwrap();
    assert_eq!(body(&nx), json!({"result": null}));
    let upper = s.authed("GET", "/GET/jsonkey").header("upstash-encoding", "base64").send().unwrap();
    assert_eq!(body(&upper), json!({"result": b64(json_value.as_bytes())}));
}

#[test]
fn binary_values_round_trip_through_base64() {
    let s = Stack::start();
    let bytes: Vec<u8> = (0..=255u8).chain([0, 13, 10, 0xff, 0xfe]).collect();
    // Raw bytes as a path-style POST body are stored exactly.
    let set = s.authed("POST", "/set/binary").body(bytes.clone()).send().unwrap();
    assert_eq!(body(&set), json!({"result": "OK"}));
    let got = body(&s.command(json!(["GET", "binary"]), true));
    let decoded = base64::engine::general_purpose::STANDARD.decode(got["result"].as_str().unwrap()).unwrap();
    assert_eq!(decoded, bytes);
    assert_eq!(body(&s.command(json!(["STRLEN", "binary"]), false)), json!({"result": 261}));
    // Percent-escaped bytes in a path are binary too.
    let set = s.authed("GET", &format!("/set/binary2/{}", percent_encode(&bytes))).send().unwrap();
    assert_eq!(body(&set), json!({"result": "OK"}));
    let got = body(&s.command(json!(["GET", "binary2"]), true));
    assert_eq!(got["result"].as_str().unwrap(), b64(&bytes));
    // Without base64 the reply is lossy UTF-8, as Upstash documents.
    let lossy = body(&s.command(json!(["GET", "binary"]), false));
    assert!(lossy["result"].as_str().unwrap().contains('\u{fffd}'));
    // Binary data carried as a base64 string value (as a JSON client would store it).
    let text = b64(&bytes);
    s.command(json!(["SET", "b64value", text]), false);
    let got = body(&s.command(json!(["GET", "b64value"]), true));
    let once = base64::engine::general_purpose::STANDARD.decode(got["result"].as_str().unwrap()).unwrap();
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(once).unwrap(), bytes);
    // Unicode survives both encodings.
    s.command(json!(["SET", "unicode", "héllo ✓ 🚀"]), false);
    assert_eq!(body(&s.command(json!(["GET", "unicode"]), false)), json!({"result": "héllo ✓ 🚀"}));
    assert_eq!(body(&s.command(json!(["GET", "unicode"]), true)), json!({"result": b64("héllo ✓ 🚀".as_bytes())}));
}

#[test]
fn pipeline_reports_each_command_and_is_not_atomic() {
    let s = Stack::start();
    let commands =
        json!([["SET", "p", "1"], ["INCR", "p"], ["HGET", "p", "f"], ["MULTI"], ["INCR", "p"], ["GET", "p"]]);
    let response = s.authed("POST", "/pipeline").json(&commands).send().unwrap();
    assert_eq!(response.status, 200);
    let value = body(&response);
    let items = value.as_array().unwrap();
    assert_eq!(items.len(), 6);
    assert_eq!(items[0], json!({"result": "OK"}));
    assert_eq!(items[1], json!({"result": 2}));
    assert!(items[2]["error"].as_str().unwrap().starts_with("WRONGTYPE"), "{}", items[2]);
    assert!(items[3]["error"].as_str().unwrap().starts_with("ERR "), "{}", items[3]);
    assert_eq!(items[4], json!({"result": 3}));
    assert_eq!(items[5], json!({"result": "3"}));
    let encoded = s
        .authed("POST", "/pipeline")
        .header("upstash-encoding", "base64")
        .json(&json!([["GET", "p"], ["SET", "q", "x"]]))
        .send()
        .unwrap();
    assert_eq!(body(&encoded), json!([{"result": "Mw=="}, {"result": "OK"}]));
}

#[test]
fn multi_exec_is_atomic_and_reports_runtime_errors_per_command() {
    let s = Stack::start();
    let ok = s
        .authed("POST", "/multi-exec")
        .json(&json!([["SET", "m", "a"], ["INCR", "m"], ["APPEND", "m", "b"], ["GET", "m"]]))
        .send()
        .unwrap();
    assert_eq!(ok.status, 200);
    let value = body(&ok);
    assert_eq!(value[0], json!({"result": "OK"}));
    assert_eq!(value[1], json!({"error": "ERR value is not an integer or out of range"}));
    assert_eq!(value[2], json!({"result": 2}));
    assert_eq!(value[3], json!({"result": "ab"}));

    // A command Redis refuses to queue discards the whole transaction: one error, nothing ran.
    let discarded =
        s.authed("POST", "/multi-exec").json(&json!([["SET", "never", "x"], ["NOSUCHCOMMAND"]])).send().unwrap();
    assert_eq!(discarded.status, 400);
    let value = body(&discarded);
    assert!(value["error"].as_str().unwrap().starts_with("ERR unknown command"), "{value}");
    assert_eq!(body(&s.command(json!(["EXISTS", "never"]), false)), json!({"result": 0}));
    let refused = s.authed("POST", "/multi-exec").json(&json!([["SET", "never", "x"], ["WATCH", "k"]])).send().unwrap();
    assert_eq!(refused.status, 400);
    assert_eq!(body(&s.command(json!(["EXISTS", "never"]), false)), json!({"result": 0}));

    // The connection is clean afterwards (not stuck inside MULTI).
    for _ in 0..3 {
        assert_eq!(body(&s.command(json!(["PING"]), false)), json!({"result": "PONG"}));
    }
}

#[test]
fn stateful_commands_are_refused_so_pooled_connections_stay_clean() {
    let s = Stack::start();
    for command in [json!(["MULTI"]), json!(["SELECT", 1]), json!(["SUBSCRIBE", "c"]), json!(["BLPOP", "l", 0])] {
        let response = s.command(command.clone(), false);
        assert_eq!(response.status, 400, "{command}");
    }
    s.command(json!(["SET", "still", "db0"]), false);
    assert_eq!(body(&s.command(json!(["GET", "still"]), false)), json!({"result": "db0"}));
}

#[test]
fn oversize_body_is_rejected_with_an_error() {
    let s = Stack::start();
    let big = "x".repeat(10 * 1024 * 1024);
    let response = s.authed("POST", "/").json(&json!(["SET", "big", big])).send().unwrap();
    assert_eq!(response.status, 400);
    assert_eq!(body(&response), json!({"error": "ERR max request size exceeded"}));
    assert_eq!(body(&s.command(json!(["EXISTS", "big"]), false)), json!({"result": 0}));
    // A value just under the limit is fine.
    let fits = "y".repeat(9 * 1024 * 1024);
    let response = s.authed("POST", "/set/fits").body(fits.clone()).send().unwrap();
    assert_eq!(body(&response), json!({"result": "OK"}));
    assert_eq!(body(&s.command(json!(["STRLEN", "fits"]), false)), json!({"result": fits.len()}));
}

#[test]
fn concurrent_requests_share_the_pool_correctly() {
    let s = Stack::start();
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..25 {
                    let r = s.command(json!(["INCR", "shared"]), false);
                    assert_eq!(r.status, 200);
                }
            });
        }
    });
    assert_eq!(body(&s.command(json!(["GET", "shared"]), false)), json!({"result": "200"}));
}

#[test]
fn concurrent_transactions_stay_atomic_next_to_single_commands() {
    // Each transaction increments twice: its two results must be consecutive however the
    // single INCRs of the other threads and the other transactions interleave with it.
    let s = Stack::start();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..20 {
                    let r = s.authed("POST", "/multi-exec").json(&json!([["INCR", "tx"], ["INCR", "tx"]])).send();
                    let value = body(&r.expect("request"));
                    let (a, b) = (value[0]["result"].as_i64(), value[1]["result"].as_i64());
                    assert_eq!(b, a.map(|a| a + 1), "{value}");
                }
            });
            scope.spawn(|| {
                for _ in 0..20 {
                    let pipeline = s.authed("POST", "/pipeline").json(&json!([["INCR", "tx"], ["GET", "tx"]]));
                    assert_eq!(pipeline.send().expect("request").status, 200);
                    assert_eq!(s.command(json!(["INCR", "tx"]), false).status, 200);
                }
            });
        }
    });
    assert_eq!(body(&s.command(json!(["GET", "tx"]), false)), json!({"result": "320"}));
}
