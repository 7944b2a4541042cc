//! Retry and timeout policies of callers' outbound routes: what Istio's VirtualService
//! `retries` and `timeout` program into the caller's sidecar, rendered the way Istio renders
//! them (`pilot/pkg/networking/core/route/retry`).
//!
//! This is where boifi differs from Istio's own fault injection: Istio's VirtualService
//! faults act in the caller's sidecar, before its router, so the caller's retries never see
//! them (istio/istio#13705). boifi's faults act in the callee's inbound sidecar, so the
//! caller's router retries them like any real failure.

use std::time::Duration;

use serde_json::{json, Value};

use crate::error::MeshError;

/// Envoy's retry conditions (`x-envoy-retry-on` and `x-envoy-retry-grpc-on`), the values
/// Istio accepts in `retries.retryOn` besides status codes.
const RETRY_CONDITIONS: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// The most retries a route may ask for here (Istio has no limit; a mesh on one machine
/// does not need more, and a typo like `attempts: 200` would only make a test crawl).
const MAX_ATTEMPTS: u32 = 10;

/// A VirtualService's `retries`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retries {
    /// Retries after the first try (`attempts`).
    pub attempts: u32,
    /// Each try's own timeout (`perTryTimeout`).
    pub per_try_timeout: Option<Duration>,
    /// The conditions (`retryOn`); numbers are retriable status codes.
    pub on: Vec<String>,
}

impl Retries {
    /// `attempts` retries on the conditions `on` (`5xx`, `unavailable`, `503`, ...); refuses
    /// an unknown condition or more than 10 attempts, naming the field.
    pub fn new(attempts: u32, on: &[&str]) -> Result<Retries, MeshError> {
        if attempts > MAX_ATTEMPTS {
            return Err(MeshError::Topology(format!(
                "retries.attempts: `{attempts}` is more than {MAX_ATTEMPTS}"
            )));
        }
        for (i, c) in on.iter().enumerate() {
            let code = c.parse::<u16>().is_ok_and(|n| (100..=599).contains(&n));
            if !code && !RETRY_CONDITIONS.contains(c) {
                return Err(MeshError::Topology(format!(
                    "retries.on[{i}]: `{c}` is neither an Envoy retry condition ({}) nor an HTTP status",
                    RETRY_CONDITIONS.join(", ")
                )));
            }
        }
        Ok(Retries {
            attempts,
            per_try_timeout: None,
            on: on.iter().map(|c| (*c).to_owned()).collect(),
        })
    }

    /// Sets `perTryTimeout`.
    pub fn per_try_timeout(mut self, timeout: Duration) -> Retries {
        self.per_try_timeout = Some(timeout);
        self
    }

    /// Envoy's `retry_policy`, as Istio writes it: numeric conditions become
    /// `retriable_status_codes`, a retry goes to another host when there is one.
    fn to_envoy(&self) -> Value {
        let codes: Vec<u16> = self.on.iter().filter_map(|c| c.parse().ok()).collect();
        let mut conditions: Vec<&str> = self
            .on
            .iter()
            .filter(|c| c.parse::<u16>().is_err())
            .map(String::as_str)
            .collect();
        if !codes.is_empty() && !conditions.contains(&"retriable-status-codes") {
            conditions.push("retriable-status-codes");
        }
        let mut policy = json!({
            "retry_on": conditions.join(","),
            "num_retries": self.attempts,
            "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}}],
            "host_selection_retry_max_attempts": 5,
        });
        if let Some(m) = policy.as_object_mut() {
            if !codes.is_empty() {
                m.insert("retriable_status_codes".into(), json!(codes));
            }
            if let Some(t) = self.per_try_timeout {
                m.insert("per_try_timeout".into(), json!(envoy_duration(t)));
            }
        }
        policy
    }
}

/// A VirtualService for one host: its `retries` and `timeout`, for every caller or for the
/// sidecars of one caller only (a `sourceLabels: {app: <caller>}` match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePolicy {
    /// The callee's service name (the VirtualService's `hosts`).
    pub host: String,
    /// Only this caller's sidecars; `None`: every caller's.
    pub source: Option<String>,
    /// `retries`; `None` is `attempts: 0` (no retry), see [`RoutePolicy::to_envoy_route`].
    pub retries: Option<Retries>,
    /// `timeout`: the whole call, retries included; `None` is Istio's default (none).
    pub timeout: Option<Duration>,
}

impl RoutePolicy {
    /// A policy for every caller of `host`, with no retries and no timeout yet.
    pub fn to(host: &str) -> RoutePolicy {
        RoutePolicy {
            host: host.to_owned(),
            source: None,
            retries: None,
            timeout: None,
        }
    }

