//! No request can switch the filter off: header names, values and paths that are not UTF-8
//! (obs-text, bytes 0x80-0xFF) pass or get their fault, and every later request keeps getting
//! its own. (The proxy-wasm SDK unwraps `String::from_utf8` on header maps: one such request
//! used to kill the VM, and fault injection was off until Envoy restarted.)

use super::*;
use serde_json::json;

/// A whole HTTP/1.1 request for `path` with `headers`, as raw bytes.
fn raw(path: &[u8], headers: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut r = b"GET ".to_vec();
    r.extend_from_slice(path);
    r.extend_from_slice(b" HTTP/1.1\r\nhost: test\r\n");
    for (k, v) in headers {
        r.extend_from_slice(k);
        r.extend_from_slice(b": ");
        r.extend_from_slice(v);
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"\r\n");
    r
}

pub fn requests_that_are_not_utf8_pass_or_get_their_fault_and_never_switch_the_filter_off(
    filter: FilterKind,
) {
    let mesh = Mesh::start(filter);
    let envoy = mesh.frontend();
    let selector = json!({"service": "frontend"});
    mesh.put("bytes-abort", selector.clone(), "/f", abort(100, 503));
    mesh.server.put_policy(&json!({
        "metadata": {"name": "bytes-match"},
        "spec": {"selector": selector, "rules": [
            {"match": {"path": {"prefix": "/h"}, "headers": [{"name": "x-user", "prefix": "caf"}]},
             "fault": {"percentage": 100, "abort": {"httpStatus": 418}}},
            {"match": {"path": {"prefix": "/r"}, "headers": [{"name": "x-re", "regex": "^a"}]},
             "fault": {"percentage": 100, "abort": {"httpStatus": 429}}}
        ]}
    }));
    let mut c = envoy.client();
    assert!(wait_for_status(&mut c, "/f", 503, Duration::from_secs(5)).is_some());
    // The second policy was written after the first: wait until it is held too.
    let held = crate::harness::wait_for(Duration::from_secs(5), || {
        let r = c.raw(&raw(b"/h", &[(b"x-user", b"cafe")])).ok()?;
        (r.status == 418).then_some(())
    });
    assert!(held.is_some(), "bytes-match never applied");

    let obs: Vec<u8> = (0x80..=0xffu8).collect();
    let mut name = b"x-".to_vec();
    name.extend_from_slice(&obs);
    let mut path = b"/f/".to_vec();
    path.extend_from_slice(&obs);
    let mut raw_client = envoy.client();
    let mut send = |what: &str, request: Vec<u8>| {
        let r = raw_client.raw(&request).unwrap();
        eprintln!(
            "non-UTF-8 request ({what}): {} {:?} {}",
            r.status,
            r.header("x-boifi-fault"),
            r.text()
        );
        r
    };
    // Values with obs-text: the fault applies, the filter survives.
    let r = send(
        "value",
        raw(b"/f", &[(b"x-other", b"caf\xe9\xff"), (b"x-all", &obs)]),
    );
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-boifi-fault"), Some("bytes-abort"));
    // Exact and prefix matches compare bytes...
    let r = send("prefix", raw(b"/h", &[(b"x-user", b"caf\xe9\xff")]));
    assert_eq!(r.status, 418);
    // ...and a regex sees a value that is not UTF-8 as not matching: the request passes.
    let r = send("regex", raw(b"/r", &[(b"x-re", b"a\xff")]));
    assert_eq!(r.status, 200);
    assert_eq!(
        send("regex, UTF-8", raw(b"/r", &[(b"x-re", b"ab")])).status,
        429
    );
    // A name or path with such bytes: Envoy's codec may refuse it (400) before any filter
    // runs; if it lets it through, the filter must answer with the fault.
    let r = send("name", raw(b"/f", &[(&name, b"v")]));
    assert!([503, 400].contains(&r.status), "{}", r.status);
    let r = send("path", raw(&path, &[(&name, &obs)]));
    assert!([503, 400].contains(&r.status), "{}", r.status);

    // The next 1 000 requests keep getting their fault: the VM is alive.
    let faulted = burst(&mut c, "/f", 1_000)
        .iter()
        .filter(|r| r.status == 503 && r.header("x-boifi-fault") == Some("bytes-abort"))
        .count();
    assert_eq!(faulted, 1_000);
    let log = envoy.log();
    assert!(!log.contains("panicked"), "{log}");
}
