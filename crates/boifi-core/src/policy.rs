//! The policy document: model, parsing with validation, and serialization.
//!
//! The format is the legacy BOIFI one, extended (see the README). Every way to build a
//! [`PolicyDocument`] from text goes through [`PolicyDocument::from_value`], which reports every
//! problem of a document with its field path. The rules a policy must meet are [`validate`],
//! which the JSON/YAML reader calls on every document and the control plane on every policy it
//! stores.

pub mod error;
pub mod guard;
pub(crate) mod name;
mod read;
pub(crate) mod validate;
mod write;

pub(crate) use validate::build_regex;
pub use validate::validate;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

pub use error::{FieldError, FieldErrorKind, PolicyError, ValidationErrors};
pub use name::{
    check_name, name_problem, namespace_problem, MAX_NAME_LEN, MAX_NAME_PART_LEN, RESERVED_NAMES,
};
pub use read::{parse_policies_json, parse_policy_json};
#[cfg(feature = "std")]
pub use read::{parse_policies_text, parse_policies_yaml};

use crate::identity::Identity;

/// The `apiVersion` written on every document.
pub const API_VERSION: &str = "boifi.io/v1alpha1";
/// The `kind` written on every document.
pub const KIND: &str = "FaultInjectionPolicy";

/// Parts per million that make 100 %.
pub const PPM_SCALE: u32 = 1_000_000;
/// Upper bound of `fixed_delay_ms`, `jitter_ms` and `start_delay_ms`: 5 minutes.
pub const MAX_DELAY_MS: u64 = 300_000;
/// Upper bound of `duration_seconds`: 30 days.
pub const MAX_DURATION_SECONDS: u64 = 30 * 24 * 3600;
/// Upper bound of `spec.heartbeat_seconds`: one day.
pub const MAX_HEARTBEAT_SECONDS: u64 = 24 * 3600;
/// Upper bound of a regex pattern's length, in bytes.
pub const MAX_REGEX_LEN: usize = 1024;
/// Upper bound of the compiled program of one regex, in instructions (the engine,
/// [`crate::pattern`], is linear-time: a search costs at most this × the value's length).
pub const MAX_REGEX_INSTRUCTIONS: usize = crate::pattern::MAX_INSTRUCTIONS;
/// The HTTP statuses an abort may answer with.
pub const HTTP_STATUSES: core::ops::RangeInclusive<u16> = 200..=599;
/// The largest gRPC status an abort may give (`UNAUTHENTICATED`).
pub const MAX_GRPC_STATUS: u8 = 16;
/// Upper bound of the rules in one policy.
pub const MAX_RULES: usize = 64;
/// Upper bound of header conditions in one rule and of headers in one abort.
pub const MAX_HEADERS: usize = 32;
/// Upper bound of an abort body, in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Upper bound of the entries of `metadata.labels` and of `metadata.annotations`.
pub const MAX_METADATA_ENTRIES: usize = 64;
/// Upper bound of a `metadata.labels` key or value, in bytes.
pub const MAX_LABEL_LEN: usize = 253;
/// Upper bound of all of `metadata.annotations` (keys and values), in bytes.
pub const MAX_ANNOTATIONS_BYTES: usize = 64 * 1024;

/// One fault injection policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDocument {
    /// Name and version.
    pub metadata: Metadata,
    /// What to break, where, and how.
    pub spec: PolicySpec,
    /// Filled by the control plane when it stores the policy; ignored on input.
    pub status: Option<PolicyStatus>,
}

/// `metadata` of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// A DNS-1123 subdomain, upper case and `_` allowed ([`check_name`]).
    pub name: String,
    /// A free-form version label.
    pub version: Option<String>,
    /// The legacy API's `metadata.namespace`: stored and returned, informational only (which
    /// sidecars a policy concerns is `spec.selector.namespace`).
    pub namespace: Option<String>,
    /// Labels for finding policies (`boifi-cli policy list -l key=value`); never matched
    /// against sidecars.
    pub labels: BTreeMap<String, String>,
    /// Free-form notes, stored and returned.
    pub annotations: BTreeMap<String, String>,
}

