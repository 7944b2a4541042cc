//! Deploy tooling for boifi.
//!
//! - [`oci`] writes the filter as a Wasm OCI image layout in the format Istio's agent pulls,
//!   and verifies such a layout (index → manifest → config and layers, digests and sizes).
//! - [`render`] renders the kustomize overlays under `manifests/` with `kubectl kustomize` and
//!   the Helm chart under `charts/` with `helm template`, so the checks read what would be
//!   applied.
//! - [`check`] is the offline manifest checker: every document against the strict Kubernetes
//!   JSON schemas and the Istio `WasmPlugin` schema ([`schema`]), the `WasmPlugin` rules Istio
//!   enforces through CEL ([`istio`]), and the cross-object rules a schema cannot see
//!   ([`consistency`]).
//! - [`native`]: the rules for the native module's manifests (Istio `EnvoyFilter`, Envoy
//!   Gateway `EnvoyProxy` and `EnvoyExtensionPolicy`), which have no schema in the shared data.
//! - [`crd`] derives the checker's JSON schema of a custom resource from its CRD.
//! - [`pin`] writes the built artifact's digests into the manifests that reference it.
//! - [`error`]: why a `boifi-deploy` command failed.
#![warn(missing_docs)]

pub mod check;
pub mod consistency;
pub mod crd;
pub mod digest;
pub mod error;
mod gourl;
pub mod istio;
pub mod native;
pub mod oci;
pub mod pin;
pub mod render;
pub mod schema;
pub mod yaml;
