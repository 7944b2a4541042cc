//! The HTTP contract between the control plane, the filter and the CLI. Declared once, here.

use crate::json::Json;
use alloc::borrow::ToOwned;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::identity::{Identity, ProxyKind};
use crate::policy::PolicyDocument;
use crate::text::decimal;

pub mod compact;
mod credential;
mod native;
mod status;
pub use credential::{CredentialError, ReadCredential, MAX_CREDENTIAL_BYTES};
pub use native::{
    NativeConfig, NativeConfigError, DEFAULT_CONTROL_PLANE_ADDRESS, NATIVE_MODULE_NAME,
};
pub use status::{
    GuardSummary, LegacySummary, PolicyStatusEntry, ProxyCounts, SidecarReport, SidecarState,
    SidecarStatusEntry, StatusResponse, StatusTotals, Targets, IN_SHARED_PROXIES_NEVER,
    IN_SHARED_PROXIES_PER_REQUEST,
};

/// The answer of `GET /v1/config`: the policies that can apply to the asking sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigResponse {
    /// The global config version (store revision); changes on every write.
    pub version: u64,
    /// Policies whose selector matches the sidecar, with their status.
    pub policies: Vec<PolicyDocument>,
}

/// The answer of `GET /v1/policies` (the legacy shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyList {
    /// Every stored policy.
    pub policies: Vec<PolicyDocument>,
}

/// One audited change of `GET /v1/audit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When (Unix ms).
    pub at_ms: u64,
    /// Who: the token's name (`token:<sha256 prefix>` for the legacy token file), `anonymous`
    /// on a server without tokens, or `sweeper`.
    pub who: String,
    /// `create`, `replace`, `delete`, `delete_all` (the kill switch) or `expire`.
    pub action: String,
    /// The policy, `*` for `delete_all`.
    pub policy: String,
    /// The config version before.
    pub version_before: u64,
    /// The config version after.
    pub version_after: u64,
}

/// The answer of `GET /v1/audit`: the answering replica's latest audited changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditList {
    /// Oldest first.
    pub entries: Vec<AuditEntry>,
}

/// Every error answer of the API (the legacy shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// A short machine-readable kind, e.g. `invalid_policy`, `not_found`.
    pub error: String,
    /// What went wrong, for a person.
    pub message: String,
    /// Each problem, e.g. every field error of a policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
    /// The HTTP status.
    pub code: u16,
}

/// Default long-poll wait when the sidecar names none: 30 s.
pub const DEFAULT_WAIT_MS: u64 = 30_000;
/// Longest long-poll wait the server holds a request: 5 minutes.
pub const MAX_WAIT_MS: u64 = 300_000;

/// The query of `GET /v1/config`: who asks, what version it holds, how long it may wait.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigQuery {
    /// The sidecar's identity (service, namespace, pod, labels).
    pub identity: Identity,
    /// The config version the sidecar holds; with `wait_ms`, the server answers only when the
    /// version differs, or 304 after the wait.
    pub version: Option<u64>,
    /// How long the server may hold the request.
    pub wait_ms: Option<u64>,
    /// How the answer is encoded (`encoding=compact`: [`compact`], for sidecars).
    pub encoding: ConfigEncoding,
    /// A version the sidecar received and did not apply, and why (`refused=<version>` and
    /// `reason=<text>`). `version` stays the set it applied, so status can tell a sidecar that
    /// applied the current version from one still pending and one that refused it.
    pub refused: Option<Refusal>,
    /// How many destination services a shared proxy has compiled policy sets for
    /// (`destinations=N`; only with `proxy=waypoint` or `proxy=gateway`), for status.
    pub destinations: Option<u64>,
    /// The namespaces a waypoint serves besides its own (`namespaces=a,b`; only with
    /// `proxy=waypoint`): it is sent the policies of these namespaces too.
    pub namespaces: BTreeSet<String>,
}

/// A config version a sidecar received and refused, reported on its next poll; the status view
/// shows it as it came.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Refusal {
    /// The refused version.
    pub version: u64,
    /// Why, for a person (at most [`MAX_REFUSAL_REASON_BYTES`]).
    pub reason: String,
}

/// The longest refusal reason a sidecar sends and the server accepts, in bytes.
pub const MAX_REFUSAL_REASON_BYTES: usize = 512;

impl Refusal {
    /// A refusal of `version` for `reason`, cut at a character boundary to
    /// [`MAX_REFUSAL_REASON_BYTES`] so it always fits the query the server accepts.
    pub fn new(version: u64, reason: &str) -> Refusal {
        let mut end = reason.len().min(MAX_REFUSAL_REASON_BYTES);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        Refusal {
            version,
            reason: reason.get(..end).unwrap_or_default().to_owned(),
        }
    }
}

/// The encoding of a `/v1/config` answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ConfigEncoding {
    /// `application/json`, the default.
    #[default]
    Json,
    /// Compact version 2 ([`compact::v2::MEDIA_TYPE`]), asked for with `encoding=compact`
    /// alone: what filters older than version 3 read.
    Compact,
    /// Compact version 3 ([`compact::MEDIA_TYPE`]), asked for with
    /// `encoding=compact&compact_version=3` (or higher: the newest this server writes). A
    /// server older than version 3 ignores `compact_version` and answers version 2, which the
    /// filter refuses naming the upgrade order.
    CompactV3,
}

