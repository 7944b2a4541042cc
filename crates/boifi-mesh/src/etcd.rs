//! A 3-member etcd cluster on loopback ports for the control plane.
//!
//! Like every process of the mesh (and unlike `boifi-testkit`'s cluster), its members are
//! tied to the life of this process (`PR_SET_PDEATHSIG`), so a mesh kept in a `static` by the
//! tests, or a `boifi-mesh up` killed by a signal, leaves no etcd behind.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::error::MeshError;
use crate::http::HttpClient;
use crate::process::{wait_for, ManagedProcess};
use boifi_testkit::ports::free_ports;

/// A running etcd cluster.
#[derive(Debug)]
pub struct EtcdCluster {
    /// The members (killed on drop).
    pub members: Vec<ManagedProcess>,
    /// Client URLs, one per member.
    pub client_urls: Vec<String>,
}

impl EtcdCluster {
    /// Starts `size` members under `dir` and waits until every member reports healthy.
    pub fn start(size: usize, dir: &Path, client: &HttpClient) -> Result<EtcdCluster, MeshError> {
        let etcd = boifi_testkit::etcd::etcd_binary().ok_or_else(|| MeshError::Missing {
            what: "etcd".to_owned(),
            hint: "run `make deps` (Debian package `etcd-server`) or set BOIFI_ETCD".to_owned(),
        })?;
        let ports = free_ports(size * 2).map_err(MeshError::Ports)?;
        let url = |i: usize| {
            ports
                .get(i)
                .map(|p| format!("http://127.0.0.1:{p}"))
                .unwrap_or_default()
        };
        let client_urls: Vec<String> = (0..size).map(url).collect();
        let initial: Vec<String> = (0..size)
            .map(|i| format!("m{i}={}", url(size + i)))
            .collect();
        let initial = initial.join(",");
        let mut members = Vec::with_capacity(size);
        for (i, client_url) in client_urls.iter().enumerate() {
            let peer = url(size + i);
            let mut c = Command::new(&etcd);
            c.arg("--name")
                .arg(format!("m{i}"))
                .arg("--data-dir")
                .arg(dir.join(format!("etcd-m{i}")))
                .args(["--listen-client-urls", client_url])
                .args(["--advertise-client-urls", client_url])
                .args(["--listen-peer-urls", &peer])
                .args(["--initial-advertise-peer-urls", &peer])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "boifi-mesh"])
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                .args(["--logger", "zap", "--log-level", "warn"]);
            let log = dir.join(format!("etcd-m{i}.log"));
            members.push(ManagedProcess::spawn(&format!("etcd-m{i}"), c, &log)?);
        }
        let mut cluster = EtcdCluster {
            members,
            client_urls,
        };
        wait_for(
            "etcd members healthy",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || {
                for m in &mut cluster.members {
                    m.check_running()?;
                }
                let healthy = cluster.client_urls.iter().all(|u| {
                    client
                        .get(u, "/health")
                        .is_ok_and(|a| a.status == 200 && a.text().contains("true"))
                });
                Ok(healthy.then_some(()))
            },
        )?;
        Ok(cluster)
    }

    /// The endpoints as one comma-separated list (for `--etcd-endpoints`, `etcdctl`).
    pub fn endpoints_arg(&self) -> String {
        self.client_urls.join(",")
    }
}
