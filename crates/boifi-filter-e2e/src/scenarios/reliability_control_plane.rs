//! Fault campaign (issue 8): the control plane misbehaves — garbage, a truncated body, a huge
//! body, a 500, a hang — while the filter in a real Envoy serves traffic. Through every episode
//! the filter keeps its last good policy set (every request still gets exactly the faults of
//! that set), backs off (bounded config requests per episode), logs a bounded number of lines
//! (no flood), and applies the next good answer once the control plane recovers.
//!
//! The control plane here is a tiny scripted HTTP server in the test, so each failure mode is
//! exact and the config requests it receives can be counted.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::envoy::{Envoy, Workload};
use crate::harness::net::read_request_head;
use crate::harness::upstream::Upstream;
use crate::harness::{FilterKind, Prereqs};
use crate::scenarios::serial;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    Good = 0,
    Garbage,
    Truncated,
    Huge,
    Status500,
    Hang,
}

impl Mode {
    fn from_u8(v: u8) -> Mode {
        [
            Mode::Good,
            Mode::Garbage,
            Mode::Truncated,
            Mode::Huge,
            Mode::Status500,
            Mode::Hang,
        ][usize::from(v)]
    }
}

/// A scripted control plane: in `Good` mode it serves `body` (holding long-polls whose version
/// is current for up to `hold`, then 304); otherwise it fails the way the mode says.
struct ScriptedControlPlane {
    port: u16,
    mode: Arc<AtomicU8>,
    body: Arc<Mutex<(u64, Vec<u8>)>>,
    config_requests: Arc<AtomicU64>,
}

impl ScriptedControlPlane {
    fn start(version: u64, body: Vec<u8>) -> ScriptedControlPlane {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cp = ScriptedControlPlane {
            port,
            mode: Arc::new(AtomicU8::new(Mode::Good as u8)),
            body: Arc::new(Mutex::new((version, body))),
            config_requests: Arc::new(AtomicU64::new(0)),
        };
        let (mode, body, count) = (cp.mode.clone(), cp.body.clone(), cp.config_requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (mode, body, count) = (mode.clone(), body.clone(), count.clone());
                std::thread::spawn(move || serve(stream, &mode, &body, &count));
            }
        });
        cp
    }

    fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn set_body(&self, version: u64, body: Vec<u8>) {
        *self.body.lock().unwrap() = (version, body);
    }

    fn config_requests(&self) -> u64 {
        self.config_requests.load(Ordering::SeqCst)
    }
}

fn serve(mut stream: TcpStream, mode: &AtomicU8, body: &Mutex<(u64, Vec<u8>)>, count: &AtomicU64) {
    // Keep-alive: Envoy reuses the connection for the next poll.
    while let Some(line) = read_request_head(&mut stream) {
        if line.starts_with("GET /v1/config") {
            count.fetch_add(1, Ordering::SeqCst);
        }
        let reply: Vec<u8> = match Mode::from_u8(mode.load(Ordering::SeqCst)) {
            Mode::Good => {
                let (version, text) = body.lock().unwrap().clone();
                if line.contains(&format!("version={version}&")) {
                    // Held long-poll: nothing changed within a short wait.
                    std::thread::sleep(Duration::from_millis(300));
                    b"HTTP/1.1 304 Not Modified\r\ncontent-length: 0\r\n\r\n".to_vec()
                } else {
                    http_200(&text)
                }
            }
            Mode::Garbage => http_200(b"\x00\xffnot json at all {{{ \xc3\x28"),
            Mode::Truncated => {
                let (_, text) = body.lock().unwrap().clone();
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    text.len()
                )
                .into_bytes();
                r.extend_from_slice(&text[..text.len() / 2]);
                let _ = stream.write_all(&r);
                return; // close mid-body
            }
            Mode::Huge => {
                // 16 MiB of a compact answer that never ends.
                let mut b = boifi_core::wire::compact::MAGIC.to_vec();
                b.extend_from_slice(b"\x63\x01");
                b.resize(16 * 1024 * 1024, b' ');
                http_200(&b)
            }
            Mode::Status500 => {
                let b = br#"{"error":"internal","message":"boom","code":500}"#;
                let mut r = format!(
                    "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    b.len()
                )
                .into_bytes();
                r.extend_from_slice(b);
                r
            }
            Mode::Hang => {
                // Read nothing more, answer nothing, until the filter gives up on us.
                std::thread::sleep(Duration::from_secs(30));
                return;
            }
        };
        if stream.write_all(&reply).is_err() {
            return;
        }
    }
}

