//! The control plane: `boifi-server` replicas (embedded store, or etcd for HA) and, with more
//! than one replica, an Envoy in front that balances them with health checks, as a Kubernetes
//! Service would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::envoy::{control_plane_lb_bootstrap, spawn_envoy};
use crate::error::MeshError;
use crate::etcd::EtcdCluster;
use crate::http::HttpClient;
use crate::process::{wait_for, ManagedProcess};
use boifi_testkit::ports::free_ports;

/// Where the control plane keeps policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// `--storage memory`.
    Memory,
    /// `--storage embedded` in a temporary `--data-dir` (single replica).
    Embedded,
    /// `--storage etcd` on a 3-member etcd cluster.
    Etcd,
}

/// Finds a binary of this workspace: `BOIFI_<NAME>_BIN` (`boifi-server` →
/// `BOIFI_SERVER_BIN`), else beside the running executable (cargo's target dir), else
/// `<repo>/target/{debug,release}`.
pub fn workspace_binary(name: &str) -> Result<PathBuf, MeshError> {
    let var = format!("{}_BIN", name.to_ascii_uppercase().replace('-', "_"));
    if let Some(p) = std::env::var_os(&var) {
        return Ok(PathBuf::from(p));
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        candidates.extend(exe.ancestors().skip(1).take(3).map(|d| d.join(name)));
    }
    let root = crate::topology::repo_root();
    for profile in ["debug", "release"] {
        candidates.push(root.join("target").join(profile).join(name));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| MeshError::Missing {
            what: format!("`{name}`"),
            hint: format!("build it (`cargo build -p {name}`) or set {var}"),
        })
}

/// One server replica.
#[derive(Debug)]
pub struct ServerReplica {
    /// `boifi-server-0`, ...
    pub name: String,
    /// Its own port.
    pub port: u16,
    args: Vec<String>,
    /// The running process, if up.
    pub process: Option<ManagedProcess>,
    /// How many times it was started.
    pub starts: usize,
}

/// The control plane of a mesh.
#[derive(Debug)]
pub struct ControlPlane {
    dir: PathBuf,
    envoy: PathBuf,
    /// The replicas.
    pub replicas: Vec<ServerReplica>,
    /// The etcd cluster ([`Store::Etcd`]).
    pub etcd: Option<EtcdCluster>,
    lb: Option<ManagedProcess>,
    lb_ports: Option<(u16, u16)>,
    /// The Service port sidecars and the CLI use.
    pub port: u16,
    /// The store.
    pub store: Store,
}

impl ControlPlane {
    /// Reserves ports and writes configuration; starts nothing (sidecars may start first).
    /// With [`Store::Etcd`] the etcd cluster is started here (it is not the control plane).
    pub fn prepare(
        store: Store,
        replicas: usize,
        dir: &Path,
        envoy: &Path,
        client: &HttpClient,
        extra_args: &[String],
    ) -> Result<ControlPlane, MeshError> {
        let etcd = match store {
            Store::Etcd => Some(EtcdCluster::start(3, dir, client)?),
            _ => None,
        };
        let replicas = replicas.max(1);
        let ports = free_ports(replicas + 2).map_err(MeshError::Ports)?;
        let mut list = Vec::new();
        for (i, port) in ports.iter().take(replicas).enumerate() {
            let mut args = vec![
                "--listen".to_owned(),
                format!("127.0.0.1:{port}"),
                // The name its sidecar reports go under (they must differ between replicas).
                "--replica-id".to_owned(),
                format!("boifi-server-{i}"),
            ];
            match store {
                Store::Memory => args.extend(["--storage".to_owned(), "memory".to_owned()]),
                Store::Embedded => {
                    let data = dir.join(format!("server-{i}-data"));
                    args.extend([
                        "--storage".to_owned(),
                        "embedded".to_owned(),
                        "--data-dir".to_owned(),
                        data.display().to_string(),
                    ]);
                }
                Store::Etcd => {
                    let endpoints = etcd
                        .as_ref()
                        .map(EtcdCluster::endpoints_arg)
                        .unwrap_or_default();
                    args.extend([
                        "--storage".to_owned(),
                        "etcd".to_owned(),
                        "--etcd-endpoints".to_owned(),
                        endpoints,
                    ]);
                }
            }
            args.extend(extra_args.iter().cloned());
            list.push(ServerReplica {
                name: format!("boifi-server-{i}"),
                port: *port,
                args,
                process: None,
                starts: 0,
            });
        }
        let (port, lb_ports) = if replicas > 1 {
            let lb = ports.get(replicas).copied().unwrap_or_default();
            let admin = ports.get(replicas + 1).copied().unwrap_or_default();
            (lb, Some((lb, admin)))
        } else {
            (list.first().map(|r| r.port).unwrap_or_default(), None)
        };
        Ok(ControlPlane {
            dir: dir.to_owned(),
            envoy: envoy.to_owned(),
            replicas: list,
            etcd,
            lb: None,
            lb_ports,
            port,
            store,
        })
    }