/// A bad `/v1/config` query parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query parameter `{param}`: {reason}")]
pub struct QueryError {
    /// The parameter.
    pub param: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigQuery {
    /// Reads the query from decoded `(name, value)` pairs. Unknown parameters are ignored so
    /// newer sidecars can talk to older servers.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<ConfigQuery, QueryError> {
        let mut query = ConfigQuery::default();
        let bad = |param: &str, reason: String| QueryError {
            param: param.to_owned(),
            reason,
        };
        let text = |v: &str| (!v.is_empty()).then(|| v.to_owned());
        let mut reason: Option<&str> = None;
        let mut compact_version: Option<u64> = None;
        for (name, value) in pairs {
            match name {
                "service" => query.identity.service = text(value),
                "namespace" => query.identity.namespace = text(value),
                "pod" => query.identity.pod = text(value),
                "labels" => {
                    for pair in value.split(',').filter(|p| !p.is_empty()) {
                        let (k, v) = pair.split_once('=').ok_or_else(|| {
                            bad("labels", format!("`{pair}` is not of the form key=value"))
                        })?;
                        query.identity.labels.insert(k.to_owned(), v.to_owned());
                    }
                }
                "version" => {
                    let v = value
                        .parse::<u64>()
                        .map_err(|_| bad("version", format!("`{value}` is not a whole number")))?;
                    query.version = Some(v);
                }
                "wait" => {
                    let ms = parse_duration_ms(value).ok_or_else(|| {
                        bad(
                            "wait",
                            format!("`{value}` is not a duration such as `30s` or `500ms`"),
                        )
                    })?;
                    if ms > MAX_WAIT_MS {
                        return Err(bad(
                            "wait",
                            format!("`{value}` is longer than the limit of 300s"),
                        ));
                    }
                    query.wait_ms = Some(ms);
                }
                "destinations" => {
                    let n = value.parse::<u64>().map_err(|_| {
                        bad("destinations", format!("`{value}` is not a whole number"))
                    })?;
                    query.destinations = Some(n);
                }
                "namespaces" => {
                    for namespace in value.split(',').filter(|n| !n.is_empty()) {
                        if !is_dns_label(namespace) {
                            return Err(bad(
                                "namespaces",
                                format!(
                                    "`{namespace}` is not a namespace name (a DNS label: \
                                     lower-case letters, digits and `-`, at most 63)"
                                ),
                            ));
                        }
                        query.namespaces.insert(namespace.to_owned());
                    }
                }
                "proxy" => {
                    query.identity.proxy = ProxyKind::parse(value).ok_or_else(|| {
                        bad(
                            "proxy",
                            format!("`{value}` is not one of `sidecar`, `waypoint`, `gateway`"),
                        )
                    })?;
                }
                "encoding" => {
                    query.encoding = match value {
                        "json" => ConfigEncoding::Json,
                        "compact" => ConfigEncoding::Compact,
                        _ => {
                            return Err(bad(
                                "encoding",
                                format!("`{value}` is not one of `json`, `compact`"),
                            ))
                        }
                    }
                }
                "compact_version" => {
                    let v = value
                        .parse::<u64>()
                        .ok()
                        .filter(|v| *v >= 2)
                        .ok_or_else(|| {
                            bad(
                                "compact_version",
                                format!("`{value}` is not a compact format version (2 or higher)"),
                            )
                        })?;
                    compact_version = Some(v);
                }
                "refused" => {
                    let version = value
                        .parse::<u64>()
                        .map_err(|_| bad("refused", format!("`{value}` is not a whole number")))?;
                    query.refused = Some(Refusal {
                        version,
                        reason: String::new(),
                    });
                }
                "reason" => {
                    if value.len() > MAX_REFUSAL_REASON_BYTES {
                        return Err(bad(
                            "reason",
                            format!(
                                "{} bytes is longer than the limit of {MAX_REFUSAL_REASON_BYTES}",
                                value.len()
                            ),
                        ));
                    }
                    reason = Some(value);
                }
                _ => {}
            }
        }
        if query.encoding == ConfigEncoding::Compact
            && compact_version.is_some_and(|v| v >= compact::FORMAT_VERSION)
        {
            query.encoding = ConfigEncoding::CompactV3;
        }
        match (&mut query.refused, reason) {
            (Some(refusal), Some(reason)) => reason.clone_into(&mut refusal.reason),
            (None, Some(_)) => {
                return Err(bad("reason", "is given without `refused`".to_owned()));
            }
            _ => {}
        }
        let proxy = query.identity.proxy;
        if !query.namespaces.is_empty() && proxy != ProxyKind::Waypoint {
            return Err(bad(
                "namespaces",
                format!(
                    "is for a waypoint (`proxy=waypoint`), not a {}",
                    proxy.as_str()
                ),
            ));
        }
        if query.destinations.is_some() && !proxy.is_shared() {
            return Err(bad(
                "destinations",
                "is for a shared proxy (`proxy=waypoint` or `proxy=gateway`), not a sidecar"
                    .to_owned(),
            ));
        }
        Ok(query)
    }

    /// Whether `policy` belongs in this proxy's `/v1/config` answer ([`concerns`]).
    pub fn concerns(&self, policy: &PolicyDocument) -> bool {
        concerns(policy, &self.identity, &self.namespaces)
    }

