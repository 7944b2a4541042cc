//! Loopback addresses (ports come from boifi-testkit's one picker, `boifi_testkit::ports`).

use std::io::Read;
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

/// Reads one HTTP/1.1 request head from `stream` (for the scripted control planes of the tests);
/// returns its request line, `None` when the stream ends first.
pub fn read_request_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    String::from_utf8_lossy(&head)
        .lines()
        .next()
        .map(str::to_owned)
}
