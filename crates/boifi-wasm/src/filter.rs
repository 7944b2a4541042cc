//! The proxy-wasm glue: a root context per Wasm VM that owns the configuration, the compiled
//! policy set and the paused requests, and a small HTTP context per request.
//!
//! Envoy runs one VM per worker thread plus one on the main thread, each with its own root
//! context. Only one of them long-polls the control plane: the holder of the poller lease in
//! shared data (claimed with compare-and-swap, renewed on every poll). It publishes each set it
//! receives to shared data; every VM checks an 8-byte sequence number there per request and
//! compiles a newer set for itself, so requests never see a half-applied set.

use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::{OnceCell, RefCell};
use core::time::Duration;

use boifi_core::compiled::{CompiledPolicySet, RequestView};
use boifi_core::identity::Identity;
use boifi_core::rng::splitmix64;
use boifi_core::wire::PluginConfig;
use boifi_engine::metrics::{self, Counter, Counters, Gauge, PolicyCounter};
use boifi_engine::reply::LocalReply;
use boifi_engine::sync::{self, ConfigSync, Next, PollOutcome};
use boifi_engine::{Engine, Release, Verdict};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, MetricType};

use crate::props;
use crate::shared::{self, Lease, LeaseView, Published, SharedKeys};

/// How often the poller renews its lease, also while a long-poll is in flight.
const LEASE_RENEW_MS: u64 = 5_000;
/// A lease not renewed for this long is stale: its VM is gone (Envoy destroys VMs without
/// `on_done`, e.g. the one it configures first on the main thread), so another may claim it.
const LEASE_STALE_MS: u64 = 3 * LEASE_RENEW_MS;
/// How often a VM that does not poll checks, on requests, that the poller is still alive.
const LEASE_CHECK_MS: u64 = LEASE_RENEW_MS;

/// Registers the root context factory (called from `_initialize`).
pub fn install() {
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(FilterRoot::new(context_id))
    });
}

fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn now_nanos() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn log_level(name: &str) -> LogLevel {
    match name {
        "error" => LogLevel::Error,
        "warn" => LogLevel::Warn,
        "debug" => LogLevel::Debug,
        "trace" => LogLevel::Trace,
        _ => LogLevel::Info,
    }
}

/// The engine's counters as Envoy metrics: ids by [`Counter`] and [`Gauge`] (`None` when the
/// host refused to define one: counting is then skipped), and the per-policy counters, defined
/// on first use. Their names embed the policy (`hfi.policy.<name>.aborts_total`); a
/// `stats_tags` rule in the bootstrap turns that part into a `policy` tag (see
/// [`metrics::POLICY_TAG_REGEX`]).
#[derive(Debug, Default)]
struct HostCounters {
    counters: [Option<u32>; Counter::ALL.len()],
    gauges: [Option<u32>; Gauge::ALL.len()],
    policies: Vec<(String, Option<u32>, Option<u32>)>,
}

/// Policies whose counters a VM keeps at most (names come from the control plane).
const MAX_POLICY_METRICS: usize = 256;

impl HostCounters {
    fn define() -> HostCounters {
        let define = |kind, name| hostcalls::define_metric(kind, name).ok();
        HostCounters {
            counters: Counter::ALL.map(|c| define(MetricType::Counter, c.name())),
            gauges: Gauge::ALL.map(|g| define(MetricType::Gauge, g.name())),
            policies: Vec::new(),
        }
    }

    fn increment(id: Option<u32>, by: u64) {
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
        }
    }
}

impl Counters for HostCounters {
    fn add(&mut self, counter: Counter, by: u64) {
        HostCounters::increment(self.counters.get(counter as usize).copied().flatten(), by);
    }

    fn set(&mut self, gauge: Gauge, value: u64) {
        if let Some(id) = self.gauges.get(gauge as usize).copied().flatten() {
            let _ = hostcalls::record_metric(id, value);
        }
    }

