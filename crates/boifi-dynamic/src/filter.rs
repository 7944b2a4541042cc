//! The filter: a configuration shared by every worker, and one small object per HTTP stream.
//! Thin glue: the decision is [`boifi_core::compiled::decide`], the local reply and the metric
//! names are the Wasm filter's, the policies come from [`crate::source`].

use std::cell::{Cell, OnceCell};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boifi_core::compiled::{decide, RequestView};
use boifi_core::rng::XorShift64Star;

use crate::abi::{self, ConfigHandle, CounterId, GaugeId, LogLevel, Stream};
use crate::config::NativeConfig;
use crate::delays::{self, DelayError};
use crate::metrics;
use crate::reply::{self, LocalReply};
use crate::source::{self, now_ms, PolicySource, Report};

/// Counter of delays not applied because [`delays::MAX_HELD`] requests were held already.
pub const DELAYS_OVER_CAP_TOTAL: &str = "hfi.faults.delays_over_cap_total";

/// Envoy metric ids, defined once per filter configuration.
#[derive(Debug, Clone, Copy, Default)]
struct Metrics {
    aborts: Option<CounterId>,
    delays: Option<CounterId>,
    delay_ms: Option<CounterId>,
    over_cap: Option<CounterId>,
    updates: Option<CounterId>,
    errors: Option<CounterId>,
    poll_failures: Option<CounterId>,
    policy_aborts: Option<CounterId>,
    policy_delays: Option<CounterId>,
    active: Option<GaugeId>,
    version: Option<GaugeId>,
}

impl Metrics {
    fn define(config: &ConfigHandle<'_>) -> Metrics {
        // Per-policy counters carry the policy as a label (`hfi_policy_aborts_total{policy=..}`
        // in /stats/prometheus, as the Wasm filter's `stats_tags` rule gives).
        let per_policy =
            |kind| config.define_labeled_counter(&format!("hfi.policy.{kind}"), "policy");
        Metrics {
            aborts: config.define_counter(metrics::ABORTS_TOTAL),
            delays: config.define_counter(metrics::DELAYS_TOTAL),
            delay_ms: config.define_counter(metrics::DELAY_MS_TOTAL),
            over_cap: config.define_counter(DELAYS_OVER_CAP_TOTAL),
            updates: config.define_counter(metrics::CONFIG_UPDATES_TOTAL),
            errors: config.define_counter(metrics::CONFIG_ERRORS_TOTAL),
            poll_failures: config.define_counter(metrics::CONFIG_POLL_FAILURES_TOTAL),
            policy_aborts: per_policy(metrics::POLICY_ABORTS),
            policy_delays: per_policy(metrics::POLICY_DELAYS),
            active: config.define_gauge(metrics::ACTIVE_POLICIES),
            version: config.define_gauge(metrics::CONFIG_VERSION),
        }
    }
}

/// One `envoy.filters.http.dynamic_modules` configuration (shared by all workers).
#[derive(Debug)]
pub struct FilterConfig {
    id: u64,
    /// `None`: the configuration was invalid, the filter passes all traffic through.
    source: Option<Arc<PolicySource>>,
    metrics: Metrics,
}

static NEXT_CONFIG_ID: AtomicU64 = AtomicU64::new(1);

impl FilterConfig {
    /// Reads the configuration. An invalid one is logged and gives a filter that passes all
    /// traffic through, as the Wasm filter does (a typo in a fault-injection setting must not
    /// take a sidecar's listener down).
    pub fn new(handle: &ConfigHandle<'_>, name: &[u8], config: &[u8]) -> FilterConfig {
        let id = NEXT_CONFIG_ID.fetch_add(1, Ordering::Relaxed);
        let metrics = Metrics::define(handle);
        let config = match NativeConfig::from_json(config) {
            Ok(c) => c,
            Err(e) => {
                let name = String::from_utf8_lossy(name);
                abi::log(
                    LogLevel::Error,
                    &format!("boifi: filter `{name}`: {e}; the filter passes all traffic through"),
                );
                return FilterConfig {
                    id,
                    source: None,
                    metrics,
                };
            }
        };
        let identity = crate::identity::from_process(&config.plugin.identity);
        let source = source::source_for(&config, &identity);
        if let Some(scheduler) = handle.scheduler() {
            source.subscribe(id, scheduler);
        }
        FilterConfig {
            id,
            source: Some(source),
            metrics,
        }
    }

    /// An event on the main thread: the poller's figures changed.
    pub fn on_scheduled(&self, handle: &ConfigHandle<'_>, event_id: u64) {
        if event_id != source::STATS_CHANGED {
            return;
        }
        let Some(report) = self.source.as_ref().and_then(|s| s.take_report(None)) else {
            return;
        };
        let m = &self.metrics;
        handle.increment(m.updates, report.delta.updates);
        handle.increment(m.errors, report.delta.errors);
        handle.increment(m.poll_failures, report.delta.poll_failures);
        handle.set_gauge(m.active, report.active);
        if let Some(v) = report.version {
            handle.set_gauge(m.version, v);
        }
    }
}

impl Drop for FilterConfig {
    fn drop(&mut self) {
        if let Some(source) = &self.source {
            source.unsubscribe(self.id);
        }
    }
}

/// What a held request does when its delay is over.
#[derive(Debug)]
enum After {
    Resume,
    Abort { policy: String, reply: LocalReply },
}

#[derive(Debug)]
enum State {
    Passing,
    Holding(After),
}

/// One HTTP stream.
#[derive(Debug)]
pub struct StreamFilter {
    source: Option<Arc<PolicySource>>,
    metrics: Metrics,
    state: State,
}

