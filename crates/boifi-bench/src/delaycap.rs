//! The delay cap: 10 000 concurrent requests (HTTP/2, a few connections) into an Envoy whose
//! only policy delays every request by 60 s. With the default `max_active_delays` the filter
//! holds that many and lets the rest pass unfaulted; with the cap raised to hold them all, the
//! growth of Envoy's memory per held request is what the cap bounds.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

use crate::envoy::{Envoy, EnvoySpec, Filters};
use crate::error::BenchError;
use crate::policies;
use crate::report::Table;
use crate::server::Server;
use crate::stats;
use crate::upstream::Upstream;

/// How to run the delay-cap benchmark.
#[derive(Debug, Clone)]
pub struct Options {
    /// Envoy.
    pub envoy: PathBuf,
    /// The filter module.
    pub wasm: PathBuf,
    /// Concurrent requests.
    pub requests: usize,
    /// HTTP/2 connections they are spread over.
    pub connections: usize,
}

/// The delay every request would get.
const DELAY_MS: u64 = 60_000;

/// What one Envoy showed.
#[derive(Debug, Clone, Copy)]
struct Held {
    cap: u64,
    held: u64,
    over_cap: u64,
    completed: usize,
    rss_before_kib: u64,
    rss_held_kib: u64,
    rss_after_kib: u64,
}

fn unexpected(what: impl Into<String>) -> BenchError {
    BenchError::Unexpected(what.into())
}

