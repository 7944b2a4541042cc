//! Test harness: real processes (Envoy, boifi-server) and tiny in-test servers on loopback.
//!
//! Everything a test starts is owned by a value whose `Drop` kills it, so a failing assertion
//! never leaves an Envoy or a server behind.
// Shared helpers: not every test uses every one of them.
#![allow(dead_code)]

pub mod envoy;
pub mod http;
pub mod net;
pub mod relay;
pub mod server;
pub mod upstream;

use std::path::PathBuf;

/// True when the environment says the e2e suite must run (CI, or explicitly requested).
fn e2e_required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
        || std::env::var_os("BOIFI_REQUIRE_E2E").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Reports a missing prerequisite: fails when e2e is required, else returns `None` (skip).
fn missing(what: &str) -> Option<Prereqs> {
    assert!(
        !e2e_required(),
        "e2e prerequisite missing: {what} (CI/BOIFI_REQUIRE_E2E is set, so this is a failure; run `make test`, which builds the filter modules)"
    );
    eprintln!("skipping e2e test: {what} (set BOIFI_REQUIRE_E2E=1 to make this a failure)");
    None
}

/// Which build of the filter the e2e tests load into Envoy. The same harness and scenarios
/// run in two test binaries: boifi-wasm's (the proxy-wasm module) and boifi-dynamic's (the
/// native dynamic module); each binary's `main.rs` names its kind in `crate::FILTER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterKind {
    /// `boifi_wasm.wasm` through `envoy.filters.http.wasm` (env BOIFI_WASM, `make wasm`).
    Wasm,
    /// `libboifi.so` through `envoy.filters.http.dynamic_modules` (env BOIFI_NATIVE, `make native`).
    Native,
}

impl FilterKind {
    /// The environment variable naming the module file, and the make target that builds it.
    fn module_env(self) -> (&'static str, &'static str) {
        match self {
            FilterKind::Wasm => ("BOIFI_WASM", "make wasm"),
            FilterKind::Native => ("BOIFI_NATIVE", "make native"),
        }
    }
}

/// What every e2e test needs: the filter module, Envoy and the boifi-server binary.
#[derive(Debug, Clone)]
pub struct Prereqs {
    /// The filter module of [`crate::FILTER`]'s kind (a `.wasm` or the `.so`).
    pub wasm: PathBuf,
    pub envoy: PathBuf,
    pub server: PathBuf,
}

impl Prereqs {
    /// Finds the prerequisites, or `None` (skip) when one is missing and e2e is not required.
    pub fn find() -> Option<Prereqs> {
        let (var, make) = crate::FILTER.module_env();
        let Some(wasm) = std::env::var_os(var).map(PathBuf::from) else {
            return missing(&format!(
                "env {var} is not set (the path of the filter module)"
            ));
        };
        if !wasm.is_file() {
            return missing(&format!(
                "{var}=`{}` does not exist; build it with `{make}`",
                wasm.display()
            ));
        }
        let Some(envoy) = envoy::find_binary() else {
            return missing("no Envoy binary (env BOIFI_ENVOY or scripts/envoy-path.sh)");
        };
        let Some(server) = server::find_binary() else {
            return missing(
                "no boifi-server binary (env BOIFI_SERVER or target/debug/boifi-server; `cargo build -p boifi-server`)",
            );
        };
        Some(Prereqs {
            wasm,
            envoy,
            server,
        })
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
