//! The redis-server process harness: start, stop, restart on the same port, cleanup on
//! drop, and a clear error when the binary is missing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use devstack::{RedisServer, RedisServerError};

fn ping(server: &RedisServer) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&server.addr(), Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.write_all(b"*1\r\n$4\r\nPING\r\n")?;
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply)?;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

#[test]
fn starts_stops_and_restarts_on_the_same_port() {
    let mut server = RedisServer::start().expect("start redis-server");
    let port = server.port();
    assert_eq!(server.addr().to_string(), format!("127.0.0.1:{port}"));
    assert!(server.is_running());
    assert_eq!(ping(&server).unwrap(), "+PONG\r\n");
    assert!(server.log_path().exists());

    server.stop();
    assert!(!server.is_running());
    assert!(ping(&server).is_err(), "port still answers after stop");

    server.restart().expect("restart");
    assert_eq!(server.port(), port);
    assert_eq!(ping(&server).unwrap(), "+PONG\r\n");

    let log_dir = server.log_path().parent().unwrap().to_path_buf();
    let addr = server.addr();
    drop(server);
    assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(), "still running after drop");
    assert!(!log_dir.exists(), "temp dir left behind: {}", log_dir.display());
}

#[test]
fn two_servers_get_different_ports() {
    let a = RedisServer::start().expect("start a");
    let b = RedisServer::start().expect("start b");
    assert_ne!(a.port(), b.port());
}

#[test]
fn a_missing_binary_is_a_clear_error() {
    let err = RedisServer::start_with("/nonexistent/redis-server").err().expect("must fail");
    assert!(matches!(err, RedisServerError::NotInstalled { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("not installed") && message.contains("apt-get install redis-server"), "{message}");
}
