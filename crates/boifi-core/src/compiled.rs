//! The fault decision: policies compiled once per update for one sidecar, then evaluated per
//! request by [`decide`].

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;

use crate::destination::DestinationSource;
use crate::identity::{Identity, PeerIdentity, DEFAULT_TRUST_DOMAIN};
use crate::policy::{
    evaluation_order, Abort, Delay, FaultTarget, FieldErrorKind, Percentage, PolicyDocument,
    Sampling, PPM_SCALE,
};
use crate::rng::{fnv1a64, splitmix64};

mod sidecar;

pub use sidecar::{CallerMatch, Matcher, SidecarPolicy, SidecarRule, SidecarSelector};

/// What [`decide`] needs to know about a request.
///
/// Values are bytes, as a proxy hands them over: HTTP allows obs-text (bytes 0x80-0xFF) in
/// header values, so a request must never be rejected, or a filter broken, for not being
/// UTF-8. `exact` and `prefix` matches compare bytes; a `regex` sees a value that is not valid
/// UTF-8 as not matching.
pub trait RequestView {
    /// The HTTP method (`:method`).
    fn method(&self) -> &[u8];
    /// The request path (`:path`), possibly with a query string.
    fn path(&self) -> &[u8];
    /// A request header by lower-case name.
    fn header(&self, name: &str) -> Option<&[u8]>;
    /// The first URI SAN of the caller's peer certificate, as the host gives it, on a listener
    /// that requires and verifies client certificates; `None` for a plaintext connection, no
    /// SAN, or any read error. [`decide`] calls it at most once per request, and only when a
    /// rule with a `source` condition gets to test the request, so a host can read it lazily.
    /// Never derive it from a request header: any client can write those.
    fn peer_uri_san(&self) -> Option<&[u8]>;

    /// The caller's SPIFFE ID as a shared proxy knows it: Istio's filter state
    /// `io.istio.peer_principal` ([`PEER_PRINCIPAL_FILTER_STATE`]), which a waypoint's
    /// `connect_terminate` listener sets from the client certificate it verified (the internal
    /// listener behind it has no peer certificate). Read instead of [`RequestView::peer_uri_san`]
    /// in a set compiled for a shared proxy, under the same rules: at most once, only when a
    /// `source` rule asks, `None` on any error. A sidecar host need not provide it.
    fn peer_principal(&self) -> Option<&[u8]> {
        None
    }

    /// The name that says which service a request in a shared proxy is for
    /// ([`crate::destination`]), as the host gives it; `None` when it has none. The engine reads
    /// it at most once per request, and only in a shared proxy.
    fn destination(&self, source: DestinationSource) -> Option<&[u8]> {
        let _ = source;
        None
    }

    /// Sets the request header [`EVALUATED_HEADER`] to `value` before the request is forwarded
    /// (the engine calls it at most once per request, only when it evaluated policies for it).
    fn mark_evaluated(&self, value: &[u8]) {
        let _ = value;
    }
}

/// The request header a boifi proxy adds to a request it evaluated policies for: the names of
/// those policies, comma-separated, after any value the request already had. Every boifi proxy
/// skips the policies an incoming request names there, so a request that crosses two boifi
/// proxies (a gateway, then a waypoint; a waypoint, then a sidecar) is decided once per policy.
/// A client can write it too: that only lets its request escape the faults it names, never adds
/// one.
pub const EVALUATED_HEADER: &str = "x-boifi-evaluated";

/// Istio's filter-state key of the caller's SPIFFE ID in a waypoint.
pub const PEER_PRINCIPAL_FILTER_STATE: &str = "io.istio.peer_principal";

/// Whether the comma-separated `list` (a value of [`EVALUATED_HEADER`]) names `policy`; spaces
/// and tabs around a name are ignored.
pub fn names_policy(list: &[u8], policy: &str) -> bool {
    list.split(|b| *b == b',')
        .any(|item| item.trim_ascii() == policy.as_bytes())
}

