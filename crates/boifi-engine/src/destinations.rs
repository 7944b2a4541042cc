//! The policies of a shared proxy (an Istio ambient waypoint, a gateway) and the sets compiled
//! from them per destination service.
//!
//! A sidecar compiles one set per policy update. A shared proxy serves many services and learns
//! which one a request is for only from the request ([`boifi_core::destination`]), so it keeps
//! the whole policy list it received and compiles, on a destination's first request, the set for
//! the identity {service, namespace, proxy kind} of that destination. The sets live in a cache
//! bounded by `PluginConfig::max_destinations`: beyond it the least recently used destination is
//! dropped (and compiled again when it comes back), and [`Counter::DestinationEvictions`] counts
//! it. A warm request costs a hash of the destination's name and a map lookup, and allocates
//! nothing.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use boifi_core::compiled::{CompiledPolicySet, SidecarPolicy};
use boifi_core::destination::Destination;
use boifi_core::identity::ProxyKind;
use boifi_core::policy::PolicyState;
use boifi_core::rng::fnv1a64;

use crate::metrics::{Counter, Counters, Gauge};

/// The policies a shared proxy received, kept whole so each destination's set can be compiled
/// when it is first needed.
#[derive(Debug, Clone, Default)]
pub struct SharedPolicies {
    kind: ProxyKind,
    /// Enabled policies without a label selector (those never match in a shared proxy: the
    /// endpoint, and so its pod labels, is picked after the filter ran).
    policies: Vec<SidecarPolicy>,
}

impl SharedPolicies {
    /// Keeps what can apply in a shared proxy of `kind` (their matchers came compiled, so a
    /// destination's compile cannot fail).
    pub fn new(mut policies: Vec<SidecarPolicy>, kind: ProxyKind) -> SharedPolicies {
        policies.retain(|p| p.enabled && p.selector.labels.is_empty());
        SharedPolicies { kind, policies }
    }

    /// The kind of proxy these policies are for.
    pub fn kind(&self) -> ProxyKind {
        self.kind
    }

    /// The policies kept (enabled, no label selector).
    pub fn policies(&self) -> &[SidecarPolicy] {
        &self.policies
    }

    /// No policy can apply to any request.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The set for one destination.
    pub fn compile_for(&self, destination: &Destination<'_>, now_ms: u64) -> CompiledPolicySet {
        CompiledPolicySet::compile(&self.policies, &destination.identity(self.kind), now_ms)
    }

    /// Policies that can fire at `now_ms` for some destination.
    pub fn active_policy_count(&self, now_ms: u64) -> usize {
        self.policies
            .iter()
            .filter(|p| p.state_at(now_ms) == PolicyState::Active)
            .count()
    }
}

#[derive(Debug)]
struct Entry {
    key: u64,
    service: String,
    namespace: String,
    set: Arc<CompiledPolicySet>,
    /// The cache's clock at the last use (the least recently used entry is evicted first).
    used: u64,
}

/// The compiled sets of the destinations served last, at most `cap` of them.
#[derive(Debug)]
pub struct DestinationCache {
    /// Found by the hash of the destination's name (its names are compared on a hit), with a
    /// linear scan: `max_destinations` bounds them, and a scan of a few keys costs less code
    /// and time than a tree index.
    entries: Vec<Entry>,
    clock: u64,
    cap: usize,
}

fn key_of(destination: &Destination<'_>) -> u64 {
    let service = fnv1a64(destination.service.as_bytes(), 0);
    // `.` separates them: neither a service nor a namespace contains one.
    fnv1a64(destination.namespace.as_bytes(), fnv1a64(b".", service))
}

impl DestinationCache {
    /// An empty cache holding at most `cap` destinations (at least one).
    pub fn with_cap(cap: usize) -> DestinationCache {
        DestinationCache {
            entries: Vec::new(),
            clock: 0,
            cap: cap.max(1),
        }
    }

    /// Forgets every set (a new policy list was installed) and takes a new bound.
    pub fn reset(&mut self, cap: usize) {
        self.entries.clear();
        self.cap = cap.max(1);
    }

    /// The most destinations held.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Destinations held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No destination held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The set for `destination`, compiled from `policies` on its first use (or after it was
    /// evicted). `now_ms` (the host's clock) is read only to compile.
    pub fn set_for(
        &mut self,
        policies: &SharedPolicies,
        destination: &Destination<'_>,
        now_ms: impl FnOnce() -> u64,
        counters: &mut impl Counters,
    ) -> Option<&CompiledPolicySet> {
        self.clock = self.clock.wrapping_add(1);
        let key = key_of(destination);
        let hit = self.slot_of(key).filter(|&i| {
            self.entries.get(i).is_some_and(|e| {
                e.service == destination.service && e.namespace == destination.namespace
            })
        });
        let slot = match hit {
            Some(i) => i,
            None => self.insert(key, policies, destination, now_ms, counters)?,
        };
        let entry = self.entries.get_mut(slot)?;
        entry.used = self.clock;
        Some(&entry.set)
    }

    fn slot_of(&self, key: u64) -> Option<usize> {
        self.entries.iter().position(|e| e.key == key)
    }

    fn insert(
        &mut self,
        key: u64,
        policies: &SharedPolicies,
        destination: &Destination<'_>,
        now_ms: impl FnOnce() -> u64,
        counters: &mut impl Counters,
    ) -> Option<usize> {
        let set = Arc::new(policies.compile_for(destination, now_ms()));
        let entry = Entry {
            key,
            service: destination.service.into(),
            namespace: destination.namespace.into(),
            set,
            used: self.clock,
        };
        // A hash collision with another destination: that one makes room.
        let slot = if let Some(i) = self.slot_of(key) {
            i
        } else if self.entries.len() < self.cap {
            self.entries.push(entry);
            let i = self.entries.len() - 1;
            counters.set(Gauge::CachedDestinations, self.entries.len() as u64);
            return Some(i);
        } else {
            let i = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.used)
                .map(|(i, _)| i)?;
            counters.add(Counter::DestinationEvictions, 1);
            i
        };
        let replaced = self.entries.get_mut(slot)?;
        *replaced = entry;
        counters.set(Gauge::CachedDestinations, self.entries.len() as u64);
        Some(slot)
    }
}
