//! TCP options as Spin has them: neither its HTTP server nor its outbound client sets
//! `TCP_NODELAY`, so Nagle's algorithm is on (a keep-alive client can see delayed-ACK stalls, as
//! real users do); `--tcp-nodelay` sets it on accepted sockets. The hosts run in this process, so
//! the tests read the option from the host's own socket (found in /proc/self/fd by its
//! addresses) with getsockopt: no timing involved.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::{IO_TIMEOUT, Scratch, Upstream, eventually, get, standard_options};

/// The address a socket call reports for `fd`, if it is an IPv4 TCP socket.
fn address(
    fd: libc::c_int,
    call: unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int,
) -> Option<SocketAddr> {
    // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_storage>()).ok()?;
    // SAFETY: the pointers are to live locals of the sizes given; a bad fd only makes it fail.
    let rc = unsafe { call(fd, (&raw mut storage).cast::<libc::sockaddr>(), &raw mut len) };
    if rc != 0 || libc::c_int::from(storage.ss_family) != libc::AF_INET {
        return None;
    }
    // SAFETY: the family is AF_INET, so the storage holds a sockaddr_in.
    let sin = unsafe { &*(&raw const storage).cast::<libc::sockaddr_in>() };
    Some(SocketAddr::from((u32::from_be(sin.sin_addr.s_addr).to_be_bytes(), u16::from_be(sin.sin_port))))
}

/// TCP_NODELAY of this process's socket from `local` to `peer`, if there is one.
fn nodelay(local: Option<SocketAddr>, peer: SocketAddr) -> Option<bool> {
    let fds = std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd");
    for fd in fds.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::c_int>().ok()) {
        if address(fd, libc::getpeername) != Some(peer) {
            continue;
        }
        if local.is_some_and(|local| address(fd, libc::getsockname) != Some(local)) {
            continue;
        }
        let mut value: libc::c_int = 0;
        let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).expect("small");
        // SAFETY: value and len are live locals of the sizes given.
        let rc = unsafe {
            libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, (&raw mut value).cast(), &raw mut len)
        };
        if rc == 0 {
            return Some(value != 0);
        }
    }
    None
}

/// Open a keep-alive connection to the host and get a response head on it, so the host has
/// accepted it and set it up; returns the open connection.
fn keep_alive_connection(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    write!(stream, "GET /instance HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("send");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).expect("read"), 1, "connection closed early");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
    stream
}

/// TCP_NODELAY of (the host's accepted socket, the host's outbound socket to the upstream).
fn host_sockets(tcp_nodelay: bool, name: &str) -> (Option<bool>, Option<bool>) {
    let upstream = Upstream::start();
    let dir = Scratch::new(name);
    let mut options = standard_options(&dir, upstream.port);
    options.tcp_nodelay = tcp_nodelay;
    let host = spin_host::spawn(options).expect("host starts");
    let client = keep_alive_connection(host.addr());
    let accepted = nodelay(Some(host.addr()), client.local_addr().expect("local addr"));
    // Outbound: while the guest's fetch is held by the upstream, its socket is open.
    let url = format!("{}/fetch?url={}", host.url(), upstream.url("/gated"));
    let fetch = std::thread::spawn(move || get(&url));
    let waiting = eventually(Duration::from_secs(10), || (upstream.hits.load(Ordering::SeqCst) == 1).then_some(()));
    assert!(waiting.is_some(), "the fetch never reached the upstream");
    let upstream_addr = SocketAddr::from(([127, 0, 0, 1], upstream.port));
    let outbound = nodelay(None, upstream_addr);
    upstream.release();
    assert_eq!(fetch.join().expect("fetch thread").status, 200);
    drop(client);
    (accepted, outbound)
}

#[test]
fn no_tcp_nodelay_by_default_as_in_spin() {
    let (accepted, outbound) = host_sockets(false, "tcp-default");
    assert_eq!(accepted, Some(false), "accepted sockets keep Nagle's algorithm on");
    assert_eq!(outbound, Some(false), "outbound sockets too");
}

#[test]
fn tcp_nodelay_flag_sets_it_on_accepted_sockets() {
    let (accepted, outbound) = host_sockets(true, "tcp-nodelay");
    assert_eq!(accepted, Some(true));
    assert_eq!(outbound, Some(false), "the flag is about accepted sockets only");
}
