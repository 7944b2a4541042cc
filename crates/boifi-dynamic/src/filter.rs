//! The glue between Envoy's hooks and [`boifi_engine`]: a configuration shared by every worker,
//! one engine per worker thread and configuration (in a thread-local, so the request path takes
//! no lock), and one small object per HTTP stream. Nothing here decides anything.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use boifi_core::compiled::{EVALUATED_HEADER, PEER_PRINCIPAL_FILTER_STATE};
use boifi_core::destination::DestinationSource;
use boifi_core::identity::Identity;
use boifi_core::wire::PluginConfig;
use boifi_engine::metrics::{Counter, Counters, Gauge, PolicyCounter, POLICY_TAG};
use boifi_engine::reply::LocalReply;
use boifi_engine::sync::HostFaults;
use boifi_engine::{Engine, Release, RequestView, Verdict};

use crate::abi::{self, ConfigHandle, CounterId, GaugeId, LogLevel, Stream};
use crate::config::NativeConfig;
use crate::delays;
use crate::source::{self, now_ms, PolicySource, Report};

/// Envoy metric ids, defined once per filter configuration under the engine's names.
#[derive(Debug, Clone, Copy, Default)]
struct Metrics {
    counters: [Option<CounterId>; Counter::ALL.len()],
    gauges: [Option<GaugeId>; Gauge::ALL.len()],
    /// By [`PolicyCounter`] (`PolicyCounter::X as usize`), each tagged with the policy.
    policies: [Option<CounterId>; PolicyCounter::ALL.len()],
}

impl Metrics {
    fn define(config: &ConfigHandle<'_>) -> Metrics {
        let mut m = Metrics::default();
        for (slot, counter) in m.counters.iter_mut().zip(Counter::ALL) {
            *slot = config.define_counter(counter.name());
        }
        for (slot, gauge) in m.gauges.iter_mut().zip(Gauge::ALL) {
            *slot = config.define_gauge(gauge.name());
        }
        // Per-policy counters carry the policy as a tag (`hfi_policy_aborts_total{policy=..}`
        // in /stats/prometheus, as the Wasm filter's `stats_tags` rule gives): the ABI defines
        // metrics only at configuration time, before any policy name is known.
        let per_policy =
            |counter: PolicyCounter| config.define_labeled_counter(counter.name(), POLICY_TAG);
        for (slot, counter) in m.policies.iter_mut().zip(PolicyCounter::ALL) {
            *slot = per_policy(counter);
        }
        m
    }

    fn counter(&self, c: Counter) -> Option<CounterId> {
        self.counters.get(c as usize).copied().flatten()
    }

    fn gauge(&self, g: Gauge) -> Option<GaugeId> {
        self.gauges.get(g as usize).copied().flatten()
    }
}

/// The engine's counters written to one stream's (or the configuration's) Envoy metrics.
struct StreamCounters<'s, 'a> {
    stream: Stream<'a>,
    metrics: &'s Metrics,
}

impl Counters for StreamCounters<'_, '_> {
    fn add(&mut self, counter: Counter, by: u64) {
        self.stream.increment(self.metrics.counter(counter), by);
    }

    fn set(&mut self, gauge: Gauge, value: u64) {
        self.stream.set_gauge(self.metrics.gauge(gauge), value);
    }

    fn add_policy(&mut self, policy: &str, counter: PolicyCounter) {
        let id = self
            .metrics
            .policies
            .get(counter as usize)
            .copied()
            .flatten();
        self.stream.increment_labeled(id, policy, 1);
    }
}

/// What every worker's engine of one configuration is made from.
#[derive(Debug)]
struct Shared {
    source: Arc<PolicySource>,
    metrics: Metrics,
    identity: Identity,
    plugin: PluginConfig,
}

/// One `envoy.filters.http.dynamic_modules` configuration (shared by all workers).
#[derive(Debug)]
pub struct FilterConfig {
    id: u64,
    /// `None`: the configuration was invalid, the filter passes all traffic through.
    shared: Option<Arc<Shared>>,
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
                    shared: None,
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
            shared: Some(Arc::new(Shared {
                source,
                metrics,
                identity,
                plugin: config.plugin,
            })),
            metrics,
        }
    }

    /// An event on the main thread: the poller's figures changed.
    pub fn on_scheduled(&self, handle: &ConfigHandle<'_>, event_id: u64) {
        if event_id != source::STATS_CHANGED {
            return;
        }
        let Some(report) = self
            .shared
            .as_ref()
            .and_then(|s| s.source.take_report(None))
        else {
            return;
        };
        let m = &self.metrics;
        handle.increment(m.counter(Counter::ConfigUpdates), report.delta.updates);
        handle.increment(m.counter(Counter::ConfigErrors), report.delta.errors);
        handle.increment(m.counter(Counter::PollFailures), report.delta.poll_failures);
        handle.increment(
            m.counter(Counter::HeartbeatLapses),
            report.delta.heartbeat_lapses,
        );
        handle.set_gauge(m.gauge(Gauge::ActivePolicies), report.active);
        if let Some(v) = report.version {
            handle.set_gauge(m.gauge(Gauge::ConfigVersion), v);
        }
    }
}

