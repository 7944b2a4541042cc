//! `GET /v1/config`: what a sidecar fetches, as a long-poll.
//!
//! A sidecar sends its identity, the version it applied and the one it refused (if any). If the
//! current version is newer than both, it gets the policies that can apply to it at once; if
//! not, the request is held until the store publishes a new version (one `tokio::sync::watch`
//! change wakes every waiter) or `wait` passes (then 304). So a sidecar that refused the current
//! version waits for the next one instead of fetching the same set again and again.
//!
//! The request, not the answer, is what the status view records: the answer sent is not a set
//! applied.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use boifi_core::compiled::SidecarPolicy;
use boifi_core::policy::{PolicyDocument, PolicyState};
use boifi_core::wire::{compact, ConfigEncoding, ConfigQuery, ConfigResponse};

use super::openapi::{ApiErrorSchema, ConfigResponseSchema};
use crate::auth::Access;
use crate::error::ApiFailure;
use crate::state::AppState;
use crate::store::{now_ms, Snapshot};

/// Registers the route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/config")
            .route(web::get().to(get_config))
            .default_service(web::to(super::method_not_allowed)),
    );
}

/// The answer for `query` from `snapshot` at `now_ms`: the policies that concern the proxy
/// ([`ConfigQuery::concerns`]: a sidecar's selector matches, a shared proxy's namespaces) and
/// have not expired.
pub fn config_for(query: &ConfigQuery, snapshot: &Snapshot, now_ms: u64) -> ConfigResponse {
    ConfigResponse {
        version: snapshot.version,
        policies: snapshot
            .policies
            .values()
            .filter(|p| query.concerns(p))
            .filter(|p| sent_to_sidecars(p, now_ms))
            .map(PolicyDocument::for_sidecars)
            .collect(),
    }
}

/// Whether proxies get `policy` at `now_ms`: not expired, and, when guarded, running (a
/// verifying or tripped policy injects nothing).
fn sent_to_sidecars(policy: &PolicyDocument, now_ms: u64) -> bool {
    policy.state_at(now_ms) != PolicyState::Expired && policy.guards_allow_injection()
}

/// Each policy of one snapshot serialized once per encoding, on the first answer that asks for
/// it, so a write that wakes a thousand waiters costs one serialization per policy, not one per
/// waiter (and an encoding no proxy asks for, such as version 2 once every filter reads
/// version 3, costs nothing).
#[derive(Debug, Default)]
pub struct RenderCache {
    current: std::sync::Mutex<Option<Arc<Rendered>>>,
}

/// The parts of one snapshot's policies in one encoding, in `snapshot.policies` order.
type Parts = std::sync::OnceLock<Result<Vec<Vec<u8>>, String>>;

#[derive(Debug)]
struct Rendered {
    snapshot: Arc<Snapshot>,
    /// JSON of each policy.
    json: Parts,
    /// The compact version 2 encoding of each policy (for filters older than version 3).
    compact_v2: Parts,
    /// The compact version 3 encoding of each policy's sidecar form.
    compact_v3: Parts,
}

impl Rendered {
    /// The parts in `encoding`, rendered on first use.
    fn parts(&self, encoding: ConfigEncoding) -> Result<&[Vec<u8>], ApiFailure> {
        let policies = self.snapshot.policies.values();
        let parts = match encoding {
            ConfigEncoding::Json => self.json.get_or_init(|| {
                policies
                    .map(|p| serde_json::to_vec(&p.for_sidecars()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("encoding policies: {e}"))
            }),
            ConfigEncoding::Compact => self.compact_v2.get_or_init(|| {
                Ok(policies
                    .map(|p| compact::v2::encode_policy(&p.for_sidecars()))
                    .collect())
            }),
            // Stored policies were validated, so their regexes compile: an error is a bug.
            ConfigEncoding::CompactV3 => self.compact_v3.get_or_init(|| {
                policies
                    .map(|p| SidecarPolicy::from_document(p).map(|s| compact::encode_policy(&s)))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("compiling policies: {e}"))
            }),
        };
        parts
            .as_deref()
            .map_err(|e| ApiFailure::Internal(e.clone()))
    }
}

impl RenderCache {
    fn get(&self, snapshot: &Arc<Snapshot>) -> Arc<Rendered> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = current.as_ref() {
            if Arc::ptr_eq(&r.snapshot, snapshot) {
                return Arc::clone(r);
            }
        }
        let rendered = Arc::new(Rendered {
            snapshot: Arc::clone(snapshot),
            json: Parts::new(),
            compact_v2: Parts::new(),
            compact_v3: Parts::new(),
        });
        *current = Some(Arc::clone(&rendered));
        rendered
    }

    /// [`config_for`]`(query, snapshot, now_ms)` in the encoding the query asks for, byte for
    /// byte as `serde_json`, [`compact::v2::encode`] or [`compact::encode`] (of the policies'
    /// sidecar form) would write it.
    pub fn body_for(
        &self,
        query: &ConfigQuery,
        snapshot: &Arc<Snapshot>,
        now_ms: u64,
    ) -> Result<Vec<u8>, ApiFailure> {
        let rendered = self.get(snapshot);
        let parts = rendered.parts(query.encoding)?;
        let parts: Vec<&[u8]> = snapshot
            .policies
            .values()
            .zip(parts)
            .filter(|(policy, _)| query.concerns(policy) && sent_to_sidecars(policy, now_ms))
            .map(|(_, part)| part.as_slice())
            .collect();
        match query.encoding {
            ConfigEncoding::Compact => {
                return Ok(compact::v2::assemble(snapshot.version, parts.into_iter()))
            }
            ConfigEncoding::CompactV3 => {
                return Ok(compact::assemble(snapshot.version, parts.into_iter()))
            }
            ConfigEncoding::Json => {}
        }
        let mut body = format!("{{\"version\":{},\"policies\":[", snapshot.version).into_bytes();
        for (i, json) in parts.into_iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(json);
        }
        body.extend_from_slice(b"]}");
        Ok(body)
    }
}

