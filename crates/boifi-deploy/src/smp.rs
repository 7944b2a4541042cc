//! The part of Kubernetes' strategic merge patch that the overlays use.
//!
//! Maps merge recursively and a `null` in the patch deletes the key. Lists of built-in kinds
//! merge by their `patchMergeKey` (containers, env, volumes… by `name`; volumeMounts by
//! `mountPath`; container ports by `containerPort`, Service ports by `port`); any other list is
//! replaced whole, as the apiserver does. Kinds kustomize has no schema for (custom resources)
//! get no merge keys, so their lists are replaced, as kustomize does. `$patch` and other
//! directives are refused rather than half-implemented.

use serde_json::{Map, Value};

/// A directive or shape this implementation does not support.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub(crate) struct PatchError {
    pub(crate) path: String,
    pub(crate) reason: String,
}

fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "ports" => {
            if items.iter().any(|item| item.get("containerPort").is_some()) {
                Some("containerPort")
            } else {
                Some("port")
            }
        }
        _ => None,
    }
}

/// Applies `patch` to `target` in place. `builtin` selects Kubernetes' merge keys for lists.
pub(crate) fn apply(target: &mut Value, patch: &Value, builtin: bool) -> Result<(), PatchError> {
    merge_value(target, patch, builtin, "")
}

fn merge_value(
    target: &mut Value,
    patch: &Value,
    builtin: bool,
    path: &str,
) -> Result<(), PatchError> {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => merge_map(target, patch, builtin, path),
        (target, patch) => {
            *target = strip_nulls(patch);
            Ok(())
        }
    }
}

fn merge_map(
    target: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    builtin: bool,
    path: &str,
) -> Result<(), PatchError> {
    for (key, patch_value) in patch {
        let child = format!("{path}.{key}");
        if key.starts_with('$') {
            return Err(PatchError {
                path: child,
                reason: format!("the directive `{key}` is not supported"),
            });
        }
        if patch_value.is_null() {
            target.remove(key);
            continue;
        }
        match (target.get_mut(key), patch_value) {
            (Some(Value::Array(items)), Value::Array(patch_items)) if builtin => {
                match merge_key(key, patch_items) {
                    Some(merge_key) => merge_list(items, patch_items, merge_key, &child)?,
                    None => *items = patch_items.iter().map(strip_nulls).collect(),
                }
            }
            (Some(existing), _) => merge_value(existing, patch_value, builtin, &child)?,
            (None, _) => {
                target.insert(key.clone(), strip_nulls(patch_value));
            }
        }
    }
    Ok(())
}

fn merge_list(
    items: &mut Vec<Value>,
    patch_items: &[Value],
    key: &str,
    path: &str,
) -> Result<(), PatchError> {
    for (i, patch_item) in patch_items.iter().enumerate() {
        let Some(wanted) = patch_item.get(key) else {
            return Err(PatchError {
                path: format!("{path}[{i}]"),
                reason: format!("has no merge key `{key}`"),
            });
        };
        match items.iter_mut().find(|item| item.get(key) == Some(wanted)) {
            Some(existing) => merge_value(existing, patch_item, true, &format!("{path}[{i}]"))?,
            None => items.push(strip_nulls(patch_item)),
        }
    }
    Ok(())
}

fn strip_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn maps_merge_and_null_deletes() {
        let mut target = json!({"a": {"b": 1, "c": 2}, "d": 3});
        apply(
            &mut target,
            &json!({"a": {"b": 5, "c": null}, "e": {"f": null, "g": 1}}),
            true,
        )
        .unwrap();
        assert_eq!(target, json!({"a": {"b": 5}, "d": 3, "e": {"g": 1}}));
    }

    #[test]
    fn containers_merge_by_name_and_env_by_name() {
        let mut target = json!({"containers": [
            {"name": "a", "image": "x", "env": [{"name": "K", "value": "1"}, {"name": "L", "value": "2"}]},
            {"name": "b", "image": "y"}
        ]});
        let patch = json!({"containers": [
            {"name": "a", "env": [{"name": "K", "value": "9"}, {"name": "M", "value": "3"}]}
        ]});
        apply(&mut target, &patch, true).unwrap();
        assert_eq!(
            target,
            json!({"containers": [
                {"name": "a", "image": "x", "env": [
                    {"name": "K", "value": "9"}, {"name": "L", "value": "2"}, {"name": "M", "value": "3"}]},
                {"name": "b", "image": "y"}
            ]})
        );
    }

    #[test]
    fn custom_resources_replace_lists() {
        let mut target = json!({"ports": [{"port": 1}, {"port": 2}]});
        apply(&mut target, &json!({"ports": [{"port": 3}]}), false).unwrap();
        assert_eq!(target, json!({"ports": [{"port": 3}]}));
    }

    #[test]
    fn other_lists_are_replaced() {
        let mut target = json!({"args": ["a", "b"]});
        apply(&mut target, &json!({"args": ["c"]}), true).unwrap();
        assert_eq!(target, json!({"args": ["c"]}));
    }

    #[test]
    fn directives_are_refused() {
        let mut target = json!({"spec": {}});
        let err = apply(&mut target, &json!({"spec": {"$patch": "replace"}}), true).unwrap_err();
        assert_eq!(err.path, ".spec.$patch");
    }
}
