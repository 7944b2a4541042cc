//! The answer of `GET /v1/policies/status`, built here so the server writes it and the CLI
//! reads it with one definition.
//!
//! It carries boifi's layout (`totals`, `targets`, `fault_kinds`, `state`) and, beside it, the
//! keys the legacy BOIFI's consumers read (`summary.*`, `policies[].target_service`,
//! `namespace`, `rules_count`, `fault_types`, `active`). No key of one clashes with the other.

use alloc::borrow::ToOwned;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use super::Refusal;
use crate::identity::{Identity, ProxyKind};
use crate::policy::{PolicyDocument, PolicyState};
use crate::time::format_rfc3339;

/// The answer of `GET /v1/policies/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResponse {
    /// The current config version.
    #[serde(default, alias = "config_version")]
    pub version: u64,
    /// When this view was made (Unix ms).
    #[serde(default)]
    pub now_ms: u64,
    /// Counts.
    #[serde(default)]
    pub totals: StatusTotals,
    /// The legacy counts (`summary.total_policies`, ...).
    #[serde(default)]
    pub summary: LegacySummary,
    /// Every stored policy.
    #[serde(default)]
    pub policies: Vec<PolicyStatusEntry>,
    /// Every sidecar known to any replica (shared through the store).
    #[serde(default, alias = "proxies")]
    pub sidecars: Vec<SidecarStatusEntry>,
    /// Every shared proxy (waypoint, gateway) known to any replica, in the same form.
    #[serde(default)]
    pub shared_proxies: Vec<SidecarStatusEntry>,
    /// Why the replica that answered refuses writes while it serves its last view (etcd
    /// unreachable or without quorum); absent while its store answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_degraded: Option<String>,
}

/// Counts of the status view.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusTotals {
    /// Stored policies.
    pub policies: usize,
    /// Policies that can fire now.
    pub active: usize,
    /// Policies whose window has not started.
    pub scheduled: usize,
    /// Policies that expired (deleted by the sweep after the grace period).
    pub expired: usize,
    /// Policies with `spec.enabled: false`.
    pub disabled: usize,
    /// Sidecars known.
    pub sidecars: usize,
    /// Sidecars that applied the current version (the same as `sidecars_applied`, kept for
    /// the consumers that read it).
    pub sidecars_current: usize,
    /// Sidecars that applied the current version.
    pub sidecars_applied: usize,
    /// Sidecars that have neither applied nor refused the current version yet.
    pub sidecars_pending: usize,
    /// Sidecars that received the current version and refused it.
    pub sidecars_refused: usize,
    /// Proxies known, by kind (sidecars, waypoints, gateways).
    pub proxies: ProxyCounts,
}

/// Proxies known, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProxyCounts {
    /// Sidecars.
    pub sidecar: usize,
    /// Waypoints.
    pub waypoint: usize,
    /// Gateways.
    pub gateway: usize,
}

impl ProxyCounts {
    fn count(&mut self, kind: ProxyKind) {
        let count = match kind {
            ProxyKind::Sidecar => &mut self.sidecar,
            ProxyKind::Waypoint => &mut self.waypoint,
            ProxyKind::Gateway => &mut self.gateway,
        };
        *count += 1;
    }
}

/// The legacy status summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LegacySummary {
    /// Stored policies.
    pub total_policies: usize,
    /// Policies with at least one abort.
    pub abort_policies: usize,
    /// Policies with at least one delay.
    pub delay_policies: usize,
    /// Policies that can fire now (state `active`).
    pub active_policies: usize,
}

/// Which sidecars a policy targets (`*` = any).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Targets {
    /// Service, or `*`.
    pub service: String,
    /// Namespace, or `*`.
    pub namespace: String,
    /// Labels that must all match.
    pub labels: BTreeMap<String, String>,
}

