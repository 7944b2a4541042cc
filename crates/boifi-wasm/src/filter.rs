//! The proxy-wasm glue, written against the safe [`Host`] trait: a root context per plugin
//! and Wasm VM that owns the configuration and the [`Engine`], and nothing per request.
//!
//! Envoy runs one VM per worker thread plus one on the main thread, each with its own root
//! context. Only one of them long-polls the control plane: the holder of the poller lease in
//! shared data (claimed with compare-and-swap, renewed on every poll). It hands each answer to
//! the engine ([`ConfigSync::on_answer`], the same interpretation the native module runs) and
//! does what the returned [`Step`] says; a set to install it also publishes to shared data.
//! Every other VM looks at an 8-byte sequence number there on its root context's tick (every
//! [`REFRESH_MS`]) and compiles a newer set for itself, so requests never see a half-applied
//! set and the request path reads no shared data.
//!
//! The request path, when no policy concerns this sidecar: no host call at all. With policies:
//! the request header map (one call, bytes) only when a rule tests it, and the host's clock only
//! when the decision needs the time (a window, an expiry, a delay).

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::OnceCell;

use boifi_core::compiled::{RequestView, EVALUATED_HEADER, PEER_PRINCIPAL_FILTER_STATE};
use boifi_core::destination::DestinationSource;
use boifi_core::identity::Identity;
use boifi_core::policy::FaultTarget;
use boifi_core::rng::splitmix64;
use boifi_core::text::{concat, decimal};
use boifi_core::wire::{compact, PluginConfig};
use boifi_engine::metrics::{Counter, Counters, Gauge, PolicyCounter};
use boifi_engine::reply::LocalReply;
use boifi_engine::sync::{ConfigSync, Install, LogLevel, Next, Step};
use boifi_engine::table::Table;
use boifi_engine::{Engine, Release, Released, Verdict};

use crate::host::{Host, HttpCall, Level, MetricKind};
use crate::props::{self, Pairs};
use crate::shared::{self, Lease, LeaseView, Published, SharedKeys};

/// How often the poller renews its lease, also while a long-poll is in flight.
const LEASE_RENEW_MS: u64 = 5_000;
/// A lease not renewed for this long is stale: its VM is gone (Envoy destroys VMs without
/// `on_done`, e.g. the one it configures first on the main thread), so another may claim it.
const LEASE_STALE_MS: u64 = 3 * LEASE_RENEW_MS;
/// How often a VM that does not poll checks that the poller is still alive.
const LEASE_CHECK_MS: u64 = LEASE_RENEW_MS;
/// How often a VM looks for a newer policy set another VM published, on its root context's
/// tick: a new set reaches every worker within this (the propagation budget is 250 ms at p99),
/// and the request path never reads shared data.
pub const REFRESH_MS: u64 = 25;
/// How long after publishing a set the poller waits before its gauges (`hfi.config.version`,
/// active policies) show it: the other VMs adopt on their tick, so the gauge only claims a
/// version once every worker has had three refresh ticks to serve it. Without this the gauge
/// ran up to one tick ahead of what the request path decided (the mesh e2e tests caught it).
const GAUGE_GRACE_MS: u64 = 3 * REFRESH_MS;

/// What the host does with a request after `on_request_headers` (proxy-wasm `Action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Go on with the request.
    Continue = 0,
    /// Stop here (answered locally, or held by a delay).
    Pause = 1,
}

fn ms(nanos: u64) -> u64 {
    nanos / 1_000_000
}

/// The engine's counters as Envoy metrics: ids by [`Counter`] and [`Gauge`] (`None` when the
/// host refused to define one: counting is then skipped), and the per-policy counters, defined
/// on first use. proxy-wasm cannot tag a metric, so their names embed the policy
/// ([`PolicyCounter::name_with_policy`]); a `stats_tags` rule in the bootstrap turns that part
/// into the `policy` tag (see [`boifi_engine::metrics::POLICY_TAG_REGEX`]).
#[derive(Debug, Default)]
struct MetricIds {
    counters: [Option<u32>; Counter::ALL.len()],
    gauges: [Option<u32>; Gauge::ALL.len()],
    policies: Vec<(String, [Option<u32>; PolicyCounter::ALL.len()])>,
}

