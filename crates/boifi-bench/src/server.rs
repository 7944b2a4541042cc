//! A real `boifi-server` (`--storage memory`) started by the benchmark, and writes to it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use boifi_mesh::control_plane::workspace_binary;
use boifi_mesh::process::ManagedProcess;
use boifi_testkit::ports::free_port;
use serde_json::Value;

use crate::error::BenchError;

const TIMEOUT: Duration = Duration::from_secs(10);

/// A running control plane, killed when dropped.
#[derive(Debug)]
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    process: ManagedProcess,
}

impl Server {
    /// Starts `boifi-server --storage memory` on a free port (log in `dir`) and waits until
    /// `/v1/ready` answers 200.
    pub fn start(dir: &Path) -> Result<Server, BenchError> {
        let binary = workspace_binary("boifi-server")?;
        let port = free_port().map_err(|e| BenchError::io("picking a free loopback port", e))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut command = Command::new(binary);
        command
            .args(["--listen", &addr.to_string(), "--storage", "memory"])
            .env("RUST_LOG", "warn");
        let mut process = ManagedProcess::spawn("boifi-server", command, &dir.join("server.log"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            process.check_running()?;
            if boifi_testkit::http::get(addr, "/v1/ready", Duration::from_secs(1))
                .is_ok_and(|r| r.status == 200)
            {
                return Ok(Server { addr, process });
            }
            if Instant::now() >= deadline {
                return Err(BenchError::Unexpected(format!(
                    "boifi-server not ready within 30 s; log: {}",
                    process.log_tail(20)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Creates or replaces `policy`; returns when the write is acknowledged.
    pub fn put(&self, policy: &Value) -> Result<(), BenchError> {
        put(self.addr, policy)
    }

    /// The current global config version.
    pub fn version(&self) -> Result<u64, BenchError> {
        version(self.addr)
    }

    /// `/metrics` (Prometheus text).
    pub fn metrics(&self) -> Result<String, BenchError> {
        Ok(boifi_testkit::http::get(self.addr, "/metrics", TIMEOUT)?.text())
    }
}

/// `POST /v1/policies` (create or replace) to the server at `addr`.
pub fn put(addr: SocketAddr, policy: &Value) -> Result<(), BenchError> {
    let r =
        boifi_testkit::http::send_json(addr, "POST", "/v1/policies", &policy.to_string(), TIMEOUT)?;
    if matches!(r.status, 200 | 201) {
        Ok(())
    } else {
        Err(BenchError::Unexpected(format!(
            "POST /v1/policies answered {}: {}",
            r.status,
            r.text()
        )))
    }
}

/// The current global config version of the server at `addr` (`x-boifi-version` of
/// `GET /v1/policies`).
pub fn version(addr: SocketAddr) -> Result<u64, BenchError> {
    let r = boifi_testkit::http::get(addr, "/v1/policies", TIMEOUT)?;
    r.header("x-boifi-version")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| BenchError::Unexpected("GET /v1/policies: no x-boifi-version".to_owned()))
}