/// One policy in the status view.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyStatusEntry {
    /// Name.
    pub name: String,
    /// Selector.
    pub targets: Targets,
    /// `abort`, `delay`: each kind once, abort first.
    pub fault_kinds: Vec<String>,
    /// `active`, `scheduled`, `expired` or `disabled`.
    pub state: String,
    /// When it was stored (Unix ms).
    pub stored_at_ms: Option<u64>,
    /// When it expires (Unix ms); absent if never.
    pub expires_at_ms: Option<u64>,
    /// The same, RFC 3339.
    pub expires_at: Option<String>,
    /// Revision of its last write.
    pub revision: Option<u64>,
    /// Known sidecars its selector matches.
    pub matching_sidecars: usize,
    /// Where it acts in a shared proxy (a waypoint, a gateway): [`IN_SHARED_PROXIES_PER_REQUEST`]
    /// or [`IN_SHARED_PROXIES_NEVER`] (empty in answers of servers that did not tell).
    pub in_shared_proxies: String,
    /// Known shared proxies that are sent it.
    pub matching_shared_proxies: usize,
    /// Its `spec.priority`.
    pub priority: i32,
    /// Legacy: the selector's namespace, or `*`.
    pub namespace: String,
    /// Legacy: the selector's service, or `*`.
    pub target_service: String,
    /// Legacy: the number of rules.
    pub rules_count: usize,
    /// Legacy: the same as `fault_kinds`.
    pub fault_types: Vec<String>,
    /// Legacy: whether the state is `active`.
    pub active: bool,
    /// A guarded policy's guard state; absent on an unguarded one.
    pub guard: Option<GuardSummary>,
}

/// Where a guarded policy's guards stand, for people and scripts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GuardSummary {
    /// `verifying`, `running` or `tripped`.
    pub state: String,
    /// The guard that stopped it (tripped only).
    pub guard: Option<String>,
    /// The value that guard saw last, as text (`NaN` and `no value` included).
    pub value: Option<String>,
    /// When it was stopped (Unix ms).
    pub at_ms: Option<u64>,
    /// The same, RFC 3339.
    pub at: Option<String>,
}

impl GuardSummary {
    /// The summary of `policy`'s guard state; `None` when it has no guards.
    pub fn of(policy: &PolicyDocument) -> Option<GuardSummary> {
        let state = policy.guard_state()?;
        let mut summary = GuardSummary {
            state: state.as_str().to_owned(),
            ..GuardSummary::default()
        };
        if let crate::policy::guard::GuardState::Tripped(trip) = state {
            summary.guard = policy.spec.guards.get(trip.guard).map(|g| g.name.clone());
            summary.value = Some(
                trip.value()
                    .map_or_else(|| "no value".to_owned(), |v| alloc::format!("{v}")),
            );
            summary.at_ms = Some(trip.at_ms);
            summary.at = Some(format_rfc3339(trip.at_ms));
        }
        Some(summary)
    }
}

/// [`PolicyStatusEntry::in_shared_proxies`] of a policy whose selector names services and
/// namespaces only: a shared proxy decides per request whether the destination matches.
pub const IN_SHARED_PROXIES_PER_REQUEST: &str = "per request";
/// [`PolicyStatusEntry::in_shared_proxies`] of a policy whose selector names pod labels: a
/// shared proxy picks the endpoint after the filter runs, so it never matches there (and is not
/// sent it).
pub const IN_SHARED_PROXIES_NEVER: &str = "never (selects pods)";

/// One proxy in the status view: a sidecar, or a shared proxy (waypoint, gateway).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SidecarStatusEntry {
    /// `sidecar`, `waypoint` or `gateway` (a sidecar in answers of servers that did not tell).
    pub proxy: ProxyKind,
    /// Pod name.
    pub pod: Option<String>,
    /// Service.
    pub service: Option<String>,
    /// Namespace.
    pub namespace: Option<String>,
    /// Pod labels it reported.
    pub labels: BTreeMap<String, String>,
    /// The config version it applied, as its last request said.
    #[serde(alias = "config_version")]
    pub version: Option<u64>,
    /// Whether it applied the current version (state `applied`).
    pub current: bool,
    /// `applied`, `pending` or `refused` ([`SidecarState`]); empty in answers of servers that
    /// did not tell.
    pub state: String,
    /// The version it last refused and why, as its last request said.
    pub refused: Option<Refusal>,
    /// Last config request (Unix ms).
    pub last_seen_ms: u64,
    /// The same, RFC 3339.
    pub last_seen: String,
    /// The control-plane replica it last reported through.
    pub replica: Option<String>,
    /// A shared proxy: how many destination services it has compiled sets for, as its last
    /// request said (`destinations=`); `None` when it did not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destinations: Option<u64>,
    /// A waypoint: the namespaces it serves besides its own (`namespaces=`).
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub namespaces: BTreeSet<String>,
    /// How many policies of the current version it is sent (the policies it holds once it
    /// applied the current version).
    pub policies: usize,
}

