//! One filter instance's state: the compiled policy set it answers from, how a newer set is
//! adopted, the per-request decision, and the requests its delays hold.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use boifi_core::compiled::{decide, CompiledPolicySet, RequestView};
use boifi_core::identity::Identity;
use boifi_core::rng::XorShift64Star;
use boifi_core::wire::PluginConfig;

use crate::delays::DelayQueue;
use crate::metrics::{Counter, Counters, Gauge, PolicyCounter};
use crate::reply::{abort_reply, is_grpc, LocalReply};
use crate::sync::{compile_body, SyncError};

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
}

/// What to do with a held request once its delay is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// Forward it.
    Resume,
    /// Answer it with this local reply (a delay followed by an abort).
    Reply(LocalReply),
}

/// A held request whose delay is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// The host's stream id given to [`Engine::on_request`].
    pub stream: u64,
    /// What to do with it.
    pub then: Release,
}

#[derive(Debug, Clone)]
struct Held {
    policy: String,
    then: Release,
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
    set: Arc<CompiledPolicySet>,
    rng: XorShift64Star,
    delays: DelayQueue<Held>,
    max_rules: u64,
}

fn cap_of(config: &PluginConfig) -> usize {
    usize::try_from(config.max_active_delays).unwrap_or(usize::MAX)
}

impl Engine {
    /// An engine for `identity` with the plugin's settings, holding no policies; `seed` seeds
    /// its random draws (the host's clock or entropy).
    pub fn new(identity: Identity, config: &PluginConfig, seed: u64) -> Engine {
        Engine {
            identity,
            seq: 0,
            version: None,
            set: Arc::new(CompiledPolicySet::default()),
            rng: XorShift64Star::new(seed),
            delays: DelayQueue::with_cap(cap_of(config)),
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

    /// The compiled set (to share with other instances of the same identity).
    pub fn set(&self) -> &Arc<CompiledPolicySet> {
        &self.set
    }

    /// Policies with a rule that can fire at `now_ms` (the `hfi.policies.active` gauge).
    pub fn active_policies(&self, now_ms: u64) -> u64 {
        u64::try_from(self.set.active_policy_count(now_ms)).unwrap_or(u64::MAX)
    }

    /// Compiles the `/v1/config` answer `body`, published with sequence number `seq`, and
    /// swaps it in whole. On an error the previous set stays and `seq` is remembered anyway,
    /// so a bad publication is not compiled again on every request.
    pub fn adopt(&mut self, seq: u64, body: &[u8], now_ms: u64) -> Result<Adopted, SyncError> {
        self.seq = seq;
        let (version, set) = compile_body(body, &self.identity, now_ms, self.max_rules)?;
        let policies = set.policy_names().len();
        self.install(seq, version, Arc::new(set));
        Ok(Adopted { version, policies })
    }

    /// Installs a set compiled elsewhere (by the poller, or for another instance).
    pub fn install(&mut self, seq: u64, version: u64, set: Arc<CompiledPolicySet>) {
        self.seq = seq;
        self.version = Some(version);
        self.set = set;
    }

    /// No policy concerns this sidecar: every request passes without being looked at.
    pub fn is_idle(&self) -> bool {
        self.set.is_empty()
    }

    /// One random number from the engine's generator (for the host's backoff jitter).
    pub fn draw(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// Decides the fault for one request. `stream` is the host's id for it (used again by
    /// [`Engine::release_due`] and [`Engine::forget`]); `request` is read lazily, only as far
    /// as the rules need (nothing at all when no policy applies). Counts into `counters` only
    /// when a fault fires or the delay cap refuses one.
    pub fn on_request<R: RequestView + ?Sized>(
        &mut self,
        stream: u64,
        request: &R,
        now_ms: u64,
        counters: &mut impl Counters,
    ) -> Verdict {
        if self.set.is_empty() {
            return Verdict::Continue;
        }
        let draw = self.rng.next_u64();
        let Some(decision) = decide(&self.set, request, now_ms, draw) else {
            return Verdict::Continue;
        };
        let wait = decision.total_wait_ms();
        let abort = decision
            .abort
            .map(|a| abort_reply(decision.policy, a, is_grpc(request.header("content-type"))));
        if wait == 0 {
            return match abort {
                Some(reply) => {
                    counters.add(Counter::Aborts, 1);
                    counters.add_policy(decision.policy, PolicyCounter::Aborts);
                    Verdict::Reply(reply)
                }
                None => Verdict::Continue,
            };
        }
        let due_ms = now_ms.saturating_add(wait);
        let held = Held {
            policy: decision.policy.into(),
            then: abort.map_or(Release::Resume, Release::Reply),
        };
        if self.delays.push(due_ms, stream, held).is_err() {
            // Over the cap the request passes as if no rule fired: a delay experiment must
            // never hold more of the sidecar's memory and connections than it allows.
            counters.add(Counter::DelaysOverCap, 1);
            return Verdict::Continue;
        }
        if decision.delay_ms.is_some() {
            counters.add(Counter::Delays, 1);
            counters.add_policy(decision.policy, PolicyCounter::Delays);
        }
        counters.add(Counter::DelayMs, wait);
        Verdict::Hold { due_ms }
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
                if matches!(p.then.then, Release::Reply(_)) {
                    counters.add(Counter::Aborts, 1);
                    counters.add_policy(&p.then.policy, PolicyCounter::Aborts);
                }
                Released {
                    stream: p.stream,
                    then: p.then.then,
                }
            })
            .collect()
    }

    /// Forgets a held request whose stream ended first (the client hung up).
    pub fn forget(&mut self, stream: u64) -> bool {
        self.delays.remove(stream)
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
    }
}

#[cfg(test)]
mod tests;
