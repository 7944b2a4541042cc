//! `boifi-mesh`: run the local mesh (`up`), the demo (`demo`), or one pod's app (`app`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use boifi_mesh::ambient::WAYPOINT;
use boifi_mesh::app::{AppInfo, CallPlan};
use boifi_mesh::demo::{self, DemoOptions};
use boifi_mesh::{Mesh, MeshOptions, Topology};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "boifi-mesh",
    version,
    about = "A service mesh of real Envoy sidecars with the boifi filter, on one machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the mesh, fault cartservice with boifi-cli, send every page type of frontend
    /// without and with the callers' retries and timeouts, print what each hop saw, stop.
    Demo {
        /// Two control-plane replicas on a 3-member etcd (default: one on the embedded store).
        #[arg(long)]
        ha: bool,
        /// The faults of the first two runs (default: crates/boifi-mesh/demo/cart-faults.yaml).
        #[arg(long, short = 'f')]
        policies: Option<PathBuf>,
        /// Requests per page type and run.
        #[arg(long, default_value_t = 60)]
        requests: usize,
        /// Also start a Prometheus scraping the mesh (Debian's `prometheus`), print its URL
        /// and the Grafana dashboard file, and keep serving traffic until Enter.
        #[arg(long)]
        prometheus: bool,
        /// Istio's ambient mode: no sidecars, one waypoint Envoy for the namespace runs the
        /// filter (`make demo MODE=ambient`).
        #[arg(long)]
        ambient: bool,
    },
    /// Start the mesh and keep it running until Ctrl-C.
    Up {
        /// Two control-plane replicas on a 3-member etcd.
        #[arg(long)]
        ha: bool,
        /// Only these services (comma-separated; default: all of Online Boutique).
        #[arg(long, value_delimiter = ',')]
        services: Vec<String>,
        /// Istio's ambient mode: no sidecars; every call goes through one waypoint Envoy for
        /// the namespace (with the filter), reached over HBONE from a ztunnel stand-in.
        #[arg(long)]
        ambient: bool,
    },
    /// Serve as one pod's app (used by the mesh itself).
    App {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// The service.
        #[arg(long)]
        service: String,
        /// The pod name.
        #[arg(long)]
        pod: String,
        /// Its calls (JSON written by the mesh); without it the app is a leaf.
        #[arg(long)]
        plan: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::App {
            listen,
            service,
            pod,
            plan,
        } => plan
            .as_deref()
            .map_or_else(|| Ok(CallPlan::default()), CallPlan::read)
            .and_then(|plan| boifi_mesh::app::run(listen, AppInfo { service, pod, plan })),
        Command::Demo {
            ha,
            policies,
            requests,
            prometheus,
            ambient,
        } => {
            let (faults, slow_policies) = DemoOptions::default_policies();
            demo::run(&DemoOptions {
                topology: Topology::online_boutique(),
                ha,
                policies: policies.unwrap_or(faults),
                slow_policies,
                charge_policies: DemoOptions::default_charge_policies(),
                requests,
                app_binary: std::env::current_exe().ok(),
                prometheus,
                ambient,
            })
        }
        Command::Up {
            ha,
            services,
            ambient,
        } => up(ha, &services, ambient),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("boifi-mesh: {e}");
            ExitCode::FAILURE
        }
    }
}

fn up(ha: bool, services: &[String], ambient: bool) -> Result<(), boifi_mesh::MeshError> {
    let mut topology = Topology::online_boutique();
    if !services.is_empty() {
        let names: Vec<&str> = services.iter().map(String::as_str).collect();
        topology = topology.only(&names);
    }
    let mut options = MeshOptions::new(topology);
    if ha {
        options = options.ha();
    }
    if ambient {
        options = options.ambient();
    }
    options.progress = true;
    options.app_binary = std::env::current_exe().ok();
    let mesh = Mesh::start(options)?;
    println!("control plane: {}", mesh.control_plane.url());
    println!(
        "ingress:       {} (Host: <service>.<namespace>)",
        mesh.ingress_url()
    );
    if let Some(a) = &mesh.ambient {
        println!(
            "waypoint:      {WAYPOINT}.{} connect_terminate :{}  admin {}",
            a.namespace,
            a.connect_port,
            a.admin_url()
        );
    }
    for (spec, pod) in mesh.pods().filter(|(_, p)| !p.ambient) {
        println!(
            "{:<40} inbound {}  outbound :{}  admin {}  app counters {}{}",
            format!("{}.{}", pod.name, spec.namespace),
            pod.inbound_url(),
            pod.outbound_port,
            pod.admin_url(),
            pod.app_url(),
            boifi_mesh::app::STATS_PATH,
        );
    }
    println!("logs and configs: {}", mesh.dir().display());
    println!("Ctrl-C stops everything");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| boifi_mesh::MeshError::Unknown(e.to_string()))?;
    runtime.block_on(async {
        // SIGINT or SIGTERM: return, so that the mesh is dropped and its temp dir removed.
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    });
    drop(mesh);
    Ok(())
}