/// `spec` of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySpec {
    /// Which sidecars the policy concerns.
    pub selector: Selector,
    /// Evaluated in order; the first rule that matches and fires decides.
    pub rules: Vec<Rule>,
    /// How the percentage draw is made.
    pub sampling: Sampling,
    /// When set, the policy acts only inside this window.
    pub window: Option<Window>,
    /// Evaluation order: a higher priority is evaluated first; equal priorities in name
    /// order. Default 0.
    pub priority: i32,
    /// `false`: stored and listed, but never applied (compiling a set leaves it out).
    pub enabled: bool,
    /// A sidecar that has not heard from the control plane for this many seconds stops
    /// applying the policy (1..=[`MAX_HEARTBEAT_SECONDS`]); `None`: it applies it until told
    /// otherwise.
    pub heartbeat_seconds: Option<u64>,
    /// Health checks the control plane evaluates; the first that fails `failure_limit` times
    /// in a row stops the policy. Empty: unguarded. Never sent to sidecars.
    pub guards: Vec<guard::Guard>,
}

/// Which sidecars a policy applies to. `None` means any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    /// The service name (`""` or `"*"` on input mean any).
    pub service: Option<String>,
    /// The namespace (`""` or `"*"` on input mean any).
    pub namespace: Option<String>,
    /// Pod labels that must all be present with these values.
    pub labels: BTreeMap<String, String>,
}

impl Selector {
    /// Whether a sidecar of this identity is selected. A named service or namespace never
    /// matches an identity that lacks it (a partial identity only gets wildcard policies).
    pub fn matches(&self, identity: &Identity) -> bool {
        fn named(want: &Option<String>, have: &Option<String>) -> bool {
            match want {
                None => true,
                Some(want) => have.as_deref() == Some(want.as_str()),
            }
        }
        named(&self.service, &identity.service)
            && named(&self.namespace, &identity.namespace)
            && self
                .labels
                .iter()
                .all(|(k, v)| identity.labels.get(k) == Some(v))
    }

    /// Whether the selector names pods (by their labels) rather than services and namespaces
    /// only. A shared proxy (a waypoint, a gateway) picks the endpoint after the filter runs,
    /// so such a policy never matches there.
    pub fn selects_pods(&self) -> bool {
        !self.labels.is_empty()
    }
}

/// One rule: a request match and the fault to inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// All present conditions must hold.
    pub matches: RequestMatch,
    /// What to do with a matching request.
    pub fault: Fault,
}

/// The conditions of a rule (all must hold).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestMatch {
    /// The HTTP method.
    pub method: Option<StringMatch>,
    /// The request path, without the query string.
    pub path: Option<StringMatch>,
    /// Request headers; names are lower-cased.
    pub headers: Vec<HeaderMatch>,
    /// The caller, as its verified peer certificate names it.
    pub source: Option<SourceMatch>,
}

/// `match.source`: who the caller is. Known only from the caller's verified mTLS certificate
/// (its SPIFFE ID), never from a header; a caller without one never matches. All present
/// fields must hold; at least one is present.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceMatch {
    /// The calling service. A certificate names a service account, not a service, so this
    /// matches the service account of the same name unless `service_account` says which one
    /// the service runs under (Online Boutique runs one account per service, named like it).
    pub service: Option<String>,
    /// The caller's namespace.
    pub namespace: Option<String>,
    /// The caller's Kubernetes service account.
    pub service_account: Option<String>,
}

impl SourceMatch {
    /// The service account a caller must run under, if the match names one.
    pub fn required_service_account(&self) -> Option<&str> {
        self.service_account.as_deref().or(self.service.as_deref())
    }
}

/// How a string is compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StringMatch {
    /// Equal.
    Exact(String),
    /// Starts with.
    Prefix(String),
    /// The regex (linear-time engine) finds a match anywhere in the value, as in the legacy
    /// plugin; anchor it with `^` and `$` to match the whole value.
    Regex(String),
}

/// A condition on one request header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatch {
    /// Lower-cased header name.
    pub name: String,
    /// How its value is compared.
    pub value: StringMatch,
}

/// The fault of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Share of matching requests that get the fault.
    pub percentage: Percentage,
    /// Time a faulted request waits before the fault acts.
    pub start_delay_ms: u64,
    /// The rule stops acting this long after the policy was stored; 0 = never.
    pub duration_seconds: u64,
    /// Whether the fault acts on the request, before the app sees it, or on the app's
    /// response, after the app has done its work.
    pub target: FaultTarget,
    /// Delay the request (or hold the app's response).
    pub delay: Option<Delay>,
    /// Answer with an error instead of forwarding the request (or instead of the app's
    /// response).
    pub abort: Option<Abort>,
    /// Reset the stream: the caller gets no HTTP answer at all, only an upstream reset
    /// (`RST_STREAM` on HTTP/2). Never with `abort`.
    pub reset: bool,
}

/// `fault.target`: the phase a fault acts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultTarget {
    /// Before the request reaches the app: the app never sees a faulted request.
    #[default]
    Request,
    /// After the app answered: the app did its work, the caller gets the fault.
    Response,
}

