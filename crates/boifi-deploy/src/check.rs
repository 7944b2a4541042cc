//! The offline manifest checker: schemas, Istio's `WasmPlugin` rules, cross-object rules.

use std::path::Path;

use serde_json::Value;

use crate::consistency::{check_bundle, filter_plugin_config, BundleScope};
use crate::istio::rule_violations;
use crate::native;
use crate::schema::SchemaSet;
use crate::yaml::Document;

/// One problem found in one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where the document came from (`file#index`), or the resource for cross-object rules.
    pub source: String,
    /// The field, as a JSON pointer or dotted path (may be empty).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.source, self.message)
        } else {
            write!(f, "{}: {}: {}", self.source, self.path, self.message)
        }
    }
}

/// Checks documents against the schemas under one schema root.
#[derive(Debug)]
pub struct Checker {
    schemas: SchemaSet,
}

impl Checker {
    /// A checker for the schemas under `k8s_schemas` (the folder holding
    /// `v1.30.0-standalone-strict/` and `extensions.istio.io/`).
    #[must_use]
    pub fn new(k8s_schemas: &Path) -> Self {
        Self {
            schemas: SchemaSet::new(k8s_schemas),
        }
    }

    /// Schema and Istio-rule problems of one document (no cross-object rules).
    pub fn check_document(&mut self, doc: &Document) -> Vec<Problem> {
        let mut out = Vec::new();
        let problem = |path: String, message: String| Problem {
            source: doc.source.clone(),
            path,
            message,
        };
        if native::is_native_kind(doc) {
            out.extend(
                native::violations(doc)
                    .into_iter()
                    .map(|v| problem(v.path, v.message)),
            );
        }
        // Envoy Gateway's CRDs have no schema in the test data: the rules above stand in.
        if !native::is_schemaless_kind(doc) {
            match self.schemas.validate(&doc.value) {
                Ok(violations) => out.extend(
                    violations
                        .into_iter()
                        .map(|v| problem(v.pointer, v.message)),
                ),
                Err(err) => out.push(problem(String::new(), err.to_string())),
            }
        }
        out.extend(
            rule_violations(&doc.value)
                .into_iter()
                .map(|v| problem(v.path, v.message)),
        );
        if doc.name().is_empty() {
            out.push(problem("/metadata/name".into(), "is required".into()));
        }
        out
    }

    /// Every problem of a bundle: each document, then the rules across documents.
    pub fn check_bundle(&mut self, docs: &[Document], scope: &BundleScope) -> Vec<Problem> {
        let mut out: Vec<Problem> = docs
            .iter()
            .flat_map(|doc| self.check_document(doc))
            .collect();
        out.extend(
            native::unregistered_modules(docs)
                .into_iter()
                .map(|(source, message)| Problem {
                    source,
                    path: String::new(),
                    message,
                }),
        );
        out.extend(
            check_bundle(docs, scope)
                .into_iter()
                .map(|finding| Problem {
                    source: finding.resource.to_string(),
                    path: String::new(),
                    message: finding.message,
                }),
        );
        out
    }
}

/// The `pluginConfig` of every document that loads boifi's Wasm filter (`WasmPlugin`, or
/// `TrafficExtension` under `spec.wasm`), with the document's id.
#[must_use]
pub fn plugin_configs(docs: &[Document]) -> Vec<(String, Value)> {
    docs.iter()
        .filter_map(|doc| {
            let config = filter_plugin_config(doc)??.clone();
            Some((doc.id().to_string(), config))
        })
        .collect()
}