/// Where a sidecar stands with the current config version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SidecarState {
    /// It applied the current version.
    Applied,
    /// It has neither applied nor refused the current version yet.
    Pending,
    /// It received the current version and refused it.
    Refused,
}

impl SidecarState {
    /// The state of a sidecar that applied `applied` and refused `refused`, at config
    /// version `current`.
    pub fn of(applied: Option<u64>, refused: Option<u64>, current: u64) -> SidecarState {
        if applied == Some(current) {
            SidecarState::Applied
        } else if refused == Some(current) {
            SidecarState::Refused
        } else {
            SidecarState::Pending
        }
    }

    /// Its name in the status view.
    pub const fn as_str(self) -> &'static str {
        match self {
            SidecarState::Applied => "applied",
            SidecarState::Pending => "pending",
            SidecarState::Refused => "refused",
        }
    }

    /// The state named `name`, if it is one.
    pub fn from_name(name: &str) -> Option<SidecarState> {
        [
            SidecarState::Applied,
            SidecarState::Pending,
            SidecarState::Refused,
        ]
        .into_iter()
        .find(|state| state.as_str() == name)
    }
}

/// What the control plane knows of one sidecar, the input of [`StatusResponse::build`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarReport {
    /// Its identity as it reported it.
    pub identity: Identity,
    /// The config version it applied.
    pub applied: Option<u64>,
    /// The version it last refused, and why.
    pub refused: Option<Refusal>,
    /// Its last config request (Unix ms).
    pub last_seen_ms: u64,
    /// The replica it reported through.
    pub replica: Option<String>,
    /// A shared proxy: the destination services it has compiled sets for (`destinations=`).
    pub destinations: Option<u64>,
    /// A waypoint: the namespaces it serves besides its own (`namespaces=`).
    pub namespaces: BTreeSet<String>,
}

fn or_any(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| "*".to_owned())
}