thread_local! {
    // One generator per worker thread: the per-request draw needs no lock.
    static RNG: Cell<Option<XorShift64Star>> = const { Cell::new(None) };
}

fn draw() -> u64 {
    RNG.with(|cell| {
        let mut rng = cell.take().unwrap_or_else(|| {
            let thread = std::thread::current().id();
            let seed = boifi_core::rng::fnv1a64(format!("{thread:?}").as_bytes(), now_ms());
            XorShift64Star::new(seed)
        });
        let x = rng.next_u64();
        cell.set(Some(rng));
        x
    })
}

/// The request as `decide` sees it: each header is read from Envoy when a rule asks for it;
/// a value that is not UTF-8 counts as absent (it can match no rule).
struct HostRequest<'a> {
    stream: Stream<'a>,
    method: OnceCell<&'a str>,
    path: OnceCell<&'a str>,
}

impl<'a> HostRequest<'a> {
    fn get(&self, name: &str) -> Option<&'a str> {
        self.stream
            .request_header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

impl RequestView for HostRequest<'_> {
    fn method(&self) -> &str {
        self.method
            .get_or_init(|| self.get(":method").unwrap_or_default())
    }

    fn path(&self) -> &str {
        self.path
            .get_or_init(|| self.get(":path").unwrap_or_default())
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.get(name)
    }
}

fn send(stream: Stream<'_>, policy: &str, r: &LocalReply) {
    let headers: Vec<abi::Header<'_>> = r
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_bytes()))
        .collect();
    let details = format!("boifi_fault_abort{{{policy}}}");
    stream.send_response(r.status, &headers, &r.body, &details);
}

impl StreamFilter {
    /// A new stream of `config`.
    pub fn new(config: &FilterConfig) -> StreamFilter {
        StreamFilter {
            source: config.source.clone(),
            metrics: config.metrics,
            state: State::Passing,
        }
    }

    /// True while a delay holds the request (its body and trailers wait too).
    pub fn is_holding(&self) -> bool {
        matches!(self.state, State::Holding(_))
    }

    fn report(&self, stream: Stream<'_>, report: Report) {
        let m = &self.metrics;
        stream.increment(m.updates, report.delta.updates);
        stream.increment(m.errors, report.delta.errors);
        stream.increment(m.poll_failures, report.delta.poll_failures);
        stream.set_gauge(m.active, report.active);
        if let Some(v) = report.version {
            stream.set_gauge(m.version, v);
        }
    }

    /// The request headers arrived; true: stop (answered locally or held by a delay).
    pub fn on_request_headers(&mut self, stream: Stream<'_>) -> bool {
        let Some(source) = &self.source else {
            return false;
        };
        let held = source.load();
        if held.set.is_empty() {
            if let Some(report) = source.take_report(None) {
                self.report(stream, report);
            }
            return false;
        }
        let now = now_ms();
        if let Some(report) = source.take_report(Some(now)) {
            self.report(stream, report);
        }
        let request = HostRequest {
            stream,
            method: OnceCell::new(),
            path: OnceCell::new(),
        };
        let Some(decision) = decide(&held.set, &request, now, draw()) else {
            return false;
        };
        let m = self.metrics;
        let abort = decision.abort.map(|a| {
            let grpc = reply::is_grpc(request.get("content-type"));
            reply::abort_reply(decision.policy, a, grpc)
        });
        let wait = decision.total_wait_ms();
        if wait == 0 {
            if decision.delay_ms.is_some() {
                stream.increment(m.delays, 1);
                stream.increment_labeled(m.policy_delays, decision.policy, 1);
            }
            return match abort {
                Some(r) => {
                    send(stream, decision.policy, &r);
                    stream.increment(m.aborts, 1);
                    stream.increment_labeled(m.policy_aborts, decision.policy, 1);
                    true
                }
                None => false,
            };
        }
        let Some(scheduler) = stream.scheduler() else {
            return false;
        };
        match delays::schedule(Instant::now() + Duration::from_millis(wait), scheduler) {
            Ok(()) => {}
            Err(e) => {
                if e == DelayError::Full {
                    stream.increment(m.over_cap, 1);
                }
                if abi::log_enabled(LogLevel::Debug) {
                    abi::log(
                        LogLevel::Debug,
                        &format!(
                            "boifi: delay of policy `{}` not applied: {e}",
                            decision.policy
                        ),
                    );
                }
                return false;
            }
        }
        if decision.delay_ms.is_some() {
            stream.increment(m.delays, 1);
            stream.increment_labeled(m.policy_delays, decision.policy, 1);
        }
        stream.increment(m.delay_ms, wait);
        self.state = State::Holding(abort.map_or(After::Resume, |reply| After::Abort {
            policy: decision.policy.to_owned(),
            reply,
        }));
        true
    }

    /// A scheduled event arrived on the stream's worker (a delay is over).
    pub fn on_scheduled(&mut self, stream: Stream<'_>, event_id: u64) {
        if event_id != delays::DELAY_OVER {
            return;
        }
        match std::mem::replace(&mut self.state, State::Passing) {
            State::Passing => {}
            State::Holding(After::Resume) => stream.continue_decoding(),
            State::Holding(After::Abort { policy, reply }) => {
                send(stream, &policy, &reply);
                stream.increment(self.metrics.aborts, 1);
                stream.increment_labeled(self.metrics.policy_aborts, &policy, 1);
            }
        }
    }

    /// The stream ended (a held request whose client left is simply dropped: the timer's
    /// commit then finds no stream).
    pub fn on_stream_complete(&mut self) {
        self.state = State::Passing;
    }
}
