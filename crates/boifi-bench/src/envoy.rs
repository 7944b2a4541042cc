//! One Envoy in front of the fixed upstream, in each configuration the benchmarks compare.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use boifi_mesh::envoy::{
    native_filter, wasm_filter, CONTROL_PLANE_CLUSTER, NATIVE_PROMETHEUS_PREFIX,
    NATIVE_SEARCH_PATH_ENV,
};
use boifi_mesh::process::ManagedProcess;
use boifi_testkit::ports::free_ports;
use serde_json::{json, Value};

use crate::error::BenchError;

/// The HTTP filters in front of the router.
#[derive(Debug, Clone)]
pub enum Filters {
    /// The router alone.
    Plain,
    /// `envoy.filters.http.fault` aborting `percent` % of requests with 503.
    NativeFault {
        /// 0..=100.
        percent: u32,
    },
    /// The boifi filter, configured with `plugin_config`, polling the control plane at
    /// `control_plane`.
    Boifi {
        /// The `.wasm` module.
        wasm: PathBuf,
        /// The filter's `pluginConfig`.
        plugin_config: Value,
        /// The boifi-server it polls.
        control_plane: SocketAddr,
    },
    /// The boifi filter as the native dynamic module, polling `control_plane` itself.
    BoifiNative {
        /// `libboifi.so`.
        module: PathBuf,
        /// The filter's configuration (the Wasm filter's `pluginConfig`).
        plugin_config: Value,
        /// The boifi-server it polls.
        control_plane: SocketAddr,
    },
    /// A Wasm module with no configuration and no control plane (the floor, the SDK-only
    /// module).
    Module {
        /// The `.wasm` module.
        wasm: PathBuf,
    },
}

/// How to start an Envoy.
#[derive(Debug, Clone)]
pub struct EnvoySpec {
    /// Its name in messages and log file names.
    pub name: String,
    /// The filters.
    pub filters: Filters,
    /// The upstream every request goes to.
    pub upstream_port: u16,
    /// `--concurrency`.
    pub concurrency: u32,
    /// Run Envoy on these CPUs only (`taskset -c`), e.g. `1`.
    pub cpus: Option<String>,
}

fn address(port: u16) -> Value {
    json!({"socket_address": {"address": "127.0.0.1", "port_value": port}})
}

fn static_cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": address(port)}}
        ]}]},
    })
}

/// The Envoy bootstrap of `spec` with its admin and listener ports.
pub fn bootstrap(spec: &EnvoySpec, admin_port: u16, listener_port: u16) -> Value {
    let mut filters = Vec::new();
    let mut clusters = vec![static_cluster("upstream", spec.upstream_port)];
    match &spec.filters {
        Filters::Plain => {}
        Filters::NativeFault { percent } => filters.push(json!({
            "name": "envoy.filters.http.fault",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
                "abort": {
                    "http_status": 503,
                    "percentage": {"numerator": percent, "denominator": "HUNDRED"},
                },
            },
        })),
        Filters::Boifi {
            wasm,
            plugin_config,
            control_plane,
        } => {
            filters.push(wasm_filter(wasm, plugin_config));
            clusters.push(static_cluster(CONTROL_PLANE_CLUSTER, control_plane.port()));
        }
        Filters::BoifiNative {
            plugin_config,
            control_plane,
            ..
        } => filters.push(native_filter(plugin_config, &control_plane.to_string())),
        Filters::Module { wasm } => filters.push(wasm_filter(wasm, &json!({}))),
    }
    filters.push(
        json!({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}),
    );
    json!({
        "node": {"id": format!("bench~127.0.0.1~{}.bench~bench.svc.cluster.local", spec.name),
                 "cluster": format!("{}.bench", spec.name)},
        "admin": {"address": address(admin_port)},
        "static_resources": {
            "listeners": [{
                "name": "bench",
                "address": address(listener_port),
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "bench",
                        "codec_type": "AUTO",
                        "route_config": {"name": "bench", "virtual_hosts": [{
                            "name": "bench", "domains": ["*"],
                            "routes": [{"match": {"prefix": "/"},
                                        "route": {"cluster": "upstream", "timeout": "0s"}}],
                        }]},
                        "http_filters": filters,
                    },
                }]}],
            }],
            "clusters": clusters,
        },
    })
}

