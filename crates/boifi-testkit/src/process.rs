//! A child process that dies with its guard.

use std::fs::File;
use std::io;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Owns a child process and kills it (SIGKILL) when dropped, so a failing or panicking test
/// never leaves an etcd or a server behind.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
}

impl ChildGuard {
    /// Guards `child`; `name` appears in messages.
    pub fn new(name: impl Into<String>, child: Child) -> ChildGuard {
        ChildGuard {
            name: name.into(),
            child: Some(child),
        }
    }

    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id, while the process has not been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process has exited (its status if so), without waiting.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => child.try_wait(),
            None => Ok(None),
        }
    }

    /// Kills the process with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            if child.try_wait()?.is_none() {
                child.kill()?;
            }
            child.wait()?;
        }
        Ok(())
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Nothing useful can be done with an error while dropping: the process is gone or
        // was never ours to reap.
        let _ = self.kill();
    }
}

/// Starts `command` with no stdin and its stdout and stderr both into `out` (a log the test
/// reads when something fails).
pub fn spawn_logged(command: &mut Command, out: File) -> io::Result<Child> {
    command
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
}

/// The binary `name` of the workspace, found beside `beside` (another binary cargo built, e.g.
/// `env!("CARGO_BIN_EXE_boifi-cli")`), built with `cargo build -p name` in `workspace` when it
/// is not there yet (a test of one crate needing another crate's binary).
pub fn workspace_binary(
    beside: &std::path::Path,
    name: &str,
    workspace: &std::path::Path,
) -> std::path::PathBuf {
    let path = beside.with_file_name(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let built = std::process::Command::new(cargo)
            .args(["build", "-p", name])
            .current_dir(workspace)
            .status();
        assert!(
            built.is_ok_and(|s| s.success()),
            "cargo build -p {name} failed"
        );
    }
    path
}
