//! The mesh as a call graph: each app's plan (what it calls, through which sidecar), the
//! callers' outbound routes and their retry and timeout policies (rewritten in running
//! sidecars, as an RDS push), and one run of page traffic through the ingress measured at
//! every hop: what each sidecar received and injected, what each app received, and what its
//! callers' calls to it got.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::app::{AppStats, CallPlan, CallStats, Callee, STATS_PATH};
use crate::calls::Handler;
use crate::envoy::{outbound_routes, Upstream, OUTBOUND_ROUTES};
use crate::error::MeshError;
use crate::http::{RequestSpec, TrafficReport};
use crate::mesh::Mesh;
use crate::process::wait_for;
use crate::topology::{ServiceSpec, Topology};
use crate::traffic::RoutePolicy;

/// The stat of a sidecar's inbound listener that counts the requests it received (every
/// try of a caller's retries, faulted or not).
pub const INBOUND_REQUESTS: &str = "http.inbound_0.0.0.0_8080.downstream_rq_total";

/// A file of a pod in the mesh's directory: `<pod>.<namespace>.<suffix>`.
pub(crate) fn pod_file(dir: &Path, pod: &str, spec: &ServiceSpec, suffix: &str) -> PathBuf {
    dir.join(format!("{pod}.{}.{suffix}", spec.namespace))
}

/// Writes JSON through a temporary file and a rename, so that a reader (Envoy watching its
/// routes file) never sees half of it.
pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<(), MeshError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| MeshError::io(path, std::io::Error::other(e)))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| MeshError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| MeshError::io(path, e))
}

/// Writes `caller`'s outbound routes (RDS) at `version`, unless the file already holds the
/// same routes: Envoy ignores an update whose routes hash the same (its config dump keeps
/// the old version), so only a change is written. Returns whether it wrote.
pub(crate) fn write_routes(
    path: &Path,
    caller: &str,
    topology: &Topology,
    upstreams: &[Upstream],
    version: u64,
) -> Result<bool, MeshError> {
    write_changed_routes(path, &outbound_routes(caller, topology, upstreams, version))
}

/// Writes an RDS file's content unless the file already holds the same resources (see
/// [`write_routes`]); returns whether it wrote.
pub(crate) fn write_changed_routes(path: &Path, routes: &Value) -> Result<bool, MeshError> {
    let held = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    if held.is_some_and(|h| h.get("resources") == routes.get("resources")) {
        return Ok(false);
    }
    write_json(path, routes)?;
    Ok(true)
}

/// The plan of an app of `spec`: its handlers, and for each service it calls the authority
/// its sidecar routes on; in ambient mode (`tunnels`: callee name → port) the port ztunnel
/// captures for that callee instead of a sidecar.
pub(crate) fn call_plan(
    spec: &ServiceSpec,
    topology: &Topology,
    outbound_port: u16,
    tunnels: Option<&BTreeMap<String, u16>>,
) -> CallPlan {
    let local = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let callees = topology
        .services
        .iter()
        .filter(|s| spec.handlers.iter().any(|h| h.calls_service(&s.name)))
        .map(|s| {
            let callee = Callee {
                authority: s.fqdn(),
                grpc_service: s.grpc_service.clone().filter(|_| s.protocol.is_grpc()),
                address: tunnels.and_then(|t| t.get(&s.name)).copied().map(local),
            };
            (s.name.clone(), callee)
        })
        .collect();
    CallPlan {
        outbound: tunnels.is_none().then(|| local(outbound_port)),
        handlers: spec.handlers.clone(),
        callees,
    }
}

/// A sidecar's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct SidecarCounters {
    requests: u64,
    aborts: u64,
    delays: u64,
}

/// The key of the waypoint's own counters among a run's sidecar counters.
const WAYPOINT_ROW: &str = "(waypoint)";

/// What the waypoint's filter did in a run (ambient mode): it counts per proxy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaypointRow {
    /// HBONE tunnels (CONNECT requests) `connect_terminate` accepted.
    pub tunnels: u64,
    /// Aborts its filter injected, every service together.
    pub aborts: u64,
    /// Delays its filter injected, every service together.
    pub delays: u64,
}

