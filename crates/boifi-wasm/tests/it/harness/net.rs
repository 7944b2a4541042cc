//! Loopback addresses (ports come from boifi-testkit's one picker, `boifi_testkit::ports`).

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Stops the accept loop of an in-test server on `port`: raises its `stop` flag, then
/// connects once so that a loop blocked in `accept` wakes up and sees the flag.
pub fn stop_accept_loop(stop: &AtomicBool, port: u16) {
    stop.store(true, Ordering::Relaxed);
    let _ = TcpStream::connect(loopback(port));
}
