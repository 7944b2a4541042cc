//! The policies the benchmarks write (JSON, as `boifi-cli` would send them).

use serde_json::{json, Value};

/// The namespace every benchmark identity lives in.
pub const NAMESPACE: &str = "bench";

/// A policy aborting `percent` % of `service`'s requests with 503 (on every path).
pub fn abort(name: &str, service: &str, percent: u32) -> Value {
    aborting(name, service, &json!({"path": {"prefix": "/"}}), percent)
}

/// A policy that applies to `service` but never fires on the benchmark's `GET /`: 100 %
/// abort behind a match the load never satisfies. Even `i` matches a header the load does
/// not send (the filter must read it), odd `i` a path prefix it does not use.
pub fn dormant(name: &str, service: &str, i: usize) -> Value {
    let matcher = if i.is_multiple_of(2) {
        json!({"headers": [{"name": format!("x-bench-never-{i}"), "exact": "yes"}]})
    } else {
        json!({"path": {"prefix": format!("/never/{i}/")}})
    };
    aborting(name, service, &matcher, 100)
}

/// [`dormant`] acting on the app's response (`target: response`): it never fires either, so
/// the filter's response callback finds nothing to do (the dormant cost of response-phase rules).
pub fn dormant_response(name: &str, service: &str, i: usize) -> Value {
    let mut policy = dormant(name, service, i);
    let fault = policy
        .pointer_mut("/spec/rules/0/fault")
        .and_then(Value::as_object_mut);
    if let Some(fault) = fault {
        fault.insert("target".to_owned(), json!("response"));
    }
    policy
}

/// One rule on `service`: `percent` % of the requests `matcher` matches abort with 503.
fn aborting(name: &str, service: &str, matcher: &Value, percent: u32) -> Value {
    json!({
        "apiVersion": "boifi.io/v1alpha1",
        "kind": "FaultInjectionPolicy",
        "metadata": {"name": name},
        "spec": {
            "selector": {"service": service, "namespace": NAMESPACE},
            "rules": [{"match": matcher,
                       "fault": {"percentage": percent, "abort": {"httpStatus": 503}}}],
        },
    })
}

/// The filter's `pluginConfig` for an Envoy that is `service` in the benchmark namespace
/// (identity given in the config: the benchmark Envoys carry no Istio metadata).
pub fn plugin_config(service: &str) -> Value {
    json!({
        "identity": {"service": service, "namespace": NAMESPACE, "pod": format!("{service}-0")},
        "backoff_initial_ms": 200,
        "backoff_max_ms": 2000,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_policies_are_valid() {
        for p in [
            abort("abort-x", "svc", 10),
            dormant("dormant-0", "svc", 0),
            dormant("dormant-1", "svc", 1),
        ] {
            let parsed = boifi_core::policy::PolicyDocument::from_value(&p);
            assert!(parsed.is_ok(), "{p}: {parsed:?}");
        }
        assert!(boifi_core::wire::PluginConfig::from_json(
            plugin_config("svc").to_string().as_bytes()
        )
        .is_ok());
    }
}
