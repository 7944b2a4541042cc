//! A real etcd for tests: one member or a cluster, on free loopback ports, in a temporary
//! directory, killed (SIGKILL) when dropped.
//!
//! ```no_run
//! use boifi_testkit::etcd::EtcdCluster;
//!
//! // A missing etcd fails the test with how to install it: a test never passes by skipping.
//! let etcd = EtcdCluster::for_test(1);
//! let endpoints: String = etcd.endpoints_arg(); // "http://127.0.0.1:P"
//! # let _ = endpoints;
//! ```

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::http;
use crate::ports::free_ports;
use crate::process::ChildGuard;

/// Environment variable naming the etcd binary to use.
pub const ETCD_BINARY_ENV: &str = "BOIFI_ETCD";
/// Where Debian's `etcd-server` package puts the binary.
pub const DEBIAN_ETCD: &str = "/usr/bin/etcd";

/// How long a member may take to answer `/health` after it is started.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts with fresh ports when a port was taken between picking and binding it.
const PORT_ATTEMPTS: usize = 3;

/// Why an etcd could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdError {
    /// No binary.
    #[error(
        "no etcd binary found (env `BOIFI_ETCD` if set, else `/usr/bin/etcd`, else `etcd` on \
         `PATH`): run `make deps`"
    )]
    NotFound,
    /// A file or process operation failed.
    #[error("etcd: {context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: io::Error,
    },
    /// A member exited before it answered.
    #[error(
        "etcd member `{name}` exited before it was healthy ({status}); its log ends with:\n{log}"
    )]
    Exited {
        /// The member.
        name: String,
        /// Its exit status.
        status: String,
        /// The end of its log.
        log: String,
    },
    /// A member did not become healthy in time.
    #[error(
        "etcd member `{name}` was not healthy after {waited_ms} ms; its log ends with:\n{log}"
    )]
    Unhealthy {
        /// The member.
        name: String,
        /// How long it was given.
        waited_ms: u128,
        /// The end of its log.
        log: String,
    },
    /// No member with this index.
    #[error("the cluster has no member {index}")]
    NoSuchMember {
        /// The index asked for.
        index: usize,
    },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> EtcdError {
    let context = context.into();
    move |source| EtcdError::Io { context, source }
}