/// A request held in memory; header names are lower-cased on insertion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimpleRequest {
    /// The HTTP method.
    pub method: String,
    /// The path, possibly with a query string.
    pub path: String,
    /// Headers with lower-case names.
    pub headers: Vec<(String, String)>,
    /// The URI SAN of the caller's verified certificate (`None`: plaintext, unknown caller).
    pub peer_uri_san: Option<String>,
    /// The caller's SPIFFE ID from Istio's filter state, in a shared proxy.
    pub peer_principal: Option<String>,
    /// The name the host gives the request's destination in a shared proxy (a waypoint's
    /// filter chain name, a gateway's cluster name).
    pub destination: Option<String>,
    /// The value [`RequestView::mark_evaluated`] set, if it was called.
    pub marked: core::cell::RefCell<Option<Vec<u8>>>,
}

impl SimpleRequest {
    /// A request with no headers.
    pub fn new(method: &str, path: &str) -> SimpleRequest {
        SimpleRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            peer_uri_san: None,
            peer_principal: None,
            destination: None,
            marked: core::cell::RefCell::new(None),
        }
    }

    /// Sets the caller's SPIFFE ID from the filter state of a shared proxy.
    pub fn with_peer_principal(mut self, uri: &str) -> SimpleRequest {
        self.peer_principal = Some(uri.to_owned());
        self
    }

    /// Sets the name of the request's destination in a shared proxy.
    pub fn with_destination(mut self, name: &str) -> SimpleRequest {
        self.destination = Some(name.to_owned());
        self
    }

    /// Sets the URI SAN of the caller's verified certificate.
    pub fn with_peer_uri_san(mut self, uri: &str) -> SimpleRequest {
        self.peer_uri_san = Some(uri.to_owned());
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> SimpleRequest {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }
}

impl RequestView for SimpleRequest {
    fn method(&self) -> &[u8] {
        self.method.as_bytes()
    }
    fn path(&self) -> &[u8] {
        self.path.as_bytes()
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_bytes())
    }
    fn peer_uri_san(&self) -> Option<&[u8]> {
        self.peer_uri_san.as_deref().map(str::as_bytes)
    }
    fn peer_principal(&self) -> Option<&[u8]> {
        self.peer_principal.as_deref().map(str::as_bytes)
    }
    fn destination(&self, _source: DestinationSource) -> Option<&[u8]> {
        self.destination.as_deref().map(str::as_bytes)
    }
    fn mark_evaluated(&self, value: &[u8]) {
        if let Ok(mut marked) = self.marked.try_borrow_mut() {
            *marked = Some(value.to_vec());
        }
    }
}

/// The header whose value `request` sampling hashes.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The abort a rule gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbortAction {
    /// HTTP status.
    pub http_status: u16,
    /// gRPC status for gRPC requests, if the policy set one.
    pub grpc_status: Option<u8>,
    /// Response body (may be empty).
    pub body: String,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
}

impl AbortAction {
    pub(crate) fn from_policy(abort: &Abort) -> AbortAction {
        AbortAction {
            http_status: abort.http_status,
            grpc_status: abort.grpc_status,
            body: abort.body.clone().unwrap_or_default(),
            headers: abort
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// The gRPC status for a gRPC request: the policy's, else the mapping of the HTTP status
    /// that gRPC specifies (HTTP to gRPC status code mapping).
    pub fn grpc_status_for_grpc_request(&self) -> u8 {
        self.grpc_status.unwrap_or(match self.http_status {
            400 => 13,             // INTERNAL
            401 => 16,             // UNAUTHENTICATED
            403 => 7,              // PERMISSION_DENIED
            404 => 12,             // UNIMPLEMENTED
            429 | 502..=504 => 14, // UNAVAILABLE
            _ => 2,                // UNKNOWN
        })
    }
}

/// The fault to inject into one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultDecision<'set> {
    /// The policy that fired.
    pub policy: &'set str,
    /// Index of the rule that fired within its policy.
    pub rule_index: usize,
    /// The wait before the fault acts (`start_delay_ms`).
    pub start_delay_ms: u64,
    /// The delay fault, after jitter, if the rule has one.
    pub delay_ms: Option<u64>,
    /// The abort, if the rule has one; it comes after the waits.
    pub abort: Option<&'set AbortAction>,
    /// Whether the stream is reset after the waits (never with an abort).
    pub reset: bool,
    /// Whether all of it acts on the request or on the app's response.
    pub target: FaultTarget,
}

impl FaultDecision<'_> {
    /// How long the request is held before it is forwarded or aborted.
    pub fn total_wait_ms(&self) -> u64 {
        self.start_delay_ms
            .saturating_add(self.delay_ms.unwrap_or(0))
    }
}

