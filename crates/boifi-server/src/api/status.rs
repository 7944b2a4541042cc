//! `GET /v1/policies/status`: where every policy stands and which config each sidecar holds.
//! The answer type and its construction are `boifi_core::wire::StatusResponse`, which the CLI
//! reads too.

use actix_web::{web, HttpRequest, HttpResponse};
use boifi_core::wire::StatusResponse;

use super::openapi::{ApiErrorSchema, StatusResponseSchema};
use super::snapshot;
use crate::auth::Access;
use crate::error::ApiFailure;
use crate::sidecars::merged;
use crate::state::AppState;
use crate::store::now_ms;

/// Totals, per-policy state and per-sidecar config version, beside the legacy keys.
#[utoipa::path(get, path = "/v1/policies/status", tag = "policies",
    responses(
        (status = 200, description = "The status view", body = StatusResponseSchema),
        (status = 401, description = "With `--auth-reads`: missing or wrong token", body = ApiErrorSchema),
        (status = 403, description = "With `--auth-reads`: the token may not read", body = ApiErrorSchema),
    ))]
pub async fn policy_status(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiFailure> {
    state.auth.check(&req, Access::Read)?;
    let snapshot = snapshot(&state).await?;
    let now = now_ms();
    state.sidecars.age_out(now);
    // Without the other replicas' reports the view is still this replica's truth: answer with
    // it rather than fail (the store being down shows in `/v1/ready`).
    let shared = match state.store.shared_sidecars().await {
        Ok(shared) => shared,
        Err(e) => {
            tracing::warn!(error = %e, "shared sidecar reports unavailable");
            Vec::new()
        }
    };
    let sidecars = merged(state.sidecars.list(), &state.replica, shared, now);
    let mut status =
        StatusResponse::build(snapshot.version, now, snapshot.policies.values(), &sidecars);
    status.store_degraded = state.store.backend_health().degraded;
    Ok(HttpResponse::Ok().json(status))
}
