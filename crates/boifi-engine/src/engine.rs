//! One filter instance's state: the compiled policy set it answers from, how a newer set is
//! adopted, the per-request decision, and the requests its delays hold.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use boifi_core::compiled::{decide_once, CompiledPolicySet, RequestView};
use boifi_core::destination::Destination;
use boifi_core::identity::Identity;
use boifi_core::policy::FaultTarget;
use boifi_core::rng::XorShift64Star;
use boifi_core::wire::PluginConfig;

use crate::delays::DelayQueue;
use crate::destinations::{DestinationCache, SharedPolicies};
use crate::metrics::{Counter, Counters, Gauge, PolicyCounter};
use crate::reply::{abort_reply, is_grpc, LocalReply};
use crate::sync::{compile_body, SyncError};
use crate::table::Table;

/// The host's clock (ms), read by [`Engine::on_request`] and [`Engine::on_response`] only when
/// the decision needs the time: a rule with a window or an expiry, a delay to schedule, a
/// shared proxy compiling a destination's set. A proxy-wasm host pays a host call per read, so
/// a set without such rules answers its requests without one. A closure is a clock; so is a
/// `u64` (a time the host already read).
pub trait Clock {
    /// Now, in ms of the host's clock.
    fn now_ms(&self) -> u64;
}

impl<F: Fn() -> u64> Clock for F {
    fn now_ms(&self) -> u64 {
        self()
    }
}

impl Clock for u64 {
    fn now_ms(&self) -> u64 {
        *self
    }
}

/// A clock read at most once per call (the first read is kept).
struct Now<C> {
    clock: C,
    read: core::cell::Cell<Option<u64>>,
}

impl<C: Clock> Now<C> {
    fn new(clock: C) -> Now<C> {
        Now {
            clock,
            read: core::cell::Cell::new(None),
        }
    }

    fn get(&self) -> u64 {
        if let Some(now) = self.read.get() {
            return now;
        }
        let now = self.clock.now_ms();
        self.read.set(Some(now));
        now
    }
}

/// What the host does with a request after [`Engine::on_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it unchanged (no rule fired, or a delay was refused by the cap).
    Continue,
    /// Answer it now with this local reply instead of forwarding it.
    Reply(LocalReply),
    /// Hold it: the engine queued it, and [`Engine::release_due`] hands it back at `due_ms`
    /// (host clock); the host arms a timer for [`Engine::next_due_ms`].
    Hold {
        /// When it is released.
        due_ms: u64,
    },
    /// Reset the stream: the caller gets no HTTP answer, only an upstream reset.
    Reset,
}

/// What to do with a held request once its delay is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// Forward it.
    Resume,
    /// Answer it with this local reply (a delay followed by an abort).
    Reply(LocalReply),
    /// Reset the stream (a delay followed by a reset).
    Reset,
}

/// A held request whose delay is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// The host's stream id given to [`Engine::on_request`].
    pub stream: u64,
    /// What to do with it.
    pub then: Release,
    /// Whether the request or the app's response was held (which of them to resume).
    pub target: FaultTarget,
}

#[derive(Debug, Clone)]
struct Held {
    policy: String,
    then: Release,
    /// Whether the app's response is held (counted as a response fault when released).
    target: FaultTarget,
}

/// A response-phase fault decided when the request passed, applied when the app answers.
#[derive(Debug, Clone)]
struct ResponseFault {
    policy: String,
    wait_ms: u64,
    /// Whether the fault holds the response (a delay, not only a start delay).
    delays: bool,
    then: Release,
}

/// The policies an engine answers from: a sidecar's compiled set, or a shared proxy's policy
/// list, from which each destination's set is compiled on first use. Cheap to clone (an `Arc`),
/// so one compile can serve every instance of a proxy.
#[derive(Debug, Clone)]
pub enum PolicySet {
    /// A sidecar's set, compiled for its own identity.
    Sidecar(Arc<CompiledPolicySet>),
    /// A waypoint's or gateway's policies.
    Shared(Arc<SharedPolicies>),
}