/// A policy whose sidecar form could not be built ([`SidecarPolicy::from_document`]; only
/// possible for documents built in code, since parsed documents are validated).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy `{policy}`: {path}: {kind}")]
pub struct CompileError {
    /// The policy name.
    pub policy: String,
    /// The field path.
    pub path: String,
    /// What is wrong.
    pub kind: FieldErrorKind,
}

impl CallerMatch {
    /// An unknown caller (`None`) never matches, whatever the condition.
    fn is_match(&self, caller: Option<&PeerIdentity<'_>>) -> bool {
        let Some(caller) = caller else {
            return false;
        };
        let holds = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        holds(&self.namespace, caller.namespace)
            && holds(&self.service_account, caller.service_account)
    }
}

#[derive(Debug, Clone)]
struct CompiledRule {
    policy: usize,
    rule_index: usize,
    method: Option<Matcher>,
    path: Option<Matcher>,
    /// `(slot of the name among the set's header names, name, matcher)`: rules on the same
    /// header share a slot, so a request reads it once.
    headers: Vec<(usize, String, Matcher)>,
    source: Option<CallerMatch>,
    percentage: Percentage,
    sampling: Sampling,
    /// Distinguishes this rule's draw from every other rule's.
    seed: u64,
    active_from_ms: u64,
    active_until_ms: u64,
    start_delay_ms: u64,
    delay: Option<Delay>,
    abort: Option<AbortAction>,
    reset: bool,
    target: FaultTarget,
}

impl CompiledRule {
    /// `path` is the request path without its query string.
    fn matches<'r, R: RequestView + ?Sized>(
        &self,
        request: &'r R,
        path: &[u8],
        lookups: &mut Lookups<'r>,
        trust_domain: &str,
    ) -> bool {
        if let Some(m) = &self.method {
            if !m.is_match(lookups.method(request)) {
                return false;
            }
        }
        if let Some(m) = &self.path {
            if !m.is_match(path) {
                return false;
            }
        }
        // The caller comes last: on the filter it may be a host call, cheaper to skip.
        self.headers.iter().all(|(slot, name, m)| {
            lookups
                .header(request, *slot, name)
                .is_some_and(|v| m.is_match(v))
        }) && self
            .source
            .as_ref()
            .is_none_or(|m| m.is_match(lookups.caller(request, trust_domain).as_ref()))
    }

    fn is_live(&self, now_ms: u64) -> bool {
        self.active_from_ms <= now_ms && now_ms < self.active_until_ms
    }
}

/// A rule that matches a request, as [`CompiledPolicySet::matching_rules`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchedRule<'s> {
    /// The policy.
    pub policy: &'s str,
    /// The rule's index within the policy.
    pub rule_index: usize,
    /// The rule's percentage.
    pub percentage: Percentage,
    /// How its draw is made.
    pub sampling: Sampling,
    /// Whether its fault makes the request wait (a delay or a start delay).
    pub waits: bool,
    /// The HTTP status its fault aborts with, if it aborts.
    pub abort_status: Option<u16>,
    /// Whether its fault resets the stream.
    pub reset: bool,
    /// Whether its fault acts on the request or on the app's response.
    pub target: FaultTarget,
}

