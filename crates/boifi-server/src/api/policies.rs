//! `/v1/policies`: create, replace, read, list, delete, the kill switch, and the status view.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use boifi_core::policy::PolicyDocument;
use boifi_core::wire::PolicyList;
use serde::Serialize;
use utoipa::ToSchema;

use super::body::{body_format, parse_one, read_body};
use super::openapi::{ApiErrorSchema, PolicyDocumentSchema, PolicyListSchema};
use super::{snapshot, store_failure};
use crate::auth::{Access, Caller};
use crate::error::ApiFailure;
use crate::scope::{check_stored, check_target};
use crate::state::AppState;
use crate::store::{now_ms, WriteCondition};

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/policies")
            .route(web::get().to(list_policies))
            .route(web::post().to(create_or_replace))
            .route(web::delete().to(delete_all))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(
        web::resource("/v1/policies/create")
            .route(web::post().to(create_strict))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(
        web::resource("/v1/policies/status")
            .route(web::get().to(super::status::policy_status))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(
        web::resource("/v1/policies/{name}/rearm")
            .route(web::post().to(rearm_policy))
            .default_service(web::to(super::method_not_allowed)),
    )
    .service(
        web::resource("/v1/policies/{name}")
            .route(web::get().to(get_policy))
            .route(web::put().to(put_policy))
            .route(web::delete().to(delete_policy))
            .default_service(web::to(super::method_not_allowed)),
    );
}

/// The answer of `DELETE /v1/policies/{name}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeletedPolicy {
    /// The deleted policy's name.
    pub deleted: String,
    /// The config version after the delete.
    pub version: u64,
}

/// The answer of `DELETE /v1/policies?confirm=all`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeletedAll {
    /// How many policies were deleted.
    pub deleted: u64,
    /// The config version after the delete.
    pub version: u64,
}

/// Reads `If-Match` (a revision) and `If-None-Match: *` (must not exist).
pub fn write_condition(req: &HttpRequest) -> Result<Option<WriteCondition>, ApiFailure> {
    let text = |name: &header::HeaderName| -> Result<Option<String>, ApiFailure> {
        match req.headers().get(name) {
            None => Ok(None),
            Some(v) => v.to_str().map(|s| Some(s.trim().to_owned())).map_err(|_| {
                ApiFailure::bad_request(
                    "invalid_header",
                    format!("header `{name}`: not printable ASCII"),
                )
            }),
        }
    };
    let if_match = text(&header::IF_MATCH)?;
    let if_none_match = text(&header::IF_NONE_MATCH)?;
    match (if_match, if_none_match) {
        (Some(_), Some(_)) => Err(ApiFailure::bad_request(
            "invalid_header",
            "give `If-Match` or `If-None-Match`, not both",
        )),
        (Some(value), None) => {
            let bare = value.trim_start_matches("W/").trim_matches('"');
            bare.parse::<u64>()
                .map(|r| Some(WriteCondition::Revision(r)))
                .map_err(|_| {
                    ApiFailure::bad_request(
                        "invalid_header",
                        format!(
                            "header `If-Match`: `{value}` is not a policy revision (e.g. `\"42\"`)"
                        ),
                    )
                })
        }
        (None, Some(value)) if value == "*" => Ok(Some(WriteCondition::MustNotExist)),
        (None, Some(value)) => Err(ApiFailure::bad_request(
            "invalid_header",
            format!("header `If-None-Match`: `{value}` is not supported, only `*`"),
        )),
        (None, None) => Ok(None),
    }
}

fn etag(policy: &PolicyDocument) -> String {
    format!("\"{}\"", policy.status.map_or(0, |s| s.revision))
}

