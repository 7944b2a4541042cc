//! The application of a pod. For a request its plan knows (a frontend page, a gRPC method of
//! Online Boutique) it makes the calls of that handler in order, each through its own
//! sidecar's outbound listener, and answers with the handler's error as soon as a fatal call
//! failed (frontend: HTTP 500; a gRPC service: the `grpc-status` the real service sends), so
//! faults and delays cascade to the callers. Any other request gets 200 (and for gRPC an empty
//! message with `grpc-status: 0`). Every answer says which pod gave it.
//!
//! It copies the business keys of its request ([`BusinessKey`]) onto every call, gives the
//! request the keys its handler mints, and once its calls succeeded counts its handler's side
//! effect per key (paymentservice's charges per order, cartservice's items per user).
//!
//! It counts what it received, what each of its calls got and its side effects; `GET
//! /_mesh/stats` answers the counters as JSON ([`AppStats`]), `POST /_mesh/reset` zeroes them.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Ready;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response};
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};

use crate::calls::{BusinessKey, Call, Handler, OnFailure};
use crate::error::MeshError;
use crate::http::{Answer, Clients, RequestSpec};

/// The header naming the pod that answered.
pub const POD_HEADER: &str = "x-mesh-pod";

/// Where the counters are read (`GET`) and zeroed (`POST .../reset`) on the app's own port.
pub const STATS_PATH: &str = "/_mesh/stats";
const RESET_PATH: &str = "/_mesh/reset";

/// The longest an app waits for one call: longer than any delay a test injects, shorter than
/// the harness's own 10 s, so that a stuck dependency shows as a failed call.
const CALL_TIMEOUT: Duration = Duration::from_secs(8);

/// Who this app is and what it calls.
#[derive(Debug, Clone)]
pub struct AppInfo {
    /// Service name.
    pub service: String,
    /// Pod name.
    pub pod: String,
    /// Its handlers and dependencies.
    pub plan: CallPlan,
}

/// How an app reaches a dependency through its sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Callee {
    /// The `:authority` of its calls (`cartservice.demo.svc.cluster.local`), which the
    /// sidecar's outbound routes match.
    pub authority: String,
    /// Its gRPC service (`hipstershop.CartService`), `None` for an HTTP callee.
    pub grpc_service: Option<String>,
    /// Where calls to it connect when not to the sidecar's outbound listener: ambient mode,
    /// where the node's ztunnel captures each destination on its own port (see
    /// [`crate::ambient`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<SocketAddr>,
}

/// What the app does, as the mesh writes it to the file given with `--plan`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallPlan {
    /// Its sidecar's outbound listener.
    pub outbound: Option<SocketAddr>,
    /// Per kind of request.
    pub handlers: Vec<Handler>,
    /// Its dependencies by service name.
    pub callees: BTreeMap<String, Callee>,
}

impl CallPlan {
    /// Reads a plan file.
    pub fn read(path: &Path) -> Result<CallPlan, MeshError> {
        let text = std::fs::read_to_string(path).map_err(|e| MeshError::io(path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| MeshError::Topology(format!("plan `{}`: {e}", path.display())))
    }
}

/// What one caller's calls to one dependency got.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallStats {
    /// Calls made (one per call of a handler; the sidecar's retries are not the app's).
    pub calls: u64,
    /// Calls that failed (status, `grpc-status` or transport).
    pub failed: u64,
    /// Calls by outcome: `ok`, `grpc-status 14`, `http 503`, `transport`.
    pub outcomes: BTreeMap<String, u64>,
    /// Each call's latency in microseconds, as the app saw it.
    pub latencies_us: Vec<u64>,
}

impl CallStats {
    /// Adds another caller's counters.
    pub fn merge(&mut self, other: &CallStats) {
        self.calls += other.calls;
        self.failed += other.failed;
        for (k, v) in &other.outcomes {
            *self.outcomes.entry(k.clone()).or_default() += v;
        }
        self.latencies_us.extend(&other.latencies_us);
    }

    /// The latencies, sorted.
    pub fn latencies(&self) -> Vec<Duration> {
        let mut all: Vec<Duration> = self
            .latencies_us
            .iter()
            .map(|us| Duration::from_micros(*us))
            .collect();
        all.sort();
        all
    }
}

