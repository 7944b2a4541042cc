//! Composes a kustomization the way `kubectl apply -k` does, for the subset of kustomize the
//! project's overlays use: `resources` (files and directories), `patches` given by `path`
//! (strategic merge, the target named by the patch's own kind, name and namespace),
//! `patchesStrategicMerge`, `images` (`name`, `newName`, `newTag`, `digest`) and `namespace`.
//!
//! Any other field is an error rather than ignored, so an overlay that uses more of kustomize
//! than this implements cannot pass the checks with a wrong composition.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::smp;
use crate::yaml::{load_file, Document, ResourceId, YamlError};

/// Errors composing a kustomization.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KustomizeError {
    /// A file could not be read or parsed.
    #[error(transparent)]
    Yaml(#[from] YamlError),
    /// No `kustomization.yaml` in the directory.
    #[error("{dir}: no kustomization.yaml")]
    NoKustomization {
        /// The directory.
        dir: PathBuf,
    },
    /// A field or form this implementation does not support.
    #[error("{file}: {field}: {reason}")]
    Unsupported {
        /// The kustomization file.
        file: PathBuf,
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
    /// Two resources with the same kind, namespace and name.
    #[error("{file}: `{id}` is defined twice")]
    Duplicate {
        /// The kustomization file.
        file: PathBuf,
        /// The resource.
        id: ResourceId,
    },
    /// A patch whose target is not among the resources.
    #[error("{patch}: no resource `{id}` to patch")]
    NoPatchTarget {
        /// The patch file.
        patch: PathBuf,
        /// The target it names.
        id: ResourceId,
    },
    /// A patch that cannot be applied.
    #[error("{patch}: {reason}")]
    BadPatch {
        /// The patch file.
        patch: PathBuf,
        /// Why.
        reason: String,
    },
}

const KNOWN_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "resources",
    "patches",
    "patchesStrategicMerge",
    "images",
    "namespace",
];

/// Kinds that have no namespace.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
];

/// Composes the kustomization in `dir` and returns its documents in resource order.
///
/// # Errors
/// Unreadable files, unsupported fields, duplicate resources, patches without a target.
pub fn build(dir: &Path) -> Result<Vec<Document>, KustomizeError> {
    build_nested(dir, 0)
}

/// How deep kustomizations may include each other (a cycle ends here, not in a stack overflow).
const MAX_DEPTH: usize = 16;

fn build_nested(dir: &Path, depth: usize) -> Result<Vec<Document>, KustomizeError> {
    let file = kustomization_file(dir)?;
    if depth > MAX_DEPTH {
        return Err(unsupported(
            &file,
            "resources",
            &format!("kustomizations nested deeper than {MAX_DEPTH} (a cycle?)"),
        ));
    }
    let docs = crate::yaml::load_file(&file)?;
    let kustomization = docs
        .into_iter()
        .next()
        .map(|d| d.value)
        .unwrap_or(Value::Null);
    let Some(fields) = kustomization.as_object() else {
        return Err(unsupported(&file, "", "the kustomization is not a map"));
    };
    for key in fields.keys() {
        if !KNOWN_FIELDS.contains(&key.as_str()) {
            return Err(unsupported(
                &file,
                key,
                "this field is not supported by boifi-deploy's composer",
            ));
        }
    }

    let mut resources: Vec<Document> = Vec::new();
    for entry in string_list(&file, fields.get("resources"), "resources")? {
        let path = dir.join(&entry);
        let loaded = if path.is_dir() {
            build_nested(&path, depth + 1)?
        } else if path.is_file() {
            load_file(&path)?
        } else {
            return Err(unsupported(
                &file,
                "resources",
                &format!("`{entry}` is not a local file or directory"),
            ));
        };
        resources.extend(loaded);
    }
    let mut seen = BTreeSet::new();
    for doc in &resources {
        if !seen.insert(doc.id()) {
            return Err(KustomizeError::Duplicate {
                file: file.clone(),
                id: doc.id(),
            });
        }
    }

    let mut patch_files = Vec::new();
    if let Some(patches) = fields.get("patches") {
        let Some(patches) = patches.as_array() else {
            return Err(unsupported(&file, "patches", "must be a list"));
        };
        for (i, patch) in patches.iter().enumerate() {
            let field = format!("patches[{i}]");
            let Some(entry) = patch.as_object() else {
                return Err(unsupported(&file, &field, "must be a map"));
            };
            if let Some(key) = entry.keys().find(|k| k.as_str() != "path") {
                return Err(unsupported(
                    &file,
                    &format!("{field}.{key}"),
                    "only `path` patches are supported",
                ));
            }
            let Some(path) = entry.get("path").and_then(Value::as_str) else {
                return Err(unsupported(
                    &file,
                    &format!("{field}.path"),
                    "must be a string",
                ));
            };
            patch_files.push(dir.join(path));
        }
    }
    for entry in string_list(
        &file,
        fields.get("patchesStrategicMerge"),
        "patchesStrategicMerge",
    )? {
        patch_files.push(dir.join(entry));
    }
    for patch_file in &patch_files {
        for patch in load_file(patch_file)? {
            apply_patch(&mut resources, &patch, patch_file)?;
        }
    }

    if let Some(namespace) = fields.get("namespace") {
        let Some(namespace) = namespace.as_str() else {
            return Err(unsupported(&file, "namespace", "must be a string"));
        };
        set_namespace(&mut resources, namespace);
    }

    if let Some(images) = fields.get("images") {
        let Some(images) = images.as_array() else {
            return Err(unsupported(&file, "images", "must be a list"));
        };
        for (i, image) in images.iter().enumerate() {
            let rule = ImageRule::parse(image)
                .map_err(|reason| unsupported(&file, &format!("images[{i}]"), &reason))?;
            for doc in &mut resources {
                rule.apply(&mut doc.value);
            }
        }
    }
    Ok(resources)
}