/// One service in a run.
#[derive(Debug, Clone, Default)]
pub struct ServiceRow {
    /// Its name.
    pub service: String,
    /// Requests its sidecars received (every try of the callers' retries); in ambient mode
    /// the requests of its chain of the waypoint (every try of the waypoint's retries).
    pub sidecar_requests: u64,
    /// Aborts its sidecars' boifi filter injected (0 in ambient mode: see [`Run::waypoint`]).
    pub aborts: u64,
    /// Delays its sidecars' boifi filter injected (0 in ambient mode: see [`Run::waypoint`]).
    pub delays: u64,
    /// Its apps' counters.
    pub app: AppStats,
    /// What its callers' calls to it got (every caller app merged).
    pub seen_by_callers: CallStats,
}

/// One page type in a run: what the user saw at the ingress.
#[derive(Debug, Clone)]
pub struct PageRow {
    /// The page (`home`, `view-cart`, ...).
    pub page: Handler,
    /// The answers.
    pub report: TrafficReport,
}

impl PageRow {
    /// Answers that were not the page (5xx or no answer at all).
    pub fn failed(&self) -> usize {
        self.report.server_errors()
    }
}

/// A run of page traffic.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// Per page type, in the order sent.
    pub pages: Vec<PageRow>,
    /// Per service, in topology order.
    pub services: Vec<ServiceRow>,
    /// Ambient mode: the waypoint's own counters.
    pub waypoint: Option<WaypointRow>,
}

impl Run {
    /// The row of a service.
    pub fn service(&self, name: &str) -> Result<&ServiceRow, MeshError> {
        self.services
            .iter()
            .find(|s| s.service == name)
            .ok_or_else(|| MeshError::Unknown(format!("service `{name}` in the run")))
    }

    /// The row of a page.
    pub fn page(&self, name: &str) -> Result<&PageRow, MeshError> {
        self.pages
            .iter()
            .find(|p| p.page.name == name)
            .ok_or_else(|| MeshError::Unknown(format!("page `{name}` in the run")))
    }
}

impl Mesh {
    /// The handlers of `service` (frontend's pages).
    pub fn pages(&self, service: &str) -> Result<Vec<Handler>, MeshError> {
        Ok(self.service(service)?.spec.handlers.clone())
    }

    /// Replaces the callers' route policies and rewrites the routes they change: the outbound
    /// routes of every sidecar, or in ambient mode the routes of the waypoint's chains (a
    /// waypoint's route is the service's: only policies for every caller apply there).
    /// Returns when each changed route is served at the new version (the RDS config dump of
    /// its Envoy says so).
    pub fn set_routes(&mut self, routes: Vec<RoutePolicy>) -> Result<(), MeshError> {
        self.routes = routes;
        self.routes_version += 1;
        let (topology, upstreams, version) =
            (self.topology(), self.upstreams(), self.routes_version);
        // (admin URL, route config name) of every route written.
        let mut changed: Vec<(String, String)> = Vec::new();
        if let Some(ambient) = &self.ambient {
            for s in &self.services {
                let file = crate::ambient::route_file(self.dir(), &s.spec);
                let routes = crate::ambient::chain_routes(&s.spec, &topology, version);
                if write_changed_routes(&file, &routes)? {
                    changed.push((ambient.admin_url(), crate::ambient::chain_name(&s.spec)));
                }
            }
        }
        for (spec, pod) in self.pods().filter(|(_, p)| !p.ambient) {
            let file = pod_file(self.dir(), &pod.name, spec, "routes.json");
            if write_routes(&file, &spec.name, &topology, &upstreams, version)? {
                changed.push((pod.admin_url(), OUTBOUND_ROUTES.to_owned()));
            }
        }
        wait_for(
            &format!("every changed route to be served at version {version}"),
            Duration::from_secs(20),
            Duration::from_millis(20),
            || {
                for (admin, name) in &changed {
                    if self.route_versions(admin)?.get(name) != Some(&version) {
                        return Ok(None);
                    }
                }
                Ok(Some(()))
            },
        )
    }