/// Policies whose counters a VM keeps at most (names come from the control plane).
const MAX_POLICY_METRICS: usize = 256;

impl MetricIds {
    fn define(host: &impl Host) -> MetricIds {
        let mut ids = MetricIds::default();
        for (id, counter) in ids.counters.iter_mut().zip(Counter::ALL) {
            *id = host.define_metric(MetricKind::Counter, counter.name());
        }
        for (id, gauge) in ids.gauges.iter_mut().zip(Gauge::ALL) {
            *id = host.define_metric(MetricKind::Gauge, gauge.name());
        }
        ids
    }
}

/// [`Counters`] over the host's metrics.
struct HostCounters<'a, H> {
    ids: &'a mut MetricIds,
    host: &'a H,
}

impl<H: Host> HostCounters<'_, H> {
    fn increment(&self, id: Option<u32>, by: u64) {
        if let Some(id) = id {
            self.host
                .increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
        }
    }
}

impl<H: Host> Counters for HostCounters<'_, H> {
    fn add(&mut self, counter: Counter, by: u64) {
        self.increment(
            self.ids.counters.get(counter as usize).copied().flatten(),
            by,
        );
    }

    fn set(&mut self, gauge: Gauge, value: u64) {
        if let Some(id) = self.ids.gauges.get(gauge as usize).copied().flatten() {
            self.host.record_metric(id, value);
        }
    }

    fn add_policy(&mut self, policy: &str, counter: PolicyCounter) {
        let index = match self.ids.policies.iter().position(|(n, _)| n == policy) {
            Some(i) => i,
            None if self.ids.policies.len() < MAX_POLICY_METRICS => {
                let mut ids = [None; PolicyCounter::ALL.len()];
                for (id, counter) in ids.iter_mut().zip(PolicyCounter::ALL) {
                    let name = counter.name_with_policy(policy);
                    *id = self.host.define_metric(MetricKind::Counter, &name);
                }
                self.ids.policies.push((policy.to_owned(), ids));
                self.ids.policies.len() - 1
            }
            None => return,
        };
        if let Some((_, ids)) = self.ids.policies.get(index) {
            self.increment(ids.get(counter as usize).copied().flatten(), 1);
        }
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

/// Envoy's shared data through the host.
struct HostSharedData<'a, H>(&'a H);

impl<H: Host> shared::CasStore for HostSharedData<'_, H> {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.0.shared_get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        self.0.shared_set(key, value, cas)
    }
}

/// One plugin's root context in this VM: configuration, identity, the engine, and (for the
/// lease holder) the long-poll loop.
#[derive(Debug)]
struct Root {
    context_id: u32,
    /// Random, non-zero: this root context's name in the poller lease.
    lease_id: u64,
    /// `None` until configured, and when the configuration was bad: then pass through.
    config: Option<PluginConfig>,
    level: Level,
    keys: SharedKeys,
    /// Where the identity came from (for the log).
    identity_source: &'static str,
    engine: Engine,
    metrics: MetricIds,
    /// Current tick period (0: no tick).
    tick_ms: u32,
    refreshed_ms: u64,
    /// The poller reports its gauges from this host time on ([`GAUGE_GRACE_MS`]).
    gauges_from_ms: u64,
    lease_checked_ms: u64,
    /// The poller lease looked vacant: claim it on the next tick.
    wants_poll: bool,
    poller: Option<Poller>,
}

/// The request as the engine sees it: the header map is read from the host in one call, only
/// when a rule tests the request, and searched as bytes (a name or value that is not UTF-8 is
/// just bytes that match nothing they should not). Reading only the names the rules use, one
/// `proxy_get_header_map_value` each, was measured against this (`boifi-bench dataplane`, 10
/// dormant policies): the same throughput, p99 and CPU within noise, in a larger module.
struct HostRequest<'h, H> {
    host: &'h H,
    headers: OnceCell<Vec<u8>>,
    /// The caller's certificate URI SAN, read only when a `source` rule asks for it.
    peer_uri_san: OnceCell<Option<Vec<u8>>>,
    /// The caller's SPIFFE ID from Istio's filter state (a shared proxy), read the same way.
    peer_principal: OnceCell<Option<Vec<u8>>>,
    /// The destination's name (a shared proxy), read at most once.
    destination: OnceCell<Option<Vec<u8>>>,
}