    fn add_policy(&mut self, policy: &str, counter: PolicyCounter) {
        let index = match self.policies.iter().position(|(n, _, _)| n == policy) {
            Some(i) => i,
            None if self.policies.len() < MAX_POLICY_METRICS => {
                let define = |kind: PolicyCounter| {
                    let name = metrics::policy_metric(policy, kind.kind());
                    hostcalls::define_metric(MetricType::Counter, &name).ok()
                };
                self.policies.push((
                    policy.to_owned(),
                    define(PolicyCounter::Aborts),
                    define(PolicyCounter::Delays),
                ));
                self.policies.len() - 1
            }
            None => return,
        };
        if let Some((_, aborts, delays)) = self.policies.get(index) {
            let id = match counter {
                PolicyCounter::Aborts => *aborts,
                PolicyCounter::Delays => *delays,
            };
            HostCounters::increment(id, 1);
        }
    }
}

/// The state one root context shares with its HTTP contexts (same VM, same thread).
#[derive(Debug)]
struct VmState {
    /// `None` until configured, and when the configuration was bad: then pass through.
    config: Option<PluginConfig>,
    /// This plugin's shared-data keys.
    keys: SharedKeys,
    /// Where the identity came from (for the log).
    identity_source: &'static str,
    /// The policy set, the decision and the paused requests.
    engine: Engine,
    counters: HostCounters,
    /// Current tick period (0: no tick).
    tick_ms: u64,
    lease_checked_ms: u64,
    /// An HTTP context found the poller lease vacant: the root should claim it.
    wants_poll: bool,
}

type Shared = Rc<RefCell<VmState>>;

impl VmState {
    /// Adopts a newer set another VM published; per request, so it must stay cheap: one
    /// 8-byte shared-data read when nothing changed.
    fn refresh(&mut self, now_ms: u64) {
        let Ok((Some(seq_bytes), _)) = hostcalls::get_shared_data(&self.keys.seq) else {
            return;
        };
        match shared::decode_seq(&seq_bytes) {
            Some(seq) if seq != self.engine.seq() => {}
            _ => return,
        }
        let Ok((Some(bytes), _)) = hostcalls::get_shared_data(&self.keys.policies) else {
            return;
        };
        let Some(published) = Published::decode(&bytes) else {
            return;
        };
        match self.engine.adopt(published.seq, &published.body, now_ms) {
            Ok(adopted) => log::debug!(
                "boifi: adopted config version {} ({} policies for this sidecar)",
                adopted.version,
                adopted.policies
            ),
            Err(e) => log::warn!("boifi: keeping the previous policies: {e}"),
        }
    }

    /// Sets the root context's tick period (a no-op when unchanged).
    fn set_tick(&mut self, ms: u64) {
        if self.tick_ms != ms {
            let period = Duration::from_millis(ms.min(u64::from(u32::MAX)));
            if hostcalls::set_tick_period(period).is_ok() {
                self.tick_ms = ms;
            }
        }
    }
}

/// Envoy's shared data (per `vm_id`) through the host calls.
#[derive(Debug)]
struct HostSharedData;

impl shared::CasStore for HostSharedData {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        hostcalls::set_shared_data(key, Some(value), cas).is_ok()
    }
}

/// Logs a failed config request once per episode: the first failure after an answer at warn,
/// the rest at debug, so an unreachable or misbehaving control plane never floods the log.
fn log_poll_failure(failures: u32, cause: &dyn core::fmt::Display, retry_in_ms: u64) {
    if failures <= 1 {
        log::warn!(
            "boifi: {cause}; keeping the current policies and retrying with backoff (further failures are logged at debug level until the control plane answers)"
        );
    } else {
        log::debug!(
            "boifi: {cause}; keeping the current policies, retry #{failures} in {retry_in_ms} ms"
        );
    }
}

impl Poller {
    /// Records a usable answer, and logs the end of a failure episode once.
    fn succeeded(&mut self, version: Option<u64>, now_ms: u64) -> Next {
        let failures = self.sync.failures();
        if failures > 0 {
            log::info!("boifi: the control plane answers again after {failures} failed attempts");
        }
        self.sync.succeeded(version, now_ms)
    }
}

/// The poller's in-flight state (only on the root context holding the lease).
#[derive(Debug)]
struct Poller {
    sync: ConfigSync,
    in_flight: Option<u32>,
    /// Poll when the host clock reaches this.
    next_at: Option<u64>,
    /// When the lease was last renewed.
    renewed_ms: u64,
}