    /// The route configs an Envoy serves from RDS, as its config dump shows them.
    fn served_route_configs(&self, admin: &str) -> Result<Vec<Value>, MeshError> {
        let a = self
            .client
            .get(admin, "/config_dump?resource=dynamic_route_configs")?;
        let dump: Value = serde_json::from_slice(&a.body).map_err(|e| MeshError::Http {
            url: format!("{admin}/config_dump"),
            reason: e.to_string(),
        })?;
        Ok(dump
            .get("configs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// The `retry_policy` that `caller`'s sidecars apply to their calls to `callee`, read from
    /// the running Envoys (their RDS config dump), `None` when they do not retry. Fails when
    /// the caller's sidecars disagree or serve no route to `callee`.
    pub fn served_retry_policy(
        &self,
        caller: &str,
        callee: &str,
    ) -> Result<Option<Value>, MeshError> {
        let authority = self.service(callee)?.spec.fqdn();
        let mut found: Option<Option<Value>> = None;
        for pod in self.service(caller)?.running() {
            let configs = self.served_route_configs(&pod.admin_url())?;
            let route = configs
                .iter()
                .filter(|c| {
                    c.pointer("/route_config/name").and_then(Value::as_str) == Some(OUTBOUND_ROUTES)
                })
                .filter_map(|c| c.pointer("/route_config/virtual_hosts")?.as_array())
                .flatten()
                .find(|vh| {
                    vh.get("domains")
                        .and_then(Value::as_array)
                        .is_some_and(|d| d.iter().any(|d| d.as_str() == Some(authority.as_str())))
                })
                .and_then(|vh| vh.pointer("/routes/0/route"))
                .ok_or_else(|| {
                    MeshError::Unknown(format!("{}'s route to `{authority}`", pod.name))
                })?;
            let policy = route.get("retry_policy").cloned();
            match &found {
                Some(other) if *other != policy => {
                    return Err(MeshError::Topology(format!(
                        "{caller}'s sidecars serve different retry policies to {callee}"
                    )))
                }
                _ => found = Some(policy),
            }
        }
        found.ok_or_else(|| MeshError::Unknown(format!("a running pod of `{caller}`")))
    }

    /// The version of each route config an Envoy serves from RDS, by name.
    fn route_versions(&self, admin: &str) -> Result<BTreeMap<String, u64>, MeshError> {
        Ok(self
            .served_route_configs(admin)?
            .iter()
            .filter_map(|c| {
                let name = c.pointer("/route_config/name").and_then(Value::as_str)?;
                let version = c
                    .get("version_info")
                    .and_then(Value::as_str)?
                    .parse()
                    .ok()?;
                Some((name.to_owned(), version))
            })
            .collect())
    }

    /// The counters of a service's apps, every running pod merged.
    pub fn app_stats(&self, service: &str) -> Result<AppStats, MeshError> {
        let mut all = AppStats::default();
        for pod in self.service(service)?.running() {
            let a = self.client.get(&pod.app_url(), STATS_PATH)?;
            let stats: AppStats = serde_json::from_slice(&a.body).map_err(|e| MeshError::Http {
                url: format!("{}{STATS_PATH}", pod.app_url()),
                reason: e.to_string(),
            })?;
            all.merge(&stats);
        }
        Ok(all)
    }

    /// Zeroes every app's counters.
    pub fn reset_app_stats(&self) -> Result<(), MeshError> {
        let mut reset = RequestSpec::get("/_mesh/reset");
        reset.method = hyper::Method::POST;
        for (_, pod) in self.pods() {
            self.client
                .send(&pod.app_url(), &reset, None, Duration::from_secs(5))?;
        }
        Ok(())
    }

    /// The sum of a stat over a service's running sidecars (0 where absent).
    pub fn service_stat(&self, service: &str, name: &str) -> Result<u64, MeshError> {
        let mut sum = 0;
        for pod in self.service(service)?.running() {
            sum += self.stat(pod, name)?.unwrap_or(0);
        }
        Ok(sum)
    }

    /// Per service: the requests its sidecars (ambient: its waypoint chain) received and
    /// the faults they injected; in ambient mode the waypoint's own faults under
    /// [`WAYPOINT_ROW`], as its filter counts per proxy, not per service.
    fn sidecar_counters(&self) -> Result<BTreeMap<String, SidecarCounters>, MeshError> {
        let mut all = BTreeMap::new();
        if let Some(ambient) = &self.ambient {
            let admin = ambient.admin_url();
            for s in &self.services {
                let chain = crate::ambient::chain_name(&s.spec);
                let requests = self
                    .stat_at(&admin, &format!("http.{chain}.downstream_rq_total"))?
                    .unwrap_or(0);
                all.insert(
                    s.spec.name.clone(),
                    SidecarCounters {
                        requests,
                        ..SidecarCounters::default()
                    },
                );
            }
            let faults = SidecarCounters {
                requests: self
                    .stat_at(&admin, "http.connect_terminate.downstream_rq_total")?
                    .unwrap_or(0),
                aborts: self
                    .stat_at(
                        &admin,
                        &self.filter_stat(boifi_engine::metrics::ABORTS_TOTAL),
                    )?
                    .unwrap_or(0),
                delays: self
                    .stat_at(
                        &admin,
                        &self.filter_stat(boifi_engine::metrics::DELAYS_TOTAL),
                    )?
                    .unwrap_or(0),
            };
            all.insert(WAYPOINT_ROW.to_owned(), faults);
            return Ok(all);
        }
        for s in &self.services {
            let mut c = SidecarCounters::default();
            for pod in s.running() {
                c.requests += self.stat(pod, INBOUND_REQUESTS)?.unwrap_or(0);
                c.aborts += self.metric(pod, "hfi_faults_aborts_total")?;
                c.delays += self.metric(pod, "hfi_faults_delays_total")?;
            }
            all.insert(s.spec.name.clone(), c);
        }
        Ok(all)
    }

    /// `n` requests of one of `service`'s pages through the ingress, `concurrency` at a time.
    pub fn send_page(
        &self,
        service: &str,
        page: &Handler,
        n: usize,
        concurrency: usize,
    ) -> Result<TrafficReport, MeshError> {
        let s = self.service(service)?;
        let mut spec = RequestSpec::get(&format!(
            "/{}/{}{}",
            s.spec.namespace, s.spec.name, page.example
        ));
        spec.method = hyper::Method::from_bytes(page.method.as_bytes())
            .map_err(|e| MeshError::Topology(format!("page `{}`: method: {e}", page.name)))?;
        Ok(self
            .client
            .traffic(&self.ingress_url(), &spec, n, concurrency))
    }

    /// Sends `per_page` requests of each of `service`'s pages through the ingress and measures
    /// every hop: app counters are zeroed first, sidecar counters are differences.
    pub fn run_pages(
        &self,
        service: &str,
        per_page: usize,
        concurrency: usize,
    ) -> Result<Run, MeshError> {
        self.reset_app_stats()?;
        let before = self.sidecar_counters()?;
        let mut run = Run::default();
        for page in self.pages(service)? {
            let report = self.send_page(service, &page, per_page, concurrency)?;
            run.pages.push(PageRow { page, report });
        }
        let after = self.sidecar_counters()?;
        if let (Some(b), Some(a)) = (before.get(WAYPOINT_ROW), after.get(WAYPOINT_ROW)) {
            run.waypoint = Some(WaypointRow {
                tunnels: a.requests.saturating_sub(b.requests),
                aborts: a.aborts.saturating_sub(b.aborts),
                delays: a.delays.saturating_sub(b.delays),
            });
        }
        let mut apps = BTreeMap::new();
        for s in &self.services {
            apps.insert(s.spec.name.clone(), self.app_stats(&s.spec.name)?);
        }
        for s in &self.services {
            let name = &s.spec.name;
            let (b, a) = (before.get(name), after.get(name));
            let (b, a) = (
                b.copied().unwrap_or_default(),
                a.copied().unwrap_or_default(),
            );
            let mut seen = CallStats::default();
            for caller in apps.values() {
                if let Some(c) = caller.calls.get(name) {
                    seen.merge(c);
                }
            }
            run.services.push(ServiceRow {
                service: name.clone(),
                sidecar_requests: a.requests.saturating_sub(b.requests),
                aborts: a.aborts.saturating_sub(b.aborts),
                delays: a.delays.saturating_sub(b.delays),
                app: apps.get(name).cloned().unwrap_or_default(),
                seen_by_callers: seen,
            });
        }
        Ok(run)
    }
}