fn http_200(body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// The compact answer (what the filter asks for) of one policy.
fn config_body(version: u64, status: u16) -> Vec<u8> {
    let json = json!({
        "version": version,
        "policies": [{
            "metadata": {"name": "keep-me"},
            "spec": {
                "selector": {"service": "frontend"},
                "rules": [{"match": {"path": {"prefix": "/keep"}},
                           "fault": {"percentage": 100, "abort": {"httpStatus": status}}}]
            },
            "status": {"stored_at_ms": 1, "revision": version}
        }]
    });
    let response: boifi_core::wire::ConfigResponse = serde_json::from_value(json).unwrap();
    boifi_core::wire::compact::encode(
        &boifi_core::wire::compact::SidecarConfig::from_documents(
            response.version,
            &response.policies,
        )
        .unwrap(),
    )
}

/// Lines of the Envoy log that report a config failure.
fn failure_lines(envoy: &Envoy) -> u64 {
    envoy
        .log()
        .lines()
        .filter(|l| l.contains("boifi:") && l.contains("keeping the"))
        .count() as u64
}

pub fn filter_keeps_its_last_good_set_and_backs_off_while_the_control_plane_misbehaves(
    filter: FilterKind,
) {
    let p = Prereqs::find(filter);
    let _serial = serial();
    let upstream = Upstream::start();
    let cp = ScriptedControlPlane::start(1, config_body(1, 503));
    let mut o = p.envoy_options(Workload::new("frontend", "demo"), cp.port, upstream.port);
    let (backoff_initial, backoff_max) = (200u64, 1000u64);
    o.plugin_config = json!({
        "long_poll_wait_ms": 1000,
        "request_timeout_ms": 1500,
        "backoff_initial_ms": backoff_initial,
        "backoff_max_ms": backoff_max,
        "log_level": "info"
    });
    let envoy = Envoy::start(&p.envoy, &o);
    let mut c = envoy.client();
    let applied = crate::scenarios::wait_for_status(&mut c, "/keep", 503, Duration::from_secs(10));
    assert!(
        applied.is_some(),
        "first good set never applied\n{}",
        envoy.log()
    );

    let episode = Duration::from_secs(4);
    let mut summary = Vec::new();
    let mut total_lines = 0;
    for (i, mode) in [
        Mode::Garbage,
        Mode::Truncated,
        Mode::Huge,
        Mode::Status500,
        Mode::Hang,
    ]
    .into_iter()
    .enumerate()
    {
        let requests_before = cp.config_requests();
        let lines_before = failure_lines(&envoy);
        cp.set_mode(mode);
        // Make the filter ask now (a new version) so the episode starts at once.
        cp.set_body(10 + i as u64, config_body(10 + i as u64, 503));
        let started = Instant::now();
        let (mut faulted, mut passed, mut other) = (0, 0, 0);
        while started.elapsed() < episode {
            let keep = c.get("/keep").unwrap();
            let free = c.get("/free").unwrap();
            if keep.status == 503 && keep.header("x-boifi-fault") == Some("keep-me") {
                faulted += 1;
            } else {
                other += 1;
            }
            if free.status == 200 {
                passed += 1;
            } else {
                other += 1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let requests = cp.config_requests() - requests_before;
        let lines = failure_lines(&envoy) - lines_before;
        summary.push(format!("{mode:?}: {requests} config requests, {lines} log lines, {faulted} faulted, {passed} passed"));
        assert_eq!(
            other,
            0,
            "{mode:?}: requests saw something else than the last good set\n{}",
            envoy.log()
        );
        assert!(
            faulted > 20 && passed > 20,
            "{mode:?}: too little traffic checked"
        );
        // Backoff: the episode fits at most one attempt per initial backoff (plus the first),
        // far from a tight loop (which would make thousands).
        let bound = episode.as_millis() as u64 / backoff_initial + 2;
        assert!(
            (1..=bound).contains(&requests),
            "{mode:?}: {requests} config requests in {episode:?}"
        );
        // No log flood: one warning per episode. The modes follow each other without a good
        // answer in between, so the whole campaign is one episode: one line in all.
        assert!(
            lines <= 1,
            "{mode:?}: {lines} failure lines for {requests} attempts (one per episode expected)\n{}",
            envoy.log()
        );
        total_lines += lines;
    }

    assert_eq!(
        total_lines,
        1,
        "one warning for the whole episode\n{}",
        envoy.log()
    );

    // Recovery: the next good answer is applied, and the end of the episode is logged once.
    cp.set_body(100, config_body(100, 418));
    cp.set_mode(Mode::Good);
    let recovered = crate::scenarios::wait_for_status(&mut c, "/keep", 418, Duration::from_secs(5));
    assert!(
        recovered.is_some(),
        "the filter did not recover\n{}",
        envoy.log()
    );
    // The line is written right after the set is applied: give the log a moment to show it.
    let recovery_lines = || {
        envoy
            .log()
            .lines()
            .filter(|l| l.contains("the control plane answers again after"))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while recovery_lines() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(recovery_lines(), 1, "one recovery line\n{}", envoy.log());
    eprintln!(
        "control-plane misbehaviour campaign: {}; recovered {:.0} ms after the control plane did (backoff max {backoff_max} ms)",
        summary.join("; "),
        recovered.unwrap().as_secs_f64() * 1000.0
    );
}