    /// The query string (without `?`), percent-encoded. Written straight into one string,
    /// without `core::fmt`: the poller builds it for every poll.
    pub fn to_query_string(&self) -> String {
        let mut out = String::new();
        let mut push = |name: &str, values: &[&str]| {
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(name);
            out.push('=');
            for value in values {
                push_percent_encoded(&mut out, value);
            }
        };
        if let Some(s) = &self.identity.service {
            push("service", &[s]);
        }
        if let Some(n) = &self.identity.namespace {
            push("namespace", &[n]);
        }
        if let Some(p) = &self.identity.pod {
            push("pod", &[p]);
        }
        if !self.identity.labels.is_empty() {
            // `k=v,k=v`, written straight into one string.
            let mut labels = String::new();
            for (k, v) in &self.identity.labels {
                if !labels.is_empty() {
                    labels.push(',');
                }
                labels.extend([k.as_str(), "=", v.as_str()]);
            }
            push("labels", &[&labels]);
        }
        if self.identity.proxy.is_shared() {
            push("proxy", &[self.identity.proxy.as_str()]);
        }
        if !self.namespaces.is_empty() {
            let mut namespaces = String::new();
            for namespace in &self.namespaces {
                if !namespaces.is_empty() {
                    namespaces.push(',');
                }
                namespaces.push_str(namespace);
            }
            push("namespaces", &[&namespaces]);
        }
        if let Some(n) = self.destinations {
            push("destinations", &[&decimal(n)]);
        }
        if let Some(v) = self.version {
            push("version", &[&decimal(v)]);
        }
        if let Some(w) = self.wait_ms {
            push("wait", &[&decimal(w), "ms"]);
        }
        match self.encoding {
            ConfigEncoding::Json => {}
            ConfigEncoding::Compact => push("encoding", &["compact"]),
            ConfigEncoding::CompactV3 => {
                push("encoding", &["compact"]);
                push("compact_version", &[&decimal(compact::FORMAT_VERSION)]);
            }
        }
        if let Some(refusal) = &self.refused {
            push("refused", &[&decimal(refusal.version)]);
            push("reason", &[&refusal.reason]);
        }
        out
    }
}

/// Whether `policy` belongs in the `/v1/config` answer of the proxy `identity` (which, for a
/// waypoint, also serves `namespaces`); the one rule the server answers with and status counts
/// with.
///
/// - A sidecar gets the policies whose selector matches it ([`PolicyDocument::applies_to`]).
/// - A shared proxy decides the target service per request, so it gets every policy it may
///   need: a waypoint those whose selector namespace is `*`, its own namespace or one of
///   `namespaces`; a gateway every policy. Neither gets a policy that selects pods by labels:
///   the shared proxy picks the endpoint after the filter runs, so such a policy never matches
///   there ([`crate::policy::Selector::selects_pods`]).
pub fn concerns(
    policy: &PolicyDocument,
    identity: &Identity,
    namespaces: &BTreeSet<String>,
) -> bool {
    let selector = &policy.spec.selector;
    match identity.proxy {
        ProxyKind::Sidecar => policy.applies_to(identity),
        _ if selector.selects_pods() => false,
        ProxyKind::Gateway => true,
        ProxyKind::Waypoint => match &selector.namespace {
            None => true,
            Some(namespace) => {
                identity.namespace.as_ref() == Some(namespace) || namespaces.contains(namespace)
            }
        },
    }
}

/// A Kubernetes namespace name: an RFC 1123 label (1 to 63 of `[a-z0-9-]`, no `-` at either
/// end).
fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

/// Parses `500ms`, `30s`, `2m` or a bare number of seconds.
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    // Milliseconds per unit; `ms` is tried before `s`, which it ends with.
    const UNITS: [(&str, u64); 3] = [("ms", 1), ("s", 1000), ("m", 60_000)];
    let text = text.trim();
    let (number, factor) = UNITS
        .iter()
        .find_map(|&(unit, factor)| text.strip_suffix(unit).map(|n| (n, factor)))
        .unwrap_or((text, 1000));
    number.parse::<u64>().ok()?.checked_mul(factor)
}

/// Percent-encodes everything but RFC 3986's unreserved characters: for query values and URL
/// path segments (a policy name in `/v1/policies/{name}`).
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    push_percent_encoded(&mut out, value);
    out
}

/// [`percent_encode`], appended to `out`.
fn push_percent_encoded(out: &mut String, value: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let digit = |d: u8| char::from(HEX.get(usize::from(d)).copied().unwrap_or(b'0'));
            out.extend(['%', digit(b >> 4), digit(b & 0xf)]);
        }
    }
}

/// The Istio cluster name of the control-plane Service, the filter's default upstream.
pub const DEFAULT_CONTROL_PLANE_CLUSTER: &str =
    "outbound|8080||boifi-control-plane.boifi.svc.cluster.local";
/// The default `:authority` of the filter's config requests.
pub const DEFAULT_CONTROL_PLANE_AUTHORITY: &str =
    "boifi-control-plane.boifi.svc.cluster.local:8080";

/// Default of [`PluginConfig::max_active_delays`]: far above what a delay experiment needs per
/// worker, far below what would exhaust a sidecar's memory (measured in docs/PERFORMANCE.md).
pub const DEFAULT_MAX_ACTIVE_DELAYS: u64 = 1_000;
/// Largest accepted [`PluginConfig::max_active_delays`].
pub const MAX_ACTIVE_DELAYS_LIMIT: u64 = 1_000_000;
/// Default of [`PluginConfig::max_rules`]. A request that no rule faults is checked against
/// every rule of the set, so the rule count bounds the work added to each request: `decide`
/// stays under 50 ns for 10 matching rules (docs/PERFORMANCE.md), so 1 000 keep the worst case
/// to a few microseconds, below an Envoy hop's own cost. Each worker holds its compiled copy,
/// so it bounds the sidecar's memory too; a real experiment uses a handful of rules per
/// sidecar, and a set far above that is a mistake (a selector wider than meant, a generated
/// set) better refused, visibly, than served slowly.
pub const DEFAULT_MAX_RULES: u64 = 1_000;
/// Largest accepted [`PluginConfig::max_rules`].
pub const MAX_RULES_LIMIT: u64 = 100_000;
/// `PluginConfig::max_destinations` unless configured.
pub const DEFAULT_MAX_DESTINATIONS: u64 = 256;
/// Upper bound of `PluginConfig::max_destinations`.
pub const MAX_DESTINATIONS_LIMIT: u64 = 65_536;