impl FaultTarget {
    /// Lower-case name, as policies write it.
    pub const fn as_str(self) -> &'static str {
        match self {
            FaultTarget::Request => "request",
            FaultTarget::Response => "response",
        }
    }
}

/// A percentage held as parts per million (0.0001 % resolution, as Envoy's MILLION denominator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Percentage(u32);

impl Percentage {
    /// 100 %.
    pub const ALWAYS: Percentage = Percentage(PPM_SCALE);
    /// 0 %.
    pub const NEVER: Percentage = Percentage(0);

    /// From parts per million; `None` above 1 000 000.
    pub const fn from_ppm(ppm: u32) -> Option<Percentage> {
        if ppm <= PPM_SCALE {
            Some(Percentage(ppm))
        } else {
            None
        }
    }

    /// Parts per million.
    pub const fn ppm(self) -> u32 {
        self.0
    }
}

/// A delay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delay {
    /// The delay.
    pub fixed_delay_ms: u64,
    /// Uniform variation of ± this much, never below 0.
    pub jitter_ms: u64,
}

/// An abort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abort {
    /// HTTP status, 200..=599.
    pub http_status: u16,
    /// gRPC status (0..=16) given to gRPC requests.
    pub grpc_status: Option<u8>,
    /// Response body.
    pub body: Option<String>,
    /// Extra response headers (lower-cased names).
    pub headers: BTreeMap<String, String>,
}

/// How the percentage draw is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sampling {
    /// A fresh draw per request.
    #[default]
    Random,
    /// A hash of the `x-request-id` header and the policy name: the same request gets the same
    /// decision in every replica, hop and retry. Requests without the header draw at random.
    Request,
}

/// The window in which a policy acts, in Unix milliseconds (end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start, inclusive.
    pub start_ms: u64,
    /// End, exclusive.
    pub end_ms: u64,
}

/// What the control plane records when it stores a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PolicyStatus {
    /// When the policy was stored (Unix ms); `duration_seconds` counts from here.
    pub stored_at_ms: u64,
    /// When every rule has expired (Unix ms); `None` if some rule never expires.
    pub expires_at_ms: Option<u64>,
    /// The store revision of this policy's last write.
    pub revision: u64,
    /// A guarded policy's state, written by the control plane's guard evaluator only (a
    /// client's is dropped); `None` on an unguarded policy, and read as
    /// [`guard::GuardState::Verifying`] on a guarded one.
    pub guard: Option<guard::GuardState>,
}

/// Where a policy stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyState {
    /// It can fire.
    Active,
    /// Its window has not started yet.
    Scheduled,
    /// Every rule expired, or its window is over.
    Expired,
    /// `spec.enabled: false`: stored, never applied.
    Disabled,
}

impl PolicyState {
    /// Lower-case name, as shown by the API and the CLI.
    pub const fn as_str(self) -> &'static str {
        match self {
            PolicyState::Active => "active",
            PolicyState::Scheduled => "scheduled",
            PolicyState::Expired => "expired",
            PolicyState::Disabled => "disabled",
        }
    }
}

impl PolicyDocument {
    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// Whether the policy can concern a sidecar of this identity.
    pub fn applies_to(&self, identity: &Identity) -> bool {
        self.spec.selector.matches(identity)
    }

    /// When the policy stored at `stored_at_ms` stops acting for good: the latest rule expiry,
    /// or the window end if earlier. `None` if it never expires.
    pub fn expires_at_ms(&self, stored_at_ms: u64) -> Option<u64> {
        policy_expiry(
            self.spec.rules.iter().map(|r| r.fault.duration_seconds),
            self.spec.window,
            stored_at_ms,
        )
    }

    /// The state at `now_ms`; a policy without status counts as stored at `now_ms`. Expiry
    /// comes first, so the sweep deletes a disabled policy once it expired.
    pub fn state_at(&self, now_ms: u64) -> PolicyState {
        let stored_at = self.status.map_or(now_ms, |s| s.stored_at_ms);
        policy_state(
            self.expires_at_ms(stored_at),
            self.spec.enabled,
            self.spec.window,
            now_ms,
        )
    }

    /// The same policy with its status set for a write at `stored_at_ms`. The guard state
    /// of the status it carries is kept (the server clears a client's status before it
    /// stores; the guard evaluator writes the state it decided), so `duration_seconds` of a
    /// guarded policy counts from the write that made it run.
    pub fn stored(mut self, stored_at_ms: u64, revision: u64) -> PolicyDocument {
        let guard = self.status.and_then(|s| s.guard);
        self.status = Some(PolicyStatus {
            stored_at_ms,
            expires_at_ms: self.expires_at_ms(stored_at_ms),
            revision,
            guard,
        });
        self
    }