fn kustomization_file(dir: &Path) -> Result<PathBuf, KustomizeError> {
    ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| KustomizeError::NoKustomization {
            dir: dir.to_path_buf(),
        })
}

fn unsupported(file: &Path, field: &str, reason: &str) -> KustomizeError {
    KustomizeError::Unsupported {
        file: file.to_path_buf(),
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}

fn string_list(
    file: &Path,
    value: Option<&Value>,
    field: &str,
) -> Result<Vec<String>, KustomizeError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let Some(items) = value.as_array() else {
        return Err(unsupported(file, field, "must be a list"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_str()
                .map(str::to_owned)
                .ok_or_else(|| unsupported(file, &format!("{field}[{i}]"), "must be a string"))
        })
        .collect()
}

/// True for kinds of the Kubernetes API itself (they get strategic-merge list keys).
#[must_use]
pub fn is_builtin_api(api_version: &str) -> bool {
    match api_version.split_once('/') {
        None => true,
        Some((group, _)) => {
            group.ends_with(".k8s.io")
                || ["apps", "batch", "policy", "autoscaling"].contains(&group)
        }
    }
}

fn apply_patch(
    resources: &mut [Document],
    patch: &Document,
    file: &Path,
) -> Result<(), KustomizeError> {
    let id = patch.id();
    let target = resources.iter_mut().find(|doc| {
        doc.kind() == id.kind
            && doc.name() == id.name
            && (id.namespace.is_empty() || doc.namespace() == id.namespace)
    });
    let Some(target) = target else {
        return Err(KustomizeError::NoPatchTarget {
            patch: file.to_path_buf(),
            id,
        });
    };
    let builtin = is_builtin_api(target.api_version());
    smp::apply(&mut target.value, &patch.value, builtin).map_err(|err| KustomizeError::BadPatch {
        patch: file.to_path_buf(),
        reason: err.to_string(),
    })
}

fn set_namespace(resources: &mut [Document], namespace: &str) {
    for doc in resources {
        if CLUSTER_SCOPED.contains(&doc.kind()) {
            continue;
        }
        if let Some(metadata) = doc.value.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert("namespace".to_owned(), Value::String(namespace.to_owned()));
        }
    }
}

/// One entry of `images`.
#[derive(Debug)]
struct ImageRule {
    name: String,
    new_name: Option<String>,
    new_tag: Option<String>,
    digest: Option<String>,
}