/// One kind of side effect (charges, items added) an app had, per business key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideEffects {
    /// How many times each key was acted on; a request without the key counts under `""`.
    pub by_key: BTreeMap<String, u64>,
}

impl SideEffects {
    /// Counts one side effect on `key`.
    pub fn record(&mut self, key: &str) {
        *self.by_key.entry(key.to_owned()).or_default() += 1;
    }

    /// Every side effect (each charge, each item added).
    pub fn total(&self) -> u64 {
        self.by_key.values().sum()
    }

    /// The keys acted on at least once (orders charged, users who got an item).
    pub fn keys(&self) -> usize {
        self.by_key.len()
    }

    /// The side effects beyond the first of each key: a second and third charge of one order
    /// are two duplicates.
    pub fn duplicates(&self) -> u64 {
        self.by_key.values().map(|n| n.saturating_sub(1)).sum()
    }

    /// The keys acted on more than once (orders charged twice or more).
    pub fn repeated_keys(&self) -> usize {
        self.by_key.values().filter(|n| **n > 1).count()
    }

    /// Adds another pod's counts (a retry may reach another replica: one key, two pods).
    pub fn merge(&mut self, other: &SideEffects) {
        for (k, v) in &other.by_key {
            *self.by_key.entry(k.clone()).or_default() += v;
        }
    }
}

/// An app's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStats {
    /// Requests received (the counter endpoints excluded).
    pub received: u64,
    /// Requests answered with an error because a fatal call failed.
    pub answered_errors: u64,
    /// Requests by handler name (`other` for a request no handler knows).
    pub by_handler: BTreeMap<String, u64>,
    /// What its calls got, by callee.
    pub calls: BTreeMap<String, CallStats>,
    /// Its side effects by name ([`crate::calls::CHARGES`], [`crate::calls::ITEMS_ADDED`]).
    #[serde(default)]
    pub side_effects: BTreeMap<String, SideEffects>,
}

impl AppStats {
    /// Adds another pod's counters.
    pub fn merge(&mut self, other: &AppStats) {
        self.received += other.received;
        self.answered_errors += other.answered_errors;
        for (k, v) in &other.by_handler {
            *self.by_handler.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.calls {
            self.calls.entry(k.clone()).or_default().merge(v);
        }
        for (k, v) in &other.side_effects {
            self.side_effects.entry(k.clone()).or_default().merge(v);
        }
    }

    /// Its side effects called `name` (none when it had none).
    pub fn side_effect(&self, name: &str) -> SideEffects {
        self.side_effects.get(name).cloned().unwrap_or_default()
    }

    /// The calls to `callee` (zero when none).
    pub fn calls_to(&self, callee: &str) -> CallStats {
        self.calls.get(callee).cloned().unwrap_or_default()
    }
}

/// A gRPC answer: one empty message, then `grpc-status: 0` in the trailers.
#[derive(Debug, Default)]
struct GrpcReply {
    sent: u8,
}

impl Body for GrpcReply {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match self.sent {
            // Uncompressed flag + zero length: an empty protobuf message.
            0 => Some(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0]))),
            1 => {
                let mut trailers = HeaderMap::new();
                trailers.insert("grpc-status", HeaderValue::from_static("0"));
                Some(Frame::trailers(trailers))
            }
            _ => None,
        };
        self.sent = self.sent.saturating_add(1);
        Poll::Ready(frame.map(Ok))
    }
}

type Reply = Either<Full<Bytes>, GrpcReply>;

/// Resolves a callee's name to its own address when it has one (ambient mode: the node's
/// ztunnel), else to the app's own sidecar: the app calls `cartservice...`, its sidecar's
/// outbound listener routes the call (Istio's iptables redirect, without iptables).
#[derive(Debug, Clone)]
struct ToSidecar {
    sidecar: Option<SocketAddr>,
    by_name: Arc<BTreeMap<String, SocketAddr>>,
}

impl tower_service::Service<Name> for ToSidecar {
    type Response = std::iter::Once<SocketAddr>;
    type Error = std::io::Error;
    type Future = Ready<Result<Self::Response, std::io::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let address = self
            .by_name
            .get(name.as_str())
            .copied()
            .or(self.sidecar)
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no route to `{}`", name.as_str()),
                )
            });
        std::future::ready(address.map(std::iter::once))
    }
}

