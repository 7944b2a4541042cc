//! Test harness: real processes (Envoy, boifi-server) and tiny in-test servers on loopback.
//!
//! Everything a test starts is owned by a value whose `Drop` kills it, so a failing assertion
//! never leaves an Envoy or a server behind.
pub mod envoy;
pub use boifi_testkit::http;
pub mod net;
pub mod relay;
pub mod server;
pub mod upstream;

use std::path::PathBuf;

/// Fails the test with the missing prerequisite and how to get it.
#[track_caller]
fn missing(what: &str) -> ! {
    panic!("e2e prerequisite missing: {what} (`make test` builds and installs everything)")
}

/// Which build of the filter the e2e tests load into Envoy. The same harness and scenarios
/// run in two test binaries: boifi-wasm's (the proxy-wasm module) and boifi-dynamic's (the
/// native dynamic module); each binary passes its kind to every scenario
/// ([`crate::scenario_tests`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterKind {
    /// `boifi_wasm.wasm` through `envoy.filters.http.wasm` (env BOIFI_WASM, `make wasm`).
    Wasm,
    /// `libboifi.so` through `envoy.filters.http.dynamic_modules` (env BOIFI_NATIVE, `make native`).
    Native,
}

impl FilterKind {
    /// The environment variable naming the module file, where the Makefile puts it, and the
    /// make target that builds it.
    fn module(self) -> (&'static str, &'static str, &'static str) {
        match self {
            FilterKind::Wasm => (
                "BOIFI_WASM",
                "target/debian/wasm32-unknown-unknown/release/boifi_wasm.wasm",
                "make wasm",
            ),
            FilterKind::Native => ("BOIFI_NATIVE", "target/debug/libboifi.so", "make native"),
        }
    }
}

/// What every e2e test needs: the filter module, Envoy and the boifi-server binary.
#[derive(Debug, Clone)]
pub struct Prereqs {
    /// Which build of the filter [`Prereqs::wasm`] is.
    pub filter: FilterKind,
    /// The filter module of kind [`Prereqs::filter`] (a `.wasm` or the `.so`).
    pub wasm: PathBuf,
    pub envoy: PathBuf,
    pub server: PathBuf,
}

impl Prereqs {
    /// Finds the prerequisites for the `filter` build; a missing one fails the test, naming it.
    #[track_caller]
    pub fn find(filter: FilterKind) -> Prereqs {
        let (var, default, make) = filter.module();
        let wasm = std::env::var_os(var).map_or_else(|| repo_root().join(default), PathBuf::from);
        if !wasm.is_file() {
            missing(&format!(
                "the filter module `{}` does not exist (env {var}); build it with `{make}`",
                wasm.display()
            ));
        }
        let envoy = envoy::find_binary().unwrap_or_else(|| {
            missing(&match std::env::var_os("BOIFI_ENVOY") {
                Some(p) => format!(
                    "BOIFI_ENVOY=`{}` is not an Envoy binary",
                    p.to_string_lossy()
                ),
                None => {
                    "no Envoy binary (env BOIFI_ENVOY, or scripts/envoy-path.sh after `make deps`)"
                        .to_owned()
                }
            })
        });
        let server = server::find_binary().unwrap_or_else(|| {
            missing(
                "no boifi-server binary (env BOIFI_SERVER or target/debug/boifi-server; `cargo build -p boifi-server`)",
            )
        });
        Prereqs {
            filter,
            wasm,
            envoy,
            server,
        }
    }
}

impl Prereqs {
    /// Options for an Envoy of `workload` with this filter build.
    pub fn envoy_options(
        &self,
        workload: envoy::Workload,
        control_plane_port: u16,
        upstream_port: u16,
    ) -> envoy::EnvoyOptions {
        envoy::EnvoyOptions::new(
            workload,
            self.filter,
            &self.wasm,
            control_plane_port,
            upstream_port,
        )
    }
}

/// The repository root (two levels above this crate's manifest).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// A fresh temporary directory removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("BOIFI_KEEP_TEMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Polls `f` every 20 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: std::time::Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    wait_for_every(timeout, std::time::Duration::from_millis(20), f)
}

/// Polls `f` every `every` until it returns `Some` or `timeout` passes.
pub fn wait_for_every<T>(
    timeout: std::time::Duration,
    every: std::time::Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(every);
    }
}
