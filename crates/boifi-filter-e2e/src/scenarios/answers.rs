//! One table of control-plane answers through the filter in a real Envoy: the Wasm filter in
//! boifi-wasm's binary, the native module in boifi-dynamic's (this file is compiled into both).
//! A scripted control plane answers the filter's polls from the table, in order; the test
//! checks what each answer installed (which policy fires, the `hfi.config.version` gauge), what
//! it counted (from `/stats/prometheus`) and what the next polls reported (`refused=`). Both
//! binaries assert the same figures, so the two filters cannot interpret an answer differently
//! (the interpretation itself is `boifi_engine::sync::ConfigSync::on_answer`).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use boifi_core::wire::compact::{self, SidecarConfig};
use boifi_core::wire::ConfigResponse;
use serde_json::json;

use super::*;
use crate::harness::net::{read_request_head, stop_accept_loop};
use crate::harness::wait_for;

/// One scripted answer.
#[derive(Debug, Clone)]
enum Entry {
    /// Answer at once with this status and body.
    Answer(u16, Vec<u8>),
    /// Read the request and answer nothing until the client gives up (its request timeout).
    Hold,
    /// Accept no connection (the listener is closed) until the test calls `reopen`.
    Refuse,
    /// Hold the table here until the test calls `resume`: every poll meanwhile is a long-poll
    /// that sees no change (304 after a short wait), which counts nothing.
    Pause,
}

#[derive(Debug, Default)]
struct Script {
    entries: VecDeque<Entry>,
    /// The request line of every config request received, in order.
    requests: Vec<String>,
    /// Polls answered while paused at the front `Pause`.
    paused_polls: usize,
    /// Every connection accepted, closed when the script refuses connections.
    connections: Vec<TcpStream>,
}

/// The running accept loop: its stop flag and thread.
struct AcceptLoop {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// The accept loop, `None` before the first and after `reopen` took it.
type Accept = Mutex<Option<AcceptLoop>>;

/// A control plane that answers the filter's polls from a table, in order.
struct ScriptedControlPlane {
    port: u16,
    script: Arc<Mutex<Script>>,
    accept: Arc<Accept>,
}

impl ScriptedControlPlane {
    fn start(entries: Vec<Entry>) -> ScriptedControlPlane {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let cp = ScriptedControlPlane {
            port: listener.local_addr().unwrap().port(),
            script: Arc::new(Mutex::new(Script {
                entries: entries.into(),
                ..Script::default()
            })),
            accept: Arc::new(Mutex::new(None)),
        };
        cp.listen(listener);
        cp
    }

    fn listen(&self, listener: TcpListener) {
        let stop = Arc::new(AtomicBool::new(false));
        let (script, accept, port) = (self.script.clone(), self.accept.clone(), self.port);
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                if let Ok(clone) = stream.try_clone() {
                    script.lock().unwrap().connections.push(clone);
                }
                let (script, accept) = (script.clone(), accept.clone());
                std::thread::spawn(move || serve(stream, &script, &accept, port));
            }
        });
        *self.accept.lock().unwrap() = Some(AcceptLoop {
            stop,
            thread: handle,
        });
    }

    /// Leaves the front `Pause` (once a poll was held there: the filter took the answer before).
    fn resume(&self) {
        let mut script = self.script.lock().unwrap();
        assert!(matches!(script.entries.front(), Some(Entry::Pause)));
        script.entries.pop_front();
        script.paused_polls = 0;
    }

    /// Waits until a poll reached the front `Pause` (or the end of the table): every answer
    /// before it was taken.
    fn wait_paused(&self) -> bool {
        wait_for(Duration::from_secs(10), || {
            let script = self.script.lock().unwrap();
            (matches!(script.entries.front(), Some(Entry::Pause) | None) && script.paused_polls > 0)
                .then_some(())
        })
        .is_some()
    }

    /// Leaves the front `Refuse`: listens again on the same port.
    fn reopen(&self) {
        if let Some(accept) = self.accept.lock().unwrap().take() {
            accept.thread.join().unwrap();
        }
        {
            let mut script = self.script.lock().unwrap();
            assert!(matches!(script.entries.front(), Some(Entry::Refuse)));
            script.entries.pop_front();
        }
        let listener = wait_for(Duration::from_secs(5), || {
            TcpListener::bind(("127.0.0.1", self.port)).ok()
        })
        .expect("the scripted control plane's port could not be bound again");
        self.listen(listener);
    }

    fn is_refusing(&self) -> bool {
        matches!(
            self.script.lock().unwrap().entries.front(),
            Some(Entry::Refuse)
        )
    }

    fn requests(&self) -> Vec<String> {
        self.script.lock().unwrap().requests.clone()
    }
}

impl Drop for ScriptedControlPlane {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.lock().unwrap().take() {
            stop_accept_loop(&accept.stop, self.port);
        }
    }
}