struct App {
    info: AppInfo,
    clients: Option<Clients<HttpConnector<ToSidecar>>>,
    stats: Mutex<AppStats>,
    /// The last key this app minted (keys are `<pod>-<n>`, unique in the mesh).
    minted: AtomicU64,
}

/// The business keys of one request, by key.
type Keys = BTreeMap<BusinessKey, String>;

/// The keys `headers` carries.
fn keys_of(headers: &HeaderMap) -> Keys {
    BusinessKey::ALL
        .iter()
        .filter_map(|k| {
            let value = headers.get(k.header())?.to_str().ok()?;
            Some((*k, value.to_owned()))
        })
        .collect()
}

impl App {
    fn stats(&self) -> std::sync::MutexGuard<'_, AppStats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives `keys` a new value for each of `wanted` it lacks.
    fn mint(&self, keys: &mut Keys, wanted: &[BusinessKey]) {
        for key in wanted {
            keys.entry(*key).or_insert_with(|| {
                let n = self.minted.fetch_add(1, Ordering::Relaxed) + 1;
                format!("{}-{n}", self.info.pod)
            });
        }
    }

    /// Makes one call carrying `keys`; `Ok` when it succeeded, else the outcome label.
    async fn call(&self, call: &Call, keys: &Keys) -> Result<(), String> {
        let started = Instant::now();
        let outcome = match (&self.clients, self.info.plan.callees.get(&call.service)) {
            (Some(clients), Some(callee)) => {
                let mut spec = match &callee.grpc_service {
                    Some(g) => RequestSpec::grpc(g, &call.operation),
                    None => RequestSpec::get(&format!("/{}", call.operation)),
                };
                for (key, value) in keys {
                    spec = spec.with_header(key.header(), value);
                }
                // No port in the URL: the name resolves to the sidecar with its port.
                let base = format!("http://{}", callee.authority);
                let answer = clients.send(&base, &spec, None, CALL_TIMEOUT).await;
                outcome(&answer, callee.grpc_service.is_some())
            }
            _ => "no route".to_owned(),
        };
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let mut stats = self.stats();
        let s = stats.calls.entry(call.service.clone()).or_default();
        s.calls += 1;
        s.latencies_us.push(us);
        *s.outcomes.entry(outcome.clone()).or_default() += 1;
        if outcome == "ok" {
            Ok(())
        } else {
            s.failed += 1;
            Err(outcome)
        }
    }
}

/// `ok`, or why a call failed: a gRPC call needs HTTP 200 and `grpc-status: 0`, an HTTP call
/// a status below 400.
fn outcome(answer: &Result<Answer, MeshError>, grpc: bool) -> String {
    match answer {
        Err(_) => "transport".to_owned(),
        Ok(a) if grpc => match (a.status, a.grpc_status()) {
            (200, Some(0)) => "ok".to_owned(),
            (200, Some(g)) => format!("grpc-status {g}"),
            (200, None) => "no grpc-status".to_owned(),
            (s, _) => format!("http {s}"),
        },
        Ok(a) if a.status < 400 => "ok".to_owned(),
        Ok(a) => format!("http {}", a.status),
    }
}

