//! A small blocking HTTP client over hyper: admin and API calls, and traffic generation that
//! classifies every answer (passed, aborted by boifi, delayed).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::app::POD_HEADER;
use crate::error::MeshError;

/// The header boifi's filter puts on the answers it makes up.
pub const FAULT_HEADER: &str = "x-boifi-fault";

/// One answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Response headers (lower-case names; the last value of repeated ones).
    pub headers: BTreeMap<String, String>,
    /// Trailers (gRPC status lives there on success).
    pub trailers: BTreeMap<String, String>,
    /// Body.
    pub body: Vec<u8>,
    /// Time to the end of the body.
    pub elapsed: Duration,
}

impl Answer {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The policy named by `x-boifi-fault`, when boifi made this answer up.
    pub fn fault(&self) -> Option<&str> {
        self.headers.get(FAULT_HEADER).map(String::as_str)
    }

    /// `grpc-status` from the headers (trailers-only answers) or the trailers.
    pub fn grpc_status(&self) -> Option<u32> {
        self.headers
            .get("grpc-status")
            .or_else(|| self.trailers.get("grpc-status"))
            .and_then(|s| s.parse().ok())
    }
}

/// What to send.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    /// `GET`, `POST`, ...
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// The `Host` header (the ingress routes on it); `None` keeps the address.
    pub host: Option<String>,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// gRPC: HTTP/2, `content-type: application/grpc`, an empty message as body.
    pub grpc: bool,
}

impl RequestSpec {
    /// `method path`, plain HTTP, no extra header.
    pub fn new(method: Method, path: &str) -> RequestSpec {
        RequestSpec {
            method,
            path: path.to_owned(),
            host: None,
            headers: Vec::new(),
            grpc: false,
        }
    }

    /// `GET path`.
    pub fn get(path: &str) -> RequestSpec {
        RequestSpec::new(Method::GET, path)
    }

    /// A unary gRPC call of `method` on `service` (`hipstershop.CartService`).
    pub fn grpc(service: &str, method: &str) -> RequestSpec {
        RequestSpec {
            method: Method::POST,
            path: format!("/{service}/{method}"),
            host: None,
            headers: vec![("te".to_owned(), "trailers".to_owned())],
            grpc: true,
        }
    }

