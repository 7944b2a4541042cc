//! What every handler shares.

use std::sync::Arc;

use crate::audit::AuditLog;
use crate::auth::Auth;
use crate::guards::leadership::GuardLeadership;
use crate::metrics::Metrics;
use crate::scope::TargetNamespaces;
use crate::sidecars::SidecarRegistry;
use crate::store::PolicyStore;

/// Default limit of a request body: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The application state (`web::Data<AppState>`).
#[derive(Debug)]
pub struct AppState {
    /// The policy store.
    pub store: Arc<dyn PolicyStore>,
    /// Token checking.
    pub auth: Auth,
    /// The namespaces policies may target (`--target-namespaces`).
    pub targets: TargetNamespaces,
    /// This replica's audit trail.
    pub audit: Arc<AuditLog>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// The Prometheus guards are evaluated against; `None`: guarded policies are refused.
    pub guards: Option<crate::guards::prometheus::PrometheusClient>,
    /// Sidecars seen on `/v1/config` by this replica.
    pub sidecars: Arc<SidecarRegistry>,
    /// This replica's name in shared sidecar reports.
    pub replica: String,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Serialized policies of the current snapshot, for `/v1/config`.
    pub rendered: crate::api::config::RenderCache,
    /// Whether this replica evaluates guards now (the store's election, or always).
    pub guard_leadership: Arc<dyn GuardLeadership>,
}

impl std::fmt::Debug for dyn PolicyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PolicyStore")
    }
}
