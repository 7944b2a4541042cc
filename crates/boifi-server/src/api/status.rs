//! `GET /v1/policies/status`: where every policy stands and which config each sidecar holds.

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest, HttpResponse};
use boifi_core::policy::PolicyState;
use boifi_core::time::format_rfc3339;
use serde::Serialize;
use utoipa::ToSchema;

use super::openapi::ApiErrorSchema;
use super::store_failure;
use crate::auth::Access;
use crate::error::ApiFailure;
use crate::state::AppState;
use crate::store::now_ms;

/// The answer of `GET /v1/policies/status`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatusResponse {
    /// The current config version.
    pub version: u64,
    /// When this view was made (Unix ms).
    pub now_ms: u64,
    /// Counts.
    pub totals: StatusTotals,
    /// Every stored policy.
    pub policies: Vec<PolicyStatusEntry>,
    /// Every sidecar seen on `/v1/config`.
    pub sidecars: Vec<SidecarStatusEntry>,
}

/// Counts of the status view.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct StatusTotals {
    /// Stored policies.
    pub policies: usize,
    /// Policies that can fire now.
    pub active: usize,
    /// Policies whose window has not started.
    pub scheduled: usize,
    /// Policies that expired (deleted by the sweep after the grace period).
    pub expired: usize,
    /// Sidecars seen.
    pub sidecars: usize,
    /// Sidecars that hold the current version.
    pub sidecars_current: usize,
}

/// Which sidecars a policy targets (`*` = any).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Targets {
    /// Service, or `*`.
    pub service: String,
    /// Namespace, or `*`.
    pub namespace: String,
    /// Labels that must all match.
    pub labels: BTreeMap<String, String>,
}

/// One policy in the status view.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyStatusEntry {
    /// Name.
    pub name: String,
    /// Selector.
    pub targets: Targets,
    /// `delay`, `abort`.
    pub fault_kinds: Vec<String>,
    /// `active`, `scheduled` or `expired`.
    pub state: String,
    /// When it was stored (Unix ms).
    pub stored_at_ms: Option<u64>,
    /// When it expires (Unix ms); absent if never.
    pub expires_at_ms: Option<u64>,
    /// The same, RFC 3339.
    pub expires_at: Option<String>,
    /// Revision of its last write.
    pub revision: Option<u64>,
    /// Known sidecars its selector matches.
    pub matching_sidecars: usize,
}

/// One sidecar in the status view.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SidecarStatusEntry {
    /// Pod name.
    pub pod: Option<String>,
    /// Service.
    pub service: Option<String>,
    /// Namespace.
    pub namespace: Option<String>,
    /// Pod labels it reported.
    pub labels: BTreeMap<String, String>,
    /// The config version it holds (asked with, or last sent).
    pub version: Option<u64>,
    /// Whether that is the current version.
    pub current: bool,
    /// Last config request (Unix ms).
    pub last_seen_ms: u64,
    /// The same, RFC 3339.
    pub last_seen: String,
}

/// Totals, per-policy state and per-sidecar config version.
#[utoipa::path(get, path = "/v1/policies/status", tag = "policies",
    responses(
        (status = 200, description = "The status view", body = StatusResponse),
        (status = 401, description = "With `--auth-reads`: missing or wrong token", body = ApiErrorSchema),
    ))]
pub async fn policy_status(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiFailure> {
    state.auth.check(&req, Access::Read)?;
    let snapshot = state
        .store
        .snapshot()
        .await
        .map_err(store_failure(&state, "snapshot"))?;
    let now = now_ms();
    let sidecars = state.sidecars.list();
    let mut totals = StatusTotals {
        policies: snapshot.policies.len(),
        sidecars: sidecars.len(),
        ..StatusTotals::default()
    };
    let policies = snapshot
        .policies
        .values()
        .map(|p| {
            let s = p.state_at(now);
            match s {
                PolicyState::Active => totals.active += 1,
                PolicyState::Scheduled => totals.scheduled += 1,
                PolicyState::Expired => totals.expired += 1,
            }
            let selector = &p.spec.selector;
            let expires_at_ms = p.status.and_then(|st| st.expires_at_ms);
            PolicyStatusEntry {
                name: p.name().to_owned(),
                targets: Targets {
                    service: selector.service.clone().unwrap_or_else(|| "*".to_owned()),
                    namespace: selector.namespace.clone().unwrap_or_else(|| "*".to_owned()),
                    labels: selector.labels.clone(),
                },
                fault_kinds: p.fault_kinds().into_iter().map(str::to_owned).collect(),
                state: s.as_str().to_owned(),
                stored_at_ms: p.status.map(|st| st.stored_at_ms),
                expires_at_ms,
                expires_at: expires_at_ms.map(format_rfc3339),
                revision: p.status.map(|st| st.revision),
                matching_sidecars: sidecars
                    .iter()
                    .filter(|sc| p.applies_to(&sc.identity))
                    .count(),
            }
        })
        .collect();
    let sidecars = sidecars
        .into_iter()
        .map(|sc| {
            let current = sc.version == Some(snapshot.version);
            if current {
                totals.sidecars_current += 1;
            }
            SidecarStatusEntry {
                pod: sc.identity.pod,
                service: sc.identity.service,
                namespace: sc.identity.namespace,
                labels: sc.identity.labels,
                version: sc.version,
                current,
                last_seen_ms: sc.last_seen_ms,
                last_seen: format_rfc3339(sc.last_seen_ms),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(StatusResponse {
        version: snapshot.version,
        now_ms: now,
        totals,
        policies,
        sidecars,
    }))
}