/// The newest version the sidecar has seen: the one it applied or the one it refused.
fn newest_seen(query: &ConfigQuery) -> Option<u64> {
    let refused = query.refused.as_ref().map(|r| r.version);
    query.version.max(refused)
}

/// The policies for one sidecar; with `version` and `wait`, a long-poll.
#[utoipa::path(get, path = "/v1/config", tag = "sidecars",
    params(
        ("service" = Option<String>, Query, description = "The sidecar's service"),
        ("namespace" = Option<String>, Query, description = "Its namespace"),
        ("pod" = Option<String>, Query, description = "Its pod name"),
        ("labels" = Option<String>, Query, description = "Pod labels, `k=v,k2=v2`"),
        ("proxy" = Option<String>, Query, description = "The kind of proxy asking: `sidecar` (the default), `waypoint` or `gateway` (a shared proxy that decides the target service per request). A sidecar is sent the policies whose selector matches it; a waypoint those whose selector namespace is `*`, its `namespace` or one of `namespaces`; a gateway every policy; a shared proxy never one that selects pods by `labels`"),
        ("namespaces" = Option<String>, Query, description = "A waypoint (`proxy=waypoint` only) serving several namespaces: the others it serves, `a,b` (namespace names); it is also sent their policies"),
        ("destinations" = Option<u64>, Query, description = "A shared proxy (`proxy=waypoint` or `gateway` only): how many destination services it has compiled policy sets for, shown by status"),
        ("version" = Option<u64>, Query, description = "The config version the sidecar applied"),
        ("refused" = Option<u64>, Query, description = "A config version the sidecar received and refused (it keeps `version`)"),
        ("reason" = Option<String>, Query, description = "Why it refused `refused` (at most 512 bytes; only with `refused`)"),
        ("wait" = Option<String>, Query, description = "How long to hold the request while `version` or `refused` is current, e.g. `30s` (at most 300s)"),
        ("encoding" = Option<String>, Query, description = "`json` (default) or `compact`: the same answer in the compact binary encoding proxies read, version 2 (`application/vnd.boifi.config.v2`, whole policies, `boifi_core::wire::compact::v2`) unless `compact_version` asks for a newer one"),
        ("compact_version" = Option<u64>, Query, description = "With `encoding=compact`: the newest compact version the proxy reads; 3 or higher gets version 3 (`application/vnd.boifi.config.v3`: each policy's sidecar form with regexes compiled to pattern programs, `boifi_core::wire::compact`), which current filters ask for. Upgrade the control plane before the filters: an older one ignores this parameter and answers version 2, which current filters refuse"),
    ),
    responses(
        (status = 200, description = "The current version and the policies that can apply to this sidecar (expired ones left out); with `encoding=compact` the same answer as `application/vnd.boifi.config.v2`, with `compact_version=3` as `application/vnd.boifi.config.v3`", content(
            (ConfigResponseSchema = "application/json"),
            (Vec<u8> = "application/vnd.boifi.config.v2"),
            (Vec<u8> = "application/vnd.boifi.config.v3"),
        )),
        (status = 304, description = "`version` or `refused` is still current after `wait`"),
        (status = 400, description = "Bad query parameter", body = ApiErrorSchema),
        (status = 401, description = "With `--auth-reads`: missing or wrong token", body = ApiErrorSchema),
        (status = 403, description = "With `--auth-reads`: the token may not read", body = ApiErrorSchema),
    ))]
pub async fn get_config(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiFailure> {
    state.auth.check(&req, Access::Read)?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
        .map_err(|e| ApiFailure::bad_request("invalid_query", format!("query string: {e}")))?;
    let query = ConfigQuery::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|e| ApiFailure::bad_request("invalid_query", e.to_string()))?;
    let mut rx = state.store.subscribe();
    let mut snapshot = rx.borrow_and_update().clone();
    state.sidecars.seen(&query, now_ms());

    let seen = newest_seen(&query);
    if seen == Some(snapshot.version) {
        let wait = Duration::from_millis(query.wait_ms.unwrap_or(0));
        let _waiting = state.metrics.waiting();
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return Err(ApiFailure::Unavailable("the store stopped publishing".to_owned()));
                    }
                    snapshot = rx.borrow_and_update().clone();
                    if seen != Some(snapshot.version) {
                        state.metrics.woken(snapshot.version);
                        break;
                    }
                }
                () = &mut deadline => {
                    return Ok(HttpResponse::NotModified()
                        .insert_header(("x-boifi-version", snapshot.version.to_string()))
                        .finish());
                }
            }
        }
    }
    let now = now_ms();
    let body = state.rendered.body_for(&query, &snapshot, now)?;
    let content_type = match query.encoding {
        ConfigEncoding::Json => "application/json",
        ConfigEncoding::Compact => compact::v2::MEDIA_TYPE,
        ConfigEncoding::CompactV3 => compact::MEDIA_TYPE,
    };
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("x-boifi-version", snapshot.version.to_string()))
        .body(body))
}