/// The policies that concern one sidecar, compiled for fast evaluation. Built on every policy
/// update, never per request.
#[derive(Debug, Clone)]
pub struct CompiledPolicySet {
    policy_names: Vec<String>,
    rules: Vec<CompiledRule>,
    /// The mesh's trust domain: a caller certificate from any other is an unknown caller.
    trust_domain: String,
    /// Compiled for a shared proxy: the caller is read from Istio's filter state
    /// ([`RequestView::peer_principal`]), not from a peer certificate.
    caller_from_filter_state: bool,
    /// The policy names joined by `,`: what [`EVALUATED_HEADER`] gets (computed once per set).
    evaluated_value: String,
}

impl Default for CompiledPolicySet {
    fn default() -> CompiledPolicySet {
        CompiledPolicySet {
            policy_names: Vec::new(),
            rules: Vec::new(),
            trust_domain: DEFAULT_TRUST_DOMAIN.to_owned(),
            caller_from_filter_state: false,
            evaluated_value: String::new(),
        }
    }
}

/// The draw seed of rule `rule_index` of the policy named `policy`:
/// `splitmix64(fnv1a64(name, 0) ^ rule_index)` ([`splitmix64`], [`fnv1a64`]).
pub fn rule_seed(policy: &str, rule_index: usize) -> u64 {
    splitmix64(fnv1a64(policy.as_bytes(), 0) ^ rule_index as u64)
}

/// The draw a rule uses: `request` sampling hashes the request id with the rule's seed (same
/// request, same answer everywhere): `splitmix64(fnv1a64(id, seed))`; otherwise the caller's
/// random draw is mixed with the seed so each rule gets its own independent draw from one
/// random number: `splitmix64(draw ^ seed)`.
pub fn rule_draw(sampling: Sampling, seed: u64, draw: u64, request_id: Option<&[u8]>) -> u64 {
    match (sampling, request_id) {
        (Sampling::Request, Some(id)) => splitmix64(fnv1a64(id, seed)),
        _ => splitmix64(draw ^ seed),
    }
}

/// Whether a draw fires at a rate of `ppm` parts per million: the only probability check.
/// It fires when the draw, as a fraction of 2^64, is below `ppm / 1_000_000`: exactly `ppm`
/// in a million of all draws. The draw is scaled onto `0..1_000_000` with a multiply-high
/// (Lemire's reduction) instead of a 64-bit division, which costs more than the rest of a
/// rule check.
pub const fn fires(rule_draw: u64, ppm: u32) -> bool {
    let scaled = ((rule_draw as u128 * PPM_SCALE as u128) >> 64) as u64;
    scaled < ppm as u64
}

/// The delay after jitter: uniform in `fixed ± jitter`, never below 0. The offset is
/// `splitmix64(rule_draw) % (2 × jitter + 1)` ([`splitmix64`]), and the delay
/// `fixed − jitter + offset`, floored at 0.
pub fn jittered_delay(delay: &Delay, rule_draw: u64) -> u64 {
    if delay.jitter_ms == 0 {
        return delay.fixed_delay_ms;
    }
    let span = delay.jitter_ms.saturating_mul(2).saturating_add(1);
    let offset = splitmix64(rule_draw) % span;
    delay
        .fixed_delay_ms
        .saturating_add(offset)
        .saturating_sub(delay.jitter_ms)
}

