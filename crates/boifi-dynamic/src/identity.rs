//! Who the sidecar is, from the environment Istio gives the proxy container.
//!
//! A dynamic module cannot read Envoy's node metadata, but pilot-agent builds that metadata
//! from the same sources the module reads here: `POD_NAME`, `POD_NAMESPACE`,
//! `ISTIO_META_WORKLOAD_NAME`, and the pod labels (`ISTIO_METAJSON_LABELS`, else the downward-API
//! file `/etc/istio/pod/labels`). boifi-core resolves them exactly as the Wasm filter resolves
//! node metadata, and the filter configuration's `identity` overrides win, as there.

use std::collections::BTreeMap;

use boifi_core::identity::{Identity, NodeMetadata};
use boifi_core::wire::IdentityOverride;

/// Where Istio's injector mounts the pod labels (downward API).
pub const LABELS_FILE: &str = "/etc/istio/pod/labels";

/// Reads the identity: `env` looks a variable up, `labels_file` reads the downward-API file.
pub fn resolve(
    overrides: &IdentityOverride,
    env: impl Fn(&str) -> Option<String>,
    labels_file: impl FnOnce() -> Option<String>,
) -> Identity {
    let labels = env("ISTIO_METAJSON_LABELS")
        .and_then(|json| labels_from_json(&json))
        .or_else(|| labels_file().map(|text| labels_from_downward_api(&text)))
        .unwrap_or_default();
    let metadata = NodeMetadata {
        workload_name: env("ISTIO_META_WORKLOAD_NAME"),
        namespace: env("POD_NAMESPACE"),
        name: env("POD_NAME"),
        labels,
    };
    overrides.apply(Identity::resolve(&metadata))
}

/// The identity of this process (its environment and the labels file).
pub fn from_process(overrides: &IdentityOverride) -> Identity {
    resolve(
        overrides,
        |name| std::env::var(name).ok(),
        || std::fs::read_to_string(LABELS_FILE).ok(),
    )
}

fn labels_from_json(json: &str) -> Option<BTreeMap<String, String>> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    Some(
        value
            .as_object()?
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect(),
    )
}

/// `key="value"` lines, values quoted and escaped as Kubernetes writes them.
fn labels_from_downward_api(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let (k, v) = line.split_once('=')?;
            let v = v.trim();
            let v = serde_json::from_str::<String>(v).unwrap_or_else(|_| v.to_owned());
            Some((k.trim().to_owned(), v))
        })
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn istio_environment_resolves_like_node_metadata() {
        let vars = [
            ("POD_NAME", "cart-7d9f8c-abcde"),
            ("POD_NAMESPACE", "shop"),
            ("ISTIO_META_WORKLOAD_NAME", "cart-v1"),
        ];
        let id = resolve(&IdentityOverride::default(), env(&vars), || {
            Some("app=\"cart\"\nversion=\"v1\"\n".into())
        });
        assert_eq!(id.service.as_deref(), Some("cart"));
        assert_eq!(id.namespace.as_deref(), Some("shop"));
        assert_eq!(id.pod.as_deref(), Some("cart-7d9f8c-abcde"));
        assert_eq!(id.labels.get("version").map(String::as_str), Some("v1"));
    }

    #[test]
    fn workload_name_without_labels_and_json_labels_win_over_the_file() {
        let vars = [
            ("ISTIO_META_WORKLOAD_NAME", "cart-v1"),
            ("POD_NAMESPACE", "shop"),
        ];
        let id = resolve(&IdentityOverride::default(), env(&vars), || None);
        assert_eq!(id.service.as_deref(), Some("cart-v1"));
        let vars = [("ISTIO_METAJSON_LABELS", r#"{"app":"pay"}"#)];
        let id = resolve(&IdentityOverride::default(), env(&vars), || {
            Some("app=\"cart\"".into())
        });
        assert_eq!(id.service.as_deref(), Some("pay"));
    }

    #[test]
    fn overrides_win() {
        let overrides = IdentityOverride {
            service: Some("checkout".into()),
            ..IdentityOverride::default()
        };
        let vars = [
            ("POD_NAMESPACE", "shop"),
            ("ISTIO_META_WORKLOAD_NAME", "cart"),
        ];
        let id = resolve(&overrides, env(&vars), || None);
        assert_eq!(id.service.as_deref(), Some("checkout"));
        assert_eq!(id.namespace.as_deref(), Some("shop"));
    }
}