fn response(status: u16, body: &[u8]) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        304 => "Not Modified",
        404 => "Not Found",
        _ => "Internal Server Error",
    };
    let mut r = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {}\r\ncontent-length: {}\r\n\r\n",
        compact::MEDIA_TYPE,
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn serve(mut stream: TcpStream, script: &Mutex<Script>, accept: &Accept, port: u16) {
    // Keep-alive: the filter reuses the connection for its next poll.
    while let Some(line) = read_request_head(&mut stream) {
        let entry = {
            let mut s = script.lock().unwrap();
            s.requests.push(line);
            match s.entries.front() {
                None | Some(Entry::Pause) => {
                    s.paused_polls += 1;
                    Entry::Pause
                }
                // Accepted before the listener closed: not part of the script.
                Some(Entry::Refuse) => return,
                Some(_) => s.entries.pop_front().unwrap(),
            }
        };
        match entry {
            Entry::Answer(status, body) => {
                if stream.write_all(&response(status, &body)).is_err() {
                    return;
                }
            }
            Entry::Pause => {
                std::thread::sleep(Duration::from_millis(200));
                if stream.write_all(&response(304, b"")).is_err() {
                    return;
                }
            }
            Entry::Hold => {
                // Until the client's timeout closes the connection.
                let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                let mut rest = [0u8; 64];
                while matches!(stream.read(&mut rest), Ok(n) if n > 0) {}
            }
            Entry::Refuse => unreachable!("never taken from the script"),
        }
        let mut s = script.lock().unwrap();
        if matches!(s.entries.front(), Some(Entry::Refuse)) {
            // The next poll finds nothing listening: close the listener and every connection
            // (the filter must not reuse one).
            if let Some(accept) = accept.lock().unwrap().as_ref() {
                stop_accept_loop(&accept.stop, port);
            }
            for connection in s.connections.drain(..) {
                let _ = connection.shutdown(std::net::Shutdown::Both);
            }
            return;
        }
    }
}

/// A compact answer of `version` with one policy per `(name, path prefix, status)`.
fn answer(version: u64, policies: &[(&str, &str, u16)]) -> SidecarConfig {
    let policies: Vec<_> = policies
        .iter()
        .map(|(name, prefix, status)| {
            json!({
                "metadata": {"name": name},
                "spec": {
                    "selector": {"service": "frontend"},
                    "rules": [{"match": {"path": {"prefix": prefix}},
                               "fault": {"percentage": 100, "abort": {"httpStatus": status}}}]
                }
            })
        })
        .collect();
    let response: ConfigResponse =
        serde_json::from_value(json!({"version": version, "policies": policies})).unwrap();
    SidecarConfig::from_documents(response.version, &response.policies).unwrap()
}

fn good(version: u64, policies: &[(&str, &str, u16)]) -> Entry {
    Entry::Answer(200, compact::encode(&answer(version, policies)))
}

/// Counters and gauge as `/stats/prometheus` shows them: updates, errors, poll failures, and
/// the config version.
fn figures(envoy: &Envoy) -> [u64; 4] {
    let text = envoy.prometheus();
    [
        "hfi_config_updates_total",
        "hfi_config_errors_total",
        "hfi_config_poll_failures_total",
        "hfi_config_version",
    ]
    .map(|name| crate::harness::envoy::parse_prometheus(&text, name).unwrap_or(0.0) as u64)
}

/// Waits until the figures are `expected` (the native module reports its counters from the
/// main thread, the Wasm filter its gauge a few ticks after a set is applied).
#[track_caller]
fn assert_figures(envoy: &Envoy, expected: [u64; 4], after: &str) {
    let reached = wait_for(Duration::from_secs(10), || {
        (figures(envoy) == expected).then_some(())
    });
    assert!(
        reached.is_some(),
        "after {after}: [updates, errors, poll failures, version] = {:?}, expected {expected:?}\n{}",
        figures(envoy),
        envoy.log()
    );
}

/// The policy that answered a request, and its status.
fn fired(c: &mut crate::harness::http::Client, path: &str) -> (u16, Option<String>) {
    let r = c.get(path).unwrap();
    (r.status, r.header("x-boifi-fault").map(str::to_owned))
}

