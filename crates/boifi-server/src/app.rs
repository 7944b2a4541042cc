//! Running the server: binding, the actix app, and the expiry sweep.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};

use crate::api;
use crate::audit::AuditLog;
use crate::auth::{Auth, Caller};
use crate::guards::evaluator::GuardEvaluator;
use crate::guards::leadership::{AlwaysLeader, GuardLeadership, WatchedLeadership};
use crate::guards::prometheus::{PrometheusClient, PrometheusConfig};
use crate::metrics::{Metrics, MetricsError};
use crate::scope::TargetNamespaces;
use crate::sidecars::SidecarRegistry;
use crate::state::{AppState, DEFAULT_BODY_LIMIT};
use crate::store::{now_ms, PolicyStore, StoreError, WriteCondition};

/// Default grace period before expired policies are deleted: 1 hour.
pub const DEFAULT_SWEEP_GRACE: Duration = Duration::from_secs(3600);

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Token checking.
    pub auth: Auth,
    /// The namespaces policies may target.
    pub targets: TargetNamespaces,
    /// Expired policies are deleted this long after they expired.
    pub sweep_grace: Duration,
    /// Largest request body.
    pub body_limit: usize,
    /// HTTP worker threads; `None`: one per core.
    pub workers: Option<usize>,
    /// Whether SIGINT/SIGTERM stop the server gracefully (the binary: yes; in-process tests: no).
    pub handle_signals: bool,
    /// This replica's name in shared sidecar reports; `None`: one unique to this server.
    pub replica: Option<String>,
    /// Whether this replica may evaluate guards now ([`AlwaysLeader`] for a single replica;
    /// an etcd election with replicas sharing etcd).
    pub guard_leadership: Arc<dyn GuardLeadership>,
    /// The Prometheus guards query; `None`: guarded policies are refused.
    pub prometheus: Option<PrometheusConfig>,
}

impl ServerConfig {
    /// Defaults for `listen`: no token, 1 h grace, 1 MiB bodies.
    pub fn new(listen: SocketAddr) -> ServerConfig {
        ServerConfig {
            listen,
            auth: Auth::open(),
            targets: TargetNamespaces::any(),
            sweep_grace: DEFAULT_SWEEP_GRACE,
            body_limit: DEFAULT_BODY_LIMIT,
            workers: None,
            handle_signals: false,
            replica: None,
            guard_leadership: Arc::new(AlwaysLeader::new()),
            prometheus: None,
        }
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on `{addr}`: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("http server: {0}")]
    Http(std::io::Error),
    /// The store could not be opened.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The metrics could not be set up.
    #[error("{0}")]
    Metrics(#[from] MetricsError),
    /// A bad setting.
    #[error("{0}")]
    Config(String),
}

/// A started server.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    handle: ServerHandle,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    sweeper: tokio::task::JoinHandle<()>,
    flusher: tokio::task::JoinHandle<()>,
    evaluator: Option<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// The bound address (with the real port when `listen` had port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests in flight finish (briefly), and stops the sweep.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        self.sweeper.abort();
        self.flusher.abort();
        if let Some(evaluator) = &self.evaluator {
            evaluator.abort();
        }
        let _ = self.server.await;
    }

    /// Runs until the server stops (a signal, when `handle_signals`).
    pub async fn wait(self) -> Result<(), ServerError> {
        let result = self.server.await;
        self.sweeper.abort();
        self.flusher.abort();
        if let Some(evaluator) = &self.evaluator {
            evaluator.abort();
        }
        match result {
            Ok(r) => r.map_err(ServerError::Http),
            Err(e) => Err(ServerError::Http(std::io::Error::other(e))),
        }
    }
}