/// The root context: configuration, identity, the policy set, paused requests, and (for the
/// lease holder) the long-poll loop.
#[derive(Debug)]
pub struct FilterRoot {
    context_id: u32,
    /// Random, non-zero: this root context's name in the poller lease.
    lease_id: u64,
    /// This plugin's shared-data keys (set in `on_configure`).
    keys: SharedKeys,
    vm: Shared,
    poller: Option<Poller>,
}

impl FilterRoot {
    fn new(context_id: u32) -> FilterRoot {
        let seed = splitmix64(now_nanos()) ^ u64::from(context_id);
        let mut engine = Engine::new(Identity::default(), &PluginConfig::default(), seed);
        let lease_id = engine.draw() | 1;
        FilterRoot {
            context_id,
            lease_id,
            keys: SharedKeys::for_plugin(""),
            vm: Rc::new(RefCell::new(VmState {
                config: None,
                keys: SharedKeys::for_plugin(""),
                identity_source: "not configured",
                engine,
                counters: HostCounters::default(),
                tick_ms: 0,
                lease_checked_ms: 0,
                wants_poll: false,
            })),
            poller: None,
        }
    }

    fn resolve_identity(&self, config: &PluginConfig) -> (Identity, &'static str) {
        let (metadata, prefix) = props::node_metadata(|path: &[&str]| {
            hostcalls::get_property(path.to_vec()).ok().flatten()
        });
        let source = match prefix {
            Some(p) if p.first() == Some(&"xds") => "xds.node.metadata",
            Some(_) => "node.metadata",
            None => "no node metadata",
        };
        (config.identity.apply(Identity::resolve(&metadata)), source)
    }

    /// Claims or renews the poller lease; false when another root context holds it.
    fn renew_lease(&self, now_ms: u64, stale_after_ms: u64) -> bool {
        shared::renew_lease(
            &HostSharedData,
            &self.keys.lease,
            self.lease_id,
            now_ms,
            stale_after_ms,
        )
    }

    fn release_lease(&self) {
        shared::release_lease(&HostSharedData, &self.keys.lease, self.lease_id);
    }

    /// Becomes the poller if the lease is free, and polls at once.
    fn try_become_poller(&mut self, now_ms: u64) {
        let (config, identity, version, source) = {
            let Ok(vm) = self.vm.try_borrow() else { return };
            let Some(config) = vm.config.clone() else {
                return;
            };
            (
                config,
                vm.engine.identity().clone(),
                vm.engine.version(),
                vm.identity_source,
            )
        };
        if self.poller.is_some() || !self.renew_lease(now_ms, LEASE_STALE_MS) {
            return;
        }
        if identity.is_partial() {
            log::warn!(
                "boifi: partial identity {identity} ({source}): only wildcard policies apply"
            );
        } else {
            log::info!("boifi: identity {identity} ({source})");
        }
        let mut sync = ConfigSync::new(identity.clone(), &config);
        if let Some(v) = version {
            sync.set_version(v);
        }
        log::info!(
            "boifi: polling {} for {identity} (version held: {})",
            config.control_plane_cluster,
            version.map_or_else(|| String::from("none"), |v| v.to_string())
        );
        self.poller = Some(Poller {
            sync,
            in_flight: None,
            next_at: None,
            renewed_ms: now_ms,
        });
        self.poll(now_ms);
    }

    /// Sends the next config request (the lease is renewed first; lost lease: stop polling).
    fn poll(&mut self, now_ms: u64) {
        let Some((config, stale)) = self
            .vm
            .try_borrow()
            .ok()
            .and_then(|vm| Some((vm.config.clone()?, LEASE_STALE_MS)))
        else {
            return;
        };
        if !self.renew_lease(now_ms, stale) {
            log::info!("boifi: another Wasm VM polls the control plane now; this one stops");
            self.poller = None;
            return;
        }
        let Some(poller) = self.poller.as_mut() else {
            return;
        };
        poller.renewed_ms = now_ms;
        let path = poller.sync.request_path();
        let headers = vec![
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", config.control_plane_authority.as_str()),
            ("accept", "application/json"),
            ("user-agent", "boifi-wasm"),
        ];
        let timeout = Duration::from_millis(config.request_timeout_ms);
        match hostcalls::dispatch_http_call(
            &config.control_plane_cluster,
            headers,
            None,
            Vec::new(),
            timeout,
        ) {
            Ok(token) => {
                log::debug!("boifi: config request {token}: {path}");
                poller.in_flight = Some(token);
                poller.next_at = None;
            }
            Err(status) => {
                let draw = self.draw();
                self.count(Counter::PollFailures);
                if let Some(p) = self.poller.as_mut() {
                    p.in_flight = None;
                    if let Next::RetryAt(t) = p.sync.failed(now_ms, draw) {
                        p.next_at = Some(t);
                        let cause = format!(
                            "cannot call cluster `{}` ({status:?})",
                            config.control_plane_cluster
                        );
                        log_poll_failure(p.sync.failures(), &cause, t.saturating_sub(now_ms));
                    }
                }
            }
        }
    }