/// The filter's configuration: the JSON Istio passes as the `WasmPlugin`'s `pluginConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginConfig {
    /// The Envoy cluster that reaches the control plane.
    pub control_plane_cluster: String,
    /// The `:authority` of config requests.
    pub control_plane_authority: String,
    /// How long the server may hold a long-poll.
    pub long_poll_wait_ms: u64,
    /// How long a config request may take in all; more than `long_poll_wait_ms`.
    pub request_timeout_ms: u64,
    /// First retry delay after a failed config request.
    pub backoff_initial_ms: u64,
    /// Largest retry delay.
    pub backoff_max_ms: u64,
    /// Timer period while delayed requests are pending.
    pub delay_tick_ms: u64,
    /// Requests one filter instance (one Envoy worker) holds in delays at once; a delay fault
    /// beyond it lets the request pass unfaulted (Envoy's fault filter: `max_active_faults`).
    pub max_active_delays: u64,
    /// Rules one sidecar accepts, summed over the policies that apply to it: a config version
    /// with more is refused whole (the sidecar keeps its set and reports the refusal to the
    /// control plane), so no set costs a sidecar more per request and in memory than this
    /// allows ([`DEFAULT_MAX_RULES`] says why 1 000).
    pub max_rules: u64,
    /// How many destinations a shared proxy (waypoint, gateway) keeps a compiled policy set
    /// for, per filter instance; the least recently used one is evicted beyond it
    /// (`hfi.destinations.evictions_total`). Unused in a sidecar.
    pub max_destinations: u64,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub log_level: String,
    /// Overrides of the identity read from node metadata (for Envoy without Istio).
    pub identity: IdentityOverride,
    /// The read credential sent as `Authorization: Bearer …` on every config request, for a
    /// control plane that requires one for reads (`--auth-reads`); none by default. Envoy's
    /// `config_dump` shows it like the rest of this configuration, so the native module reads
    /// it from a file instead ([`NativeConfig::control_plane_token_file`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_plane_token: Option<ReadCredential>,
}

/// Identity fields that replace what node metadata says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IdentityOverride {
    /// Service name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Pod name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Pod labels, merged over the metadata's.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl IdentityOverride {
    /// Applies the overrides to an identity resolved from metadata.
    pub fn apply(&self, mut identity: Identity) -> Identity {
        if let Some(s) = &self.service {
            identity.service = Some(s.clone());
        }
        if let Some(n) = &self.namespace {
            identity.namespace = Some(n.clone());
        }
        if let Some(p) = &self.pod {
            identity.pod = Some(p.clone());
        }
        for (k, v) in &self.labels {
            identity.labels.insert(k.clone(), v.clone());
        }
        // The kind of proxy follows the labels, overridden ones included (Envoy without Istio
        // declares a waypoint by its Gateway class label).
        if !self.labels.is_empty() {
            identity.proxy = crate::identity::ProxyKind::of_labels(&identity.labels);
        }
        identity
    }
}

impl Default for PluginConfig {
    fn default() -> PluginConfig {
        PluginConfig {
            control_plane_cluster: DEFAULT_CONTROL_PLANE_CLUSTER.to_owned(),
            control_plane_authority: DEFAULT_CONTROL_PLANE_AUTHORITY.to_owned(),
            long_poll_wait_ms: DEFAULT_WAIT_MS,
            request_timeout_ms: DEFAULT_WAIT_MS + 5_000,
            backoff_initial_ms: 1_000,
            backoff_max_ms: 30_000,
            delay_tick_ms: 5,
            max_active_delays: DEFAULT_MAX_ACTIVE_DELAYS,
            max_rules: DEFAULT_MAX_RULES,
            max_destinations: DEFAULT_MAX_DESTINATIONS,
            log_level: "info".to_owned(),
            identity: IdentityOverride::default(),
            control_plane_token: None,
        }
    }
}

/// A field of [`PluginConfig`], for the reader's tables.
type FieldOf<T> = fn(&mut PluginConfig) -> &mut T;

/// The text fields: none may be empty.
const TEXT_FIELDS: [(&str, FieldOf<String>); 3] = [
    ("control_plane_cluster", |c| &mut c.control_plane_cluster),
    ("control_plane_authority", |c| {
        &mut c.control_plane_authority
    }),
    ("log_level", |c| &mut c.log_level),
];

/// The whole-number fields, in [`PluginConfig::whole_numbers`]' order: name, smallest and
/// largest value, the range as messages write it.
const WHOLE_NUMBER_FIELDS: [(&str, u64, u64, &str); 8] = [
    ("long_poll_wait_ms", 0, MAX_WAIT_MS, "0..=300000"),
    ("request_timeout_ms", 100, 600_000, "100..=600000"),
    ("backoff_initial_ms", 1, 3_600_000, "1..=3600000"),
    ("backoff_max_ms", 1, 3_600_000, "1..=3600000"),
    ("delay_tick_ms", 1, 1_000, "1..=1000"),
    (
        "max_active_delays",
        0,
        MAX_ACTIVE_DELAYS_LIMIT,
        "0..=1000000",
    ),
    ("max_rules", 0, MAX_RULES_LIMIT, "0..=100000"),
    ("max_destinations", 1, MAX_DESTINATIONS_LIMIT, "1..=65536"),
];

const PLUGIN_FIELDS: [&str; 13] = [
    "control_plane_cluster",
    "control_plane_authority",
    "long_poll_wait_ms",
    "request_timeout_ms",
    "backoff_initial_ms",
    "backoff_max_ms",
    "delay_tick_ms",
    "max_active_delays",
    "max_rules",
    "max_destinations",
    "log_level",
    "identity",
    "control_plane_token",
];
const IDENTITY_FIELDS: [&str; 4] = ["service", "namespace", "pod", "labels"];
const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// Why the plugin configuration was refused. Its message is built without `core::fmt`
/// ([`PluginConfigError::message`]): the Wasm filter logs it, and links no formatting for it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PluginConfigError {
    /// Not JSON.
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's explanation.
        message: &'static str,
    },
    /// JSON with bad fields: every problem as `path: reason`, joined by `; `.
    Invalid(String),
}