impl Drop for FilterConfig {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            shared.source.unsubscribe(self.id);
        }
    }
}

/// One worker's engine for one configuration.
struct WorkerEngine {
    shared: Weak<Shared>,
    engine: Engine,
    next_stream: u64,
    /// Held requests the engine released while handling another stream's timer event; each is
    /// acted on when its own stream's event arrives (only then is its Envoy pointer at hand).
    released: Vec<(u64, Release)>,
}

thread_local! {
    static ENGINES: RefCell<Vec<WorkerEngine>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this worker's engine for `shared` (created on first use). `None` only if the
/// thread-local is being torn down or re-entered, where the request simply passes.
fn with_engine<T>(shared: &Arc<Shared>, f: impl FnOnce(&mut WorkerEngine) -> T) -> Option<T> {
    ENGINES
        .try_with(|engines| {
            let mut engines = engines.try_borrow_mut().ok()?;
            let index = match engines
                .iter()
                .position(|w| std::ptr::eq(w.shared.as_ptr(), Arc::as_ptr(shared)))
            {
                Some(i) => i,
                None => {
                    // Engines of configurations that are gone go first.
                    engines.retain(|w| w.shared.strong_count() > 0);
                    let seed = boifi_core::rng::fnv1a64(
                        format!("{:?}", std::thread::current().id()).as_bytes(),
                        now_ms(),
                    );
                    engines.push(WorkerEngine {
                        shared: Arc::downgrade(shared),
                        engine: Engine::new(shared.identity.clone(), &shared.plugin, seed),
                        next_stream: 0,
                        released: Vec::new(),
                    });
                    engines.len() - 1
                }
            };
            engines.get_mut(index).map(f)
        })
        .ok()
        .flatten()
}

/// The request as the engine sees it: each header is read from Envoy, as bytes, only when a
/// rule asks for it (`decide` reads the method and each header at most once per request).
struct HostRequest<'a> {
    stream: Stream<'a>,
}

impl RequestView for HostRequest<'_> {
    fn method(&self) -> &[u8] {
        self.stream.request_header(":method").unwrap_or_default()
    }

    fn path(&self) -> &[u8] {
        self.stream.request_header(":path").unwrap_or_default()
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        self.stream.request_header(name)
    }

    /// Read from Envoy only when a `source` rule asks; the engine asks at most once per request.
    fn peer_uri_san(&self) -> Option<&[u8]> {
        self.stream.peer_uri_san()
    }

    /// In a shared proxy, instead of the certificate: Istio's filter state (a waypoint's
    /// `main_internal` has no peer certificate).
    fn peer_principal(&self) -> Option<&[u8]> {
        self.stream.filter_state_bytes(PEER_PRINCIPAL_FILTER_STATE)
    }

    /// Read once per request, only in a shared proxy (the engine's rule).
    fn destination(&self, source: DestinationSource) -> Option<&[u8]> {
        match source {
            DestinationSource::FilterChainName => self.stream.filter_chain_name(),
            DestinationSource::ClusterName => self.stream.cluster_name(),
        }
    }

    /// Kept for [`take_mark`]: setting a header invalidates the buffers Envoy handed out for it,
    /// so the hook writes it once the filter is done with the request.
    fn mark_evaluated(&self, value: &[u8]) {
        let _ = MARK.try_with(|mark| {
            if let Ok(mut mark) = mark.try_borrow_mut() {
                mark.0 = true;
                mark.1.clear();
                mark.1.extend_from_slice(value);
            }
        });
    }
}

thread_local! {
    /// The `x-boifi-evaluated` value the engine asked for in this worker's current request hook
    /// (a flag and a buffer reused from request to request, so marking allocates nothing once
    /// the buffer has grown).
    static MARK: RefCell<(bool, Vec<u8>)> = const { RefCell::new((false, Vec::new())) };
}

/// Hands the header the last request hook on this worker asked to set ([`EVALUATED_HEADER`]
/// and its value) to `write`, once; nothing when none was asked for.
pub fn take_mark(write: impl FnOnce(&str, &[u8])) {
    let _ = MARK.try_with(|mark| {
        if let Ok(mut mark) = mark.try_borrow_mut() {
            if core::mem::take(&mut mark.0) {
                write(EVALUATED_HEADER, &mark.1);
            }
        }
    });
}