pub fn every_control_plane_answer_installs_counts_and_reports_the_same_in_both_filters(
    filter: FilterKind,
) {
    let p = Prereqs::find(filter);
    let _serial = serial();
    let upstream = Upstream::start();
    // v2 is well-formed, but one of its policies has a status no validated policy has (the
    // server's validation would refuse it; a server of another version might send it): the
    // whole set is refused, so its valid `first` (500 instead of 503) must not appear either.
    let mut uncompilable = answer(2, &[("first", "/first", 500), ("second", "/second", 502)]);
    if let Some(abort) = &mut uncompilable.policies[1].rules[0].abort {
        abort.http_status = 600;
    }
    // v3's header is readable, the rest is cut short.
    let mut malformed = compact::encode(&answer(3, &[("third", "/third", 504)]));
    malformed.truncate(malformed.len() / 2);
    let cp = ScriptedControlPlane::start(vec![
        good(1, &[("first", "/first", 503)]),
        Entry::Pause,
        Entry::Answer(200, compact::encode(&uncompilable)),
        Entry::Answer(304, Vec::new()),
        Entry::Answer(200, malformed),
        Entry::Pause,
        Entry::Answer(500, b"{\"error\":\"internal\"}".to_vec()),
        Entry::Answer(404, b"not found".to_vec()),
        Entry::Hold,
        Entry::Refuse,
        good(4, &[("last", "/last", 418)]),
    ]);
    let mut o = p.envoy_options(Workload::new("frontend", "demo"), cp.port, upstream.port);
    // Backoff 200 ms → 1 s; a held poll fails after 1.5 s.
    o.plugin_config = json!({
        "long_poll_wait_ms": 1000,
        "request_timeout_ms": 1500,
        "backoff_initial_ms": 200,
        "backoff_max_ms": 1000,
        "log_level": "info"
    });
    let envoy = Envoy::start(&p.envoy, &o);
    let mut c = envoy.client();

    // 200 that compiles: installed, counted, version 1.
    assert!(cp.wait_paused(), "no poll after v1\n{}", envoy.log());
    assert!(
        wait_for_status(&mut c, "/first", 503, Duration::from_secs(5)).is_some(),
        "v1 never applied\n{}",
        envoy.log()
    );
    assert_eq!(fired(&mut c, "/first"), (503, Some("first".into())));
    assert_figures(&envoy, [1, 0, 0, 1], "200 good v1");
    cp.resume();

    // 200 that does not compile, 304, 200 malformed: nothing installed, two errors, no poll
    // failure; v1 still answers.
    assert!(cp.wait_paused(), "no poll after v3\n{}", envoy.log());
    assert_figures(
        &envoy,
        [1, 2, 0, 1],
        "200 uncompilable v2, 304, 200 malformed v3",
    );
    for _ in 0..20 {
        assert_eq!(fired(&mut c, "/first"), (503, Some("first".into())));
        assert_eq!(fired(&mut c, "/second").0, 200);
        assert_eq!(fired(&mut c, "/third").0, 200);
    }
    assert!(
        envoy.wait_for_log("boifi: refusing config version 2: compact config, policy `second`"),
        "{}",
        envoy.log()
    );
    cp.resume();

    // 500, 404, a poll held past the request timeout, connection refused: four poll failures.
    let refused = wait_for(Duration::from_secs(15), || {
        (cp.is_refusing() && figures(&envoy)[2] == 4).then_some(())
    });
    assert!(
        refused.is_some(),
        "figures {:?} (the refused connection should be the 4th poll failure)\n{}",
        figures(&envoy),
        envoy.log()
    );
    cp.reopen();
    assert!(
        wait_for_status(&mut c, "/last", 418, Duration::from_secs(5)).is_some(),
        "v4 never applied after the control plane came back\n{}",
        envoy.log()
    );
    assert_eq!(fired(&mut c, "/first").0, 200, "v4 replaced v1 whole");
    assert_figures(
        &envoy,
        [2, 2, 4, 4],
        "500, 404, timeout, refused, 200 good v4",
    );
    assert!(cp.wait_paused(), "no poll after v4\n{}", envoy.log());

    // What each poll reported: the applied version, and the refused one with its reason until
    // a newer version applied.
    let requests = cp.requests();
    let report = |line: &str| {
        let version = line
            .split(['?', '&', ' '])
            .find_map(|p| p.strip_prefix("version="))
            .map(str::to_owned);
        let refused = line
            .split(['?', '&', ' '])
            .find_map(|p| p.strip_prefix("refused="))
            .map(str::to_owned);
        (version, refused)
    };
    let reports: Vec<_> = requests.iter().map(|l| report(l)).collect();
    let first_with = |refused: &str| {
        requests
            .iter()
            .position(|l| l.contains(&format!("&refused={refused}&")))
            .unwrap_or_else(|| panic!("no poll reported refused={refused}: {requests:#?}"))
    };
    let (after_v2, after_v3) = (first_with("2"), first_with("3"));
    assert!(
        requests[after_v2].contains("&version=1&")
            && requests[after_v2].contains("&reason=compact%20config%2C%20policy%20%60second%60"),
        "{}",
        requests[after_v2]
    );
    assert!(
        requests[after_v3].contains("&version=1&")
            && requests[after_v3].contains("&reason=compact%20config%20at%20byte%20"),
        "{}",
        requests[after_v3]
    );
    // From v2's refusal until v4 applied, every poll reported version 1 and a refusal; after v4,
    // version 4 and none.
    let v4 = reports
        .iter()
        .position(|r| r.0.as_deref() == Some("4"))
        .expect("a poll after v4");
    for (i, (version, refused)) in reports.iter().enumerate() {
        let expected = match i {
            0 => (None, None),
            i if i < after_v2 => (Some("1".to_owned()), None),
            i if i < after_v3 => (Some("1".to_owned()), Some("2".to_owned())),
            i if i < v4 => (Some("1".to_owned()), Some("3".to_owned())),
            _ => (Some("4".to_owned()), None),
        };
        assert_eq!(
            (version.clone(), refused.clone()),
            expected,
            "poll {i}: {}",
            requests[i]
        );
    }
}