impl PluginConfigError {
    /// What `Display` writes: `plugin configuration: …` naming each bad field and why.
    pub fn message(&self) -> String {
        match self {
            PluginConfigError::Syntax {
                line,
                column,
                message,
            } => {
                let mut out = String::from("plugin configuration is not valid JSON: line ");
                crate::text::push_decimal(&mut out, *line as u64);
                out.push_str(", column ");
                crate::text::push_decimal(&mut out, *column as u64);
                out.push_str(": ");
                out.push_str(message);
                out
            }
            PluginConfigError::Invalid(problems) => {
                crate::text::concat(&["plugin configuration: ", problems])
            }
        }
    }
}

impl core::fmt::Display for PluginConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.message())
    }
}

impl core::error::Error for PluginConfigError {}

impl PluginConfig {
    /// The whole-number fields, in [`WHOLE_NUMBER_FIELDS`]' order.
    fn whole_numbers(&mut self) -> [&mut u64; 8] {
        [
            &mut self.long_poll_wait_ms,
            &mut self.request_timeout_ms,
            &mut self.backoff_initial_ms,
            &mut self.backoff_max_ms,
            &mut self.delay_tick_ms,
            &mut self.max_active_delays,
            &mut self.max_rules,
            &mut self.max_destinations,
        ]
    }

    /// Parses the configuration; empty input (Istio sends none without `pluginConfig`) gives
    /// the defaults.
    pub fn from_json(bytes: &[u8]) -> Result<PluginConfig, PluginConfigError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(PluginConfig::default());
        }
        PluginConfig::from_value(&crate::json::parse(bytes)?)
    }

    /// Reads the configuration from a JSON document already parsed (the native module's
    /// reader takes its own field out first, [`NativeConfig`]).
    pub fn from_value(value: &Json) -> Result<PluginConfig, PluginConfigError> {
        let mut problems = Problems::default();
        let config = read_plugin_config(&mut problems, value);
        match config {
            Some(c) if problems.0.is_empty() => Ok(c),
            _ => Err(PluginConfigError::Invalid(problems.0)),
        }
    }
}

impl From<crate::json::JsonError> for PluginConfigError {
    fn from(e: crate::json::JsonError) -> PluginConfigError {
        PluginConfigError::Syntax {
            line: e.line,
            column: e.column,
            message: e.message,
        }
    }
}

/// The problems of a plugin configuration, written straight into the message: `path: reason`,
/// joined by `; `.
#[derive(Debug, Default)]
struct Problems(String);

impl Problems {
    /// Starts a problem at `path` (its parts joined by `.`) and pushes `reason`'s parts.
    fn add(&mut self, path: &[&str], reason: &[&str]) -> &mut String {
        let out = &mut self.0;
        if !out.is_empty() {
            out.push_str("; ");
        }
        for (i, part) in path.iter().enumerate() {
            if i > 0 {
                out.push('.');
            }
            out.push_str(part);
        }
        out.push_str(": ");
        for part in reason {
            out.push_str(part);
        }
        out
    }

    fn wrong_type(&mut self, path: &[&str], expected: &str, found: &Json) {
        self.add(
            path,
            &["expected ", expected, ", found ", found.type_name()],
        );
    }

    /// `value` (as written) is outside `range`.
    fn out_of_range(&mut self, path: &[&str], value: &str, range: &str) {
        self.add(path, &["`", value, "` is outside ", range]);
    }

    /// The members of an object, every key not in `allowed` reported.
    fn object<'v>(
        &mut self,
        value: &'v Json,
        path: &[&str],
        allowed: &[&str],
    ) -> Option<&'v [(String, Json)]> {
        let Json::Object(members) = value else {
            self.wrong_type(path, "an object", value);
            return None;
        };
        for (key, _) in members {
            if !allowed.contains(&key.as_str()) {
                match path.first() {
                    Some(parent) => self.add(&[parent, key], &["unknown field"]),
                    None => self.add(&[key], &["unknown field"]),
                };
            }
        }
        Some(members)
    }

    fn string(&mut self, value: &Json, path: &[&str]) -> Option<String> {
        match value {
            Json::String(s) => Some(s.clone()),
            other => {
                self.wrong_type(path, "a string", other);
                None
            }
        }
    }

    /// A whole number within `min..=max` (as the policy reader's: a fraction is the wrong
    /// type, a negative or out-of-range number out of range).
    fn whole_number(
        &mut self,
        value: &Json,
        path: &str,
        (min, max, range): (u64, u64, &str),
    ) -> Option<u64> {
        let Json::Number(text) = value else {
            self.wrong_type(&[path], "a whole number", value);
            return None;
        };
        match text.parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => Some(v),
            _ if !text.starts_with('-') && text.contains(['.', 'e', 'E']) => {
                self.add(&[path], &["expected a whole number, found a fraction"]);
                None
            }
            _ => {
                self.out_of_range(&[path], text, range);
                None
            }
        }
    }
}