/// The first URI SAN of the downstream peer certificate (Envoy attribute
/// `connection.uri_san_peer_certificate`). Envoy returns NotFound on plaintext and, depending
/// on its version, NotFound or SerializationFailure when the certificate has no URI SAN; the
/// host layer makes every such status `None`, which the core treats as an unknown caller.
const PEER_URI_SAN: &[&str] = &["connection", "uri_san_peer_certificate"];

/// Istio's filter state of the caller's SPIFFE ID in a waypoint (verified with Envoy 1.40:
/// `docs/design/ambient.md` §4).
const PEER_PRINCIPAL: &[&str] = &["filter_state", PEER_PRINCIPAL_FILTER_STATE];

/// The property that names a request's destination in a shared proxy (`docs/design/ambient.md`
/// §1).
fn destination_property(source: DestinationSource) -> &'static [&'static str] {
    match source {
        DestinationSource::FilterChainName => &["xds", "filter_chain_name"],
        DestinationSource::ClusterName => &["xds", "cluster_name"],
    }
}

impl<'h, H> HostRequest<'h, H> {
    fn new(host: &'h H) -> HostRequest<'h, H> {
        HostRequest {
            host,
            headers: OnceCell::new(),
            peer_uri_san: OnceCell::new(),
            peer_principal: OnceCell::new(),
            destination: OnceCell::new(),
        }
    }
}

impl<H: Host> HostRequest<'_, H> {
    fn get(&self, name: &str) -> Option<&[u8]> {
        let map = self
            .headers
            .get_or_init(|| self.host.request_headers().unwrap_or_default());
        Pairs::find(map, name.as_bytes())
    }
}

impl<H: Host> RequestView for HostRequest<'_, H> {
    fn method(&self) -> &[u8] {
        self.get(":method").unwrap_or_default()
    }

    fn path(&self) -> &[u8] {
        self.get(":path").unwrap_or_default()
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        self.get(name)
    }

    fn peer_uri_san(&self) -> Option<&[u8]> {
        self.peer_uri_san
            .get_or_init(|| self.host.property(PEER_URI_SAN))
            .as_deref()
    }

    fn peer_principal(&self) -> Option<&[u8]> {
        self.peer_principal
            .get_or_init(|| self.host.property(PEER_PRINCIPAL))
            .as_deref()
    }

    fn destination(&self, source: DestinationSource) -> Option<&[u8]> {
        self.destination
            .get_or_init(|| self.host.property(destination_property(source)))
            .as_deref()
    }

    fn mark_evaluated(&self, value: &[u8]) {
        self.host.replace_request_header(EVALUATED_HEADER, value);
    }
}

fn send_reply(host: &impl Host, reply: &LocalReply) {
    let headers: Vec<(&[u8], &[u8])> = reply
        .headers
        .iter()
        .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
        .collect();
    host.send_local_reply(reply.status, &headers, &reply.body);
}

impl Root {
    /// Logs what `message` gives, built only when `level` is logged.
    fn log<S: AsRef<str>>(&self, host: &impl Host, level: Level, message: impl FnOnce() -> S) {
        if level >= self.level {
            host.log(level, message().as_ref());
        }
    }