    fn draw(&self) -> u64 {
        self.vm
            .try_borrow_mut()
            .map_or(now_nanos(), |mut vm| vm.engine.draw())
    }

    fn count(&self, counter: Counter) {
        if let Ok(mut vm) = self.vm.try_borrow_mut() {
            vm.counters.add(counter, 1);
        }
    }

    /// Publishes a received body to the other VMs and installs it here.
    fn apply(&mut self, version: u64, set: CompiledPolicySet, body: Vec<u8>, now_ms: u64) {
        let previous = hostcalls::get_shared_data(&self.keys.seq)
            .ok()
            .and_then(|(b, _)| b)
            .and_then(|b| shared::decode_seq(&b))
            .unwrap_or(0);
        let seq = previous.wrapping_add(1).max(1);
        let published = Published { seq, version, body };
        let _ = hostcalls::set_shared_data(&self.keys.policies, Some(&published.encode()), None);
        let _ = hostcalls::set_shared_data(&self.keys.seq, Some(&seq.to_le_bytes()), None);
        let names = set.policy_names().join(", ");
        let count = set.policy_names().len();
        if let Ok(mut vm) = self.vm.try_borrow_mut() {
            let vm = &mut *vm;
            vm.engine.install(seq, version, Arc::new(set));
            vm.counters.add(Counter::ConfigUpdates, 1);
            vm.engine.report_gauges(now_ms, &mut vm.counters);
        }
        log::info!(
            "boifi: applied config version {version}: {count} policies for this sidecar [{names}]"
        );
    }

    /// Recomputes the tick: the delay tick while requests are paused, else until the next
    /// poll, else none (an idle filter costs nothing).
    fn rearm(&mut self, now_ms: u64) {
        let next_poll = self.poller.as_ref().map(|p| {
            let renew = p.renewed_ms.saturating_add(LEASE_RENEW_MS);
            p.next_at.map_or(renew, |t| t.min(renew))
        });
        let Ok(mut vm) = self.vm.try_borrow_mut() else {
            return;
        };
        let delay_tick = vm.config.as_ref().map_or(5, |c| c.delay_tick_ms).max(1);
        let want_poll = vm.wants_poll;
        let ms = if vm.engine.held() > 0 {
            delay_tick
        } else if want_poll {
            1
        } else if let Some(t) = next_poll {
            t.saturating_sub(now_ms).max(1)
        } else {
            0
        };
        vm.set_tick(ms);
    }

    /// Releases the paused requests whose delay is over.
    fn release_due(&mut self, now_ms: u64) {
        let due = match self.vm.try_borrow_mut() {
            Ok(mut vm) => {
                let vm = &mut *vm;
                vm.engine.release_due(now_ms, &mut vm.counters)
            }
            Err(_) => return,
        };
        if due.is_empty() {
            return;
        }
        for p in due {
            // The stream may be gone (client hung up): then there is nothing to do.
            let Ok(context_id) = u32::try_from(p.stream) else {
                continue;
            };
            if hostcalls::set_effective_context(context_id).is_err() {
                continue;
            }
            match p.then {
                Release::Resume => {
                    let _ = hostcalls::resume_http_request();
                }
                Release::Reply(reply) => send_reply(&reply),
            }
        }
        let _ = hostcalls::set_effective_context(self.context_id);
    }
}

fn send_reply(r: &LocalReply) {
    let headers: Vec<(&str, &str)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let body = (!r.body.is_empty()).then_some(r.body.as_slice());
    let _ = hostcalls::send_http_response(r.status, headers, body);
}

