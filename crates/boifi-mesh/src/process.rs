//! Child processes that always die with their owner: each runs in its own process group,
//! which is killed (SIGKILL) on drop, even when a test panics.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock, PoisonError};

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
        let program = command.get_program().to_string_lossy().into_owned();
        let started = Instant::now();
        let child = spawn_tied_to_this_process(command)
            .map_err(|source| MeshError::Spawn { program, source })?;
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

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// The thread every child is forked from. `PR_SET_PDEATHSIG` fires when the *thread* that
/// forked the child ends, so children are forked from one thread that lives as long as the
/// process: when the process ends for any reason (a panic, a SIGKILL of the test runner, a
/// mesh kept in a `static` that is never dropped), the kernel kills every child.
static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();

fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("boifi-mesh-spawner".to_owned())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .map(|_| ())
            .unwrap_or_default();
        Mutex::new(tx)
    })
}

fn spawn_tied_to_this_process(mut command: Command) -> std::io::Result<Child> {
    #[expect(
        unsafe_code,
        reason = "prctl(PR_SET_PDEATHSIG) is async-signal-safe, as a pre_exec hook must be"
    )]
    // SAFETY: the hook only makes the prctl system call; it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    let sent = spawner()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .send((command, reply_tx));
    if let Err(mpsc::SendError((mut command, _))) = sent {
        // The spawner thread could not be started: fork from here (no life tie then).
        return command.spawn();
    }
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("the spawner thread ended"))?
}