    fn counters<'a, H: Host>(&'a mut self, host: &'a H) -> (&'a mut Engine, HostCounters<'a, H>) {
        (
            &mut self.engine,
            HostCounters {
                ids: &mut self.metrics,
                host,
            },
        )
    }

    /// Adopts a newer set another VM published: one 8-byte shared-data read when nothing
    /// changed.
    fn refresh(&mut self, host: &impl Host, now_ms: u64) {
        self.refreshed_ms = now_ms;
        let (Some(seq_bytes), _) = host.shared_get(&self.keys.seq) else {
            return;
        };
        match shared::decode_seq(&seq_bytes) {
            Some(seq) if seq != self.engine.seq() => {}
            _ => return,
        }
        let (Some(bytes), _) = host.shared_get(&self.keys.policies) else {
            return;
        };
        let Some(published) = Published::decode(&bytes) else {
            return;
        };
        let adopted =
            self.engine
                .adopt_without(published.seq, &published.body, &published.lapsed, now_ms);
        match adopted {
            Ok(adopted) => self.log(host, Level::Debug, || {
                concat(&[
                    "boifi: adopted config version ",
                    &decimal(adopted.version),
                    " (",
                    &decimal(adopted.policies as u64),
                    " policies for this sidecar)",
                ])
            }),
            Err(e) => self.log(host, Level::Warn, || {
                let mut message = String::from("boifi: keeping the previous policies: ");
                e.push_message(&mut message);
                message
            }),
        }
    }

    /// Sets the tick period (a no-op when unchanged).
    fn set_tick(&mut self, host: &impl Host, ms: u64) {
        let ms = u32::try_from(ms).unwrap_or(u32::MAX);
        if self.tick_ms != ms && host.set_tick_period_ms(ms) {
            self.tick_ms = ms;
        }
    }

    /// Recomputes the tick: the delay tick while requests are held, the refresh period, and
    /// the poller's next poll or renewal, whichever comes first.
    fn rearm(&mut self, host: &impl Host, now_ms: u64) {
        let Some(config) = self.config.as_ref() else {
            self.set_tick(host, 0);
            return;
        };
        let mut ms = REFRESH_MS;
        if self.engine.held() > 0 {
            ms = ms.min(config.delay_tick_ms.max(1));
        }
        if self.wants_poll {
            ms = 1;
        }
        if let Some(p) = self.poller.as_ref() {
            let renew = p.renewed_ms.saturating_add(LEASE_RENEW_MS);
            let next = p.next_at.map_or(renew, |t| t.min(renew));
            ms = ms.min(next.saturating_sub(now_ms).max(1));
        }
        self.set_tick(host, ms);
    }

    fn renew_lease(&self, host: &impl Host, now_ms: u64) -> bool {
        let store = HostSharedData(host);
        shared::renew_lease(
            &store,
            &self.keys.lease,
            self.lease_id,
            now_ms,
            LEASE_STALE_MS,
        )
    }

    fn release_lease(&self, host: &impl Host) {
        shared::release_lease(&HostSharedData(host), &self.keys.lease, self.lease_id);
    }

    /// Becomes the poller if the lease is free, and polls at once.
    fn try_become_poller(&mut self, host: &impl Host, now_ms: u64) {
        let Some(config) = self.config.as_ref() else {
            return;
        };
        if self.poller.is_some() || !self.renew_lease(host, now_ms) {
            return;
        }
        let identity = self.engine.identity().clone();
        let version = self.engine.version();
        let described = identity.describe();
        let (level, partial) = if identity.is_partial() {
            (Level::Warn, "partial identity ")
        } else {
            (Level::Info, "identity ")
        };
        self.log(host, level, || {
            let wildcard = if identity.is_partial() {
                ": only wildcard policies apply"
            } else {
                ""
            };
            concat(&[
                "boifi: ",
                partial,
                &described,
                " (",
                self.identity_source,
                ")",
                wildcard,
            ])
        });
        let mut sync = ConfigSync::new(identity, config);
        if let Some(v) = version {
            sync.set_version(v);
        }
        self.log(host, Level::Info, || {
            concat(&[
                "boifi: polling ",
                &config.control_plane_cluster,
                " for ",
                &described,
                " (version held: ",
                &version.map_or_else(|| String::from("none"), decimal),
                ")",
            ])
        });
        self.poller = Some(Poller {
            sync,
            in_flight: None,
            next_at: None,
            renewed_ms: now_ms,
        });
        self.poll(host, now_ms);
    }

    /// Another VM took the lease over: this one stops polling.
    fn stop_polling(&mut self, host: &impl Host) {
        self.log(host, Level::Info, || {
            "boifi: another Wasm VM polls the control plane now; this one stops"
        });
        self.poller = None;
    }

    /// Sends the next config request (the lease is renewed first; lost lease: stop polling).
    fn poll(&mut self, host: &impl Host, now_ms: u64) {
        if !self.renew_lease(host, now_ms) {
            self.stop_polling(host);
            return;
        }
        let (Some(config), Some(poller)) = (self.config.as_ref(), self.poller.as_mut()) else {
            return;
        };
        poller.renewed_ms = now_ms;
        let path = poller.sync.request_path();
        // On the stack: the last header only when a read credential is configured.
        let authorization = poller.sync.authorization();
        let all: [(&[u8], &[u8]); 6] = [
            (b":method", b"GET"),
            (b":path", path.as_bytes()),
            (b":authority", config.control_plane_authority.as_bytes()),
            (b"accept", compact::MEDIA_TYPE.as_bytes()),
            (b"user-agent", b"boifi-wasm"),
            (
                b"authorization",
                authorization.unwrap_or_default().as_bytes(),
            ),
        ];
        let headers = all
            .get(..all.len() - usize::from(authorization.is_none()))
            .unwrap_or_default();
        let timeout = u32::try_from(config.request_timeout_ms).unwrap_or(u32::MAX);
        let call = HttpCall {
            cluster: &config.control_plane_cluster,
            headers,
            timeout_ms: timeout,
        };
        match host.http_call(&call) {
            Ok(token) => {
                poller.in_flight = Some(token);
                poller.next_at = None;
                self.log(host, Level::Debug, || {
                    concat(&[
                        "boifi: config request ",
                        &decimal(u64::from(token)),
                        ": ",
                        &path,
                    ])
                });
            }
            Err(status) => {
                let cause = concat(&[
                    "cannot call cluster `",
                    &config.control_plane_cluster,
                    "` (status ",
                    &decimal(u64::from(status)),
                    ")",
                ]);
                let draw = self.engine.draw();
                if let Some(p) = self.poller.as_mut() {
                    let step = p.sync.on_failed_call(&cause, now_ms, draw);
                    self.take_step(host, step, Vec::new(), now_ms);
                }
            }
        }
    }

    /// Does what the engine made of a config answer: install (and publish `body`, the answer's
    /// bytes, to the other VMs), count, log, and poll again now or arm the retry.
    fn take_step(&mut self, host: &impl Host, step: Step, body: Vec<u8>, now_ms: u64) {
        for line in &step.log {
            let level = match line.level {
                LogLevel::Debug => Level::Debug,
                LogLevel::Info => Level::Info,
                LogLevel::Warn => Level::Warn,
            };
            self.log(host, level, || line.message.as_str());
        }
        if let Some(mut install) = step.install {
            // A set reduced by a lapsed heartbeat (or whole again) is published as the body
            // it was compiled from, with the names left out.
            let body = install.body.take().unwrap_or(body);
            self.install(host, install, body, now_ms);
        }
        if let Some(counter) = step.counter {
            self.counters(host).1.add(counter, 1);
        }
        if step.heartbeat_lapsed {
            self.counters(host).1.add(Counter::HeartbeatLapses, 1);
        }
        match step.next {
            Next::PollNow => self.poll(host, now_ms),
            Next::RetryAt(t) => {
                if let Some(p) = self.poller.as_mut() {
                    p.next_at = Some(t);
                }
            }
        }
    }

    /// Publishes a received body to the other VMs and installs its compiled set here.
    fn install(&mut self, host: &impl Host, install: Install, body: Vec<u8>, now_ms: u64) {
        let previous = host
            .shared_get(&self.keys.seq)
            .0
            .and_then(|b| shared::decode_seq(&b))
            .unwrap_or(0);
        let seq = previous.wrapping_add(1).max(1);
        let Install {
            version,
            set,
            lapsed,
            ..
        } = install;
        let published = Published {
            seq,
            version,
            body,
            lapsed,
        };
        host.shared_set(&self.keys.policies, &published.encode(), None);
        host.shared_set(&self.keys.seq, &seq.to_le_bytes(), None);
        self.engine.install(seq, version, set);
        self.gauges_from_ms = now_ms.saturating_add(GAUGE_GRACE_MS);
    }

    fn on_http_call_response(
        &mut self,
        host: &impl Host,
        token: u32,
        num_headers: usize,
        body_size: usize,
    ) {
        let now = ms(host.now_nanos());
        let draw = self.engine.draw();
        let Some(poller) = self.poller.as_mut() else {
            return;
        };
        if poller.in_flight != Some(token) {
            return;
        }
        poller.in_flight = None;
        // A failed call (reset, timeout, truncated body) arrives with no headers.
        let status = (num_headers > 0)
            .then(|| host.call_response_header(":status"))
            .flatten();
        let body = (num_headers > 0 && body_size > 0)
            .then(|| host.call_response_body(body_size))
            .flatten();
        // What the answer means is the engine's to say; this only does what it says.
        let step = poller
            .sync
            .on_answer(status.as_deref(), body.as_deref(), now, draw);
        self.take_step(host, step, body.unwrap_or_default(), now);
        self.rearm(host, now);
    }

    fn on_configure(&mut self, host: &impl Host) -> bool {
        let raw = host.plugin_configuration().unwrap_or_default();
        if self.poller.take().is_some() {
            self.release_lease(host);
        }
        let config = match PluginConfig::from_json(&raw) {
            Ok(c) => c,
            Err(e) => {
                // Never fail on_configure: a bad config must not take traffic down.
                self.config = None;
                host.log(
                    Level::Error,
                    &concat(&[
                        "boifi: ",
                        &e.message(),
                        "; the filter passes all traffic through",
                    ]),
                );
                self.set_tick(host, 0);
                return true;
            }
        };
        self.level = Level::from_name(&config.log_level);
        let plugin = host
            .property(&["plugin_name"])
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        self.keys = SharedKeys::for_plugin(&plugin);
        let (metadata, prefix) = props::node_metadata(|path: &[&str]| host.property(path));
        self.identity_source = match prefix {
            Some(p) if p.first() == Some(&"xds") => "xds.node.metadata",
            Some(_) => "node.metadata",
            None => "no node metadata",
        };
        let identity = config.identity.apply(Identity::resolve(&metadata));
        let now = ms(host.now_nanos());
        self.metrics = MetricIds::define(host);
        self.engine.reconfigure(identity, &config);
        self.config = Some(config);
        self.refresh(host, now);
        // Claim the poller lease on the first tick, not here: Envoy configures a throw-away
        // VM on the main thread first and destroys it without `on_done`.
        self.wants_poll = true;
        self.rearm(host, now);
        true
    }

    fn on_tick(&mut self, host: &impl Host) {
        let now = ms(host.now_nanos());
        if self.config.is_none() {
            return;
        }
        if self.engine.next_due_ms().is_some_and(|t| t <= now) {
            let (engine, mut counters) = self.counters(host);
            let due = engine.release_due(now, &mut counters);
            release(host, self.context_id, due);
        }
        if now.saturating_sub(self.refreshed_ms) >= REFRESH_MS {
            self.refresh(host, now);
        }
        if self.poller.is_none() && now.saturating_sub(self.lease_checked_ms) >= LEASE_CHECK_MS {
            self.lease_checked_ms = now;
            let current = host
                .shared_get(&self.keys.lease)
                .0
                .and_then(|b| Lease::decode(&b));
            if Lease::view(current, 0, now, LEASE_STALE_MS) == LeaseView::Vacant {
                self.wants_poll = true;
            }
        }
        if core::mem::take(&mut self.wants_poll) {
            self.try_become_poller(host, now);
        }
        let (due, renew) = self.poller.as_ref().map_or((false, false), |p| {
            (
                p.in_flight.is_none() && p.next_at.is_some_and(|t| t <= now),
                now.saturating_sub(p.renewed_ms) >= LEASE_RENEW_MS,
            )
        });
        if due {
            self.poll(host, now);
        } else if renew {
            if self.renew_lease(host, now) {
                if let Some(p) = self.poller.as_mut() {
                    p.renewed_ms = now;
                }
            } else {
                self.stop_polling(host);
            }
        }
        if self.poller.is_some() && now >= self.gauges_from_ms {
            // Policies expire without a new version: keep the gauge true between updates.
            let (engine, mut counters) = self.counters(host);
            engine.report_gauges(now, &mut counters);
        }
        self.rearm(host, now);
    }

    fn on_request_headers(&mut self, host: &impl Host, context_id: u32) -> Action {
        if self.engine.is_idle() {
            return Action::Continue;
        }
        let Some(delay_tick) = self.config.as_ref().map(|c| c.delay_tick_ms) else {
            return Action::Continue;
        };
        let request = HostRequest::new(host);
        let clock = || ms(host.now_nanos());
        let (engine, mut counters) = self.counters(host);
        let verdict = engine.on_request(u64::from(context_id), &request, clock, &mut counters);
        self.act(host, verdict, delay_tick, false)
    }

    /// Does what the engine decided for the request or (`response`) the app's answer of the
    /// current stream.
    fn act(
        &mut self,
        host: &impl Host,
        verdict: Verdict,
        delay_tick: u64,
        response: bool,
    ) -> Action {
        match verdict {
            Verdict::Continue => Action::Continue,
            Verdict::Reply(reply) => {
                send_reply(host, &reply);
                Action::Pause
            }
            Verdict::Hold { .. } => {
                // The tick runs at the delay tick while something is held.
                let tick = delay_tick.max(1);
                if self.tick_ms == 0 || u64::from(self.tick_ms) > tick {
                    self.set_tick(host, tick);
                }
                Action::Pause
            }
            Verdict::Reset => {
                host.reset_stream(response);
                Action::Pause
            }
        }
    }

    /// The app answered the request of `context_id`: applies its response-phase fault, if a
    /// rule fired for it. A response of a request no such rule fired for costs one check.
    fn on_response_headers(&mut self, host: &impl Host, context_id: u32) -> Action {
        if !self.engine.awaits_responses() {
            return Action::Continue;
        }
        let Some(delay_tick) = self.config.as_ref().map(|c| c.delay_tick_ms) else {
            return Action::Continue;
        };
        let clock = || ms(host.now_nanos());
        let (engine, mut counters) = self.counters(host);
        let verdict = engine.on_response(u64::from(context_id), clock, &mut counters);
        self.act(host, verdict, delay_tick, true)
    }
}