impl Context for FilterRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let now = now_ms();
        let Some(poller) = self.poller.as_mut() else {
            return;
        };
        if poller.in_flight != Some(token_id) {
            return;
        }
        poller.in_flight = None;
        // A failed call (reset, timeout, truncated body) arrives with no headers: Envoy then
        // answers a header lookup with BadArgument, on which the SDK panics (a dead VM).
        let status = (num_headers > 0)
            .then(|| self.get_http_call_response_header_bytes(":status"))
            .flatten();
        let body = (num_headers > 0 && body_size > 0)
            .then(|| self.get_http_call_response_body(0, body_size))
            .flatten();
        let identity = self
            .vm
            .try_borrow()
            .map(|vm| vm.engine.identity().clone())
            .unwrap_or_default();
        let next = match sync::classify(status.as_deref(), body.as_deref()) {
            Ok(PollOutcome::Updated { response }) => {
                match sync::compile_response(&response, &identity, now) {
                    Ok((version, set)) => {
                        self.apply(version, set, body.unwrap_or_default(), now);
                        self.poller
                            .as_mut()
                            .map(|p| p.succeeded(Some(version), now))
                    }
                    Err(e) => {
                        // Valid JSON we cannot use: count it, keep the old set, and wait for
                        // the next version instead of asking again at once.
                        self.count(Counter::ConfigErrors);
                        log::warn!("boifi: keeping the previous policies: {e}");
                        self.poller
                            .as_mut()
                            .map(|p| p.succeeded(Some(response.version), now))
                    }
                }
            }
            Ok(PollOutcome::Unchanged) => self.poller.as_mut().map(|p| p.succeeded(None, now)),
            Err(e) => {
                if matches!(e, sync::SyncError::Body(_)) {
                    self.count(Counter::ConfigErrors);
                }
                self.count(Counter::PollFailures);
                let draw = self.draw();
                self.poller.as_mut().map(|p| {
                    let next = p.sync.failed(now, draw);
                    if let Next::RetryAt(t) = next {
                        log_poll_failure(p.sync.failures(), &e, t.saturating_sub(now));
                    }
                    next
                })
            }
        };
        match next {
            Some(Next::PollNow) => self.poll(now),
            Some(Next::RetryAt(t)) => {
                if let Some(p) = self.poller.as_mut() {
                    p.next_at = Some(t);
                }
            }
            None => {}
        }
        self.rearm(now);
    }

    fn on_done(&mut self) -> bool {
        log::debug!("boifi: root context {} done", self.context_id);
        self.release_lease();
        true
    }
}