async fn read_policy(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<PolicyDocument, ApiFailure> {
    let format = body_format(req)?;
    let bytes = read_body(req, payload, state.body_limit).await?;
    parse_one(format, &bytes)
}

/// The condition a change of the stored policy `stored` is made under: a scoped `caller` must
/// be allowed to `action` it, and then changes only that revision of it (a policy replaced
/// meanwhile, perhaps to reach another namespace, is refused with 412 instead).
fn scoped_condition(
    caller: &Caller,
    action: &str,
    stored: &PolicyDocument,
    condition: WriteCondition,
) -> Result<WriteCondition, ApiFailure> {
    if caller.unscoped() {
        return Ok(condition);
    }
    check_stored(caller, action, stored)?;
    Ok(match (condition, stored.status) {
        (WriteCondition::Any, Some(status)) => WriteCondition::Revision(status.revision),
        (condition, _) => condition,
    })
}

/// Stores `policy` under `condition` and answers 201 (created) or 200 (replaced).
async fn store_policy(
    state: &AppState,
    caller: &Caller,
    policy: PolicyDocument,
    condition: WriteCondition,
) -> Result<HttpResponse, ApiFailure> {
    let name = policy.name().to_owned();
    // The status is the control plane's: a client's (and its guard state) is dropped, so a
    // guarded policy is stored verifying and a client cannot skip its guards.
    let mut policy = policy;
    policy.status = None;
    if !policy.spec.guards.is_empty() && state.guards.is_none() {
        return Err(ApiFailure::bad_request(
            "guards_unavailable",
            format!(
                "policy `{name}` has `spec.guards`, but this control plane has no Prometheus to evaluate them (start it with --prometheus-url)"
            ),
        ));
    }
    // A guard needs a live control plane: sidecars stop a guarded policy they have not heard
    // about for this long (the only part of the guards they receive).
    if !policy.spec.guards.is_empty() && policy.spec.heartbeat_seconds.is_none() {
        policy.spec.heartbeat_seconds =
            Some(boifi_core::policy::guard::DEFAULT_GUARDED_HEARTBEAT_SECONDS);
    }
    check_target(caller, &state.targets, &policy)?;
    let current = snapshot(state).await?;
    let before = current.version;
    let condition = match current.policies.get(&name) {
        Some(stored) => scoped_condition(caller, "replace", stored, condition)?,
        // A scoped token may only create here: a policy stored meanwhile is checked first.
        None if !caller.unscoped() && condition == WriteCondition::Any => {
            WriteCondition::MustNotExist
        }
        None => condition,
    };
    let outcome = state
        .store
        .put(policy, condition)
        .await
        .map_err(store_failure(state, "put"))?;
    let action = if outcome.created { "create" } else { "replace" };
    state
        .audit
        .record(caller, action, &name, before, outcome.version);
    let mut response = if outcome.created {
        let mut r = HttpResponse::Created();
        r.insert_header((header::LOCATION, format!("/v1/policies/{name}")));
        r
    } else {
        HttpResponse::Ok()
    };
    Ok(response
        .insert_header((header::ETAG, etag(&outcome.policy)))
        .json(&outcome.policy))
}

/// Lists every stored policy (expired ones too, until the sweep deletes them).
#[utoipa::path(get, path = "/v1/policies", tag = "policies",
    responses(
        (status = 200, description = "Every stored policy, status filled", body = PolicyListSchema),
        (status = 401, description = "With `--auth-reads`: missing or wrong token", body = ApiErrorSchema),
        (status = 403, description = "With `--auth-reads`: the token may not read", body = ApiErrorSchema),
    ))]