    /// The guard state of a guarded policy (`None`: unguarded).
    pub fn guard_state(&self) -> Option<guard::GuardState> {
        if self.spec.guards.is_empty() {
            return None;
        }
        Some(self.status.and_then(|s| s.guard).unwrap_or_default())
    }

    /// Whether sidecars may get the policy: unguarded, or guarded and running.
    pub fn guards_allow_injection(&self) -> bool {
        self.guard_state().is_none_or(|s| s.injects())
    }

    /// The policy as a sidecar gets it: without its guards and their state (sidecars never
    /// evaluate guards).
    pub fn for_sidecars(&self) -> PolicyDocument {
        let mut policy = self.clone();
        policy.spec.guards = Vec::new();
        if let Some(status) = &mut policy.status {
            status.guard = None;
        }
        policy
    }

    /// Kinds of fault the policy injects, for listings: each of `abort`, `delay` and `reset`
    /// once, in that order (abort before delay is the legacy status API's order).
    pub fn fault_kinds(&self) -> Vec<&'static str> {
        let mut kinds = Vec::new();
        let rules = &self.spec.rules;
        if rules.iter().any(|r| r.fault.abort.is_some()) {
            kinds.push("abort");
        }
        if rules.iter().any(|r| r.fault.delay.is_some()) {
            kinds.push("delay");
        }
        if rules.iter().any(|r| r.fault.reset) {
            kinds.push("reset");
        }
        kinds
    }

    /// Whether every label of `wanted` is on the policy with that value (`policy list -l`).
    pub fn has_labels(&self, wanted: &BTreeMap<String, String>) -> bool {
        wanted
            .iter()
            .all(|(k, v)| self.metadata.labels.get(k) == Some(v))
    }

    /// The order in which policies are evaluated: higher `priority` first, then by name.
    pub fn evaluation_order(a: &PolicyDocument, b: &PolicyDocument) -> core::cmp::Ordering {
        evaluation_order((a.spec.priority, a.name()), (b.spec.priority, b.name()))
    }
}

/// The order of policies by `(priority, name)`: higher priority first, then by name. Every
/// form of a policy ([`PolicyDocument`], [`crate::compiled::SidecarPolicy`]) is ordered by it.
pub fn evaluation_order(a: (i32, &str), b: (i32, &str)) -> core::cmp::Ordering {
    b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1))
}

/// When a rule of `duration_seconds` stops acting, for a policy stored at `stored_at_ms`.
pub fn rule_expiry(duration_seconds: u64, stored_at_ms: u64) -> Option<u64> {
    match duration_seconds {
        0 => None,
        s => Some(stored_at_ms.saturating_add(s.saturating_mul(1000))),
    }
}

/// When a policy stored at `stored_at_ms` with rules of these `duration_seconds` and this
/// window stops acting for good: the latest rule expiry, or the window end if earlier. `None`
/// if it never expires.
pub fn policy_expiry(
    durations: impl Iterator<Item = u64>,
    window: Option<Window>,
    stored_at_ms: u64,
) -> Option<u64> {
    let mut latest: Option<u64> = Some(0);
    for duration in durations {
        latest = match (latest, rule_expiry(duration, stored_at_ms)) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }
    match (latest, window) {
        (Some(a), Some(w)) => Some(a.min(w.end_ms)),
        (None, Some(w)) => Some(w.end_ms),
        (a, None) => a,
    }
}

/// Where a policy that expires at `expires_at_ms` stands at `now_ms`. Expiry comes first, so
/// the sweep deletes a disabled policy once it expired.
pub fn policy_state(
    expires_at_ms: Option<u64>,
    enabled: bool,
    window: Option<Window>,
    now_ms: u64,
) -> PolicyState {
    if expires_at_ms.is_some_and(|end| now_ms >= end) {
        return PolicyState::Expired;
    }
    if !enabled {
        return PolicyState::Disabled;
    }
    match window {
        Some(w) if now_ms < w.start_ms => PolicyState::Scheduled,
        _ => PolicyState::Active,
    }
}

impl Rule {
    /// When this rule stops acting, for a policy stored at `stored_at_ms`.
    pub fn expires_at_ms(&self, stored_at_ms: u64) -> Option<u64> {
        rule_expiry(self.fault.duration_seconds, stored_at_ms)
    }
}
