//! Child processes that always die with their owner: each runs in its own process group,
//! which is killed (SIGKILL) on drop, even when a test panics.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::error::MeshError;

/// A running child process with its log file.
#[derive(Debug)]
pub struct ManagedProcess {
    name: String,
    child: Child,
    log: PathBuf,
    started: Instant,
}

impl ManagedProcess {
    /// Starts `command` in a new process group, stdout and stderr appended to `log`.
    pub fn spawn(
        name: &str,
        mut command: Command,
        log: &Path,
    ) -> Result<ManagedProcess, MeshError> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| MeshError::io(log, e))?;
        let err = out.try_clone().map_err(|e| MeshError::io(log, e))?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        let started = Instant::now();
        let child = command.spawn().map_err(|source| MeshError::Spawn {
            program: command.get_program().to_string_lossy().into_owned(),
            source,
        })?;
        Ok(ManagedProcess {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
            started,
        })
    }

    /// The name given at start.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// When it was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The whole log (lossy UTF-8).
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let from = lines.len().saturating_sub(n);
        lines.get(from..).unwrap_or_default().join("\n")
    }

    /// `Err` if the process has exited.
    pub fn check_running(&mut self) -> Result<(), MeshError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(MeshError::Exited {
                name: self.name.clone(),
                status: status.to_string(),
                log: self.log_tail(30),
            }),
            Err(e) => Err(MeshError::io(&self.log, e)),
        }
    }

    /// Resident memory in KiB (from /proc), if the process is alive.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Sends SIGKILL to the process group and reaps the child.
    pub fn kill(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // The group may already be gone; nothing else to do then.
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM, waits up to `grace` for the exit, then SIGKILLs.
    pub fn terminate(&mut self, grace: Duration) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` every `every` until it returns `Ok(Some(_))`, an error, or `timeout` passes.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<Option<T>, MeshError>,
) -> Result<T, MeshError> {
    let start = Instant::now();
    loop {
        if let Some(v) = check()? {
            return Ok(v);
        }
        if start.elapsed() >= timeout {
            return Err(MeshError::Timeout {
                what: what.to_owned(),
                waited_ms: start.elapsed().as_millis(),
            });
        }
        std::thread::sleep(every);
    }
}

/// Ports this process already handed out: never handed out twice, so two meshes (or a
/// restarted replica and a new one) cannot collide while a port is not bound yet.
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Free loopback TCP ports, never handed out before by this process.
pub fn free_ports(n: usize) -> Result<Vec<u16>, MeshError> {
    let mut handed = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut listeners = Vec::with_capacity(n);
    let mut ports = Vec::with_capacity(n);
    let mut attempts = 0;
    while ports.len() < n {
        attempts += 1;
        if attempts > n * 20 + 100 {
            return Err(MeshError::Unknown("free loopback port".to_owned()));
        }
        let l = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| MeshError::io("127.0.0.1:0", e))?;
        let port = l
            .local_addr()
            .map_err(|e| MeshError::io("127.0.0.1:0", e))?
            .port();
        if handed.insert(port) {
            ports.push(port);
        }
        listeners.push(l);
    }
    Ok(ports)
}

/// One free loopback port.
pub fn free_port() -> Result<u16, MeshError> {
    free_ports(1)?
        .first()
        .copied()
        .ok_or_else(|| MeshError::Unknown("free port".to_owned()))
}
