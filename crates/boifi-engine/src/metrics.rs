//! Metric names. Envoy keeps Wasm-defined metrics under `wasmcustom.` and prints them in
//! `/stats/prometheus` with dots turned into underscores (`hfi_faults_aborts_total`).

/// Requests answered by an abort fault (counter; the seed plugin's name).
pub const ABORTS_TOTAL: &str = "hfi.faults.aborts_total";
/// Requests held by a delay fault (counter; the seed plugin's name).
pub const DELAYS_TOTAL: &str = "hfi.faults.delays_total";
/// App responses replaced by an abort fault after the app answered (`target: response`)
/// (counter).
pub const RESPONSE_ABORTS_TOTAL: &str = "hfi.faults.response_aborts_total";
/// App responses held by a delay fault (`target: response`) (counter).
pub const RESPONSE_DELAYS_TOTAL: &str = "hfi.faults.response_delays_total";
/// Streams reset by a reset fault, before the app saw the request or after it answered
/// (counter).
pub const RESETS_TOTAL: &str = "hfi.faults.resets_total";
/// Delay faults not applied because `max_active_delays` requests were already held: those
/// requests passed unfaulted (counter).
pub const DELAYS_OVER_CAP_TOTAL: &str = "hfi.faults.delays_over_cap_total";
/// Milliseconds requests were held by delay faults, summed (counter).
pub const DELAY_MS_TOTAL: &str = "hfi.faults.delay_ms_total";
/// Policy sets applied by this Envoy (counter; counted once per Envoy, by the poller).
pub const CONFIG_UPDATES_TOTAL: &str = "hfi.config.updates_total";
/// Config answers that could not be used (counter).
pub const CONFIG_ERRORS_TOTAL: &str = "hfi.config.errors_total";
/// Config requests that failed (control plane unreachable, timeout, bad status) (counter).
pub const CONFIG_POLL_FAILURES_TOTAL: &str = "hfi.config.poll_failures_total";
/// Times the sidecar stopped applying policies whose heartbeat bound lapsed (the control
/// plane unheard for their `heartbeat_seconds`).
pub const CONFIG_HEARTBEAT_LAPSES_TOTAL: &str = "hfi.config.heartbeat_lapses_total";
/// Policies in the set this Envoy holds (gauge).
pub const ACTIVE_POLICIES: &str = "hfi.policies.active";
/// The control plane's config version this Envoy holds (gauge).
pub const CONFIG_VERSION: &str = "hfi.config.version";
/// Destinations whose compiled policy set a shared proxy (waypoint, gateway) dropped to stay
/// within `max_destinations` (counter; a destination used again is compiled again).
pub const DESTINATION_EVICTIONS_TOTAL: &str = "hfi.destinations.evictions_total";
/// Destinations a shared proxy's filter instance holds a compiled policy set for (gauge; each
/// instance reports its own, the last report wins).
pub const CACHED_DESTINATIONS: &str = "hfi.destinations.cached";

/// Requests answered by an abort fault, per policy (counter; the policy in the [`POLICY_TAG`]
/// tag).
pub const POLICY_ABORTS_TOTAL: &str = "hfi.policy.aborts_total";
/// Requests held by a delay fault, per policy (counter; the policy in the [`POLICY_TAG`] tag).
pub const POLICY_DELAYS_TOTAL: &str = "hfi.policy.delays_total";
/// App responses replaced by an abort fault, per policy (counter).
pub const POLICY_RESPONSE_ABORTS_TOTAL: &str = "hfi.policy.response_aborts_total";
/// App responses held by a delay fault, per policy (counter).
pub const POLICY_RESPONSE_DELAYS_TOTAL: &str = "hfi.policy.response_delays_total";
/// Streams reset by a reset fault, per policy (counter).
pub const POLICY_RESETS_TOTAL: &str = "hfi.policy.resets_total";
/// The tag (Prometheus label) of the per-policy counters that names the policy.
pub const POLICY_TAG: &str = "policy";

/// The engine's counters, as the host defines them (each under its [`Counter::name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Counter {
    /// [`ABORTS_TOTAL`].
    Aborts,
    /// [`DELAYS_TOTAL`].
    Delays,
    /// [`DELAYS_OVER_CAP_TOTAL`].
    DelaysOverCap,
    /// [`DELAY_MS_TOTAL`].
    DelayMs,
    /// [`CONFIG_UPDATES_TOTAL`].
    ConfigUpdates,
    /// [`CONFIG_ERRORS_TOTAL`].
    ConfigErrors,
    /// [`CONFIG_POLL_FAILURES_TOTAL`].
    PollFailures,
    /// [`CONFIG_HEARTBEAT_LAPSES_TOTAL`].
    HeartbeatLapses,
    /// [`DESTINATION_EVICTIONS_TOTAL`].
    DestinationEvictions,
    /// [`RESPONSE_ABORTS_TOTAL`].
    ResponseAborts,
    /// [`RESPONSE_DELAYS_TOTAL`].
    ResponseDelays,
    /// [`RESETS_TOTAL`].
    Resets,
}