/// Acts on the held requests whose delay is over, then makes the root context current again.
fn release(host: &impl Host, root_context_id: u32, due: Vec<Released>) {
    if due.is_empty() {
        return;
    }
    for p in due {
        // The stream may be gone (client hung up): then there is nothing to do.
        let Ok(context_id) = u32::try_from(p.stream) else {
            continue;
        };
        if !host.set_effective_context(context_id) {
            continue;
        }
        let response = p.target == FaultTarget::Response;
        match p.then {
            Release::Resume if response => {
                host.resume_response();
            }
            Release::Resume => {
                host.resume_request();
            }
            Release::Reply(reply) => send_reply(host, &reply),
            Release::Reset => {
                host.reset_stream(response);
            }
        }
    }
    host.set_effective_context(root_context_id);
}

/// The root context a stream belongs to (the only one when there is one, so the common case
/// needs no lookup).
fn root_of<'a>(
    roots: &'a mut [Root],
    streams: &Table<u32>,
    context_id: u32,
) -> Option<&'a mut Root> {
    if roots.len() == 1 {
        return roots.first_mut();
    }
    let parent = streams.get(u64::from(context_id)).copied()?;
    roots.iter_mut().find(|r| r.context_id == parent)
}

/// Every root context of this VM and the streams they serve: what the ABI's callbacks act on.
#[derive(Debug)]
pub struct Filter<H> {
    host: H,
    roots: Vec<Root>,
    /// Which root a stream belongs to, kept only while the VM has more than one root (several
    /// plugins sharing a VM); with one root, a request costs no bookkeeping at all. Keyed by
    /// the stream's context id.
    streams: Table<u32>,
}