fn read_plugin_config(p: &mut Problems, value: &Json) -> Option<PluginConfig> {
    let map = p.object(value, &[], &PLUGIN_FIELDS)?;
    let mut c = PluginConfig::default();
    let mut ok = true;
    for (key, field) in TEXT_FIELDS {
        if let Some(v) = Json::field(map, key) {
            match p.string(v, &[key]) {
                Some(s) if s.is_empty() => {
                    p.add(&[key], &["must not be empty"]);
                    ok = false;
                }
                Some(s) => *field(&mut c) = s,
                None => ok = false,
            }
        }
    }
    if !LOG_LEVELS.contains(&c.log_level.as_str()) {
        p.add(
            &["log_level"],
            &[
                "`",
                &c.log_level,
                "` is not one of `error`, `warn`, `info`, `debug`, `trace`",
            ],
        );
        ok = false;
    }
    for ((key, min, max, range), field) in WHOLE_NUMBER_FIELDS.into_iter().zip(c.whole_numbers()) {
        if let Some(v) = Json::field(map, key) {
            match p.whole_number(v, key, (min, max, range)) {
                Some(n) => *field = n,
                None => ok = false,
            }
        }
    }
    for (bad, key, value, range) in [
        (
            c.request_timeout_ms <= c.long_poll_wait_ms,
            "request_timeout_ms",
            c.request_timeout_ms,
            "above long_poll_wait_ms",
        ),
        (
            c.backoff_max_ms < c.backoff_initial_ms,
            "backoff_max_ms",
            c.backoff_max_ms,
            "at least backoff_initial_ms",
        ),
    ] {
        if ok && bad {
            let mut text = String::new();
            crate::text::push_decimal(&mut text, value);
            p.out_of_range(&[key], &text, range);
        }
    }
    if let Some(v) = Json::field(map, "control_plane_token") {
        let text = p.string(v, &["control_plane_token"]);
        match text.as_deref().map(ReadCredential::parse) {
            Some(Ok(token)) => c.control_plane_token = Some(token),
            Some(Err(e)) => e.push_message(p.add(
                &["control_plane_token"],
                &["is not a usable bearer token: it "],
            )),
            None => {}
        }
    }
    if let Some(v) = Json::field(map, "identity") {
        if let Some(m) = p.object(v, &["identity"], &IDENTITY_FIELDS) {
            let mut text =
                |key: &str| Json::field(m, key).and_then(|v| p.string(v, &["identity", key]));
            c.identity.service = text("service");
            c.identity.namespace = text("namespace");
            c.identity.pod = text("pod");
            if let Some(l) = Json::field(m, "labels") {
                if let Json::Object(labels) = l {
                    for (key, item) in labels {
                        if let Some(s) = p.string(item, &["identity", "labels", key]) {
                            c.identity.labels.insert(key.clone(), s);
                        }
                    }
                } else {
                    p.wrong_type(&["identity", "labels"], "an object", l);
                }
            }
        }
    }
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_query_round_trips_through_its_query_string() {
        let mut identity = Identity::for_service("frontend", "demo");
        identity.pod = Some("frontend-1".into());
        identity.labels.insert("version".into(), "v1".into());
        let q = ConfigQuery {
            identity,
            version: Some(7),
            wait_ms: Some(30_000),
            encoding: ConfigEncoding::Compact,
            refused: Some(Refusal::new(8, "too many")),
            ..ConfigQuery::default()
        };
        let s = q.to_query_string();
        assert_eq!(
            s,
            "service=frontend&namespace=demo&pod=frontend-1&labels=version%3Dv1&version=7&wait=30000ms&encoding=compact&refused=8&reason=too%20many"
        );
        let pairs: Vec<(String, String)> = s
            .split('&')
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (k.to_owned(), v.replace("%3D", "=").replace("%20", " "))
            })
            .collect();
        let back =
            ConfigQuery::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(back, q);
    }

    #[test]
    fn compact_version_picks_the_newest_encoding_the_asker_reads() {
        let encoding = |pairs: &[(&str, &str)]| {
            ConfigQuery::from_pairs(pairs.iter().copied()).map(|q| q.encoding)
        };
        let compact = ("encoding", "compact");
        assert_eq!(encoding(&[compact]), Ok(ConfigEncoding::Compact));
        assert_eq!(
            encoding(&[compact, ("compact_version", "2")]),
            Ok(ConfigEncoding::Compact)
        );
        for newer in ["3", "4"] {
            assert_eq!(
                encoding(&[("compact_version", newer), compact]),
                Ok(ConfigEncoding::CompactV3),
                "{newer}"
            );
        }
        // Without `encoding=compact` the answer stays JSON.
        assert_eq!(
            encoding(&[("compact_version", "3")]),
            Ok(ConfigEncoding::Json)
        );
        assert_eq!(
            encoding(&[compact, ("compact_version", "1")])
                .unwrap_err()
                .to_string(),
            "query parameter `compact_version`: `1` is not a compact format version (2 or higher)"
        );
        let q = ConfigQuery {
            encoding: ConfigEncoding::CompactV3,
            ..ConfigQuery::default()
        };
        assert_eq!(q.to_query_string(), "encoding=compact&compact_version=3");
        let pairs = [compact, ("compact_version", "3")];
        assert_eq!(ConfigQuery::from_pairs(pairs), Ok(q));
    }

    #[test]
    fn config_query_rejects_bad_values() {
        let e = ConfigQuery::from_pairs([("encoding", "xml")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "query parameter `encoding`: `xml` is not one of `json`, `compact`"
        );
        let e = ConfigQuery::from_pairs([("wait", "soon")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "query parameter `wait`: `soon` is not a duration such as `30s` or `500ms`"
        );
        assert!(ConfigQuery::from_pairs([("version", "-1")]).is_err());
        assert!(ConfigQuery::from_pairs([("labels", "novalue")]).is_err());
        assert!(ConfigQuery::from_pairs([("wait", "301s")]).is_err());
        let e = ConfigQuery::from_pairs([("proxy", "mesh")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "query parameter `proxy`: `mesh` is not one of `sidecar`, `waypoint`, `gateway`"
        );
        let waypoint = ConfigQuery::from_pairs([("proxy", "waypoint")]).unwrap();
        assert_eq!(waypoint.identity.proxy, ProxyKind::Waypoint);
        assert_eq!(waypoint.to_query_string(), "proxy=waypoint");
        let e = ConfigQuery::from_pairs([("reason", "why")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "query parameter `reason`: is given without `refused`"
        );
        assert!(ConfigQuery::from_pairs([("refused", "x")]).is_err());
        let long = "é".repeat(MAX_REFUSAL_REASON_BYTES);
        assert!(ConfigQuery::from_pairs([("refused", "1"), ("reason", long.as_str())]).is_err());
        let cut = Refusal::new(1, &long);
        assert!(cut.reason.len() <= MAX_REFUSAL_REASON_BYTES && cut.reason.starts_with('é'));
    }

    /// `(name, value)` pairs of a query string this module wrote, percent-decoded.
    fn decoded_pairs(query: &str) -> Vec<(String, String)> {
        query
            .split('&')
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                let v = v
                    .replace("%2C", ",")
                    .replace("%3D", "=")
                    .replace("%20", " ");
                (k.to_owned(), v)
            })
            .collect()
    }

    #[test]
    fn a_shared_proxys_query_round_trips_with_its_namespaces_and_destinations() {
        let mut identity = Identity::for_service("waypoint", "demo");
        identity.pod = Some("waypoint-7d9f".into());
        identity.proxy = ProxyKind::Waypoint;
        let q = ConfigQuery {
            identity,
            version: Some(4),
            destinations: Some(5),
            namespaces: ["shop".to_owned(), "billing".to_owned()].into(),
            ..ConfigQuery::default()
        };
        let s = q.to_query_string();
        assert_eq!(
            s,
            "service=waypoint&namespace=demo&pod=waypoint-7d9f&proxy=waypoint&namespaces=billing%2Cshop&destinations=5&version=4"
        );
        let pairs = decoded_pairs(&s);
        let back =
            ConfigQuery::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(back, q);
        // A gateway reports destinations too; empty items of `namespaces` are skipped.
        let gateway =
            ConfigQuery::from_pairs([("proxy", "gateway"), ("destinations", "0")]).unwrap();
        assert_eq!(gateway.destinations, Some(0));
        assert_eq!(gateway.to_query_string(), "proxy=gateway&destinations=0");
        let spaced =
            ConfigQuery::from_pairs([("proxy", "waypoint"), ("namespaces", ",a,,b,")]).unwrap();
        assert_eq!(spaced.namespaces, ["a".to_owned(), "b".to_owned()].into());
    }

    #[test]
    fn namespaces_and_destinations_are_refused_with_the_parameter_named() {
        let error = |pairs: &[(&str, &str)]| {
            ConfigQuery::from_pairs(pairs.iter().copied())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error(&[("proxy", "gateway"), ("destinations", "many")]),
            "query parameter `destinations`: `many` is not a whole number"
        );
        assert_eq!(
            error(&[("proxy", "waypoint"), ("destinations", "-1")]),
            "query parameter `destinations`: `-1` is not a whole number"
        );
        assert_eq!(
            error(&[("destinations", "3")]),
            "query parameter `destinations`: is for a shared proxy (`proxy=waypoint` or `proxy=gateway`), not a sidecar"
        );
        assert_eq!(
            error(&[("proxy", "waypoint"), ("namespaces", "shop,Billing")]),
            "query parameter `namespaces`: `Billing` is not a namespace name (a DNS label: lower-case letters, digits and `-`, at most 63)"
        );
        assert!(ConfigQuery::from_pairs([("proxy", "waypoint"), ("namespaces", "*")]).is_err());
        assert!(ConfigQuery::from_pairs([("proxy", "waypoint"), ("namespaces", "-a")]).is_err());
        let long = "a".repeat(64);
        assert!(
            ConfigQuery::from_pairs([("proxy", "waypoint"), ("namespaces", long.as_str())])
                .is_err()
        );
        assert_eq!(
            error(&[("namespaces", "shop"), ("proxy", "gateway")]),
            "query parameter `namespaces`: is for a waypoint (`proxy=waypoint`), not a gateway"
        );
        assert_eq!(
            error(&[("namespaces", "shop")]),
            "query parameter `namespaces`: is for a waypoint (`proxy=waypoint`), not a sidecar"
        );
    }

    #[test]
    fn a_shared_proxy_is_sent_every_policy_it_may_need_and_none_that_selects_pods() {
        let policy = |name: &str, selector: &str| {
            crate::policy::parse_policy_json(&format!(
                r#"{{"metadata":{{"name":"{name}"}},"spec":{{"selector":{selector},"rules":[
                {{"match":{{"path":{{"prefix":"/"}}}},"fault":{{"percentage":5,"abort":{{"httpStatus":503}}}}}}]}}}}"#
            ))
            .unwrap()
        };
        let policies = [
            policy("any", "{}"),
            policy("demo-cart", r#"{"service":"cart","namespace":"demo"}"#),
            policy("shop-all", r#"{"namespace":"shop"}"#),
            policy("other", r#"{"namespace":"other"}"#),
            policy("cart-anywhere", r#"{"service":"cart"}"#),
            policy(
                "demo-v2",
                r#"{"namespace":"demo","labels":{"version":"v2"}}"#,
            ),
        ];
        let sent = |query: &ConfigQuery| -> Vec<&str> {
            policies
                .iter()
                .filter(|p| query.concerns(p))
                .map(|p| p.name())
                .collect()
        };
        let mut waypoint = ConfigQuery {
            identity: Identity::for_service("waypoint", "demo"),
            ..ConfigQuery::default()
        };
        waypoint.identity.proxy = ProxyKind::Waypoint;
        assert_eq!(sent(&waypoint), ["any", "demo-cart", "cart-anywhere"]);
        waypoint.namespaces.insert("shop".to_owned());
        assert_eq!(
            sent(&waypoint),
            ["any", "demo-cart", "shop-all", "cart-anywhere"]
        );
        let mut gateway = waypoint.clone();
        gateway.identity.proxy = ProxyKind::Gateway;
        gateway.namespaces.clear();
        assert_eq!(
            sent(&gateway),
            ["any", "demo-cart", "shop-all", "other", "cart-anywhere"]
        );
        // A sidecar of cart v2 in demo: its selector decides, labels included.
        let mut sidecar = ConfigQuery {
            identity: Identity::for_service("cart", "demo"),
            ..ConfigQuery::default()
        };
        sidecar
            .identity
            .labels
            .insert("version".into(), "v2".into());
        assert_eq!(
            sent(&sidecar),
            ["any", "demo-cart", "cart-anywhere", "demo-v2"]
        );
    }

    #[test]
    fn plugin_config_defaults_and_errors() {
        assert_eq!(
            PluginConfig::from_json(b"").unwrap(),
            PluginConfig::default()
        );
        assert_eq!(
            PluginConfig::from_json(b"{}").unwrap(),
            PluginConfig::default()
        );
        let c = PluginConfig::from_json(
            br#"{"long_poll_wait_ms": 1000, "request_timeout_ms": 2000,
                 "identity": {"service": "frontend", "labels": {"version": "v2"}}}"#,
        )
        .unwrap();
        assert_eq!(c.long_poll_wait_ms, 1000);
        assert_eq!(c.identity.service.as_deref(), Some("frontend"));
        let e = PluginConfig::from_json(br#"{"long_poll_wait_ms": "x", "colour": 1}"#)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "plugin configuration: colour: unknown field; long_poll_wait_ms: expected a whole number, found a string"
        );
        let e = PluginConfig::from_json(br#"{"long_poll_wait_ms": 40000}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("request_timeout_ms"), "{e}");
        assert!(PluginConfig::from_json(b"{").is_err());
    }

    #[test]
    fn plugin_config_syntax_errors_name_the_line_and_column() {
        let e = PluginConfig::from_json(b"{\n  \"max_rules\": 01}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "plugin configuration is not valid JSON: line 2, column 17: expected `,` or `}`"
        );
        let e = PluginConfig::from_json(b"[]").unwrap_err();
        assert_eq!(e.message(), e.to_string());
    }

    #[test]
    fn plugin_config_reads_a_read_credential_and_never_repeats_it() {
        let c = PluginConfig::from_json(br#"{"control_plane_token": "s3cr3t\n"}"#).unwrap();
        let token = c.control_plane_token.as_ref().unwrap();
        assert_eq!(token.header_value(), "Bearer s3cr3t");
        assert!(!format!("{c:?}").contains("s3cr3t"));
        // Written back as configured, so a configuration survives a round trip.
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains(r#""control_plane_token":"s3cr3t""#), "{json}");
        assert_eq!(PluginConfig::from_json(json.as_bytes()).unwrap(), c);
        for (json, message) in [
            (
                r#"{"control_plane_token": "s3cr3t and more"}"#,
                "plugin configuration: control_plane_token: is not a usable bearer token: it has a character other than visible ASCII at byte 6 (its value is not shown)",
            ),
            (
                r#"{"control_plane_token": " "}"#,
                "plugin configuration: control_plane_token: is not a usable bearer token: it is empty",
            ),
            (
                r#"{"control_plane_token": 7}"#,
                "plugin configuration: control_plane_token: expected a string, found a number",
            ),
        ] {
            let e = PluginConfig::from_json(json.as_bytes()).unwrap_err();
            assert_eq!(e.to_string(), message, "{json}");
        }
        assert_eq!(PluginConfig::default().control_plane_token, None);
    }

    #[test]
    fn plugin_config_reads_max_rules_within_its_range() {
        assert_eq!(PluginConfig::default().max_rules, DEFAULT_MAX_RULES);
        let c = PluginConfig::from_json(br#"{"max_rules": 1}"#).unwrap();
        assert_eq!(c.max_rules, 1);
        for (value, error) in [
            ("100001", "`100001` is outside 0..=100000"),
            ("-1", "`-1` is outside 0..=100000"),
            ("2.5", "expected a whole number, found a fraction"),
            ("\"ten\"", "expected a whole number, found a string"),
        ] {
            let json = format!(r#"{{"max_rules": {value}}}"#);
            let e = PluginConfig::from_json(json.as_bytes()).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("plugin configuration: max_rules: {error}")
            );
        }
    }

    #[test]
    fn max_destinations_is_validated_and_labels_decide_the_proxy_kind() {
        assert_eq!(PluginConfig::default().max_destinations, 256);
        let c = PluginConfig::from_json(br#"{"max_destinations": 4}"#).unwrap();
        assert_eq!(c.max_destinations, 4);
        for (bad, why) in [
            ("0", "max_destinations: `0` is outside 1..=65536"),
            ("65537", "max_destinations: `65537` is outside 1..=65536"),
        ] {
            let e = PluginConfig::from_json(format!(r#"{{"max_destinations": {bad}}}"#).as_bytes())
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{e}");
        }
        // An Envoy without Istio declares a waypoint through the identity's labels.
        let c = PluginConfig::from_json(
            br#"{"identity": {"labels": {"gateway.networking.k8s.io/gateway-class-name": "istio-waypoint"}}}"#,
        )
        .unwrap();
        let identity = c.identity.apply(Identity::default());
        assert_eq!(identity.proxy, crate::identity::ProxyKind::Waypoint);
    }

    #[test]
    fn plugin_config_serializes_to_what_it_reads() {
        let c = PluginConfig::default();
        let json = serde_json::to_vec(&c).unwrap();
        assert_eq!(PluginConfig::from_json(&json).unwrap(), c);
    }
}