fn is_grpc(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

async fn handle(req: Request<Incoming>, app: Arc<App>) -> Result<Response<Reply>, Infallible> {
    let grpc = is_grpc(&req);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut keys = keys_of(req.headers());
    // Read the request to its end so the connection can be reused.
    let _ = req.into_body().collect().await;
    if path == STATS_PATH || path == RESET_PATH {
        return Ok(stats_reply(
            &app,
            method == Method::POST && path == RESET_PATH,
        ));
    }
    let handler = crate::calls::find(&app.info.plan.handlers, method.as_str(), &path);
    {
        let mut stats = app.stats();
        stats.received += 1;
        let name = handler.map_or("other", |h| h.name.as_str());
        *stats.by_handler.entry(name.to_owned()).or_default() += 1;
    }
    let mut status = 200;
    if let Some(h) = handler {
        status = h.ok_status;
        app.mint(&mut keys, &h.mints);
        for call in &h.calls {
            if let Err(why) = app.call(call, &keys).await {
                if call.on_failure != OnFailure::Ignore {
                    app.stats().answered_errors += 1;
                    let message = format!("{} {}: {why}", call.service, call.operation);
                    return Ok(error_reply(&app.info, call.on_failure, &message));
                }
            }
        }
        if let Some(effect) = &h.side_effect {
            let key = keys.get(&effect.key).map_or("", String::as_str);
            app.stats()
                .side_effects
                .entry(effect.name.clone())
                .or_default()
                .record(key);
        }
    }
    let mut builder = Response::builder()
        .status(status)
        .header(POD_HEADER, pod_header(&app.info));
    let body = if grpc {
        builder = builder.header(CONTENT_TYPE, "application/grpc");
        Either::Right(GrpcReply::default())
    } else {
        builder = builder.header(CONTENT_TYPE, "text/plain");
        let text = format!("{} {} {path}\n", app.info.service, app.info.pod);
        Either::Left(Full::new(Bytes::from(text)))
    };
    Ok(builder.body(body).unwrap_or_else(|_| empty_reply()))
}

fn pod_header(info: &AppInfo) -> HeaderValue {
    HeaderValue::from_str(&info.pod).unwrap_or(HeaderValue::from_static("unknown"))
}

fn empty_reply() -> Response<Reply> {
    Response::new(Either::Left(Full::new(Bytes::new())))
}

/// The caller's own error: an HTTP status with the reason as body, or a trailers-only gRPC
/// answer with `grpc-status` and `grpc-message`.
fn error_reply(info: &AppInfo, on_failure: OnFailure, message: &str) -> Response<Reply> {
    let builder = Response::builder().header(POD_HEADER, pod_header(info));
    let built = match on_failure {
        OnFailure::Grpc(code) => builder
            .status(200)
            .header(CONTENT_TYPE, "application/grpc")
            .header("grpc-status", code.to_string())
            .header(
                "grpc-message",
                HeaderValue::from_str(message).unwrap_or(HeaderValue::from_static("failed")),
            )
            .body(Either::Left(Full::new(Bytes::new()))),
        OnFailure::Http(status) => builder
            .status(status)
            .header(CONTENT_TYPE, "text/plain")
            .body(Either::Left(Full::new(Bytes::from(format!(
                "{}: {message}\n",
                info.service
            ))))),
        OnFailure::Ignore => builder
            .status(200)
            .body(Either::Left(Full::new(Bytes::new()))),
    };
    built.unwrap_or_else(|_| empty_reply())
}

fn stats_reply(app: &App, reset: bool) -> Response<Reply> {
    let body = {
        let mut stats = app.stats();
        let body = serde_json::to_vec(&*stats).unwrap_or_default();
        if reset {
            *stats = AppStats::default();
        }
        body
    };
    Response::builder()
        .status(200)
        .header(CONTENT_TYPE, "application/json")
        .body(Either::Left(Full::new(Bytes::from(body))))
        .unwrap_or_else(|_| empty_reply())
}

/// Serves on `addr` (HTTP/1.1 and HTTP/2 with prior knowledge) until the parent process
/// dies (so an app never outlives a killed test run).
pub fn run(addr: SocketAddr, info: AppInfo) -> Result<(), MeshError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| MeshError::io("tokio runtime", e))?;
    runtime.block_on(serve(addr, info))
}