impl RootContext for FilterRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        let config = match PluginConfig::from_json(&raw) {
            Ok(c) => c,
            Err(e) => {
                // Never fail on_configure: a bad config must not take traffic down.
                log::error!("boifi: {e}; the filter passes all traffic through");
                if let Ok(mut vm) = self.vm.try_borrow_mut() {
                    vm.config = None;
                }
                if self.poller.take().is_some() {
                    self.release_lease();
                }
                return true;
            }
        };
        proxy_wasm::set_log_level(log_level(&config.log_level));
        // hostcalls, not the trait's `get_property`, which panics on a serialization failure.
        let plugin = hostcalls::get_property(vec!["plugin_name"])
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        if self.poller.take().is_some() {
            self.release_lease();
        }
        self.keys = SharedKeys::for_plugin(&plugin);
        let (identity, source) = self.resolve_identity(&config);
        let now = now_ms();
        if let Ok(mut vm) = self.vm.try_borrow_mut() {
            vm.counters = HostCounters::define();
            vm.keys = self.keys.clone();
            vm.engine.reconfigure(identity, &config);
            vm.identity_source = source;
            vm.config = Some(config);
            vm.refresh(now);
            // Claim the poller lease on the first tick, not here: Envoy configures a
            // throw-away VM on the main thread first and destroys it without `on_done`.
            vm.wants_poll = true;
        }
        self.rearm(now);
        true
    }

    fn on_tick(&mut self) {
        let now = now_ms();
        log::trace!("boifi: tick on root context {}", self.context_id);
        self.release_due(now);
        let wants = self
            .vm
            .try_borrow_mut()
            .map(|mut vm| core::mem::take(&mut vm.wants_poll))
            .unwrap_or(false);
        if wants {
            self.try_become_poller(now);
        }
        let due = self
            .poller
            .as_ref()
            .is_some_and(|p| p.in_flight.is_none() && p.next_at.is_some_and(|t| t <= now));
        let renew = self
            .poller
            .as_ref()
            .is_some_and(|p| now.saturating_sub(p.renewed_ms) >= LEASE_RENEW_MS);
        if due {
            self.poll(now);
        } else if renew {
            if self.renew_lease(now, LEASE_STALE_MS) {
                if let Some(p) = self.poller.as_mut() {
                    p.renewed_ms = now;
                }
            } else {
                log::info!("boifi: another Wasm VM polls the control plane now; this one stops");
                self.poller = None;
            }
        }
        if self.poller.is_some() {
            // Policies expire without a new version: keep the gauge true between updates.
            if let Ok(mut vm) = self.vm.try_borrow_mut() {
                let vm = &mut *vm;
                vm.engine.report_gauges(now, &mut vm.counters);
            }
        }
        self.rearm(now);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(FaultHttp {
            context_id,
            vm: Rc::clone(&self.vm),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Per request: decide, then pass, abort, or pause until the root's tick.
#[derive(Debug)]
pub struct FaultHttp {
    context_id: u32,
    vm: Shared,
}

/// The request as the engine sees it: the request header map is read from the host in one
/// call, and only when a rule gets to test the request (one host call and one allocation
/// callback into the VM, instead of one host call per header, each value found a second one).
struct HostRequest {
    headers: OnceCell<Vec<(String, Vec<u8>)>>,
}

impl HostRequest {
    fn new() -> HostRequest {
        HostRequest {
            headers: OnceCell::new(),
        }
    }

    fn get(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .get_or_init(|| {
                hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default()
            })
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

impl RequestView for HostRequest {
    fn method(&self) -> &[u8] {
        self.get(":method").unwrap_or_default()
    }

    fn path(&self) -> &[u8] {
        self.get(":path").unwrap_or_default()
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        self.get(name)
    }
}

impl Context for FaultHttp {}

impl HttpContext for FaultHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let now = now_ms();
        let verdict = {
            let Ok(mut vm) = self.vm.try_borrow_mut() else {
                return Action::Continue;
            };
            let Some(delay_tick) = vm.config.as_ref().map(|c| c.delay_tick_ms) else {
                return Action::Continue;
            };
            // Every request looks for a newer set (8 bytes of shared data): once one worker
            // answers from a new set, every worker does.
            vm.refresh(now);
            if now.saturating_sub(vm.lease_checked_ms) >= LEASE_CHECK_MS {
                vm.lease_checked_ms = now;
                let current = hostcalls::get_shared_data(&vm.keys.lease)
                    .ok()
                    .and_then(|(b, _)| b)
                    .and_then(|b| Lease::decode(&b));
                if Lease::view(current, 0, now, LEASE_STALE_MS) == LeaseView::Vacant {
                    vm.wants_poll = true;
                    vm.set_tick(1);
                }
            }
            if vm.engine.is_idle() {
                return Action::Continue;
            }
            let vm = &mut *vm;
            let request = HostRequest::new();
            let verdict =
                vm.engine
                    .on_request(u64::from(self.context_id), &request, now, &mut vm.counters);
            if let Verdict::Hold { .. } = verdict {
                let tick = delay_tick.max(1);
                if vm.tick_ms == 0 || vm.tick_ms > tick {
                    vm.set_tick(tick);
                }
            }
            verdict
        };
        match verdict {
            Verdict::Continue => Action::Continue,
            Verdict::Reply(reply) => {
                // Sent with the VM state released: the host may call back into the VM.
                send_reply(&reply);
                Action::Pause
            }
            Verdict::Hold { due_ms } => {
                log::debug!("boifi: request {} held until {due_ms}", self.context_id);
                Action::Pause
            }
        }
    }
}

impl Drop for FaultHttp {
    fn drop(&mut self) {
        if let Ok(mut vm) = self.vm.try_borrow_mut() {
            vm.engine.forget(u64::from(self.context_id));
        }
    }
}