impl CompiledPolicySet {
    /// Keeps the enabled policies that can apply to `identity`, in evaluation order (higher
    /// `priority` first, then name). Policies without a storage time count as stored at
    /// `now_ms`; rules already expired at `now_ms` are left out.
    pub fn compile(
        policies: &[SidecarPolicy],
        identity: &Identity,
        now_ms: u64,
    ) -> CompiledPolicySet {
        // A disabled policy is left out here, the one place every filter and `simulate` go
        // through, so no host can forget it.
        let mut selected: Vec<&SidecarPolicy> = policies
            .iter()
            .filter(|p| p.enabled && p.applies_to(identity))
            .collect();
        crate::sort::sort_by(&mut selected, |a, b| {
            evaluation_order((a.priority, &a.name), (b.priority, &b.name)).is_lt()
        });

        let mut set = CompiledPolicySet {
            caller_from_filter_state: identity.proxy.is_shared(),
            ..CompiledPolicySet::default()
        };
        for policy in selected {
            let policy_index = set.policy_names.len();
            let window_from = policy.window.map_or(0, |w| w.start_ms);
            let mut kept_any = false;
            for (rule_index, rule) in policy.rules.iter().enumerate() {
                let until = policy.rule_until(rule, now_ms);
                if until <= now_ms {
                    continue;
                }
                set.rules.push(CompiledRule {
                    policy: policy_index,
                    rule_index,
                    method: rule.method.clone(),
                    path: rule.path.clone(),
                    headers: rule
                        .headers
                        .iter()
                        .map(|(name, m)| (0, name.clone(), m.clone()))
                        .collect(),
                    source: rule.source.clone(),
                    percentage: rule.percentage,
                    sampling: policy.sampling,
                    seed: rule_seed(&policy.name, rule_index),
                    active_from_ms: window_from,
                    active_until_ms: until,
                    start_delay_ms: rule.start_delay_ms,
                    delay: rule.delay.clone(),
                    abort: rule.abort.clone(),
                    reset: rule.reset,
                    target: rule.target,
                });
                kept_any = true;
            }
            if kept_any {
                set.policy_names.push(policy.name.clone());
            }
        }
        let mut names: Vec<String> = set
            .rules
            .iter()
            .flat_map(|r| r.headers.iter().map(|(_, n, _)| n.clone()))
            .collect();
        crate::sort::sort_by(&mut names, |a, b| a < b);
        names.dedup();
        for rule in &mut set.rules {
            for (slot, name, _) in &mut rule.headers {
                *slot = names.binary_search(name).unwrap_or(usize::MAX);
            }
        }
        set.evaluated_value = set.policy_names.join(",");
        set
    }

    /// [`CompiledPolicySet::compile`] of documents: each converted to its sidecar form first
    /// ([`SidecarPolicy::from_document`], where regexes are compiled), as the control plane
    /// does before it sends them. For `simulate`, the scenario corpus, tests and tools.
    pub fn from_documents(
        policies: &[PolicyDocument],
        identity: &Identity,
        now_ms: u64,
    ) -> Result<CompiledPolicySet, CompileError> {
        let policies = SidecarPolicy::from_documents(policies)?;
        Ok(CompiledPolicySet::compile(&policies, identity, now_ms))
    }

    /// The same set for a mesh whose trust domain is `trust_domain` (default
    /// [`DEFAULT_TRUST_DOMAIN`]): callers with certificates of any other domain are unknown.
    pub fn with_trust_domain(mut self, trust_domain: &str) -> CompiledPolicySet {
        trust_domain.clone_into(&mut self.trust_domain);
        self
    }

    /// The trust domain callers' certificates must be of.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// Whether some rule has a `source` condition, i.e. whether [`decide`] may ever ask for
    /// the caller's certificate.
    pub fn reads_caller(&self) -> bool {
        self.rules.iter().any(|r| r.source.is_some())
    }