pub async fn list_policies(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiFailure> {
    state.auth.check(&req, Access::Read)?;
    let snapshot = snapshot(&state).await?;
    let list = PolicyList {
        policies: snapshot.policies.values().cloned().collect(),
    };
    Ok(HttpResponse::Ok()
        .insert_header(("x-boifi-version", snapshot.version.to_string()))
        .json(list))
}

/// Creates or replaces a policy (the legacy behaviour). `If-Match: "<revision>"` makes the
/// write conditional; `If-None-Match: *` makes it a strict create.
#[utoipa::path(post, path = "/v1/policies", tag = "policies",
    request_body(content = PolicyDocumentSchema, description = "One policy, JSON or YAML (`Content-Type: application/yaml`)"),
    params(
        ("If-Match" = Option<String>, Header, description = "Write only if the policy is at this revision"),
        ("If-None-Match" = Option<String>, Header, description = "`*`: write only if the name is free"),
    ),
    responses(
        (status = 201, description = "Created", body = PolicyDocumentSchema),
        (status = 200, description = "Replaced", body = PolicyDocumentSchema),
        (status = 400, description = "Malformed body or invalid policy; `details` lists every field error", body = ApiErrorSchema),
        (status = 401, description = "Missing or wrong bearer token", body = ApiErrorSchema),
        (status = 403, description = "The token may not write, the policy targets a namespace outside the token's `namespaces`, or one that has not opted in (`--target-namespaces`); the message names the namespace and the token", body = ApiErrorSchema),
        (status = 409, description = "`If-None-Match: *` and the name exists", body = ApiErrorSchema),
        (status = 412, description = "`If-Match` revision differs", body = ApiErrorSchema),
        (status = 413, description = "Body larger than the limit", body = ApiErrorSchema),
        (status = 415, description = "Content type neither JSON nor YAML", body = ApiErrorSchema),
    ))]
pub async fn create_or_replace(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiFailure> {
    let caller = state.auth.check(&req, Access::Write)?;
    let condition = write_condition(&req)?.unwrap_or(WriteCondition::Any);
    let policy = read_policy(&req, payload, &state).await?;
    store_policy(&state, &caller, policy, condition).await
}

/// Creates a policy; 409 if the name exists.
#[utoipa::path(post, path = "/v1/policies/create", tag = "policies",
    request_body(content = PolicyDocumentSchema, description = "One policy, JSON or YAML"),
    responses(
        (status = 201, description = "Created", body = PolicyDocumentSchema),
        (status = 400, description = "Malformed body or invalid policy", body = ApiErrorSchema),
        (status = 401, description = "Missing or wrong bearer token", body = ApiErrorSchema),
        (status = 403, description = "The token may not write, the policy targets a namespace outside the token's `namespaces`, or one that has not opted in (`--target-namespaces`); the message names the namespace and the token", body = ApiErrorSchema),
        (status = 409, description = "A policy with this name exists", body = ApiErrorSchema),
        (status = 413, description = "Body larger than the limit", body = ApiErrorSchema),
        (status = 415, description = "Content type neither JSON nor YAML", body = ApiErrorSchema),
    ))]
pub async fn create_strict(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiFailure> {
    let caller = state.auth.check(&req, Access::Write)?;
    let policy = read_policy(&req, payload, &state).await?;
    store_policy(&state, &caller, policy, WriteCondition::MustNotExist).await
}

/// The name in a URL path, checked by the same rule as `metadata.name`.
fn path_name(path: &str) -> Result<String, ApiFailure> {
    boifi_core::policy::check_name(path)
        .map(|()| path.to_owned())
        .map_err(|kind| ApiFailure::BadRequest {
            kind: "invalid_name",
            message: format!("path: `{path}` is not a valid policy name"),
            details: vec![format!("path name: {kind}")],
        })
}

/// One policy; `ETag` is its revision.
#[utoipa::path(get, path = "/v1/policies/{name}", tag = "policies",
    params(("name" = String, Path, description = "Policy name")),
    responses(
        (status = 200, description = "The policy", body = PolicyDocumentSchema),
        (status = 400, description = "Invalid name", body = ApiErrorSchema),
        (status = 401, description = "With `--auth-reads`: missing or wrong token", body = ApiErrorSchema),
        (status = 403, description = "With `--auth-reads`: the token may not read", body = ApiErrorSchema),
        (status = 404, description = "No such policy", body = ApiErrorSchema),
    ))]
