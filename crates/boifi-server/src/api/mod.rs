//! The HTTP API: one `configure` per resource module, wired together by [`configure`].

pub mod body;
pub mod config;
pub mod openapi;
pub mod policies;
pub mod status;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Access;
use crate::error::ApiFailure;
use crate::state::AppState;
use crate::store::{now_ms, Snapshot, StoreError};
use boifi_core::wire::AuditList;
use openapi::{ApiErrorSchema, AuditListSchema};

/// Registers every route of the API.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/health")
            .route(web::get().to(health))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/v1/ready")
            .route(web::get().to(ready))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/metrics")
            .route(web::get().to(metrics))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/v1/audit")
            .route(web::get().to(audit_list))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/v1/openapi.json")
            .route(web::get().to(openapi::openapi_json))
            .default_service(web::to(method_not_allowed)),
    )
    .configure(policies::configure)
    .configure(config::configure);
}

/// The answer of `/v1/health` and `/v1/ready`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthResponse {
    /// `ok`, `ready`, or `degraded` (ready, serving the last view, writes refused).
    pub status: String,
    /// The current config version (readiness only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Why the replica is degraded (readiness only), e.g. etcd without quorum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Liveness: 200 while the process serves.
#[utoipa::path(get, path = "/v1/health", tag = "operations",
    responses((status = 200, description = "The process lives", body = HealthResponse)))]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(HealthResponse {
        status: "ok".to_owned(),
        version: None,
        detail: None,
    })
}

/// Readiness: 200 once the view is loaded, else 503 with the reason. A replica whose store lost
/// etcd stays ready (`degraded`, with the reason): it still serves its last view, and taking
/// every replica out of the Service at once would cut the sidecars off from even that.
#[utoipa::path(get, path = "/v1/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = HealthResponse),
        (status = 503, description = "Not ready; `message` says why", body = ApiErrorSchema),
    ))]
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiFailure> {
    let not_ready = |e: StoreError| ApiFailure::Unavailable(format!("not ready: {e}"));
    state.store.ready().await.map_err(not_ready)?;
    let snapshot = state.store.snapshot().await.map_err(not_ready)?;
    let detail = state.store.backend_health().degraded;
    Ok(HttpResponse::Ok().json(HealthResponse {
        status: if detail.is_some() {
            "degraded"
        } else {
            "ready"
        }
        .to_owned(),
        version: Some(snapshot.version),
        detail,
    }))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain")))]
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiFailure> {
    let snapshot = snapshot(&state).await?;
    state.metrics.store_health(&state.store.backend_health());
    state
        .metrics
        .guards()
        .leading(*state.guard_leadership.subscribe().borrow());
    let text = state
        .metrics
        .render(
            &snapshot,
            now_ms(),
            crate::metrics::SidecarCounts {
                known: u64::try_from(state.sidecars.len()).unwrap_or(u64::MAX),
                evicted: state.sidecars.evictions(),
                report_writes: state.store.sidecar_writes(),
            },
        )
        .map_err(|e| ApiFailure::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}

/// 405 for a known path with another method, with `Allow` naming the path's methods.
pub async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiFailure> {
    let pattern = req.match_pattern().unwrap_or_else(|| req.path().to_owned());
    Err(ApiFailure::MethodNotAllowed {
        message: format!(
            "method `{}` is not allowed on `{}`",
            req.method(),
            req.path()
        ),
        allow: openapi::allowed_methods(&pattern),
    })
}

/// 404 for an unknown path.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiFailure> {
    Err(ApiFailure::NotFound(format!(
        "no route for `{} {}`",
        req.method(),
        req.path()
    )))
}

/// Maps a store error to HTTP, counting backend failures.
pub fn store_failure<'a>(
    state: &'a AppState,
    operation: &'static str,
) -> impl Fn(StoreError) -> ApiFailure + 'a {
    move |e| {
        if matches!(e, StoreError::Unavailable(_) | StoreError::Backend(_)) {
            state.metrics.store_error(operation);
            tracing::warn!(operation, error = %e, "store failure");
        }
        ApiFailure::from(e)
    }
}

/// The store's current view, a failure counted as [`store_failure`] does.
pub async fn snapshot(state: &AppState) -> Result<std::sync::Arc<Snapshot>, ApiFailure> {
    state
        .store
        .snapshot()
        .await
        .map_err(store_failure(state, "snapshot"))
}

/// This replica's latest audited changes (the log line of each is the full record).
#[utoipa::path(get, path = "/v1/audit", tag = "operations",
    responses(
        (status = 200, description = "This replica's latest writes, deletes, halts and expiries, oldest first, each naming who", body = AuditListSchema),
        (status = 401, description = "Reads need a token (`--auth-reads`) and none or a wrong one was sent", body = ApiErrorSchema),
        (status = 403, description = "The token may not read", body = ApiErrorSchema),
    ))]
pub async fn audit_list(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiFailure> {
    state.auth.check(&req, Access::Read)?;
    Ok(HttpResponse::Ok().json(AuditList {
        entries: state.audit.recent(),
    }))
}

/// Middleware: counts every answer by route pattern, method and status.
pub async fn track_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let response = next.call(req).await?;
    if let Some(state) = state {
        state
            .metrics
            .request(&route, &method, response.status().as_u16());
    }
    Ok(response)
}