/// A call into Envoy that can re-enter the module: Envoy may run the response path, complete
/// the stream and destroy its filter inside it (a local reply from `sendLocalReply`; a resumed
/// request that the next filter answers at once). So a [`StreamFilter`] never makes one: it
/// returns it, and the hook in [`crate::abi`] makes it after its borrow of the filter ended.
#[derive(Debug)]
pub enum HostCall {
    /// Answer the request locally (`send_response`).
    Reply(LocalReply),
    /// Resume the request held in `on_request_headers` (`continue_decoding`).
    Resume,
}

/// What the request-headers hook answers Envoy.
#[derive(Debug)]
pub enum Headers {
    /// Let the request through (`Continue`).
    Continue,
    /// Held by a delay (`StopIteration`); a scheduled event resumes it.
    Hold,
    /// Answered locally: make the call, then `StopIteration`.
    Reply(LocalReply),
}

/// What the native module can inject besides request-phase aborts and delays: a response-phase
/// abort (the response-headers hook answers with `send_response`), but no hold of the app's
/// response and no reset. A policy that needs one is refused through the refusal path (status
/// shows the sidecar refused, with this reason), never applied in part (docs/native.md).
pub const NATIVE_FAULTS: HostFaults = HostFaults {
    response_delay: false,
    reset: false,
    why_not: "the native module cannot inject this fault: boifi binds Envoy's dynamic-module ABI \
              v0.2.0 without a call to resume a held response or to reset a stream (use the \
              Wasm filter for response delays and resets)",
};

/// One HTTP stream.
#[derive(Debug)]
pub struct StreamFilter {
    shared: Option<Arc<Shared>>,
    /// The engine's id of this stream while a delay holds it.
    held: Option<u64>,
    /// The engine's id of this stream while a response-phase fault waits for the app's answer
    /// (`None` for every other stream: its response costs no engine call).
    awaiting: Option<u64>,
}

impl StreamFilter {
    /// A new stream of `config`.
    pub fn new(config: &FilterConfig) -> StreamFilter {
        StreamFilter {
            shared: config.shared.clone(),
            held: None,
            awaiting: None,
        }
    }

    /// True while a response-phase fault waits for the app's answer.
    pub fn awaits_response(&self) -> bool {
        self.awaiting.is_some()
    }

    /// True while a delay holds the request (its body and trailers wait too).
    pub fn is_holding(&self) -> bool {
        self.held.is_some()
    }

    /// The request headers arrived: what to answer Envoy. The calls made here (headers, the
    /// peer certificate, metrics, a scheduler) do not re-enter the module; a reply is returned.
    pub fn on_request_headers(&mut self, stream: Stream<'_>) -> Headers {
        let Some(shared) = &self.shared else {
            return Headers::Continue;
        };
        let metrics = &shared.metrics;
        let mut counters = StreamCounters { stream, metrics };
        let published = shared.source.load();
        let now = (!published.set.is_empty()).then(now_ms);
        if let Some(report) = shared.source.take_report(now) {
            report_to(&mut counters, report);
        }
        let Some(now) = now else {
            return Headers::Continue;
        };
        let request = HostRequest { stream };
        let decided = with_engine(shared, |w| {
            if w.engine.seq() != published.seq {
                let version = published.version.unwrap_or(0);
                w.engine
                    .install(published.seq, version, published.set.clone());
            }
            w.next_stream = w.next_stream.wrapping_add(1);
            let id = w.next_stream;
            let verdict = w.engine.on_request(id, &request, now, &mut counters);
            let awaits = w.engine.awaits_response(id);
            (id, verdict, awaits)
        });
        let decided = decided.map(|(id, verdict, awaits)| {
            if awaits {
                self.awaiting = Some(id);
            }
            (id, verdict)
        });
        match decided {
            None | Some((_, Verdict::Continue)) => Headers::Continue,
            // Refused before it is applied (NATIVE_FAULTS): never reached; fail open.
            Some((_, Verdict::Reset)) => Headers::Continue,
            Some((_, Verdict::Reply(reply))) => Headers::Reply(reply),
            Some((id, Verdict::Hold { due_ms })) => {
                if self.hold(stream, due_ms.saturating_sub(now)) {
                    self.held = Some(id);
                    Headers::Hold
                } else {
                    // No timer: the request passes (fail open) and the engine forgets it.
                    with_engine(shared, |w| w.engine.forget(id));
                    Headers::Continue
                }
            }
        }
    }