impl Default for PolicySet {
    fn default() -> PolicySet {
        PolicySet::Sidecar(Arc::default())
    }
}

impl PolicySet {
    /// No policy can apply to any request.
    pub fn is_empty(&self) -> bool {
        match self {
            PolicySet::Sidecar(set) => set.is_empty(),
            PolicySet::Shared(policies) => policies.is_empty(),
        }
    }

    /// The rules held, what `PluginConfig::max_rules` bounds: a sidecar's compiled rules, or
    /// every rule of the policies a shared proxy keeps (an upper bound of any destination's set).
    pub fn rule_count(&self) -> usize {
        match self {
            PolicySet::Sidecar(set) => set.rule_count(),
            PolicySet::Shared(policies) => policies.policies().iter().map(|p| p.rules.len()).sum(),
        }
    }

    /// The names of the policies held, in evaluation order for a sidecar.
    pub fn policy_names(&self) -> Vec<String> {
        match self {
            PolicySet::Sidecar(set) => set.policy_names().to_vec(),
            PolicySet::Shared(policies) => {
                policies.policies().iter().map(|p| p.name.clone()).collect()
            }
        }
    }

    /// Policies with a rule that can fire at `now_ms`.
    pub fn active_policy_count(&self, now_ms: u64) -> usize {
        match self {
            PolicySet::Sidecar(set) => set.active_policy_count(now_ms),
            PolicySet::Shared(policies) => policies.active_policy_count(now_ms),
        }
    }
}

/// What [`Engine::adopt`] installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adopted {
    /// The control plane's config version.
    pub version: u64,
    /// Policies of the set that concern this sidecar.
    pub policies: usize,
}

/// The filter engine of one host instance (a Wasm VM, a native worker). Not `Sync`: each
/// instance is driven by one thread; compiled sets can be shared between instances through
/// [`Engine::install`].
#[derive(Debug)]
pub struct Engine {
    identity: Identity,
    seq: u64,
    version: Option<u64>,
    set: PolicySet,
    /// A shared proxy's sets, per destination (empty for a sidecar).
    destinations: DestinationCache,
    rng: XorShift64Star,
    delays: DelayQueue<Held>,
    /// Response-phase faults of requests that passed, by stream, until the app answers or the
    /// stream ends; empty unless a response-phase rule fired, so a response costs one check.
    /// Bounded like the delay queue (`max_active_delays`).
    responses: Table<ResponseFault>,
    max_rules: u64,
}

fn cap_of(config: &PluginConfig) -> usize {
    usize::try_from(config.max_active_delays).unwrap_or(usize::MAX)
}

fn destinations_of(config: &PluginConfig) -> usize {
    usize::try_from(config.max_destinations).unwrap_or(usize::MAX)
}

impl Engine {
    /// An engine for `identity` with the plugin's settings, holding no policies; `seed` seeds
    /// its random draws (the host's clock or entropy).
    pub fn new(identity: Identity, config: &PluginConfig, seed: u64) -> Engine {
        Engine {
            identity,
            seq: 0,
            version: None,
            set: PolicySet::default(),
            destinations: DestinationCache::with_cap(destinations_of(config)),
            rng: XorShift64Star::new(seed),
            delays: DelayQueue::with_cap(cap_of(config)),
            responses: Table::new(),
            max_rules: config.max_rules,
        }
    }

    /// New settings and identity (the host reconfigured the filter). Held requests stay held;
    /// the set is kept until the next [`Engine::adopt`], which compiles for the new identity
    /// (the publication sequence is forgotten so the next publication is adopted).
    pub fn reconfigure(&mut self, identity: Identity, config: &PluginConfig) {
        self.identity = identity;
        self.seq = 0;
        self.delays.set_cap(cap_of(config));
        self.max_rules = config.max_rules;
        self.destinations.reset(destinations_of(config));
    }

