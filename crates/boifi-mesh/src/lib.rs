//! A service mesh on one machine, with real processes: the boifi control plane (embedded
//! store, or two replicas on a 3-member etcd behind a balancing Envoy), and for every pod of
//! every service a small app behind an Envoy sidecar configured as Istio would configure it,
//! with the boifi filter on its inbound listener and the app's calls to its dependencies
//! leaving through the sidecar's outbound listener (with the callers' retry and timeout
//! policies); an ingress Envoy round-robins over each service's replicas.
//!
//! Everything runs in its own process group and is killed when the [`mesh::Mesh`] is
//! dropped, even when a test panics (the processes' logs are printed then). Used by the
//! end-to-end tests (`tests/it`) and by `make demo` (the `boifi-mesh demo` command).
#![warn(missing_docs)]

pub mod ambient;
pub mod app;
pub mod calls;
pub mod cascade;
pub mod control_plane;
pub mod demo;
pub mod envoy;
pub mod error;
pub mod etcd;
pub mod http;
pub mod mesh;
pub mod pki;
pub mod process;
pub mod prometheus;
pub mod stats;
pub mod topology;
pub mod traffic;

pub use control_plane::Store;
pub use error::MeshError;
pub use mesh::{Mesh, MeshOptions};
pub use topology::{Protocol, ServiceSpec, Topology};
pub use traffic::{Retries, RoutePolicy};