pub async fn get_policy(
    req: HttpRequest,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiFailure> {
    state.auth.check(&req, Access::Read)?;
    let name = path_name(&name)?;
    let snapshot = snapshot(&state).await?;
    let policy = stored_policy(&snapshot, &name)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag(policy)))
        .json(policy))
}

/// The stored policy `name`; 404 when there is none.
fn stored_policy<'a>(
    snapshot: &'a crate::store::Snapshot,
    name: &str,
) -> Result<&'a PolicyDocument, ApiFailure> {
    snapshot
        .policies
        .get(name)
        .ok_or_else(|| ApiFailure::NotFound(format!("policy `{name}` does not exist")))
}

/// Re-arms a guarded policy: back to `verifying`, so it injects again once its guards pass.
/// Only an explicit call does this; a tripped policy otherwise stays stopped.
#[utoipa::path(post, path = "/v1/policies/{name}/rearm", tag = "policies",
    params(("name" = String, Path, description = "Policy name")),
    responses(
        (status = 200, description = "Re-armed: stored verifying", body = PolicyDocumentSchema),
        (status = 400, description = "Invalid name", body = ApiErrorSchema),
        (status = 409, description = "The policy has no guards", body = ApiErrorSchema),
        (status = 401, description = "Missing or wrong bearer token", body = ApiErrorSchema),
        (status = 404, description = "No such policy", body = ApiErrorSchema),
        (status = 412, description = "The policy changed meanwhile; try again", body = ApiErrorSchema),
    ))]
pub async fn rearm_policy(
    req: HttpRequest,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiFailure> {
    let caller = state.auth.check(&req, Access::Write)?;
    let name = path_name(&name)?;
    let snapshot = snapshot(&state).await?;
    let policy = stored_policy(&snapshot, &name)?;
    if policy.spec.guards.is_empty() {
        return Err(ApiFailure::Conflict(format!(
            "policy `{name}` has no `spec.guards`: there is nothing to re-arm"
        )));
    }
    let revision = policy.status.map_or(0, |s| s.revision);
    let mut rearmed = policy.clone();
    if let Some(status) = &mut rearmed.status {
        status.guard = Some(boifi_core::policy::guard::GuardState::Verifying);
    }
    let outcome = state
        .store
        .put(rearmed, WriteCondition::Revision(revision))
        .await
        .map_err(store_failure(&state, "put"))?;
    state
        .audit
        .record(&caller, "rearm", &name, snapshot.version, outcome.version);
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag(&outcome.policy)))
        .json(&outcome.policy))
}

/// Creates or replaces the policy `name`; the body's `metadata.name` must be `name`.
#[utoipa::path(put, path = "/v1/policies/{name}", tag = "policies",
    params(
        ("name" = String, Path, description = "Policy name"),
        ("If-Match" = Option<String>, Header, description = "Write only if the policy is at this revision"),
        ("If-None-Match" = Option<String>, Header, description = "`*`: write only if the name is free"),
    ),
    request_body(content = PolicyDocumentSchema, description = "One policy, JSON or YAML"),
    responses(
        (status = 201, description = "Created", body = PolicyDocumentSchema),
        (status = 200, description = "Replaced", body = PolicyDocumentSchema),
        (status = 400, description = "Malformed body, invalid policy, or name differs from the path", body = ApiErrorSchema),
        (status = 401, description = "Missing or wrong bearer token", body = ApiErrorSchema),
        (status = 403, description = "The token may not write, the policy targets a namespace outside the token's `namespaces`, or one that has not opted in (`--target-namespaces`); the message names the namespace and the token", body = ApiErrorSchema),
        (status = 409, description = "`If-None-Match: *` and the name exists", body = ApiErrorSchema),
        (status = 412, description = "`If-Match` revision differs or the policy is absent", body = ApiErrorSchema),
        (status = 413, description = "Body larger than the limit", body = ApiErrorSchema),
        (status = 415, description = "Content type neither JSON nor YAML", body = ApiErrorSchema),
    ))]