impl Counter {
    /// Every counter, in a fixed order (`as usize` indexes it).
    pub const ALL: [Counter; 12] = [
        Counter::Aborts,
        Counter::Delays,
        Counter::DelaysOverCap,
        Counter::DelayMs,
        Counter::ConfigUpdates,
        Counter::ConfigErrors,
        Counter::PollFailures,
        Counter::HeartbeatLapses,
        Counter::DestinationEvictions,
        Counter::ResponseAborts,
        Counter::ResponseDelays,
        Counter::Resets,
    ];

    /// The metric name.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Aborts => ABORTS_TOTAL,
            Counter::Delays => DELAYS_TOTAL,
            Counter::DelaysOverCap => DELAYS_OVER_CAP_TOTAL,
            Counter::DelayMs => DELAY_MS_TOTAL,
            Counter::ConfigUpdates => CONFIG_UPDATES_TOTAL,
            Counter::ConfigErrors => CONFIG_ERRORS_TOTAL,
            Counter::PollFailures => CONFIG_POLL_FAILURES_TOTAL,
            Counter::HeartbeatLapses => CONFIG_HEARTBEAT_LAPSES_TOTAL,
            Counter::DestinationEvictions => DESTINATION_EVICTIONS_TOTAL,
            Counter::ResponseAborts => RESPONSE_ABORTS_TOTAL,
            Counter::ResponseDelays => RESPONSE_DELAYS_TOTAL,
            Counter::Resets => RESETS_TOTAL,
        }
    }
}

/// The engine's gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Gauge {
    /// [`ACTIVE_POLICIES`].
    ActivePolicies,
    /// [`CONFIG_VERSION`].
    ConfigVersion,
    /// [`CACHED_DESTINATIONS`].
    CachedDestinations,
}

impl Gauge {
    /// Every gauge, in a fixed order.
    pub const ALL: [Gauge; 3] = [
        Gauge::ActivePolicies,
        Gauge::ConfigVersion,
        Gauge::CachedDestinations,
    ];

    /// The metric name.
    pub const fn name(self) -> &'static str {
        match self {
            Gauge::ActivePolicies => ACTIVE_POLICIES,
            Gauge::ConfigVersion => CONFIG_VERSION,
            Gauge::CachedDestinations => CACHED_DESTINATIONS,
        }
    }
}

/// The per-policy counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyCounter {
    /// [`POLICY_ABORTS`].
    Aborts,
    /// [`POLICY_DELAYS`].
    Delays,
    /// [`POLICY_RESPONSE_ABORTS_TOTAL`].
    ResponseAborts,
    /// [`POLICY_RESPONSE_DELAYS_TOTAL`].
    ResponseDelays,
    /// [`POLICY_RESETS_TOTAL`].
    Resets,
}

impl PolicyCounter {
    /// Every per-policy counter, in a fixed order (`as usize` indexes it).
    pub const ALL: [PolicyCounter; 5] = [
        PolicyCounter::Aborts,
        PolicyCounter::Delays,
        PolicyCounter::ResponseAborts,
        PolicyCounter::ResponseDelays,
        PolicyCounter::Resets,
    ];

    /// The metric name; the policy is its [`POLICY_TAG`] tag. A host that can tag a metric
    /// (the native module: a labeled counter) defines this name with that tag; one that cannot
    /// (proxy-wasm) defines [`PolicyCounter::name_with_policy`], which Envoy's
    /// [`POLICY_TAG_REGEX`] rule turns into this name with the tag. Either way `/stats/prometheus`
    /// shows `hfi_policy_aborts_total{policy="<policy>"}`.
    pub const fn name(self) -> &'static str {
        match self {
            PolicyCounter::Aborts => POLICY_ABORTS_TOTAL,
            PolicyCounter::Delays => POLICY_DELAYS_TOTAL,
            PolicyCounter::ResponseAborts => POLICY_RESPONSE_ABORTS_TOTAL,
            PolicyCounter::ResponseDelays => POLICY_RESPONSE_DELAYS_TOTAL,
            PolicyCounter::Resets => POLICY_RESETS_TOTAL,
        }
    }

    /// [`PolicyCounter::name`] with `policy` embedded as the part [`POLICY_TAG_REGEX`]
    /// extracts: `hfi.policy.<policy>.aborts_total`.
    pub fn name_with_policy(self, policy: &str) -> alloc::string::String {
        let name = self.name();
        let (prefix, kind) = name.split_at(POLICY_PREFIX.len());
        // Concatenated, not `format!`: the Wasm filter links no formatting for its request path.
        let mut embedded = alloc::string::String::with_capacity(name.len() + policy.len() + 1);
        embedded.push_str(prefix);
        embedded.push_str(policy);
        embedded.push('.');
        embedded.push_str(kind);
        embedded
    }
}