    /// Only for `caller`'s sidecars.
    pub fn from(mut self, caller: &str) -> RoutePolicy {
        self.source = Some(caller.to_owned());
        self
    }

    /// Sets `retries`.
    pub fn retries(mut self, retries: Retries) -> RoutePolicy {
        self.retries = Some(retries);
        self
    }

    /// Sets `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> RoutePolicy {
        self.timeout = Some(timeout);
        self
    }

    /// Whether it programs `caller`'s route to `callee`.
    pub fn concerns(&self, caller: &str, callee: &str) -> bool {
        self.host == callee && self.source.as_deref().is_none_or(|s| s == caller)
    }

    /// One line for tables: `2 retries on 5xx,unavailable, 100 ms per try`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        match &self.retries {
            Some(r) if r.attempts > 0 => {
                parts.push(format!("{} retries on {}", r.attempts, r.on.join(",")));
            }
            _ => parts.push("no retries".to_owned()),
        }
        if let Some(t) = self.retries.as_ref().and_then(|r| r.per_try_timeout) {
            parts.push(format!("{} ms per try", t.as_millis()));
        }
        if let Some(t) = self.timeout {
            parts.push(format!("{} ms timeout", t.as_millis()));
        }
        let from = self.source.as_deref().unwrap_or("every caller");
        format!("{from} → {}: {}", self.host, parts.join(", "))
    }
}

/// An Envoy duration (`"0.100s"`).
fn envoy_duration(d: Duration) -> String {
    format!("{}.{:03}s", d.as_secs(), d.subsec_millis())
}

/// The `route` action of a caller's outbound route to `cluster` under `policy`: Istio's
/// translation, where no VirtualService timeout means `timeout: 0s` (none) and no retries
/// means no `retry_policy` (our baseline is `attempts: 0`, not Istio's implicit default of 2
/// retries on `connect-failure,refused-stream,unavailable,cancelled,503`, so that a fault's
/// share is seen as configured).
pub fn route_action(cluster: &str, policy: Option<&RoutePolicy>) -> Value {
    let timeout = policy
        .and_then(|p| p.timeout)
        .map_or_else(|| "0s".to_owned(), envoy_duration);
    let mut action = json!({"cluster": cluster, "timeout": timeout});
    // Istio drops `retries` with `attempts: 0`, its `perTryTimeout` included.
    let retries = policy
        .and_then(|p| p.retries.as_ref())
        .filter(|r| r.attempts > 0);
    if let (Some(r), Some(m)) = (retries, action.as_object_mut()) {
        m.insert("retry_policy".into(), r.to_envoy());
    }
    action
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_render_as_istio_writes_them() {
        let p = RoutePolicy::to("cartservice").retries(
            Retries::new(2, &["5xx", "unavailable", "503"])
                .unwrap()
                .per_try_timeout(Duration::from_millis(100)),
        );
        let a = route_action(
            "outbound|7070||cartservice.demo.svc.cluster.local",
            Some(&p),
        );
        assert_eq!(
            a["retry_policy"]["retry_on"],
            "5xx,unavailable,retriable-status-codes"
        );
        assert_eq!(a["retry_policy"]["num_retries"], 2);
        assert_eq!(a["retry_policy"]["retriable_status_codes"], json!([503]));
        assert_eq!(a["retry_policy"]["per_try_timeout"], "0.100s");
        assert_eq!(a["timeout"], "0s");
        let none = route_action("c", None);
        assert!(none.get("retry_policy").is_none());
        let t = RoutePolicy::to("x").timeout(Duration::from_millis(1500));
        assert_eq!(route_action("c", Some(&t))["timeout"], "1.500s");
    }

    #[test]
    fn a_policy_concerns_its_host_and_source_only() {
        let p = RoutePolicy::to("cartservice").from("frontend");
        assert!(p.concerns("frontend", "cartservice"));
        assert!(!p.concerns("checkoutservice", "cartservice"));
        assert!(!p.concerns("frontend", "adservice"));
        assert!(RoutePolicy::to("cartservice").concerns("checkoutservice", "cartservice"));
    }

    #[test]
    fn bad_retries_name_the_field() {
        assert_eq!(
            Retries::new(2, &["5xx", "sometimes"]).unwrap_err().to_string(),
            format!(
                "topology: retries.on[1]: `sometimes` is neither an Envoy retry condition ({}) nor an HTTP status",
                RETRY_CONDITIONS.join(", ")
            )
        );
        assert_eq!(
            Retries::new(11, &[]).unwrap_err().to_string(),
            "topology: retries.attempts: `11` is more than 10"
        );
    }
}