pub async fn put_policy(
    req: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiFailure> {
    let caller = state.auth.check(&req, Access::Write)?;
    let name = path_name(&name)?;
    let condition = write_condition(&req)?.unwrap_or(WriteCondition::Any);
    let policy = read_policy(&req, payload, &state).await?;
    if policy.name() != name {
        let detail = format!(
            "metadata.name: `{}` differs from the name in the path `{name}`",
            policy.name()
        );
        return Err(ApiFailure::BadRequest {
            kind: "invalid_policy",
            message: format!("invalid policy: {detail}"),
            details: vec![detail],
        });
    }
    store_policy(&state, &caller, policy, condition).await
}

/// Deletes the policy `name`.
#[utoipa::path(delete, path = "/v1/policies/{name}", tag = "policies",
    params(
        ("name" = String, Path, description = "Policy name"),
        ("If-Match" = Option<String>, Header, description = "Delete only if the policy is at this revision"),
    ),
    responses(
        (status = 200, description = "Deleted", body = DeletedPolicy),
        (status = 400, description = "Invalid name or header", body = ApiErrorSchema),
        (status = 401, description = "Missing or wrong bearer token", body = ApiErrorSchema),
        (status = 403, description = "The token may not write, or the stored policy targets a namespace outside the token's `namespaces`", body = ApiErrorSchema),
        (status = 404, description = "No such policy", body = ApiErrorSchema),
        (status = 412, description = "`If-Match` revision differs", body = ApiErrorSchema),
    ))]
pub async fn delete_policy(
    req: HttpRequest,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiFailure> {
    let caller = state.auth.check(&req, Access::Write)?;
    let name = path_name(&name)?;
    let condition = match write_condition(&req)? {
        None | Some(WriteCondition::MustNotExist) => WriteCondition::Any,
        Some(c) => c,
    };
    let current = snapshot(&state).await?;
    let before = current.version;
    let condition = match current.policies.get(&name) {
        Some(stored) => scoped_condition(&caller, "delete", stored, condition)?,
        None => condition,
    };
    let outcome = state
        .store
        .delete(&name, condition)
        .await
        .map_err(store_failure(&state, "delete"))?;
    state
        .audit
        .record(&caller, "delete", &name, before, outcome.version);
    Ok(HttpResponse::Ok().json(DeletedPolicy {
        deleted: name,
        version: outcome.version,
    }))
}

/// The kill switch: deletes every policy, so every fault stops at the next propagation.
/// Requires `?confirm=all`.
#[utoipa::path(delete, path = "/v1/policies", tag = "policies",
    params(("confirm" = String, Query, description = "Must be `all`")),
    responses(
        (status = 200, description = "Every policy deleted", body = DeletedAll),
        (status = 400, description = "`confirm=all` missing", body = ApiErrorSchema),
        (status = 401, description = "Missing or wrong bearer token", body = ApiErrorSchema),
        (status = 403, description = "The token may not halt", body = ApiErrorSchema),
    ))]
pub async fn delete_all(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiFailure> {
    let caller = state.auth.check(&req, Access::Halt)?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
        .map_err(|e| ApiFailure::bad_request("invalid_query", format!("query string: {e}")))?;
    let confirmed = pairs.iter().any(|(k, v)| k == "confirm" && v == "all");
    if !confirmed {
        return Err(ApiFailure::bad_request(
            "confirmation_required",
            "query parameter `confirm`: must be `all` to delete every policy",
        ));
    }
    let before = snapshot(&state).await?.version;
    let deleted = state
        .store
        .delete_all()
        .await
        .map_err(store_failure(&state, "delete_all"))?;
    let after = snapshot(&state).await?.version;
    state
        .audit
        .record(&caller, "delete_all", "*", before, after);
    tracing::warn!(deleted, who = %caller.name, at_ms = now_ms(), "kill switch: every policy deleted");
    Ok(HttpResponse::Ok().json(DeletedAll {
        deleted,
        version: after,
    }))
}
