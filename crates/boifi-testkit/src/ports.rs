//! Free loopback ports.

use std::io;
use std::net::{SocketAddr, TcpListener};

/// A TCP port on `127.0.0.1` that nothing listens on right now.
///
/// The port is only free when this returns: a process started with it can still lose a race
/// with another one, so starters retry with fresh ports when the child reports the port taken.
pub fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    Ok(listener.local_addr()?.port())
}

/// `n` distinct free ports (held open together while they are picked, so they differ).
pub fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))))
        .collect::<io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}