    /// The identity policies are compiled for.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The publication sequence number of the set held (0: none yet). A host compares it with
    /// the newest publication and calls [`Engine::adopt`] only when they differ.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The control plane's config version of the set held.
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// The policies held (to share with other instances of the same identity).
    pub fn set(&self) -> &PolicySet {
        &self.set
    }

    /// Destinations whose compiled set a shared proxy holds now.
    pub fn cached_destinations(&self) -> usize {
        self.destinations.len()
    }

    /// Policies with a rule that can fire at `now_ms` (the `hfi.policies.active` gauge).
    pub fn active_policies(&self, now_ms: u64) -> u64 {
        u64::try_from(self.set.active_policy_count(now_ms)).unwrap_or(u64::MAX)
    }

    /// Compiles the `/v1/config` answer `body`, published with sequence number `seq`, and
    /// swaps it in whole. On an error the previous set stays and `seq` is remembered anyway,
    /// so a bad publication is not compiled again on every request.
    pub fn adopt(&mut self, seq: u64, body: &[u8], now_ms: u64) -> Result<Adopted, SyncError> {
        self.adopt_without(seq, body, &[], now_ms)
    }

    /// [`Engine::adopt`], leaving out the policies named in `lapsed` (the publisher stopped
    /// applying them: their heartbeat bound lapsed).
    pub fn adopt_without(
        &mut self,
        seq: u64,
        body: &[u8],
        lapsed: &[String],
        now_ms: u64,
    ) -> Result<Adopted, SyncError> {
        self.seq = seq;
        let (version, set) = compile_body(body, lapsed, &self.identity, now_ms, self.max_rules)?;
        let policies = set.policy_names().len();
        self.install(seq, version, set);
        Ok(Adopted { version, policies })
    }

    /// Installs a set compiled elsewhere (by the poller, or for another instance). A shared
    /// proxy's destination sets were compiled from the previous policies: they are dropped.
    pub fn install(&mut self, seq: u64, version: u64, set: PolicySet) {
        self.seq = seq;
        self.version = Some(version);
        self.set = set;
        let cap = self.destinations_cap();
        self.destinations.reset(cap);
    }

    fn destinations_cap(&self) -> usize {
        self.destinations.cap()
    }

    /// No policy concerns this proxy: every request passes without being looked at.
    pub fn is_idle(&self) -> bool {
        self.set.is_empty()
    }