/// Sends `n` GETs of `/hold` over `connections` HTTP/2 connections, without waiting for them;
/// `done` counts the answered ones. The requests live as long as `rt`.
fn send_all(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    n: usize,
    connections: usize,
    done: &Arc<AtomicUsize>,
) -> Result<(), BenchError> {
    let senders = rt.block_on(async {
        let mut senders = Vec::new();
        for _ in 0..connections.max(1) {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| BenchError::io("connecting to Envoy", e))?;
            let (sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                    .await
                    .map_err(|e| unexpected(format!("HTTP/2 handshake with Envoy: {e}")))?;
            tokio::spawn(conn);
            senders.push(sender);
        }
        Ok::<_, BenchError>(senders)
    })?;
    for i in 0..n {
        let Some(sender) = senders.get(i % senders.len()) else {
            continue;
        };
        let mut sender = sender.clone();
        let done = Arc::clone(done);
        let request = hyper::Request::get(format!("http://{addr}/hold/{i}"))
            .body(Empty::<Bytes>::new())
            .map_err(|e| unexpected(format!("building a request: {e}")))?;
        rt.spawn(async move {
            if sender.send_request(request).await.is_ok() {
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    Ok(())
}

fn metric(envoy: &Envoy, name: &str) -> Result<u64, BenchError> {
    Ok(envoy.metric(name)?.unwrap_or(0))
}

fn rss_kib(envoy: &Envoy) -> u64 {
    stats::status_kib(envoy.pid(), "VmRSS").unwrap_or(0)
}

fn sample(
    o: &Options,
    dir: &Path,
    upstream: &Upstream,
    server: &Server,
    cap: Option<u64>,
) -> Result<Held, BenchError> {
    let mut plugin_config = policies::plugin_config("dc");
    if let (Some(cap), Some(map)) = (cap, plugin_config.as_object_mut()) {
        map.insert("max_active_delays".to_owned(), json!(cap));
    }
    let spec = EnvoySpec {
        name: format!(
            "delaycap-{}",
            cap.map_or("default".to_owned(), |c| c.to_string())
        ),
        filters: Filters::Boifi {
            wasm: o.wasm.clone(),
            plugin_config,
            control_plane: server.addr,
        },
        upstream_port: upstream.port(),
        concurrency: 1,
        cpus: None,
    };
    let envoy = Envoy::start(&o.envoy, dir, spec)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&envoy, "hfi_policies_active")? != 1 {
        if Instant::now() >= deadline {
            return Err(unexpected(format!(
                "the filter did not apply the delay policy; log: {}",
                envoy.log_tail(20)
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let rss_before_kib = rss_kib(&envoy);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| BenchError::io("starting the client runtime", e))?;
    let done = Arc::new(AtomicUsize::new(0));
    let addr = SocketAddr::from(([127, 0, 0, 1], envoy.listener_port));
    send_all(&rt, addr, o.requests, o.connections, &done)?;
    // Every request reached the filter: held, or passed over the cap.
    let deadline = Instant::now() + Duration::from_secs(60);
    let total = u64::try_from(o.requests).unwrap_or(u64::MAX);
    loop {
        let seen = metric(&envoy, "hfi_faults_delays_total")?
            + metric(&envoy, "hfi_faults_delays_over_cap_total")?;
        if seen >= total {
            break;
        }
        if Instant::now() >= deadline {
            return Err(unexpected(format!(
                "only {seen} of {total} requests reached the filter within 60 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let held = Held {
        cap: cap.unwrap_or(boifi_core::wire::DEFAULT_MAX_ACTIVE_DELAYS),
        held: metric(&envoy, "hfi_faults_delays_total")?,
        over_cap: metric(&envoy, "hfi_faults_delays_over_cap_total")?,
        completed: done.load(Ordering::Relaxed),
        rss_before_kib,
        rss_held_kib: rss_kib(&envoy),
        rss_after_kib: 0,
    };
    // Hang up: the held streams end, and the filter forgets them.
    rt.shutdown_background();
    std::thread::sleep(Duration::from_secs(3));
    Ok(Held {
        rss_after_kib: rss_kib(&envoy),
        ..held
    })
}

/// Runs the benchmark; returns the Markdown section.
pub fn run(o: &Options, dir: &Path) -> Result<String, BenchError> {
    let upstream = Upstream::start()?;
    let server = Server::start(dir)?;
    server.put(&json!({
        "metadata": {"name": "dc-hold-60s"},
        "spec": {
            "selector": {"service": "dc", "namespace": policies::NAMESPACE},
            "rules": [{"match": {"path": {"prefix": "/hold"}},
                       "fault": {"percentage": 100, "delay": {"fixed_delay_ms": DELAY_MS}}}],
        },
    }))?;
    let all = u64::try_from(o.requests).unwrap_or(u64::MAX);
    let mut runs = Vec::new();
    for cap in [None, Some(all)] {
        let s = sample(o, dir, &upstream, &server, cap)?;
        eprintln!("delaycap: {s:?}");
        runs.push(s);
    }
    let mut t = Table::new(&[
        "`max_active_delays`",
        "held (delays_total)",
        "passed over the cap",
        "answered while held",
        "Envoy RSS before",
        "RSS while held",
        "growth per held request",
        "RSS after hang-up",
    ]);
    #[expect(
        clippy::cast_precision_loss,
        reason = "memory sizes are far below 2^52"
    )]
    for s in &runs {
        let grown = s.rss_held_kib.saturating_sub(s.rss_before_kib);
        t.row(vec![
            format!("{}", s.cap),
            s.held.to_string(),
            s.over_cap.to_string(),
            s.completed.to_string(),
            format!("{:.1} MiB", s.rss_before_kib as f64 / 1024.0),
            format!("{:.1} MiB", s.rss_held_kib as f64 / 1024.0),
            // Only meaningful when every request is held: otherwise most of the growth is the
            // passed requests' upstream connections and buffers.
            if s.over_cap == 0 {
                format!("{:.1} KiB", grown as f64 / s.held.max(1) as f64)
            } else {
                format!("({:.1} MiB in all)", grown as f64 / 1024.0)
            },
            format!("{:.1} MiB", s.rss_after_kib as f64 / 1024.0),
        ]);
    }
    let default = runs.first();
    let cap_holds = default.is_some_and(|s| {
        s.held == s.cap && s.over_cap == all - s.cap && s.completed as u64 == s.over_cap
    });
    let per_request_kib = runs.get(1).map_or(0.0, |s| {
        #[expect(
            clippy::cast_precision_loss,
            reason = "memory sizes are far below 2^52"
        )]
        let v = s.rss_held_kib.saturating_sub(s.rss_before_kib) as f64 / s.held.max(1) as f64;
        v
    });
    #[expect(clippy::cast_precision_loss, reason = "a cap is far below 2^52")]
    let bound_mib = per_request_kib * boifi_core::wire::DEFAULT_MAX_ACTIVE_DELAYS as f64 / 1024.0;
    Ok(format!(
        "`boifi-bench delaycap`: {n} concurrent requests over {c} HTTP/2 connections into one \
         Envoy 1.40 (`--concurrency 1`) whose only policy delays every request by 60 s; once \
         every request reached the filter, Envoy's RSS and counters are read, then the client \
         hangs up. First with the default cap, then with the cap raised to hold them all (which \
         measures the memory one held request costs). RSS after hang-up stays up: Envoy's \
         allocator keeps freed pages.\n\n{table}\n\
         The cap holds with the default: {holds} (held = cap, the rest passed at once, \
         unfaulted, and `hfi_faults_delays_over_cap_total` counts them). A held request costs \
         {per_request_kib:.1} KiB of Envoy RSS, so the default cap of {cap} bounds what delays \
         can hold per worker to about {bound_mib:.1} MiB.\n",
        n = o.requests,
        c = o.connections,
        table = t.to_markdown(),
        holds = if cap_holds { "yes" } else { "**no**" },
        cap = boifi_core::wire::DEFAULT_MAX_ACTIVE_DELAYS,
    ))
}