/// A running Envoy, killed when dropped.
#[derive(Debug)]
pub struct Envoy {
    /// Its spec.
    pub spec: EnvoySpec,
    /// Admin port.
    pub admin_port: u16,
    /// Listener port.
    pub listener_port: u16,
    /// From exec to the first 200 through the listener.
    pub first_200_after: Duration,
    process: ManagedProcess,
}

impl Envoy {
    /// Starts Envoy with `spec` (files in `dir`) and waits for a 200 through its listener.
    pub fn start(binary: &Path, dir: &Path, spec: EnvoySpec) -> Result<Envoy, BenchError> {
        let ports = free_ports(2).map_err(|e| BenchError::io("picking free loopback ports", e))?;
        let (Some(&admin_port), Some(&listener_port)) = (ports.first(), ports.get(1)) else {
            return Err(BenchError::Unexpected("no free ports".to_owned()));
        };
        let config = dir.join(format!("{}.envoy.json", spec.name));
        let text = bootstrap(&spec, admin_port, listener_port).to_string();
        std::fs::write(&config, text)
            .map_err(|e| BenchError::io(format!("writing `{}`", config.display()), e))?;
        let mut command = match &spec.cpus {
            // taskset execs Envoy: the process id stays Envoy's.
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpus]).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        command
            .arg("-c")
            .arg(&config)
            .args(["--concurrency", &spec.concurrency.to_string()])
            .args(["--disable-hot-restart", "--drain-time-s", "0"])
            .args([
                "--log-level",
                "warning",
                "--component-log-level",
                "wasm:info,dynamic_modules:info",
            ]);
        if let Filters::BoifiNative { module, .. } = &spec.filters {
            command.env(
                NATIVE_SEARCH_PATH_ENV,
                module.parent().unwrap_or(Path::new(".")),
            );
        }
        let log = dir.join(format!("{}.envoy.log", spec.name));
        let mut process = ManagedProcess::spawn(&spec.name, command, &log)?;
        let started = process.started();
        let listener = SocketAddr::from(([127, 0, 0, 1], listener_port));
        let deadline = started + Duration::from_secs(60);
        let first_200_after = loop {
            process.check_running()?;
            if let Ok(r) = boifi_testkit::http::get(listener, "/", Duration::from_millis(500)) {
                if r.status == 200 {
                    break started.elapsed();
                }
            }
            if Instant::now() >= deadline {
                return Err(BenchError::Unexpected(format!(
                    "envoy `{}` gave no 200 within 60 s; log: {}",
                    spec.name,
                    process.log_tail(20)
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        Ok(Envoy {
            spec,
            admin_port,
            listener_port,
            first_200_after,
            process,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// `http://127.0.0.1:<listener>/`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.listener_port)
    }

    /// The admin address.
    pub fn admin(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.admin_port))
    }

    /// The last lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        self.process.log_tail(n)
    }

    /// `/stats/prometheus`, the native module's metrics under the Wasm filter's names.
    pub fn prometheus(&self) -> Result<String, BenchError> {
        let r =
            boifi_testkit::http::get(self.admin(), "/stats/prometheus", Duration::from_secs(5))?;
        Ok(match self.spec.filters {
            Filters::BoifiNative { .. } => r.text().replace(NATIVE_PROMETHEUS_PREFIX, ""),
            _ => r.text(),
        })
    }

    /// The sum of a metric in `/stats/prometheus` (`None` when absent).
    pub fn metric(&self, name: &str) -> Result<Option<u64>, BenchError> {
        Ok(boifi_mesh::stats::metric_sum(&self.prometheus()?, name))
    }

    /// A stat of `/stats` (`server.memory_allocated`), when present.
    pub fn stat(&self, name: &str) -> Result<Option<u64>, BenchError> {
        let path = format!("/stats?filter=^{}$", name.replace('.', "\\."));
        let r = boifi_testkit::http::get(self.admin(), &path, Duration::from_secs(5))?;
        Ok(r.text().lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            (n.trim() == name).then(|| v.trim().parse().ok())?
        }))
    }
}