    /// One random number from the engine's generator (for the host's backoff jitter).
    pub fn draw(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// Decides the fault for one request. `stream` is the host's id for it (used again by
    /// [`Engine::release_due`] and [`Engine::forget`]); `request` is read lazily, only as far
    /// as the rules need (nothing at all when no policy applies); `clock` is read only when the
    /// decision needs the time (see [`Clock`]). Counts into `counters` only when a fault fires
    /// or the delay cap refuses one.
    pub fn on_request<R: RequestView + ?Sized>(
        &mut self,
        stream: u64,
        request: &R,
        clock: impl Clock,
        counters: &mut impl Counters,
    ) -> Verdict {
        let now = Now::new(clock);
        let set: &CompiledPolicySet = match &self.set {
            PolicySet::Sidecar(set) => set,
            PolicySet::Shared(policies) => {
                // The destination is read once, and only in a shared proxy that holds policies.
                let kind = policies.kind();
                let destination = match kind.destination_source() {
                    Some(source) if !policies.is_empty() => request
                        .destination(source)
                        .and_then(|name| Destination::parse(kind, name)),
                    _ => None,
                };
                let Some(destination) = destination else {
                    return Verdict::Continue;
                };
                match self
                    .destinations
                    .set_for(policies, &destination, || now.get(), counters)
                {
                    Some(set) => set,
                    None => return Verdict::Continue,
                }
            }
        };
        if set.is_empty() {
            return Verdict::Continue;
        }
        let draw = self.rng.next_u64();
        // Without a window or an expiry every rule is live at any time: the clock is not read
        // (0 stands for any time).
        let now_ms = if set.has_time_bounds() { now.get() } else { 0 };
        let decided = decide_once(set, request, now_ms, draw);
        let Some(decision) = decided.fault else {
            mark(request, set, decided.evaluated, decided.incoming);
            return Verdict::Continue;
        };
        let wait = decision.total_wait_ms();
        let then = if decision.reset {
            Release::Reset
        } else {
            match decision.abort {
                Some(a) => Release::Reply(abort_reply(
                    decision.policy,
                    a,
                    is_grpc(request.header("content-type")),
                )),
                None => Release::Resume,
            }
        };
        let forwarded =
            decision.target == FaultTarget::Response || wait > 0 || matches!(then, Release::Resume);
        if forwarded {
            mark(request, set, decided.evaluated, decided.incoming);
        }
        if decision.target == FaultTarget::Response {
            // The request goes to the app; the fault waits for its answer. Bounded like held
            // requests: over the cap the request passes unfaulted.
            if self.responses.len() >= self.delays.cap() {
                counters.add(Counter::DelaysOverCap, 1);
                return Verdict::Continue;
            }
            let fault = ResponseFault {
                policy: decision.policy.into(),
                wait_ms: wait,
                delays: decision.delay_ms.is_some(),
                then,
            };
            self.responses.insert(stream, fault);
            return Verdict::Continue;
        }
        if wait == 0 {
            return immediate(decision.policy, then, FaultTarget::Request, counters);
        }
        let held = Held {
            policy: decision.policy.into(),
            then,
            target: FaultTarget::Request,
        };
        hold(
            &mut self.delays,
            stream,
            now.get(),
            wait,
            decision.delay_ms.is_some(),
            held,
            counters,
        )
    }

    /// Whether some request that passed carries a response-phase fault not yet applied. A host
    /// whose response callback costs something checks this first.
    pub fn awaits_responses(&self) -> bool {
        !self.responses.is_empty()
    }

    /// Whether a response-phase fault waits for the answer to the request of `stream`.
    pub fn awaits_response(&self, stream: u64) -> bool {
        self.responses.contains(stream)
    }

    /// The app answered the request of `stream` (its response headers arrived): applies the
    /// response-phase fault decided for it, if any. [`Verdict::Hold`] holds the response;
    /// [`Engine::release_due`] hands it back like a held request. `clock` is read only to
    /// schedule a delay.
    pub fn on_response(
        &mut self,
        stream: u64,
        clock: impl Clock,
        counters: &mut impl Counters,
    ) -> Verdict {
        let Some(fault) = self.responses.remove(stream) else {
            return Verdict::Continue;
        };
        if fault.wait_ms == 0 {
            return immediate(&fault.policy, fault.then, FaultTarget::Response, counters);
        }
        let held = Held {
            policy: fault.policy,
            then: fault.then,
            target: FaultTarget::Response,
        };
        hold(
            &mut self.delays,
            stream,
            clock.now_ms(),
            fault.wait_ms,
            fault.delays,
            held,
            counters,
        )
    }

    /// The held requests whose delay is over at `now_ms`, earliest first; aborts among them
    /// are counted here (the host sends their replies).
    pub fn release_due(&mut self, now_ms: u64, counters: &mut impl Counters) -> Vec<Released> {
        if self.delays.next_due_ms().is_none_or(|t| t > now_ms) {
            return Vec::new();
        }
        self.delays
            .take_due(now_ms)
            .into_iter()
            .map(|p| {
                count_action(&p.then.policy, &p.then.then, p.then.target, counters);
                Released {
                    stream: p.stream,
                    then: p.then.then,
                    target: p.then.target,
                }
            })
            .collect()
    }

    /// Forgets a held request whose stream ended first (the client hung up), and a
    /// response-phase fault whose stream ended without an answer of the app.
    pub fn forget(&mut self, stream: u64) -> bool {
        let awaited = self.responses.remove(stream).is_some();
        self.delays.remove(stream) || awaited
    }

    /// When the earliest held request is due (host clock), if any.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.delays.next_due_ms()
    }