    /// The app's response headers arrived: the local reply of a response-phase abort decided
    /// for this stream, if any. A stream no response-phase rule fired for returns at once.
    pub fn on_response_headers(&mut self, stream: Stream<'_>) -> Option<LocalReply> {
        let (Some(shared), Some(id)) = (&self.shared, self.awaiting.take()) else {
            return None;
        };
        let metrics = &shared.metrics;
        let mut counters = StreamCounters { stream, metrics };
        let now = now_ms();
        let verdict = with_engine(shared, |w| w.engine.on_response(id, now, &mut counters));
        match verdict {
            Some(Verdict::Reply(reply)) => Some(reply),
            // A hold or a reset was refused before the set was applied (NATIVE_FAULTS); should
            // one come anyway, the response passes and nothing is left held.
            Some(Verdict::Hold { .. }) => {
                with_engine(shared, |w| w.engine.forget(id));
                None
            }
            _ => None,
        }
    }

    /// Asks the timer to wake this stream on its worker in `wait_ms`.
    fn hold(&self, stream: Stream<'_>, wait_ms: u64) -> bool {
        let Some(scheduler) = stream.scheduler() else {
            return false;
        };
        let due = Instant::now() + Duration::from_millis(wait_ms);
        match delays::schedule(due, scheduler) {
            Ok(()) => true,
            Err(e) => {
                abi::log(
                    LogLevel::Warn,
                    &format!("boifi: a delay passes unapplied: {e}"),
                );
                false
            }
        }
    }

    /// A scheduled event arrived on the stream's worker (its delay is over): the call that
    /// releases the request, if it is due. The filter holds nothing once it returns a call, so
    /// a completion and destroy inside that call find nothing left to forget.
    pub fn on_scheduled(&mut self, stream: Stream<'_>, event_id: u64) -> Option<HostCall> {
        let (Some(shared), Some(id), true) =
            (&self.shared, self.held, event_id == delays::DELAY_OVER)
        else {
            return None;
        };
        let metrics = &shared.metrics;
        let mut counters = StreamCounters { stream, metrics };
        let now = now_ms();
        let outcome = with_engine(shared, |w| {
            let due = w.engine.release_due(now, &mut counters);
            w.released
                .extend(due.into_iter().map(|r| (r.stream, r.then)));
            let mine = w.released.iter().position(|(s, _)| *s == id);
            match mine {
                Some(i) => Ok(w.released.swap_remove(i).1),
                // The engine's clock (milliseconds) is not due yet: wait for the rest.
                None => Err(w
                    .engine
                    .next_due_ms()
                    .unwrap_or(now)
                    .saturating_sub(now)
                    .max(1)),
            }
        });
        match outcome {
            Some(Ok(release)) => {
                self.held = None;
                Some(match release {
                    // A reset is refused before the set is applied (NATIVE_FAULTS).
                    Release::Resume | Release::Reset => HostCall::Resume,
                    Release::Reply(reply) => HostCall::Reply(reply),
                })
            }
            Some(Err(wait_ms)) => {
                if self.hold(stream, wait_ms) {
                    None
                } else {
                    Some(self.release_unapplied())
                }
            }
            None => Some(self.release_unapplied()),
        }
    }

    /// Lets a held request go unfaulted (no timer, or no engine): fail open, never stuck.
    fn release_unapplied(&mut self) -> HostCall {
        self.forget();
        HostCall::Resume
    }

    /// The stream ended: a held request whose client left is forgotten (the timer's commit
    /// then finds no stream).
    pub fn on_stream_complete(&mut self) {
        self.forget();
    }

    fn forget(&mut self) {
        if let (Some(shared), Some(id)) = (&self.shared, self.awaiting.take()) {
            with_engine(shared, |w| w.engine.forget(id));
        }
        if let (Some(shared), Some(id)) = (&self.shared, self.held.take()) {
            with_engine(shared, |w| {
                w.engine.forget(id);
                w.released.retain(|(s, _)| *s != id);
            });
        }
    }
}

impl Drop for StreamFilter {
    fn drop(&mut self) {
        self.forget();
    }
}

fn report_to(counters: &mut StreamCounters<'_, '_>, report: Report) {
    counters.add(Counter::ConfigUpdates, report.delta.updates);
    counters.add(Counter::ConfigErrors, report.delta.errors);
    counters.add(Counter::PollFailures, report.delta.poll_failures);
    counters.add(Counter::HeartbeatLapses, report.delta.heartbeat_lapses);
    counters.set(Gauge::ActivePolicies, report.active);
    if let Some(v) = report.version {
        counters.set(Gauge::ConfigVersion, v);
    }
}
