//! A TCP relay in front of the control plane that counts the config requests passing through,
//! so a test can see how many pollers one Envoy runs.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Listens on a loopback port and forwards every connection to `127.0.0.1:target`.
#[derive(Debug)]
pub struct CountingRelay {
    pub port: u16,
    stop: Arc<AtomicBool>,
    config_requests: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
}

const NEEDLE: &[u8] = b"GET /v1/config";

impl CountingRelay {
    pub fn start(target: u16) -> CountingRelay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let config_requests = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let (s, n, c) = (stop.clone(), config_requests.clone(), connections.clone());
        std::thread::spawn(move || {
            for down in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(down) = down else { continue };
                let Ok(up) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                c.fetch_add(1, Ordering::Relaxed);
                let (down2, up2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
                let n = n.clone();
                std::thread::spawn(move || pump(down, up, Some(&n)));
                std::thread::spawn(move || pump(up2, down2, None));
            }
        });
        CountingRelay {
            port,
            stop,
            config_requests,
            connections,
        }
    }

    /// `GET /v1/config` requests seen so far.
    pub fn config_requests(&self) -> u64 {
        self.config_requests.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for CountingRelay {
    fn drop(&mut self) {
        super::net::stop_accept_loop(&self.stop, self.port);
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, count: Option<&AtomicU64>) {
    let mut buf = [0u8; 16384];
    // Keeps the last few bytes so a request line split across reads is still counted once.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(count) = count {
            let mut window = std::mem::take(&mut tail);
            window.extend_from_slice(&buf[..n]);
            let hits = window
                .windows(NEEDLE.len())
                .filter(|w| *w == NEEDLE)
                .count();
            count.fetch_add(hits as u64, Ordering::Relaxed);
            let keep = window.len().min(NEEDLE.len() - 1);
            tail = window[window.len() - keep..].to_vec();
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