/// Binds `config.listen` and serves the API over `store`.
pub async fn start(
    config: ServerConfig,
    store: Arc<dyn PolicyStore>,
) -> Result<RunningServer, ServerError> {
    let replica = config.replica.clone().unwrap_or_else(unique_replica_name);
    // Replicas sharing a store elect the one that evaluates guards; a single replica always does.
    let guard_leadership: Arc<dyn GuardLeadership> = match store.guard_election(&replica) {
        Some(leading) => Arc::new(WatchedLeadership::new(leading)),
        None => Arc::clone(&config.guard_leadership),
    };
    let sidecars = Arc::new(SidecarRegistry::default());
    let audit = Arc::new(AuditLog::default());
    let prometheus = match &config.prometheus {
        Some(p) => Some(PrometheusClient::new(p).map_err(|e| ServerError::Config(e.to_string()))?),
        None => None,
    };
    let metrics = Metrics::new()?;
    let guard_metrics = metrics.guards();
    let state = web::Data::new(AppState {
        store: Arc::clone(&store),
        auth: config.auth.clone(),
        targets: config.targets.clone(),
        audit: Arc::clone(&audit),
        metrics,
        guards: prometheus.clone(),
        sidecars: Arc::clone(&sidecars),
        replica: replica.clone(),
        body_limit: config.body_limit,
        rendered: api::config::RenderCache::default(),
        guard_leadership,
    });
    let app_state = state.clone();
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .wrap(from_fn(api::track_requests))
            .configure(api::configure)
            .default_service(web::to(api::not_found))
    })
    .backlog(4096)
    .shutdown_timeout(2);
    if let Some(n) = config.workers {
        server = server.workers(n);
    }
    if !config.handle_signals {
        server = server.disable_signals();
    }
    let server = server
        .bind(config.listen)
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = server.addrs().first().copied().unwrap_or(config.listen);
    let server = server.run();
    let handle = server.handle();
    let server = tokio::spawn(server);
    let sweeper = tokio::spawn(sweep_loop(Arc::clone(&store), audit, config.sweep_grace));
    let evaluator = prometheus.map(|client| {
        let evaluator = GuardEvaluator::new(
            Arc::clone(&store),
            client,
            Arc::clone(&state.guard_leadership),
            guard_metrics,
            Arc::clone(&state.audit),
        );
        tokio::spawn(evaluator.run())
    });
    let flusher = tokio::spawn(crate::sidecars::flush_loop(
        sidecars,
        store,
        replica.clone(),
    ));
    tracing::info!(%addr, %replica, "boifi control plane listening");
    Ok(RunningServer {
        addr,
        handle,
        server,
        sweeper,
        flusher,
        evaluator,
    })
}

/// A replica name no other server of this process or another process has: the process id and
/// a per-process sequence.
fn unique_replica_name() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("replica-{}-{n}", std::process::id())
}

/// Deletes policies that expired more than `grace` before `now_ms`. Each delete is conditional
/// on the revision that expired, so a policy replaced meanwhile (or swept by another replica)
/// is left alone. Each delete is audited as `sweeper` in `audit`. Returns the deleted names.
pub async fn sweep_once(
    store: &dyn PolicyStore,
    audit: &AuditLog,
    grace: Duration,
    now_ms: u64,
) -> Result<Vec<String>, StoreError> {
    let snapshot = store.snapshot().await?;
    let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
    let mut deleted = Vec::new();
    for (name, policy) in &snapshot.policies {
        let Some(status) = policy.status else {
            continue;
        };
        let Some(expires_at) = status.expires_at_ms else {
            continue;
        };
        if now_ms < expires_at.saturating_add(grace_ms) {
            continue;
        }
        match store
            .delete(name, WriteCondition::Revision(status.revision))
            .await
        {
            Ok(outcome) => {
                audit.record(
                    &Caller::trusted("sweeper"),
                    "expire",
                    name,
                    snapshot.version,
                    outcome.version,
                );
                deleted.push(name.clone());
            }
            Err(StoreError::NotFound { .. } | StoreError::RevisionMismatch { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

async fn sweep_loop(store: Arc<dyn PolicyStore>, audit: Arc<AuditLog>, grace: Duration) {
    let period = (grace / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(e) = sweep_once(store.as_ref(), &audit, grace, now_ms()).await {
            tracing::warn!(error = %e, "expiry sweep failed");
        }
    }
}