    /// Requests held by delays now.
    pub fn held(&self) -> usize {
        self.delays.len()
    }

    /// Records the gauges after the set changed or time passed.
    pub fn report_gauges(&self, now_ms: u64, counters: &mut impl Counters) {
        counters.set(Gauge::ActivePolicies, self.active_policies(now_ms));
        if let Some(v) = self.version {
            counters.set(Gauge::ConfigVersion, v);
        }
        if matches!(self.set, PolicySet::Shared(_)) {
            counters.set(
                Gauge::CachedDestinations,
                u64::try_from(self.destinations.len()).unwrap_or(u64::MAX),
            );
        }
    }
}

/// Queues a held request or response; over the cap it passes unfaulted.
#[allow(clippy::too_many_arguments)]
fn hold(
    queue: &mut DelayQueue<Held>,
    stream: u64,
    now_ms: u64,
    wait: u64,
    delays: bool,
    held: Held,
    counters: &mut impl Counters,
) -> Verdict {
    let due_ms = now_ms.saturating_add(wait);
    let (policy, target) = (held.policy.clone(), held.target);
    if queue.push(due_ms, stream, held).is_err() {
        // Over the cap the request passes as if no rule fired: a delay experiment must
        // never hold more of the sidecar's memory and connections than it allows.
        counters.add(Counter::DelaysOverCap, 1);
        return Verdict::Continue;
    }
    if delays {
        let (counter, per_policy) = match target {
            FaultTarget::Request => (Counter::Delays, PolicyCounter::Delays),
            FaultTarget::Response => (Counter::ResponseDelays, PolicyCounter::ResponseDelays),
        };
        counters.add(counter, 1);
        counters.add_policy(&policy, per_policy);
    }
    counters.add(Counter::DelayMs, wait);
    Verdict::Hold { due_ms }
}

/// The verdict of a fault that acts at once, counted.
fn immediate(
    policy: &str,
    then: Release,
    target: FaultTarget,
    counters: &mut impl Counters,
) -> Verdict {
    count_action(policy, &then, target, counters);
    match then {
        Release::Resume => Verdict::Continue,
        Release::Reply(reply) => Verdict::Reply(reply),
        Release::Reset => Verdict::Reset,
    }
}

/// Counts an abort or a reset as it is applied (a plain resume counts nothing).
fn count_action(policy: &str, then: &Release, target: FaultTarget, counters: &mut impl Counters) {
    let (counter, per_policy) = match (then, target) {
        (Release::Resume, _) => return,
        (Release::Reset, _) => (Counter::Resets, PolicyCounter::Resets),
        (Release::Reply(_), FaultTarget::Request) => (Counter::Aborts, PolicyCounter::Aborts),
        (Release::Reply(_), FaultTarget::Response) => {
            (Counter::ResponseAborts, PolicyCounter::ResponseAborts)
        }
    };
    counters.add(counter, 1);
    counters.add_policy(policy, per_policy);
}

/// Marks a request this proxy evaluated policies for ([`boifi_core::compiled::EVALUATED_HEADER`]):
/// the set's policy names, after the value the request arrived with. A request that arrived
/// without one (the common case) costs no allocation: the set holds the joined names.
fn mark<R: RequestView + ?Sized>(
    request: &R,
    set: &CompiledPolicySet,
    evaluated: bool,
    incoming: Option<&[u8]>,
) {
    if !evaluated {
        return;
    }
    let names = set.evaluated_value().as_bytes();
    match incoming {
        None => request.mark_evaluated(names),
        Some(previous) => {
            let mut value = Vec::with_capacity(previous.len() + 1 + names.len());
            value.extend_from_slice(previous);
            value.push(b',');
            value.extend_from_slice(names);
            request.mark_evaluated(&value);
        }
    }
}

#[cfg(test)]
mod tests;
