//! Free loopback ports: the one port picker of the workspace (tests, the mesh, the benches).

use std::collections::BTreeSet;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Mutex, PoisonError};

/// Ports this process already handed out: never handed out twice, so two meshes (or a
/// restarted replica and a new one) cannot collide while a port is not bound yet.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A TCP port on `127.0.0.1` that nothing listens on right now.
///
/// The port is only free when this returns: a process started with it can still lose a race
/// with another one, so starters retry with fresh ports when the child reports the port taken.
pub fn free_port() -> io::Result<u16> {
    free_ports(1)?
        .first()
        .copied()
        .ok_or_else(|| io::Error::other("no free loopback port"))
}

/// `n` distinct free loopback ports, none handed out before by this process (they are held
/// open together while they are picked, so they differ from each other too).
pub fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    let mut handed = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let mut listeners = Vec::with_capacity(n);
    let mut ports = Vec::with_capacity(n);
    let attempts = n * 20 + 100;
    while ports.len() < n {
        if listeners.len() >= attempts {
            return Err(io::Error::other(format!(
                "no {n} fresh loopback ports after {attempts} binds"
            )));
        }
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let port = listener.local_addr()?.port();
        if handed.insert(port) {
            ports.push(port);
        }
        listeners.push(listener);
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_never_handed_out_twice() {
        let first = free_ports(30).unwrap();
        let second = free_ports(30).unwrap();
        let all: BTreeSet<u16> = first.iter().chain(&second).copied().collect();
        assert_eq!(all.len(), 60, "{first:?} {second:?}");
        assert!(!all.contains(&free_port().unwrap()));
    }
}
