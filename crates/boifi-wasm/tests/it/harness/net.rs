//! Loopback ports.

use std::net::{SocketAddr, TcpListener};

/// A loopback port that was free a moment ago (the OS picked it; the listener is closed).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `n` distinct loopback ports, held open together while they are picked.
pub fn free_ports(n: usize) -> Vec<u16> {
    boifi_testkit::ports::free_ports(n).unwrap()
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}
