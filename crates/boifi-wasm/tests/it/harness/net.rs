//! Loopback addresses (ports come from boifi-testkit's one picker, `boifi_testkit::ports`).

use std::net::SocketAddr;

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}