async fn serve(addr: SocketAddr, info: AppInfo) -> Result<(), MeshError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| MeshError::io(addr.to_string(), e))?;
    let by_name: BTreeMap<String, SocketAddr> = info
        .plan
        .callees
        .values()
        .filter_map(|c| c.address.map(|a| (c.authority.clone(), a)))
        .collect();
    let clients = (info.plan.outbound.is_some() || !by_name.is_empty()).then(|| {
        Clients::new(crate::http::connector(ToSidecar {
            sidecar: info.plan.outbound,
            by_name: Arc::new(by_name),
        }))
    });
    let app = Arc::new(App {
        info,
        clients,
        stats: Mutex::new(AppStats::default()),
        minted: AtomicU64::new(0),
    });
    let parent = nix::unistd::getppid();
    let mut orphan_check = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let app = Arc::clone(&app);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(req, Arc::clone(&app)));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            _ = orphan_check.tick() => {
                if nix::unistd::getppid() != parent {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_classify_grpc_and_http_answers() {
        let answer = |status: u16, grpc: Option<&str>| {
            let mut headers = BTreeMap::new();
            if let Some(g) = grpc {
                headers.insert("grpc-status".to_owned(), g.to_owned());
            }
            Ok(Answer {
                status,
                headers,
                trailers: BTreeMap::new(),
                body: Vec::new(),
                elapsed: Duration::ZERO,
            })
        };
        assert_eq!(outcome(&answer(200, Some("0")), true), "ok");
        assert_eq!(outcome(&answer(200, Some("14")), true), "grpc-status 14");
        assert_eq!(outcome(&answer(503, None), true), "http 503");
        assert_eq!(outcome(&answer(200, None), true), "no grpc-status");
        assert_eq!(outcome(&answer(302, None), false), "ok");
        assert_eq!(outcome(&answer(500, None), false), "http 500");
        let err = Err(MeshError::Unknown("x".to_owned()));
        assert_eq!(outcome(&err, false), "transport");
    }

    #[test]
    fn side_effects_count_duplicates_per_key() {
        let mut a = SideEffects::default();
        for key in ["o-1", "o-2", "o-2", "o-3", "o-3", "o-3"] {
            a.record(key);
        }
        assert_eq!((a.total(), a.keys()), (6, 3));
        // o-2 once more, o-3 twice more.
        assert_eq!((a.duplicates(), a.repeated_keys()), (3, 2));
        // A retry that reached another replica: one order, charged on two pods.
        let mut b = SideEffects::default();
        b.record("o-1");
        let mut stats = AppStats::default();
        stats.side_effects.insert("charges".to_owned(), a);
        let mut other = AppStats::default();
        other.side_effects.insert("charges".to_owned(), b);
        stats.merge(&other);
        let merged = stats.side_effect("charges");
        assert_eq!((merged.total(), merged.duplicates()), (7, 4));
        assert_eq!(stats.side_effect("items_added"), SideEffects::default());
    }

    #[test]
    fn keys_come_from_the_request_and_are_minted_when_missing() {
        let mut headers = HeaderMap::new();
        headers.insert("x-mesh-user-id", HeaderValue::from_static("u-7"));
        let mut keys = keys_of(&headers);
        assert_eq!(keys, Keys::from([(BusinessKey::User, "u-7".to_owned())]));
        let app = App {
            info: AppInfo {
                service: "frontend".to_owned(),
                pod: "frontend-0-0".to_owned(),
                plan: CallPlan::default(),
            },
            clients: None,
            stats: Mutex::new(AppStats::default()),
            minted: AtomicU64::new(0),
        };
        // The user id the request carried stays; the order gets a new one.
        app.mint(&mut keys, &[BusinessKey::User, BusinessKey::Order]);
        assert_eq!(
            keys.get(&BusinessKey::User).map(String::as_str),
            Some("u-7")
        );
        assert_eq!(
            keys.get(&BusinessKey::Order).map(String::as_str),
            Some("frontend-0-0-1")
        );
        let mut next = Keys::new();
        app.mint(&mut next, &[BusinessKey::Order]);
        assert_eq!(
            next.get(&BusinessKey::Order).map(String::as_str),
            Some("frontend-0-0-2")
        );
    }

    #[test]
    fn stats_merge_adds_every_counter() {
        let mut a = AppStats::default();
        let mut b = AppStats {
            received: 2,
            answered_errors: 1,
            ..AppStats::default()
        };
        b.by_handler.insert("home".to_owned(), 2);
        b.calls.insert(
            "cartservice".to_owned(),
            CallStats {
                calls: 2,
                failed: 1,
                outcomes: BTreeMap::from([("ok".to_owned(), 1), ("grpc-status 14".to_owned(), 1)]),
                latencies_us: vec![5, 7],
            },
        );
        a.merge(&b);
        a.merge(&b);
        assert_eq!((a.received, a.answered_errors), (4, 2));
        let cart = a.calls_to("cartservice");
        assert_eq!(
            (cart.calls, cart.failed, cart.latencies_us.len()),
            (4, 2, 4)
        );
        assert_eq!(cart.outcomes.get("grpc-status 14"), Some(&2));
        assert_eq!(a.calls_to("adservice"), CallStats::default());
    }
}