    /// `http://127.0.0.1:<port>` of the Service.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The URL of one replica.
    pub fn replica_url(&self, i: usize) -> Option<String> {
        self.replicas
            .get(i)
            .map(|r| format!("http://127.0.0.1:{}", r.port))
    }

    /// Starts every replica that is not running, and the balancer.
    pub fn start_all(&mut self) -> Result<(), MeshError> {
        for i in 0..self.replicas.len() {
            if self.replicas.get(i).is_some_and(|r| r.process.is_none()) {
                self.start_replica(i)?;
            }
        }
        if let (Some((port, admin)), None) = (self.lb_ports, &self.lb) {
            let ports: Vec<u16> = self.replicas.iter().map(|r| r.port).collect();
            let bootstrap = control_plane_lb_bootstrap(admin, port, &ports);
            self.lb = Some(spawn_envoy(
                &self.envoy,
                &self.dir,
                "control-plane-lb",
                &bootstrap,
            )?);
        }
        Ok(())
    }

    /// Starts replica `i`.
    pub fn start_replica(&mut self, i: usize) -> Result<(), MeshError> {
        let dir = self.dir.clone();
        let server = workspace_binary("boifi-server")?;
        let r = self
            .replicas
            .get_mut(i)
            .ok_or_else(|| MeshError::Unknown(format!("control-plane replica {i}")))?;
        let mut c = Command::new(&server);
        c.args(&r.args).env("RUST_LOG", "info");
        let log = dir.join(format!("{}.log", r.name));
        r.process = Some(ManagedProcess::spawn(&r.name, c, &log)?);
        r.starts += 1;
        Ok(())
    }

    /// SIGKILLs replica `i`.
    pub fn kill_replica(&mut self, i: usize) {
        if let Some(r) = self.replicas.get_mut(i) {
            if let Some(mut p) = r.process.take() {
                p.kill();
            }
        }
    }

    /// SIGKILLs every replica (the balancer stays, as a Service does).
    pub fn kill_all(&mut self) {
        for i in 0..self.replicas.len() {
            self.kill_replica(i);
        }
    }

    /// Waits until every running replica answers `/v1/ready` with 200 and the Service address
    /// does too; returns the time since the earliest start among them.
    pub fn wait_ready(
        &mut self,
        client: &HttpClient,
        timeout: Duration,
    ) -> Result<Duration, MeshError> {
        let earliest = self
            .replicas
            .iter()
            .filter_map(|r| r.process.as_ref().map(ManagedProcess::started))
            .min()
            .unwrap_or_else(Instant::now);
        let urls: Vec<String> = (0..self.replicas.len())
            .filter(|i| self.replicas.get(*i).is_some_and(|r| r.process.is_some()))
            .filter_map(|i| self.replica_url(i))
            .chain(std::iter::once(self.url()))
            .collect();
        wait_for(
            "control plane ready (/v1/ready)",
            timeout,
            Duration::from_millis(25),
            || {
                self.check_running()?;
                let ready = urls
                    .iter()
                    .all(|u| client.get(u, "/v1/ready").is_ok_and(|a| a.status == 200));
                Ok(ready.then_some(()))
            },
        )?;
        Ok(earliest.elapsed())
    }

    /// `Err` if a started process has exited.
    pub fn check_running(&mut self) -> Result<(), MeshError> {
        for r in &mut self.replicas {
            if let Some(p) = r.process.as_mut() {
                p.check_running()?;
            }
        }
        if let Some(lb) = self.lb.as_mut() {
            lb.check_running()?;
        }
        Ok(())
    }

    /// Every process of the control plane (for logs and memory).
    pub fn processes(&self) -> Vec<&ManagedProcess> {
        let mut all: Vec<&ManagedProcess> = self
            .replicas
            .iter()
            .filter_map(|r| r.process.as_ref())
            .collect();
        all.extend(self.lb.as_ref());
        if let Some(e) = &self.etcd {
            all.extend(e.members.iter());
        }
        all
    }
}
