//! boifi-deploy's checks of the real manifests, the real OCI artifact and the code they must
//! agree with. Everything here is offline and takes seconds.

// Test code: a failed unwrap is a failed test, which is what it should be.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod ambient;
mod chart;
mod consistency;
mod docs;
mod etcd;
mod istio_testdata;
mod mesh_authorization;
mod native;
mod oci;
mod overlays;
mod registry;
mod schemas;
mod server;
mod support;