/// The etcd binary: env `BOIFI_ETCD` when set (and then only it), else `/usr/bin/etcd`, else
/// `etcd` on `PATH`. `None` if that file does not exist.
pub fn etcd_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(ETCD_BINARY_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let debian = Path::new(DEBIAN_ETCD);
    if debian.is_file() {
        return Some(debian.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
}

/// One member of a test cluster.
#[derive(Debug)]
pub struct EtcdMember {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    process: Option<ChildGuard>,
}

impl EtcdMember {
    /// The member name (`m0`, `m1`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `http://127.0.0.1:<client port>`.
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The client address.
    pub fn client_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.client_port))
    }

    /// `http://127.0.0.1:<peer port>`.
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// The member's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The member's log file (stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Whether the process runs (it has not been killed and has not exited).
    pub fn is_running(&mut self) -> bool {
        match self.process.as_mut() {
            Some(p) => matches!(p.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Whether `GET /health` answers `{"health":"true"}` now.
    pub fn is_healthy(&self) -> bool {
        http::get(self.client_addr(), "/health", Duration::from_millis(500))
            .map(|r| r.status == 200 && r.text().replace(' ', "").contains("\"health\":\"true\""))
            .unwrap_or(false)
    }

    /// The last lines of the member's log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path, 4096)
    }
}

/// A running etcd of one or more members; every member is killed when this is dropped.
#[derive(Debug)]
pub struct EtcdCluster {
    // Dropped in order: the processes first, then the directory they write into.
    members: Vec<EtcdMember>,
    binary: PathBuf,
    initial_cluster: String,
    token: String,
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// A cluster of `members` members for a test body; any error (etcd not installed, a member
    /// that would not start) fails the test with its message, which says how to fix it.
    #[expect(
        clippy::panic,
        reason = "a test helper: failing the test with a message is its job"
    )]
    pub fn for_test(members: usize) -> EtcdCluster {
        match EtcdCluster::start(members) {
            Ok(cluster) => cluster,
            Err(e) => panic!("{e}"),
        }
    }

    /// A single member.
    pub fn start_single() -> Result<EtcdCluster, EtcdError> {
        EtcdCluster::start(1)
    }

    /// A cluster of `members` members (at least one), each on its own client and peer port,
    /// returned once every member answers `/health`.
    pub fn start(members: usize) -> Result<EtcdCluster, EtcdError> {
        let binary = etcd_binary().ok_or(EtcdError::NotFound)?;
        let members = members.max(1);
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            match EtcdCluster::start_once(&binary, members) {
                Ok(cluster) => return Ok(cluster),
                Err(err @ EtcdError::Exited { .. }) if is_port_clash(&err) => {
                    last_error = Some(err);
                }
                Err(err) => return Err(err),
            }
        }
        Err(last_error.unwrap_or(EtcdError::NotFound))
    }

    fn start_once(binary: &Path, count: usize) -> Result<EtcdCluster, EtcdError> {
        let dir = tempfile::Builder::new()
            .prefix("boifi-etcd-")
            .tempdir()
            .map_err(io_error("creating a temporary directory"))?;
        let ports = free_ports(count * 2).map_err(io_error("picking free ports"))?;
        let members = ports
            .chunks(2)
            .enumerate()
            .map(|(i, pair)| {
                let name = format!("m{i}");
                EtcdMember {
                    data_dir: dir.path().join(format!("{name}.etcd")),
                    log_path: dir.path().join(format!("{name}.log")),
                    name,
                    client_port: pair.first().copied().unwrap_or_default(),
                    peer_port: pair.get(1).copied().unwrap_or_default(),
                    process: None,
                }
            })
            .collect::<Vec<_>>();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!(
            "boifi-test-{}",
            dir.path()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let mut cluster = EtcdCluster {
            members,
            binary: binary.to_path_buf(),
            initial_cluster,
            token,
            dir,
        };
        for index in 0..cluster.members.len() {
            cluster.spawn(index)?;
        }
        cluster.wait_healthy(HEALTH_TIMEOUT)?;
        Ok(cluster)
    }

    fn spawn(&mut self, index: usize) -> Result<(), EtcdError> {
        let binary = self.binary.clone();
        let initial_cluster = self.initial_cluster.clone();
        let token = self.token.clone();
        let member = self
            .members
            .get_mut(index)
            .ok_or(EtcdError::NoSuchMember { index })?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(&member.log_path)
            .map_err(io_error(format!("opening `{}`", member.log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(io_error("duplicating the log file"))?;
        let mut command = Command::new(&binary);
        // Variables such as ETCD_NAME would override nothing (flags win) but make etcd warn.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCD_") {
                command.env_remove(key);
            }
        }
        let args: Vec<OsString> = vec![
            "--name".into(),
            member.name.clone().into(),
            "--data-dir".into(),
            member.data_dir.clone().into_os_string(),
            "--listen-client-urls".into(),
            member.client_url().into(),
            "--advertise-client-urls".into(),
            member.client_url().into(),
            "--listen-peer-urls".into(),
            member.peer_url().into(),
            "--initial-advertise-peer-urls".into(),
            member.peer_url().into(),
            "--initial-cluster".into(),
            initial_cluster.into(),
            "--initial-cluster-state".into(),
            "new".into(),
            "--initial-cluster-token".into(),
            token.into(),
            "--logger".into(),
            "zap".into(),
            "--log-outputs".into(),
            "stderr".into(),
        ];
        let child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(io_error(format!("starting `{}`", binary.display())))?;
        member.process = Some(ChildGuard::new(format!("etcd {}", member.name), child));
        Ok(())
    }

    /// Waits until every running member answers `/health`.
    pub fn wait_healthy(&mut self, timeout: Duration) -> Result<(), EtcdError> {
        let start = Instant::now();
        loop {
            let mut all = true;
            for member in &mut self.members {
                if member.process.is_none() {
                    continue;
                }
                if let Some(process) = member.process.as_mut() {
                    let exited = process
                        .try_wait()
                        .map_err(io_error(format!("checking `{}`", member.name)))?;
                    if let Some(status) = exited {
                        return Err(EtcdError::Exited {
                            name: member.name.clone(),
                            status: status.to_string(),
                            log: member.log_tail(),
                        });
                    }
                }
                if !member.is_healthy() {
                    all = false;
                }
            }
            if all {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                let sick = self
                    .members
                    .iter()
                    .find(|m| m.process.is_some() && !m.is_healthy());
                return Err(EtcdError::Unhealthy {
                    name: sick.map(|m| m.name.clone()).unwrap_or_default(),
                    waited_ms: start.elapsed().as_millis(),
                    log: sick.map(EtcdMember::log_tail).unwrap_or_default(),
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The members.
    pub fn members(&self) -> &[EtcdMember] {
        &self.members
    }

    /// One member.
    pub fn member(&self, index: usize) -> Option<&EtcdMember> {
        self.members.get(index)
    }

    /// Client URLs of every member (`http://127.0.0.1:P`), killed ones included.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(EtcdMember::client_url).collect()
    }

    /// [`EtcdCluster::endpoints`] joined with commas, as `--etcd-endpoints` takes them.
    pub fn endpoints_arg(&self) -> String {
        self.endpoints().join(",")
    }

    /// The temporary directory holding every member's data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills member `index` with SIGKILL; its data stays for [`EtcdCluster::restart_member`].
    pub fn kill_member(&mut self, index: usize) -> Result<(), EtcdError> {
        let member = self
            .members
            .get_mut(index)
            .ok_or(EtcdError::NoSuchMember { index })?;
        if let Some(mut process) = member.process.take() {
            process
                .kill()
                .map_err(io_error(format!("killing `{}`", member.name)))?;
        }
        Ok(())
    }

    /// Freezes member `index` with SIGSTOP: it keeps its connections open and answers nothing,
    /// like a member on a hung disk. [`EtcdCluster::continue_member`] thaws it; dropping the
    /// cluster kills it either way (SIGKILL works on a stopped process).
    pub fn stop_member(&mut self, index: usize) -> Result<(), EtcdError> {
        self.signal_member(index, "-STOP")
    }

    /// Thaws a member frozen by [`EtcdCluster::stop_member`] (SIGCONT).
    pub fn continue_member(&mut self, index: usize) -> Result<(), EtcdError> {
        self.signal_member(index, "-CONT")
    }

    fn signal_member(&mut self, index: usize, signal: &str) -> Result<(), EtcdError> {
        let member = self
            .members
            .get(index)
            .ok_or(EtcdError::NoSuchMember { index })?;
        let context = format!("sending {signal} to `{}`", member.name);
        let pid = member
            .process
            .as_ref()
            .and_then(ChildGuard::pid)
            .ok_or_else(|| EtcdError::Io {
                context: context.clone(),
                source: io::Error::new(io::ErrorKind::NotFound, "the member is not running"),
            })?;
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .map_err(io_error(context.clone()))?;
        if status.success() {
            Ok(())
        } else {
            Err(EtcdError::Io {
                context,
                source: io::Error::other(format!("`kill` exited with {status}")),
            })
        }
    }

    /// The value of the unlabelled sample `name` on member `index`'s `/metrics`, if it answers.
    pub fn member_metric(&self, index: usize, name: &str) -> Option<f64> {
        let member = self.members.get(index)?;
        let answer =
            http::get(member.client_addr(), "/metrics", Duration::from_millis(500)).ok()?;
        answer.text().lines().find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|value| value.trim().parse().ok())
        })
    }

    /// The index of the member that reports itself leader now (`etcd_server_is_leader 1` on
    /// its `/metrics`), if one does.
    pub fn leader(&self) -> Option<usize> {
        self.members.iter().position(|member| {
            member.process.is_some()
                && http::get(member.client_addr(), "/metrics", Duration::from_millis(500))
                    .is_ok_and(|r| r.text().lines().any(|l| l == "etcd_server_is_leader 1"))
        })
    }

    /// Starts a killed member again on its old ports and data, and waits until it is healthy.
    /// Clients keep its URL, so the ports cannot change: if another process took one meanwhile
    /// (rare: ports are picked from the ephemeral range), this fails with [`EtcdError::Exited`]
    /// and an `address already in use` log.
    pub fn restart_member(&mut self, index: usize) -> Result<(), EtcdError> {
        self.kill_member(index)?;
        self.spawn(index)?;
        self.wait_healthy(HEALTH_TIMEOUT)
    }
}

fn is_port_clash(err: &EtcdError) -> bool {
    match err {
        EtcdError::Exited { log, .. } => log.contains("address already in use"),
        _ => false,
    }
}

fn log_tail(path: &Path, max_bytes: u64) -> String {
    let read = || -> io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(max_bytes)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    read().unwrap_or_else(|e| format!("(log `{}` unreadable: {e})", path.display()))
}