impl StatusResponse {
    /// The view of `policies` at config `version` and `now_ms`, with `proxies` in the given
    /// order: sidecars under `sidecars`, waypoints and gateways under `shared_proxies`.
    pub fn build<'p>(
        version: u64,
        now_ms: u64,
        policies: impl IntoIterator<Item = &'p PolicyDocument>,
        proxies: &[SidecarReport],
    ) -> StatusResponse {
        let (shared, sidecars): (Vec<&SidecarReport>, Vec<&SidecarReport>) =
            proxies.iter().partition(|s| s.identity.proxy.is_shared());
        let mut totals = StatusTotals {
            sidecars: sidecars.len(),
            ..StatusTotals::default()
        };
        let mut summary = LegacySummary::default();
        let policies: Vec<&PolicyDocument> = policies.into_iter().collect();
        let sent = |s: &SidecarReport| {
            policies
                .iter()
                .filter(|p| super::concerns(p, &s.identity, &s.namespaces))
                .count()
        };
        let entries: Vec<PolicyStatusEntry> = policies
            .iter()
            .map(|p| {
                let state = p.state_at(now_ms);
                match state {
                    PolicyState::Active => totals.active += 1,
                    PolicyState::Scheduled => totals.scheduled += 1,
                    PolicyState::Expired => totals.expired += 1,
                    PolicyState::Disabled => totals.disabled += 1,
                }
                let kinds: Vec<String> = p.fault_kinds().into_iter().map(str::to_owned).collect();
                summary.abort_policies += usize::from(kinds.iter().any(|k| k == "abort"));
                summary.delay_policies += usize::from(kinds.iter().any(|k| k == "delay"));
                let selector = &p.spec.selector;
                let expires_at_ms = p.status.and_then(|st| st.expires_at_ms);
                PolicyStatusEntry {
                    name: p.name().to_owned(),
                    targets: Targets {
                        service: or_any(&selector.service),
                        namespace: or_any(&selector.namespace),
                        labels: selector.labels.clone(),
                    },
                    fault_kinds: kinds.clone(),
                    state: state.as_str().to_owned(),
                    stored_at_ms: p.status.map(|st| st.stored_at_ms),
                    expires_at_ms,
                    expires_at: expires_at_ms.map(format_rfc3339),
                    revision: p.status.map(|st| st.revision),
                    matching_sidecars: sidecars
                        .iter()
                        .filter(|s| p.applies_to(&s.identity))
                        .count(),
                    in_shared_proxies: if selector.selects_pods() {
                        IN_SHARED_PROXIES_NEVER
                    } else {
                        IN_SHARED_PROXIES_PER_REQUEST
                    }
                    .to_owned(),
                    matching_shared_proxies: shared
                        .iter()
                        .filter(|s| super::concerns(p, &s.identity, &s.namespaces))
                        .count(),
                    priority: p.spec.priority,
                    guard: GuardSummary::of(p),
                    namespace: or_any(&selector.namespace),
                    target_service: or_any(&selector.service),
                    rules_count: p.spec.rules.len(),
                    fault_types: kinds,
                    active: state == PolicyState::Active,
                }
            })
            .collect();
        totals.policies = entries.len();
        summary.total_policies = entries.len();
        summary.active_policies = totals.active;
        let entry = |s: &SidecarReport| {
            let state = SidecarState::of(s.applied, s.refused.as_ref().map(|r| r.version), version);
            (
                state,
                SidecarStatusEntry {
                    proxy: s.identity.proxy,
                    pod: s.identity.pod.clone(),
                    service: s.identity.service.clone(),
                    namespace: s.identity.namespace.clone(),
                    labels: s.identity.labels.clone(),
                    version: s.applied,
                    current: state == SidecarState::Applied,
                    state: state.as_str().to_owned(),
                    refused: s.refused.clone(),
                    last_seen_ms: s.last_seen_ms,
                    last_seen: format_rfc3339(s.last_seen_ms),
                    replica: s.replica.clone(),
                    destinations: s.destinations,
                    namespaces: s.namespaces.clone(),
                    policies: sent(s),
                },
            )
        };
        let sidecars = sidecars
            .iter()
            .map(|s| {
                let (state, entry) = entry(s);
                let count = match state {
                    SidecarState::Applied => &mut totals.sidecars_applied,
                    SidecarState::Pending => &mut totals.sidecars_pending,
                    SidecarState::Refused => &mut totals.sidecars_refused,
                };
                *count += 1;
                entry
            })
            .collect();
        let shared_proxies = shared.iter().map(|s| entry(s).1).collect();
        for proxy in proxies {
            totals.proxies.count(proxy.identity.proxy);
        }
        totals.sidecars_current = totals.sidecars_applied;
        StatusResponse {
            version,
            now_ms,
            totals,
            summary,
            policies: entries,
            sidecars,
            shared_proxies,
            store_degraded: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> PolicyDocument {
        crate::policy::parse_policy_json(json).unwrap()
    }

    #[test]
    fn legacy_keys_carry_the_legacy_meaning() {
        let both = policy(
            r#"{"metadata":{"name":"both"},"spec":{"selector":{"service":"cart"},"rules":[
            {"match":{"path":{"prefix":"/"}},"fault":{"percentage":5,"delay":{"fixed_delay_ms":10}}},
            {"match":{"path":{"prefix":"/"}},"fault":{"percentage":5,"abort":{"httpStatus":503}}}]}}"#,
        );
        let off = policy(
            r#"{"metadata":{"name":"off"},"spec":{"enabled":false,"selector":{"namespace":"demo"},"rules":[
            {"match":{"path":{"prefix":"/"}},"fault":{"percentage":5,"abort":{"httpStatus":503}}}]}}"#,
        );
        let status = StatusResponse::build(3, 0, [&both, &off], &[]);
        assert_eq!(
            status.summary,
            LegacySummary {
                total_policies: 2,
                abort_policies: 2,
                delay_policies: 1,
                active_policies: 1
            }
        );
        let [b, o] = status.policies.as_slice() else {
            panic!("two policies expected")
        };
        assert_eq!(
            (b.target_service.as_str(), b.namespace.as_str()),
            ("cart", "*")
        );
        assert_eq!(b.fault_types, ["abort", "delay"]);
        assert_eq!((b.rules_count, b.active), (2, true));
        assert_eq!(
            (o.target_service.as_str(), o.namespace.as_str()),
            ("*", "demo")
        );
        assert_eq!((o.state.as_str(), o.active), ("disabled", false));
        assert_eq!(status.totals.disabled, 1);
    }

    #[test]
    fn each_sidecar_is_applied_pending_or_refused_at_the_current_version() {
        let report = |pod: &str, applied: Option<u64>, refused: Option<Refusal>| SidecarReport {
            identity: Identity {
                pod: Some(pod.to_owned()),
                ..Identity::default()
            },
            applied,
            refused,
            last_seen_ms: 0,
            replica: None,
            destinations: None,
            namespaces: BTreeSet::new(),
        };
        let sidecars = [
            report("applied", Some(7), None),
            // A refusal of an older version does not make the current one refused.
            report("behind", Some(5), Some(Refusal::new(6, "over the limit"))),
            report("new", None, None),
            report("refuser", Some(6), Some(Refusal::new(7, "cannot decode"))),
        ];
        let status = StatusResponse::build(7, 0, [], &sidecars);
        let states: Vec<(&str, bool, Option<u64>)> = status
            .sidecars
            .iter()
            .map(|s| (s.state.as_str(), s.current, s.version))
            .collect();
        assert_eq!(
            states,
            [
                ("applied", true, Some(7)),
                ("pending", false, Some(5)),
                ("pending", false, None),
                ("refused", false, Some(6)),
            ]
        );
        let refusal = status.sidecars.get(3).and_then(|s| s.refused.clone());
        assert_eq!(refusal, Some(Refusal::new(7, "cannot decode")));
        let totals = &status.totals;
        assert_eq!(
            (
                totals.sidecars,
                totals.sidecars_current,
                totals.sidecars_applied,
                totals.sidecars_pending,
                totals.sidecars_refused
            ),
            (4, 1, 1, 2, 1)
        );
        for state in [
            SidecarState::Applied,
            SidecarState::Pending,
            SidecarState::Refused,
        ] {
            assert_eq!(SidecarState::from_name(state.as_str()), Some(state));
        }
        assert_eq!(SidecarState::from_name("current"), None);
    }

    #[test]
    fn shared_proxies_are_listed_apart_counted_by_kind_and_never_sent_pod_selecting_policies() {
        let cart = policy(
            r#"{"metadata":{"name":"cart"},"spec":{"selector":{"service":"cart","namespace":"demo"},"rules":[
            {"match":{"path":{"prefix":"/"}},"fault":{"percentage":5,"abort":{"httpStatus":503}}}]}}"#,
        );
        let canary = policy(
            r#"{"metadata":{"name":"canary"},"spec":{"selector":{"namespace":"demo","labels":{"version":"v2"}},"rules":[
            {"match":{"path":{"prefix":"/"}},"fault":{"percentage":5,"abort":{"httpStatus":503}}}]}}"#,
        );
        let shop = policy(
            r#"{"metadata":{"name":"shop"},"spec":{"selector":{"namespace":"shop"},"rules":[
            {"match":{"path":{"prefix":"/"}},"fault":{"percentage":5,"abort":{"httpStatus":503}}}]}}"#,
        );
        let report = |pod: &str, service: &str, kind: ProxyKind, namespaces: &[&str]| {
            let mut identity = Identity::for_service(service, "demo");
            identity.pod = Some(pod.to_owned());
            identity.proxy = kind;
            identity.labels.insert("version".into(), "v2".into());
            SidecarReport {
                identity,
                applied: Some(9),
                refused: None,
                last_seen_ms: 0,
                replica: None,
                destinations: kind.is_shared().then_some(5),
                namespaces: namespaces.iter().map(|n| (*n).to_owned()).collect(),
            }
        };
        let proxies = [
            report("cart-1", "cart", ProxyKind::Sidecar, &[]),
            report("waypoint-7d9f", "waypoint", ProxyKind::Waypoint, &["shop"]),
            report("waypoint-2", "waypoint", ProxyKind::Waypoint, &[]),
            report("ingress-1", "ingress", ProxyKind::Gateway, &[]),
        ];
        let status = StatusResponse::build(9, 0, [&cart, &canary, &shop], &proxies);
        let pods = |list: &[SidecarStatusEntry]| -> Vec<(String, ProxyKind, usize)> {
            list.iter()
                .map(|s| (s.pod.clone().unwrap_or_default(), s.proxy, s.policies))
                .collect()
        };
        assert_eq!(
            pods(&status.sidecars),
            [("cart-1".to_owned(), ProxyKind::Sidecar, 2)]
        );
        assert_eq!(
            pods(&status.shared_proxies),
            [
                ("waypoint-7d9f".to_owned(), ProxyKind::Waypoint, 2),
                ("waypoint-2".to_owned(), ProxyKind::Waypoint, 1),
                ("ingress-1".to_owned(), ProxyKind::Gateway, 2),
            ]
        );
        let first = status.shared_proxies.first().unwrap();
        assert_eq!(first.destinations, Some(5));
        assert_eq!(first.namespaces, ["shop".to_owned()].into());
        assert_eq!(
            status.totals.proxies,
            ProxyCounts {
                sidecar: 1,
                waypoint: 2,
                gateway: 1
            }
        );
        // The rollout counts of sidecars stay those of sidecars.
        assert_eq!(
            (status.totals.sidecars, status.totals.sidecars_applied),
            (1, 1)
        );
        let reach: Vec<(&str, &str, usize, usize)> = status
            .policies
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.in_shared_proxies.as_str(),
                    p.matching_sidecars,
                    p.matching_shared_proxies,
                )
            })
            .collect();
        assert_eq!(
            reach,
            [
                ("cart", IN_SHARED_PROXIES_PER_REQUEST, 1, 3),
                ("canary", IN_SHARED_PROXIES_NEVER, 1, 0),
                ("shop", IN_SHARED_PROXIES_PER_REQUEST, 0, 2),
            ]
        );
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["shared_proxies"][0]["proxy"], "waypoint");
        assert_eq!(
            json["policies"][1]["in_shared_proxies"],
            "never (selects pods)"
        );
    }

    #[test]
    fn a_legacy_shaped_answer_reads() {
        let legacy: StatusResponse = serde_json::from_str(
            r#"{"config_version":4,"proxies":[{"pod":"a","config_version":4}]}"#,
        )
        .unwrap();
        assert_eq!(legacy.version, 4);
        assert_eq!(legacy.sidecars.first().and_then(|s| s.version), Some(4));
        // An answer of a server before sidecar states: no state, no refusal, no counts.
        let before: StatusResponse = serde_json::from_str(
            r#"{"version":4,"totals":{"sidecars":1,"sidecars_current":1},
                "sidecars":[{"pod":"a","version":4,"current":true}]}"#,
        )
        .unwrap();
        let sidecar = before.sidecars.first().unwrap();
        assert_eq!((sidecar.state.as_str(), &sidecar.refused), ("", &None));
        // Before shared proxies: every proxy is a sidecar, none is shared.
        assert_eq!(
            (sidecar.proxy, sidecar.destinations),
            (ProxyKind::Sidecar, None)
        );
        assert!(before.shared_proxies.is_empty());
        assert_eq!(before.totals.sidecars_refused, 0);
    }
}
