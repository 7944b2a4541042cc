//! `failure_policy`: with `FAIL_RELOAD` (Envoy >= 1.33; what boifi's Envoy configs use) a VM
//! that failed is replaced by a fresh one; with `FAIL_OPEN` it stays dead and requests pass
//! without the filter until Envoy restarts. Shown with a module that traps on purpose.

use super::*;

/// Passes its VM's first request, traps on the second after noting in shared data (which
/// outlives the VM) that it did, and answers 418 to every request once that note exists: a
/// 418 after the trap can only come from a VM that replaced the failed one.
const TRAPS_ONCE: &str = r#"
(module
  (import "env" "proxy_send_local_response"
    (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_shared_data" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; An empty header map, and the shared-data key.
  (data (i32.const 0) "\00\00\00\00")
  (data (i32.const 16) "trapped")
  (global $requests (mut i32) (i32.const 0))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.eqz (call $get (i32.const 16) (i32.const 7) (i32.const 64) (i32.const 68) (i32.const 72)))
      (then
        (drop (call $reply (i32.const 418) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
                           (i32.const 0) (i32.const 4) (i32.const -1)))
        (return (i32.const 1))))
    (global.set $requests (i32.add (global.get $requests) (i32.const 1)))
    (if (i32.eq (global.get $requests) (i32.const 2))
      (then
        (drop (call $set (i32.const 16) (i32.const 7) (i32.const 16) (i32.const 7) (i32.const 0)))
        unreachable))
    (i32.const 0)))
"#;

/// The statuses of the request that traps and of the requests of the next `window` (the
/// harness's start-up probe was the VM's first request).
fn statuses(policy: &'static str, window: Duration) -> (u16, Vec<u16>) {
    let p = Prereqs::find();
    let upstream = Upstream::start();
    let module = std::env::temp_dir().join(format!("boifi-traps-{}.wasm", std::process::id()));
    std::fs::write(&module, wat::parse_str(TRAPS_ONCE).unwrap()).unwrap();
    let mut o = EnvoyOptions::new(
        Workload::new("frontend", "demo"),
        &module,
        free_port().unwrap(),
        upstream.port,
    );
    o.failure_policy = policy;
    let envoy = Envoy::start(&p.envoy, &o);
    let mut c = envoy.client();
    let trapped = c.get("/").map_or(0, |r| r.status);
    let start = Instant::now();
    let mut after = Vec::new();
    while start.elapsed() < window {
        after.push(c.get("/").map_or(0, |r| r.status));
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(&module);
    (trapped, after)
}

#[test]
fn a_vm_that_failed_is_reloaded_with_fail_reload_and_stays_dead_with_fail_open() {
    let _serial = serial();
    let (trapped, after) = statuses("FAIL_RELOAD", Duration::from_secs(3));
    eprintln!(
        "FAIL_RELOAD: trapping request {trapped}, then (status, count): {:?}",
        summary(&after)
    );
    // A fresh VM answers again, and keeps answering.
    let back = after.iter().position(|s| *s == 418);
    assert!(back.is_some(), "{after:?}");
    assert!(
        after[back.unwrap_or(0)..].iter().all(|s| *s == 418),
        "{after:?}"
    );

    let (trapped, after) = statuses("FAIL_OPEN", Duration::from_secs(2));
    eprintln!(
        "FAIL_OPEN: trapping request {trapped}, then (status, count): {:?}",
        summary(&after)
    );
    assert!(after.iter().all(|s| *s == 200), "{after:?}");
}

/// `(status, count)` runs, in order.
fn summary(statuses: &[u16]) -> Vec<(u16, usize)> {
    let mut runs: Vec<(u16, usize)> = Vec::new();
    for s in statuses {
        match runs.last_mut() {
            Some((last, n)) if last == s => *n += 1,
            _ => runs.push((*s, 1)),
        }
    }
    runs
}