impl ImageRule {
    fn parse(value: &Value) -> Result<Self, String> {
        let Some(map) = value.as_object() else {
            return Err("must be a map".to_owned());
        };
        if let Some(key) = map
            .keys()
            .find(|k| !["name", "newName", "newTag", "digest"].contains(&k.as_str()))
        {
            return Err(format!("`{key}` is not supported"));
        }
        let get = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_owned);
        let name = get("name").ok_or("`name` is required")?;
        Ok(Self {
            name,
            new_name: get("newName"),
            new_tag: get("newTag"),
            digest: get("digest"),
        })
    }

    fn apply(&self, doc: &mut Value) {
        for pod_spec in pod_specs_mut(doc) {
            for list in ["initContainers", "containers"] {
                let Some(containers) = pod_spec.get_mut(list).and_then(Value::as_array_mut) else {
                    continue;
                };
                for container in containers {
                    let Some(image) = container.get("image").and_then(Value::as_str) else {
                        continue;
                    };
                    let (name, tag) = split_image(image);
                    if name != self.name {
                        continue;
                    }
                    let new_name = self.new_name.as_deref().unwrap_or(name);
                    let new_image = match (&self.digest, &self.new_tag, tag) {
                        (Some(digest), _, _) => format!("{new_name}@{digest}"),
                        (None, Some(tag), _) => format!("{new_name}:{tag}"),
                        (None, None, Some(tag)) => format!("{new_name}{tag}"),
                        (None, None, None) => new_name.to_owned(),
                    };
                    if let Some(slot) = container.get_mut("image") {
                        *slot = Value::String(new_image);
                    }
                }
            }
        }
    }
}

/// Splits `repo/name:tag` or `repo/name@digest` into the name and the `:tag`/`@digest` suffix.
fn split_image(image: &str) -> (&str, Option<&str>) {
    if let Some(at) = image.find('@') {
        return (image.get(..at).unwrap_or(image), image.get(at..));
    }
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image.get(last_slash..).and_then(|tail| tail.rfind(':')) {
        Some(colon) => {
            let split = last_slash + colon;
            (image.get(..split).unwrap_or(image), image.get(split..))
        }
        None => (image, None),
    }
}

/// The pod specs inside a workload (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job,
/// CronJob).
pub fn pod_specs_mut(doc: &mut Value) -> Vec<&mut Value> {
    let kind = doc
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let path: &[&str] = match kind.as_str() {
        "Pod" => &["spec"],
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            &["spec", "template", "spec"]
        }
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ => return Vec::new(),
    };
    path.iter()
        .try_fold(doc, |v, key| v.get_mut(*key))
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn image_names_split_like_kustomize() {
        assert_eq!(
            split_image("ghcr.io/boifi/boifi-server:0.1.0"),
            ("ghcr.io/boifi/boifi-server", Some(":0.1.0"))
        );
        assert_eq!(split_image("localhost:5000/x"), ("localhost:5000/x", None));
        assert_eq!(
            split_image("localhost:5000/x:v1"),
            ("localhost:5000/x", Some(":v1"))
        );
        assert_eq!(split_image("x@sha256:ab"), ("x", Some("@sha256:ab")));
    }

    #[test]
    fn images_rule_rewrites_matching_containers_only() {
        let mut doc = json!({"kind": "Deployment", "spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "ghcr.io/boifi/boifi-server:0.1.0"},
            {"name": "b", "image": "quay.io/coreos/etcd:v3.5.17"}
        ]}}}});
        let rule = ImageRule::parse(&json!({"name": "ghcr.io/boifi/boifi-server", "newName": "boifi-server", "newTag": "dev"})).unwrap();
        rule.apply(&mut doc);
        assert_eq!(
            doc["spec"]["template"]["spec"]["containers"][0]["image"],
            "boifi-server:dev"
        );
        assert_eq!(
            doc["spec"]["template"]["spec"]["containers"][1]["image"],
            "quay.io/coreos/etcd:v3.5.17"
        );
    }

    #[test]
    fn builtin_api_groups() {
        assert!(is_builtin_api("v1"));
        assert!(is_builtin_api("apps/v1"));
        assert!(is_builtin_api("networking.k8s.io/v1"));
        assert!(!is_builtin_api("extensions.istio.io/v1alpha1"));
    }

    #[test]
    fn a_kustomization_that_includes_itself_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("kustomization.yaml"),
            "resources: [\".\"]\n",
        )
        .unwrap();
        let err = build(dir.path()).unwrap_err();
        assert!(err.to_string().contains("nested deeper than 16"), "{err}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("kustomization.yaml"),
            "commonLabels: {a: b}\n",
        )
        .unwrap();
        let err = build(dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains("commonLabels: this field is not supported"),
            "{err}"
        );
    }

    #[test]
    fn namespace_skips_cluster_scoped_kinds() {
        let mut docs = vec![
            Document {
                source: "a".into(),
                value: json!({"kind": "Namespace", "metadata": {"name": "x"}}),
            },
            Document {
                source: "b".into(),
                value: json!({"kind": "Service", "metadata": {"name": "s", "namespace": "y"}}),
            },
        ];
        set_namespace(&mut docs, "z");
        assert_eq!(docs[0].namespace(), "");
        assert_eq!(docs[1].namespace(), "z");
    }
}