/// What every per-policy counter's name starts with (then the kind, or the policy and the kind).
const POLICY_PREFIX: &str = "hfi.policy.";

/// Where the engine counts: the host's metrics. Called only when something happens (a fault,
/// a refused delay, a config answer), never on a request that passes unfaulted.
pub trait Counters {
    /// Adds `by` to `counter`.
    fn add(&mut self, counter: Counter, by: u64);
    /// Sets `gauge`.
    fn set(&mut self, gauge: Gauge, value: u64);
    /// Adds one to `policy`'s `counter`.
    fn add_policy(&mut self, policy: &str, counter: PolicyCounter);
}

/// Counters kept in memory: for tests, and for hosts that export them their own way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterValues {
    /// By [`Counter`] (`Counter::X as usize`).
    pub counters: [u64; Counter::ALL.len()],
    /// By [`Gauge`].
    pub gauges: [u64; Gauge::ALL.len()],
    /// `(policy, counter, value)`, in first-use order.
    pub policies: alloc::vec::Vec<(alloc::string::String, PolicyCounter, u64)>,
}

impl CounterValues {
    /// The value of `counter`.
    pub fn get(&self, counter: Counter) -> u64 {
        self.counters.get(counter as usize).copied().unwrap_or(0)
    }

    /// The value of `policy`'s `counter`.
    pub fn policy(&self, policy: &str, counter: PolicyCounter) -> u64 {
        self.policies
            .iter()
            .find(|(p, c, _)| p == policy && *c == counter)
            .map_or(0, |(_, _, v)| *v)
    }
}

impl Counters for CounterValues {
    fn add(&mut self, counter: Counter, by: u64) {
        if let Some(v) = self.counters.get_mut(counter as usize) {
            *v = v.saturating_add(by);
        }
    }

    fn set(&mut self, gauge: Gauge, value: u64) {
        if let Some(v) = self.gauges.get_mut(gauge as usize) {
            *v = value;
        }
    }

    fn add_policy(&mut self, policy: &str, counter: PolicyCounter) {
        match self
            .policies
            .iter_mut()
            .find(|(p, c, _)| p == policy && *c == counter)
        {
            Some((_, _, v)) => *v = v.saturating_add(1),
            None => self.policies.push((policy.into(), counter, 1)),
        }
    }
}

/// An Envoy `stats_tags` regex that extracts the policy name of the per-policy counters a
/// proxy-wasm filter defines ([`PolicyCounter::name_with_policy`]) into the [`POLICY_TAG`] tag,
/// leaving [`PolicyCounter::name`]: `/stats/prometheus` shows
/// `hfi_policy_aborts_total{policy="..."}`.
pub const POLICY_TAG_REGEX: &str = r"^wasmcustom\.hfi\.policy\.((.+?)\.)\w+_total$";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_policy_names_embed_the_policy_where_the_tag_regex_takes_it_out() {
        assert_eq!(PolicyCounter::Aborts.name(), "hfi.policy.aborts_total");
        assert_eq!(PolicyCounter::Delays.name(), "hfi.policy.delays_total");
        for counter in [
            PolicyCounter::Aborts,
            PolicyCounter::Delays,
            PolicyCounter::ResponseAborts,
            PolicyCounter::ResponseDelays,
            PolicyCounter::Resets,
        ] {
            for policy in ["cart-503", "cart_1", "x"] {
                let embedded = counter.name_with_policy(policy);
                // What the regex's first group removes: `<policy>.` right after the prefix.
                let removed = embedded.replacen(&alloc::format!("{policy}."), "", 1);
                assert_eq!(removed, counter.name(), "{embedded}");
                assert!(embedded.starts_with(POLICY_PREFIX) && embedded.ends_with("_total"));
            }
        }
        assert_eq!(
            PolicyCounter::Aborts.name_with_policy("cart-503"),
            "hfi.policy.cart-503.aborts_total"
        );
        assert!(POLICY_TAG_REGEX.starts_with(r"^wasmcustom\.hfi\.policy\.((.+?)\.)"));
    }
}