    /// Sets the `Host` header.
    pub fn with_host(mut self, host: &str) -> RequestSpec {
        self.host = Some(host.to_owned());
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> RequestSpec {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// Counts over a batch of requests.
#[derive(Debug, Clone, Default)]
pub struct TrafficReport {
    /// Requests sent.
    pub requests: usize,
    /// Answers by HTTP status.
    pub by_status: BTreeMap<u16, usize>,
    /// Answers boifi made up (`x-boifi-fault`), by policy.
    pub by_fault: BTreeMap<String, usize>,
    /// Answers by the pod that served them (the app's `x-mesh-pod`).
    pub by_pod: BTreeMap<String, usize>,
    /// gRPC answers by `grpc-status`.
    pub by_grpc_status: BTreeMap<u32, usize>,
    /// Answers that passed untouched: 2xx, not made up by boifi, and gRPC status 0 if any.
    pub passed: usize,
    /// Requests that failed without an answer.
    pub errors: usize,
    /// The first transport error, for the report.
    pub first_error: Option<String>,
    /// Latency of every answered request, sorted.
    pub latencies: Vec<Duration>,
}

impl TrafficReport {
    /// Answers boifi aborted.
    pub fn aborts(&self) -> usize {
        self.by_fault.values().sum()
    }

    /// Answers with `status`.
    pub fn status(&self, status: u16) -> usize {
        self.by_status.get(&status).copied().unwrap_or(0)
    }

    /// Requests that got no useful answer: a 5xx, or none at all.
    pub fn server_errors(&self) -> usize {
        self.by_status.range(500..).map(|(_, n)| n).sum::<usize>() + self.errors
    }

    /// Answered requests slower than `at_least`.
    pub fn slower_than(&self, at_least: Duration) -> usize {
        self.latencies.iter().filter(|l| **l >= at_least).count()
    }

    /// The `q` quantile (0.0..=1.0) of the latencies.
    pub fn latency_quantile(&self, q: f64) -> Option<Duration> {
        crate::stats::quantile(&self.latencies, q)
    }

    fn add(&mut self, result: Result<Answer, MeshError>) {
        self.requests += 1;
        match result {
            Ok(a) => {
                *self.by_status.entry(a.status).or_default() += 1;
                if let Some(f) = a.fault() {
                    *self.by_fault.entry(f.to_owned()).or_default() += 1;
                }
                if let Some(p) = a.headers.get(POD_HEADER) {
                    *self.by_pod.entry(p.clone()).or_default() += 1;
                }
                if let Some(g) = a.grpc_status() {
                    *self.by_grpc_status.entry(g).or_default() += 1;
                }
                if (200..300).contains(&a.status)
                    && a.fault().is_none()
                    && a.grpc_status().unwrap_or(0) == 0
                {
                    self.passed += 1;
                }
                self.latencies.push(a.elapsed);
            }
            Err(e) => {
                self.errors += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(e.to_string());
                }
            }
        }
    }
}

/// Pooled async clients over one connector: HTTP/1.1 for plain requests, HTTP/2 with prior
/// knowledge for gRPC. The harness connects to the URL's address; an app connects every call
/// to its own sidecar (see [`crate::app`]).
#[derive(Debug, Clone)]
pub struct Clients<C> {
    h1: Client<C, Full<Bytes>>,
    h2: Client<C, Full<Bytes>>,
}

impl<C: Connect + Clone + Send + Sync + 'static> Clients<C> {
    /// Clients over `connector`.
    pub fn new(connector: C) -> Clients<C> {
        // An idle connection is dropped before the servers here close theirs (actix: 5 s),
        // so a request never goes out on a connection the server already closed (hyper's
        // `IncompleteMessage`), which the blocking harness client, idle between calls, would
        // otherwise meet.
        let h1 = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .pool_idle_timeout(Duration::from_secs(2))
            .build(connector.clone());
        let h2 = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(connector);
        Clients { h1, h2 }
    }

    /// One request to `base` (`http://host[:port]`), with a timeout.
    pub async fn send(
        &self,
        base: &str,
        spec: &RequestSpec,
        body: Option<(&str, Vec<u8>)>,
        timeout: Duration,
    ) -> Result<Answer, MeshError> {
        send_one(&self.h1, &self.h2, base, spec, body, timeout).await
    }
}

/// A connector with Nagle off and a 2 s connect timeout, resolving with `resolver`.
pub fn connector<R: Clone>(resolver: R) -> HttpConnector<R> {
    let mut connector = HttpConnector::new_with_resolver(resolver);
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    connector
}

/// A blocking client with its own runtime.
#[derive(Debug)]
pub struct HttpClient {
    runtime: tokio::runtime::Runtime,
    clients: Clients<HttpConnector>,
}

impl HttpClient {
    /// A new client.
    pub fn new() -> Result<HttpClient, MeshError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| MeshError::io("tokio runtime", e))?;
        let clients = Clients::new(connector(
            hyper_util::client::legacy::connect::dns::GaiResolver::new(),
        ));
        Ok(HttpClient { runtime, clients })
    }

    /// One request to `base` (`http://127.0.0.1:port`), with a timeout.
    pub fn send(
        &self,
        base: &str,
        spec: &RequestSpec,
        body: Option<(&str, Vec<u8>)>,
        timeout: Duration,
    ) -> Result<Answer, MeshError> {
        self.runtime
            .block_on(self.clients.send(base, spec, body, timeout))
    }

    /// `GET base+path`.
    pub fn get(&self, base: &str, path: &str) -> Result<Answer, MeshError> {
        self.send(base, &RequestSpec::get(path), None, Duration::from_secs(5))
    }

    /// `n` requests with up to `concurrency` in flight.
    pub fn traffic(
        &self,
        base: &str,
        spec: &RequestSpec,
        n: usize,
        concurrency: usize,
    ) -> TrafficReport {
        self.runtime.block_on(async {
            let mut report = TrafficReport::default();
            let mut in_flight = tokio::task::JoinSet::new();
            let mut sent = 0;
            while sent < n || !in_flight.is_empty() {
                while sent < n && in_flight.len() < concurrency.max(1) {
                    let clients = self.clients.clone();
                    let (base, spec) = (base.to_owned(), spec.clone());
                    in_flight.spawn(async move {
                        clients
                            .send(&base, &spec, None, Duration::from_secs(10))
                            .await
                    });
                    sent += 1;
                }
                if let Some(done) = in_flight.join_next().await {
                    report.add(done.unwrap_or_else(|e| {
                        Err(MeshError::Http {
                            url: base.to_owned(),
                            reason: e.to_string(),
                        })
                    }));
                }
            }
            report.latencies.sort();
            report
        })
    }
}

async fn send_one<C: Connect + Clone + Send + Sync + 'static>(
    h1: &Client<C, Full<Bytes>>,
    h2: &Client<C, Full<Bytes>>,
    base: &str,
    spec: &RequestSpec,
    body: Option<(&str, Vec<u8>)>,
    timeout: Duration,
) -> Result<Answer, MeshError> {
    let url = format!("{base}{}", spec.path);
    let err = |reason: String| MeshError::Http {
        url: url.clone(),
        reason,
    };
    let mut builder = Request::builder().method(spec.method.clone()).uri(&url);
    if let Some(host) = &spec.host {
        builder = builder.header(HOST, host.as_str());
    }
    for (k, v) in &spec.headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| err(e.to_string()))?;
        let value = HeaderValue::from_str(v).map_err(|e| err(e.to_string()))?;
        builder = builder.header(name, value);
    }
    let payload = if spec.grpc {
        builder = builder.header(CONTENT_TYPE, "application/grpc");
        Bytes::from_static(&[0, 0, 0, 0, 0])
    } else if let Some((content_type, bytes)) = body {
        builder = builder.header(CONTENT_TYPE, content_type);
        Bytes::from(bytes)
    } else {
        Bytes::new()
    };
    let request = builder
        .body(Full::new(payload))
        .map_err(|e| err(e.to_string()))?;
    let client = if spec.grpc { h2 } else { h1 };
    let start = Instant::now();
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| err(format!("{e:?}")))?;
        let status = response.status().as_u16();
        let headers = header_map(response.headers());
        let collected = response
            .into_body()
            .collect()
            .await
            .map_err(|e| err(e.to_string()))?;
        let trailers = collected.trailers().map(header_map).unwrap_or_default();
        Ok::<_, MeshError>(Answer {
            status,
            headers,
            trailers,
            body: collected.to_bytes().to_vec(),
            elapsed: start.elapsed(),
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| err(format!("no answer within {} ms", timeout.as_millis())))?
}

fn header_map(headers: &hyper::HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}
