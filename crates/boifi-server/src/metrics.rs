//! Prometheus metrics of the control plane (`GET /metrics`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use boifi_core::policy::PolicyState;
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::store::{BackendHealth, Snapshot};

/// Every metric, registered in one registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    policies: IntGaugeVec,
    config_version: IntGauge,
    waiting: IntGauge,
    sidecars: IntGauge,
    sidecars_evicted: IntGauge,
    sidecar_writes: IntGauge,
    store_errors: IntCounterVec,
    store_available: IntGauge,
    store_retries: IntCounter,
    store_failovers: IntCounter,
    fanout: Histogram,
    guards: GuardMetrics,
    guarded_policies: IntGaugeVec,
    /// The first moment a waiter saw each new version: fan-out is measured from there.
    first_seen: Mutex<(u64, Instant)>,
}

/// The sidecar registry's figures for [`Metrics::render`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SidecarCounts {
    /// Sidecars this replica knows.
    pub known: u64,
    /// Sidecars evicted because the registry was full.
    pub evicted: u64,
    /// Sidecar report keys written or deleted in the store.
    pub report_writes: u64,
}

/// Why the metrics could not be set up or written.
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "boifi_http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let policies = IntGaugeVec::new(
            Opts::new("boifi_policies", "Stored policies by state"),
            &["state"],
        )?;
        let config_version = IntGauge::new("boifi_config_version", "The current config version")?;
        let waiting = IntGauge::new(
            "boifi_config_waiting_requests",
            "Sidecar long-polls currently held",
        )?;
        let sidecars = IntGauge::new(
            "boifi_sidecars_known",
            "Sidecars seen on /v1/config by this replica",
        )?;
        let sidecars_evicted = IntGauge::new(
            "boifi_sidecars_evicted",
            "Sidecars evicted since start because the registry was full",
        )?;
        let sidecar_writes = IntGauge::new(
            "boifi_sidecar_report_writes",
            "Sidecar report keys written or deleted in the store since start",
        )?;
        let store_errors = IntCounterVec::new(
            Opts::new("boifi_store_errors_total", "Store failures by operation"),
            &["operation"],
        )?;
        let store_available = IntGauge::new(
            "boifi_store_available",
            "1 while the store takes writes; 0 while it serves its last view only (etcd unreachable or without quorum)",
        )?;
        let store_retries = IntCounter::new(
            "boifi_store_retries_total",
            "etcd calls sent again after a failed attempt",
        )?;
        let store_failovers = IntCounter::new(
            "boifi_store_failovers_total",
            "etcd calls and streams moved to another member after a failure",
        )?;
        let fanout = Histogram::with_opts(
            HistogramOpts::new(
                "boifi_config_fanout_seconds",
                "Time from the first to each waiting long-poll answered for a new version",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )?;
        // Exported at 0 from the start, so alerts see the series before the first failure.
        for operation in ["snapshot", "put", "delete", "delete_all"] {
            store_errors.with_label_values(&[operation]);
        }
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(policies.clone()))?;
        registry.register(Box::new(config_version.clone()))?;
        registry.register(Box::new(waiting.clone()))?;
        registry.register(Box::new(sidecars.clone()))?;
        registry.register(Box::new(sidecars_evicted.clone()))?;
        registry.register(Box::new(sidecar_writes.clone()))?;
        registry.register(Box::new(store_errors.clone()))?;
        registry.register(Box::new(store_available.clone()))?;
        registry.register(Box::new(store_retries.clone()))?;
        registry.register(Box::new(store_failovers.clone()))?;
        registry.register(Box::new(fanout.clone()))?;
        let guards = GuardMetrics::new(&registry)?;
        let guarded_policies = IntGaugeVec::new(
            Opts::new(
                "boifi_guard_policies",
                "Guarded policies by guard state (verifying, running, tripped)",
            ),
            &["state"],
        )?;
        registry.register(Box::new(guarded_policies.clone()))?;
        Ok(Metrics {
            guards,
            guarded_policies,
            registry,
            requests,
            policies,
            config_version,
            waiting,
            sidecars,
            sidecars_evicted,
            sidecar_writes,
            store_errors,
            store_available,
            store_retries,
            store_failovers,
            fanout,
            first_seen: Mutex::new((0, Instant::now())),
        })
    }

    /// The guard evaluator's metrics (shared handles).
    pub fn guards(&self) -> GuardMetrics {
        self.guards.clone()
    }

    /// Counts one answered request.
    pub fn request(&self, route: &str, method: &str, status: u16) {
        self.requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
    }

    /// Counts one store failure.
    pub fn store_error(&self, operation: &str) {
        self.store_errors.with_label_values(&[operation]).inc();
    }

    /// Sets the store's availability and failover counters from `health`.
    pub fn store_health(&self, health: &BackendHealth) {
        self.store_available
            .set(i64::from(health.degraded.is_none()));
        let catch_up = |counter: &IntCounter, total: u64| {
            counter.inc_by(total.saturating_sub(counter.get()));
        };
        catch_up(&self.store_retries, health.retries);
        catch_up(&self.store_failovers, health.failovers);
    }

    /// A long-poll starts waiting; the gauge drops again when the guard is dropped.
    pub fn waiting(&self) -> WaitingGuard<'_> {
        self.waiting.inc();
        WaitingGuard(&self.waiting)
    }

    /// A waiting long-poll is answered with `version`: records the time since the first
    /// waiter answered for that version.
    pub fn woken(&self, version: u64) -> Duration {
        let now = Instant::now();
        let mut first = self.first_seen.lock().unwrap_or_else(|e| e.into_inner());
        if first.0 < version {
            *first = (version, now);
        }
        let elapsed = now.saturating_duration_since(first.1);
        drop(first);
        self.fanout.observe(elapsed.as_secs_f64());
        elapsed
    }

    /// The Prometheus text exposition, with state gauges refreshed from `snapshot`.
    pub fn render(
        &self,
        snapshot: &Snapshot,
        now_ms: u64,
        sidecars: SidecarCounts,
    ) -> Result<String, MetricsError> {
        let states = [
            PolicyState::Active,
            PolicyState::Scheduled,
            PolicyState::Expired,
            PolicyState::Disabled,
        ];
        for state in states {
            let count = snapshot
                .policies
                .values()
                .filter(|p| p.state_at(now_ms) == state)
                .count();
            self.policies
                .with_label_values(&[state.as_str()])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        for state in ["verifying", "running", "tripped"] {
            let count = snapshot
                .policies
                .values()
                .filter(|p| p.guard_state().is_some_and(|g| g.as_str() == state))
                .count();
            self.guarded_policies
                .with_label_values(&[state])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        self.config_version
            .set(i64::try_from(snapshot.version).unwrap_or(i64::MAX));
        let gauge = |g: &IntGauge, n: u64| g.set(i64::try_from(n).unwrap_or(i64::MAX));
        gauge(&self.sidecars, sidecars.known);
        gauge(&self.sidecars_evicted, sidecars.evicted);
        gauge(&self.sidecar_writes, sidecars.report_writes);
        Ok(TextEncoder::new().encode_to_string(&self.registry.gather())?)
    }
}

/// What the guard evaluator counts (`boifi_guard_*`).
#[derive(Debug, Clone)]
pub struct GuardMetrics {
    evaluations: IntCounterVec,
    trips: IntCounterVec,
    value: GaugeVec,
    leader: IntGauge,
}

impl GuardMetrics {
    fn new(registry: &Registry) -> Result<GuardMetrics, MetricsError> {
        let evaluations = IntCounterVec::new(
            Opts::new(
                "boifi_guard_evaluations_total",
                "Guard evaluations by policy, guard and result (pass, fail, error)",
            ),
            &["policy", "guard", "result"],
        )?;
        let trips = IntCounterVec::new(
            Opts::new(
                "boifi_guard_trips_total",
                "Policies stopped by a guard, by policy and guard",
            ),
            &["policy", "guard"],
        )?;
        let value = GaugeVec::new(
            Opts::new(
                "boifi_guard_value",
                "The value a guard's query returned at its last evaluation",
            ),
            &["policy", "guard"],
        )?;
        let leader = IntGauge::new(
            "boifi_guard_leader",
            "1 while this replica evaluates guards",
        )?;
        registry.register(Box::new(evaluations.clone()))?;
        registry.register(Box::new(trips.clone()))?;
        registry.register(Box::new(value.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        Ok(GuardMetrics {
            evaluations,
            trips,
            value,
            leader,
        })
    }

    /// Counts one evaluation (`result`: `pass`, `fail` or `error`) and records its value.
    pub fn evaluated(&self, policy: &str, guard: &str, result: &str, value: Option<f64>) {
        self.evaluations
            .with_label_values(&[policy, guard, result])
            .inc();
        if let Some(v) = value {
            self.value.with_label_values(&[policy, guard]).set(v);
        }
    }

    /// Counts one stop.
    pub fn tripped(&self, policy: &str, guard: &str) {
        self.trips.with_label_values(&[policy, guard]).inc();
    }

    /// Whether this replica evaluates guards now.
    pub fn leading(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }
}

/// Holds the waiting-long-polls gauge up while a request waits (also when it is cancelled).
#[derive(Debug)]
pub struct WaitingGuard<'a>(&'a IntGauge);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
