//! The JSON schema the checker validates a custom resource against, derived from the
//! resource's CustomResourceDefinition the same way for every CRD in the test data: the
//! version's `openAPIV3Schema`, with `additionalProperties: false` on every object that lists
//! its `properties` (an apiserver prunes unknown fields there; the checker reports them), except
//! objects marked `x-kubernetes-preserve-unknown-fields` and the top level (which holds
//! `apiVersion`, `kind` and `metadata`, not listed in the CRDs). CEL `x-kubernetes-validations`
//! are kept; no JSON-schema validator enforces them ([`crate::istio`] codes the ones that
//! matter).

use serde_json::{Map, Value};

/// Why no schema could be derived.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CrdError {
    /// The document is not a CustomResourceDefinition.
    #[error("kind `{kind}` is not `CustomResourceDefinition`")]
    NotACrd {
        /// The document's kind.
        kind: String,
    },
    /// The CRD has no such version, or the version carries no schema.
    #[error(
        "spec.versions: no version `{version}` with schema.openAPIV3Schema (versions: {known})"
    )]
    NoVersion {
        /// The version asked for.
        version: String,
        /// The versions the CRD has, comma-separated.
        known: String,
    },
}

/// The checker's JSON schema for `version` of `crd` (a parsed CustomResourceDefinition).
///
/// # Errors
/// [`CrdError`] when `crd` is not a CRD or has no schema for `version`.
pub fn json_schema(crd: &Value, version: &str) -> Result<Value, CrdError> {
    let kind = crd.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind != "CustomResourceDefinition" {
        return Err(CrdError::NotACrd {
            kind: kind.to_owned(),
        });
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let schema = versions
        .iter()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(version))
        .and_then(|v| v.pointer("/schema/openAPIV3Schema"));
    let Some(schema) = schema else {
        let known: Vec<&str> = versions
            .iter()
            .filter_map(|v| v.get("name").and_then(Value::as_str))
            .collect();
        return Err(CrdError::NoVersion {
            version: version.to_owned(),
            known: known.join(", "),
        });
    };
    let mut schema = schema.clone();
    close_objects(&mut schema, true);
    Ok(schema)
}

/// Adds `additionalProperties: false` under `node` (see the module documentation).
fn close_objects(node: &mut Value, top: bool) {
    match node {
        Value::Object(map) => {
            if !top && closable(map) {
                map.insert("additionalProperties".to_owned(), Value::Bool(false));
            }
            for (key, child) in map.iter_mut() {
                match (key.as_str(), child) {
                    // The values of `properties` are schemas; its keys are field names.
                    ("properties", Value::Object(fields)) => {
                        fields.values_mut().for_each(|f| close_objects(f, false));
                    }
                    (_, child) => close_objects(child, false),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| close_objects(i, false)),
        _ => {}
    }
}

fn closable(map: &Map<String, Value>) -> bool {
    map.contains_key("properties")
        && !map.contains_key("additionalProperties")
        && map.get("x-kubernetes-preserve-unknown-fields") != Some(&Value::Bool(true))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn closes_listed_objects_but_not_the_top_or_preserved_ones() {
        let crd = json!({"kind": "CustomResourceDefinition", "spec": {"versions": [{"name": "v1",
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": {"a": {"type": "string"},
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                             "properties": {"x": {"type": "object", "properties": {}}}},
                    "list": {"type": "array", "items": {"type": "object", "properties": {"b": {}}}}}}}}}}]}});
        let schema = json_schema(&crd, "v1").unwrap();
        assert_eq!(schema.get("additionalProperties"), None);
        let spec = &schema["properties"]["spec"];
        assert_eq!(spec["additionalProperties"], false);
        assert_eq!(spec["properties"]["free"].get("additionalProperties"), None);
        assert_eq!(
            spec["properties"]["free"]["properties"]["x"]["additionalProperties"],
            false
        );
        assert_eq!(
            spec["properties"]["list"]["items"]["additionalProperties"],
            false
        );
    }

    #[test]
    fn a_missing_version_names_the_ones_there_are() {
        let crd =
            json!({"kind": "CustomResourceDefinition", "spec": {"versions": [{"name": "v1"}]}});
        let err = json_schema(&crd, "v2").unwrap_err().to_string();
        assert_eq!(
            err,
            "spec.versions: no version `v2` with schema.openAPIV3Schema (versions: v1)"
        );
    }
}