    /// Whether some rule has a window or an expiry, i.e. whether [`decide`]'s answer can depend
    /// on `now_ms` (without one, every rule is live at any time and a filter need not read its
    /// clock to decide).
    pub fn has_time_bounds(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.active_from_ms > 0 || r.active_until_ms < u64::MAX)
    }

    /// True when nothing can fire: the filter's fast path.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The names of the policies kept for this sidecar, in evaluation order.
    pub fn policy_names(&self) -> &[String] {
        &self.policy_names
    }

    /// [`CompiledPolicySet::policy_names`] joined by `,`: the value of [`EVALUATED_HEADER`] a
    /// proxy writes for a request that had none.
    pub fn evaluated_value(&self) -> &str {
        &self.evaluated_value
    }

    /// How many rules were kept.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// How many policies have a rule that can fire at `now_ms`.
    pub fn active_policy_count(&self, now_ms: u64) -> usize {
        let mut count = 0;
        let mut last = None;
        for rule in self.rules.iter().filter(|r| r.is_live(now_ms)) {
            if last != Some(rule.policy) {
                count += 1;
                last = Some(rule.policy);
            }
        }
        count
    }

    /// The rules live at `now_ms` that match `request`, in evaluation order: what `simulate`
    /// explains.
    pub fn matching_rules<'s, R: RequestView + ?Sized>(
        &'s self,
        request: &'s R,
        now_ms: u64,
    ) -> impl Iterator<Item = MatchedRule<'s>> + 's {
        let path = path_without_query(request.path());
        let mut lookups = Lookups::for_set(self);
        let trust_domain = self.trust_domain.as_str();
        self.rules
            .iter()
            .filter(move |r| {
                r.is_live(now_ms) && r.matches(request, path, &mut lookups, trust_domain)
            })
            .map(|r| MatchedRule {
                policy: self.policy_name(r.policy),
                rule_index: r.rule_index,
                percentage: r.percentage,
                sampling: r.sampling,
                waits: r.delay.is_some() || r.start_delay_ms > 0,
                abort_status: r.abort.as_ref().map(|a| a.http_status),
                reset: r.reset,
                target: r.target,
            })
    }

    fn policy_name(&self, index: usize) -> &str {
        self.policy_names.get(index).map_or("", String::as_str)
    }
}

/// Header values and the caller looked up at most once per request, so ten rules on the same
/// header cost one lookup (a scan of the header map the Wasm filter fetched once, a call into
/// Envoy in the native module; the caller is a host property read in both). Header slots past
/// the first few are not cached.
#[derive(Default)]
struct Lookups<'r> {
    fetched: u8,
    values: [Option<&'r [u8]>; 8],
    caller: Option<Option<PeerIdentity<'r>>>,
    method: Option<&'r [u8]>,
    /// Read the caller from the filter state (a shared proxy), not the peer certificate.
    caller_from_filter_state: bool,
}

impl<'r> Lookups<'r> {
    fn for_set(set: &CompiledPolicySet) -> Lookups<'r> {
        Lookups {
            caller_from_filter_state: set.caller_from_filter_state,
            ..Lookups::default()
        }
    }

    /// The method, read once per request by the first rule that tests it (in the Wasm filter
    /// a read is a scan of the header map).
    fn method<R: RequestView + ?Sized>(&mut self, request: &'r R) -> &'r [u8] {
        self.method.get_or_insert_with(|| request.method())
    }

    /// The caller, if its certificate names one in `trust_domain`.
    fn caller<R: RequestView + ?Sized>(
        &mut self,
        request: &'r R,
        trust_domain: &str,
    ) -> Option<PeerIdentity<'r>> {
        let from_filter_state = self.caller_from_filter_state;
        *self.caller.get_or_insert_with(|| {
            let id = if from_filter_state {
                request.peer_principal()
            } else {
                request.peer_uri_san()
            };
            id.and_then(PeerIdentity::parse)
                .filter(|p| p.trust_domain == trust_domain)
        })
    }

    fn header<R: RequestView + ?Sized>(
        &mut self,
        request: &'r R,
        slot: usize,
        name: &str,
    ) -> Option<&'r [u8]> {
        let Some(cached) = self.values.get_mut(slot) else {
            return request.header(name);
        };
        let bit = 1u8 << slot;
        if self.fetched & bit == 0 {
            *cached = request.header(name);
            self.fetched |= bit;
        }
        *cached
    }
}