impl<H: Host> Filter<H> {
    /// A filter with no contexts yet. `const`: the VM's one filter is a thread-local with a
    /// constant initializer, so no callback checks for and runs a lazy initialization.
    pub const fn new(host: H) -> Filter<H> {
        Filter {
            host,
            roots: Vec::new(),
            streams: Table::new(),
        }
    }

    /// The host.
    pub fn host(&self) -> &H {
        &self.host
    }

    fn root_mut(&mut self, context_id: u32) -> Option<&mut Root> {
        self.roots.iter_mut().find(|r| r.context_id == context_id)
    }

    fn root_of_stream(&mut self, context_id: u32) -> Option<&mut Root> {
        if self.roots.len() == 1 {
            return self.roots.first_mut();
        }
        let root = self.streams.get(u64::from(context_id)).copied()?;
        self.root_mut(root)
    }

    /// `proxy_on_context_create`: a root context (`parent` 0) or a stream of `parent`.
    pub fn on_context_create(&mut self, context_id: u32, parent: u32) {
        if parent != 0 {
            if self.roots.len() > 1 {
                self.streams.insert(u64::from(context_id), parent);
            }
            return;
        }
        if self.root_mut(context_id).is_some() {
            return;
        }
        let seed = splitmix64(self.host.now_nanos()) ^ u64::from(context_id);
        let mut engine = Engine::new(Identity::default(), &PluginConfig::default(), seed);
        let lease_id = engine.draw() | 1;
        self.roots.push(Root {
            context_id,
            lease_id,
            config: None,
            level: Level::Info,
            keys: SharedKeys::for_plugin(""),
            identity_source: "not configured",
            engine,
            metrics: MetricIds::default(),
            tick_ms: 0,
            refreshed_ms: 0,
            gauges_from_ms: 0,
            lease_checked_ms: 0,
            wants_poll: false,
            poller: None,
        });
    }

