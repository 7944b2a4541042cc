//! Shared helpers of the mesh tests.

use boifi_mesh::{Mesh, MeshOptions, Topology};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Mesh tests run one at a time: each starts dozens of processes on a 2-core machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Takes the machine for one test.
pub fn exclusive() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The app binary built with these tests.
pub fn app_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_boifi-mesh"))
}

/// Options for a mesh of `services` of Online Boutique (namespace `demo`).
pub fn options(services: &[&str]) -> MeshOptions {
    let mut o = MeshOptions::new(Topology::online_boutique().only(services));
    o.app_binary = Some(app_binary());
    o
}

/// Starts a mesh or fails the test with the reason.
pub fn start(options: MeshOptions) -> Mesh {
    match Mesh::start(options) {
        Ok(m) => m,
        Err(e) => panic!("mesh did not start: {e}"),
    }
}