fn path_without_query(path: &[u8]) -> &[u8] {
    path.split(|b| *b == b'?').next().unwrap_or(path)
}

/// Decides the fault for one request: rules in the set's order (policies by `priority`, highest
/// first, then by name; within a policy, rule order); the first rule that is live at `now_ms`,
/// matches the request and whose draw fires gives the decision. `draw` is one uniformly random
/// `u64` per request. Policies the request names in [`EVALUATED_HEADER`] are skipped: another
/// boifi proxy decided them for it ([`decide_once`] also says what to write back).
pub fn decide<'s, R: RequestView + ?Sized>(
    set: &'s CompiledPolicySet,
    request: &R,
    now_ms: u64,
    draw: u64,
) -> Option<FaultDecision<'s>> {
    decide_once(set, request, now_ms, draw).fault
}

/// What [`decide_once`] found for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decided<'s, 'r> {
    /// The fault to inject, if a rule fired.
    pub fault: Option<FaultDecision<'s>>,
    /// The request's [`EVALUATED_HEADER`] as it arrived (read only for a non-empty set).
    pub incoming: Option<&'r [u8]>,
    /// Whether some policy of the set was evaluated, i.e. not skipped because the request named
    /// it: then the proxy marks the request with [`EVALUATED_HEADER`] before forwarding it.
    pub evaluated: bool,
}

/// [`decide`], also saying what the request carried in [`EVALUATED_HEADER`] and whether this
/// proxy evaluated a policy for it. The header is read once, and only when the set is not
/// empty.
pub fn decide_once<'s, 'r, R: RequestView + ?Sized>(
    set: &'s CompiledPolicySet,
    request: &'r R,
    now_ms: u64,
    draw: u64,
) -> Decided<'s, 'r> {
    let mut decided = Decided {
        fault: None,
        incoming: None,
        evaluated: false,
    };
    if set.rules.is_empty() {
        return decided;
    }
    decided.incoming = request.header(EVALUATED_HEADER);
    let skipped = |policy: usize| {
        decided
            .incoming
            .is_some_and(|list| names_policy(list, set.policy_name(policy)))
    };
    decided.evaluated = match decided.incoming {
        None => true,
        Some(_) => (0..set.policy_names.len()).any(|p| !skipped(p)),
    };
    if !decided.evaluated {
        return decided;
    }
    let path = path_without_query(request.path());
    let mut lookups = Lookups::for_set(set);
    let mut request_id: Option<Option<&[u8]>> = None;
    // Rules of one policy are contiguous: whether it is skipped is looked up once per policy.
    let mut current: Option<(usize, bool)> = None;
    for rule in &set.rules {
        let skip = match current {
            Some((p, skip)) if p == rule.policy => skip,
            _ => {
                let skip = decided.incoming.is_some() && skipped(rule.policy);
                current = Some((rule.policy, skip));
                skip
            }
        };
        if skip
            || !rule.is_live(now_ms)
            || !rule.matches(request, path, &mut lookups, &set.trust_domain)
        {
            continue;
        }
        let id = if rule.sampling == Sampling::Request {
            *request_id.get_or_insert_with(|| request.header(REQUEST_ID_HEADER))
        } else {
            None
        };
        let rule_draw = rule_draw(rule.sampling, rule.seed, draw, id);
        if !fires(rule_draw, rule.percentage.ppm()) {
            continue;
        }
        decided.fault = Some(FaultDecision {
            policy: set.policy_name(rule.policy),
            rule_index: rule.rule_index,
            start_delay_ms: rule.start_delay_ms,
            delay_ms: rule.delay.as_ref().map(|d| jittered_delay(d, rule_draw)),
            abort: rule.abort.as_ref(),
            reset: rule.reset,
            target: rule.target,
        });
        return decided;
    }
    decided
}

#[cfg(test)]
mod tests;