    /// `proxy_on_configure`: never refuses (a bad configuration passes traffic through).
    pub fn on_configure(&mut self, root_context_id: u32) -> bool {
        let host = &self.host;
        match self
            .roots
            .iter_mut()
            .find(|r| r.context_id == root_context_id)
        {
            Some(root) => root.on_configure(host),
            None => true,
        }
    }

    /// `proxy_on_tick`.
    pub fn on_tick(&mut self, root_context_id: u32) {
        let host = &self.host;
        if let Some(root) = self
            .roots
            .iter_mut()
            .find(|r| r.context_id == root_context_id)
        {
            root.on_tick(host);
        }
    }

    /// `proxy_on_http_call_response`.
    pub fn on_http_call_response(
        &mut self,
        root_context_id: u32,
        token: u32,
        num_headers: usize,
        body_size: usize,
    ) {
        let host = &self.host;
        if let Some(root) = self
            .roots
            .iter_mut()
            .find(|r| r.context_id == root_context_id)
        {
            root.on_http_call_response(host, token, num_headers, body_size);
        }
    }

    /// `proxy_on_request_headers`.
    pub fn on_request_headers(&mut self, context_id: u32) -> Action {
        match root_of(&mut self.roots, &self.streams, context_id) {
            Some(root) => root.on_request_headers(&self.host, context_id),
            None => Action::Continue,
        }
    }

    /// `proxy_on_response_headers`.
    pub fn on_response_headers(&mut self, context_id: u32) -> Action {
        match root_of(&mut self.roots, &self.streams, context_id) {
            Some(root) => root.on_response_headers(&self.host, context_id),
            None => Action::Continue,
        }
    }

    /// `proxy_on_done`: a root context gives up the poller lease.
    pub fn on_done(&mut self, context_id: u32) -> bool {
        let host = &self.host;
        if let Some(root) = self.roots.iter_mut().find(|r| r.context_id == context_id) {
            root.poller = None;
            root.release_lease(host);
        }
        true
    }

    /// `proxy_on_delete`: a stream that ended while held is forgotten; a root is dropped.
    pub fn on_delete(&mut self, context_id: u32) {
        if let Some(root) = self.root_of_stream(context_id) {
            if root.engine.held() > 0 || root.engine.awaits_responses() {
                root.engine.forget(u64::from(context_id));
            }
        }
        if !self.streams.is_empty() {
            self.streams.remove(u64::from(context_id));
        }
        if self.roots.iter().any(|r| r.context_id == context_id) {
            self.roots.retain(|r| r.context_id != context_id);
        }
    }
}

#[cfg(test)]
mod tests;
