use super::*;
use crate::metrics::CounterValues;
use alloc::format;
use boifi_core::compiled::SimpleRequest;
use boifi_core::policy::FaultTarget;

/// A `/v1/config` answer as the control plane sends it to a sidecar (compact).
fn body(version: u64, rules: &str) -> Vec<u8> {
    crate::sync::tests::compact(&format!(
        r#"{{"version":{version},"policies":[{{"metadata":{{"name":"pol"}},"spec":{{"selector":{{"service":"*"}},"rules":{rules}}}}}]}}"#
    ))
}

const ABORT_ALL: &str =
    r#"[{"match":{"path":{"prefix":"/"}},"fault":{"percentage":100,"abort":{"httpStatus":503}}}]"#;
const DELAY_ALL: &str = r#"[{"match":{"path":{"prefix":"/"}},"fault":{"percentage":100,"delay":{"fixed_delay_ms":100}}}]"#;
const DELAY_ABORT: &str = r#"[{"match":{"path":{"prefix":"/"}},"fault":{"percentage":100,"delay":{"fixed_delay_ms":100},"abort":{"httpStatus":500}}}]"#;

fn engine(cap: u64) -> Engine {
    let config = PluginConfig {
        max_active_delays: cap,
        ..PluginConfig::default()
    };
    Engine::new(Identity::for_service("frontend", "demo"), &config, 7)
}

/// A request that counts how often the engine looks at it.
struct Counting {
    inner: SimpleRequest,
    reads: core::cell::Cell<u32>,
}

impl RequestView for Counting {
    fn method(&self) -> &[u8] {
        self.reads.set(self.reads.get() + 1);
        self.inner.method()
    }
    fn path(&self) -> &[u8] {
        self.reads.set(self.reads.get() + 1);
        self.inner.path()
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.reads.set(self.reads.get() + 1);
        self.inner.header(name)
    }
    fn peer_uri_san(&self) -> Option<&[u8]> {
        self.reads.set(self.reads.get() + 1);
        self.inner.peer_uri_san()
    }
}

#[test]
fn an_idle_engine_never_reads_the_request_or_counts() {
    let mut e = engine(10);
    let r = Counting {
        inner: SimpleRequest::new("GET", "/"),
        reads: 0.into(),
    };
    let mut c = CounterValues::default();
    assert!(e.is_idle());
    assert_eq!(e.on_request(1, &r, 0, &mut c), Verdict::Continue);
    assert_eq!(r.reads.get(), 0);
    assert_eq!(c, CounterValues::default());
}

/// A clock that counts its reads and answers `at_ms`.
struct CountingClock {
    at_ms: u64,
    reads: core::cell::Cell<u32>,
}

impl CountingClock {
    fn at(at_ms: u64) -> CountingClock {
        CountingClock {
            at_ms,
            reads: 0.into(),
        }
    }

    fn clock(&self) -> impl Fn() -> u64 + '_ {
        || {
            self.reads.set(self.reads.get() + 1);
            self.at_ms
        }
    }
}

#[test]
fn a_set_without_windows_or_expiry_decides_without_reading_the_clock() {
    let mut e = engine(10);
    let mut c = CounterValues::default();
    let dormant = r#"[{"match":{"path":{"prefix":"/never"}},"fault":{"percentage":100,"abort":{"httpStatus":503}}}]"#;
    e.adopt(1, &body(1, dormant), 0).unwrap();
    let clock = CountingClock::at(5_000);
    let request = SimpleRequest::new("GET", "/");
    assert_eq!(
        e.on_request(1, &request, clock.clock(), &mut c),
        Verdict::Continue
    );
    e.adopt(2, &body(2, ABORT_ALL), 0).unwrap();
    assert!(matches!(
        e.on_request(2, &request, clock.clock(), &mut c),
        Verdict::Reply(_)
    ));
    assert_eq!(
        clock.reads.get(),
        0,
        "neither a pass nor an abort needs the time"
    );
    // A delay is scheduled on the clock: read once.
    e.adopt(3, &body(3, DELAY_ALL), 0).unwrap();
    assert_eq!(
        e.on_request(3, &request, clock.clock(), &mut c),
        Verdict::Hold { due_ms: 5_100 }
    );
    assert_eq!(clock.reads.get(), 1);
}

#[test]
fn a_set_with_a_window_reads_the_clock_once_and_decides_by_it() {
    let mut e = engine(10);
    let mut c = CounterValues::default();
    // Live from 10 s after the epoch: adopted at 0, it is kept (not over yet) but not live.
    let windowed = crate::sync::tests::compact(&format!(
        r#"{{"version":1,"policies":[{{"metadata":{{"name":"pol"}},"spec":{{"selector":{{"service":"*"}},"window":{{"start":"1970-01-01T00:00:10Z","end":"2100-01-01T00:00:00Z"}},"rules":{ABORT_ALL}}}}}]}}"#
    ));
    e.adopt(1, &windowed, 0).unwrap();
    let request = SimpleRequest::new("GET", "/");
    let before = CountingClock::at(9_999);
    assert_eq!(
        e.on_request(1, &request, before.clock(), &mut c),
        Verdict::Continue
    );
    assert_eq!(before.reads.get(), 1);
    let inside = CountingClock::at(10_000);
    assert!(matches!(
        e.on_request(2, &request, inside.clock(), &mut c),
        Verdict::Reply(_)
    ));
    assert_eq!(inside.reads.get(), 1);
}

#[test]
fn adopts_a_set_whole_and_aborts_with_counts() {
    let mut e = engine(10);
    let mut c = CounterValues::default();
    let adopted = e.adopt(1, &body(4, ABORT_ALL), 0).unwrap();
    assert_eq!(
        adopted,
        Adopted {
            version: 4,
            policies: 1
        }
    );
    assert_eq!((e.seq(), e.version()), (1, Some(4)));
    let v = e.on_request(1, &SimpleRequest::new("GET", "/x"), 0, &mut c);
    let Verdict::Reply(reply) = v else {
        panic!("{v:?}")
    };
    assert_eq!(reply.status, 503);
    assert_eq!(c.get(Counter::Aborts), 1);
    assert_eq!(c.policy("pol", PolicyCounter::Aborts), 1);
    e.report_gauges(0, &mut c);
    assert_eq!(c.gauges, [1, 4, 0]);
}

#[test]
fn a_bad_publication_keeps_the_set_and_is_not_retried() {
    let mut e = engine(10);
    e.adopt(1, &body(4, ABORT_ALL), 0).unwrap();
    assert!(e.adopt(2, b"{not json", 0).is_err());
    assert_eq!((e.seq(), e.version()), (2, Some(4)));
    let mut c = CounterValues::default();
    assert!(matches!(
        e.on_request(1, &SimpleRequest::new("GET", "/"), 0, &mut c),
        Verdict::Reply(_)
    ));
}

#[test]
fn a_publication_over_max_rules_keeps_the_set() {
    let config = PluginConfig {
        max_rules: 1,
        ..PluginConfig::default()
    };
    let mut e = Engine::new(Identity::for_service("frontend", "demo"), &config, 7);
    e.adopt(1, &body(4, ABORT_ALL), 0).unwrap();
    let two = format!(
        "[{},{}]",
        &ABORT_ALL[1..ABORT_ALL.len() - 1],
        &DELAY_ALL[1..DELAY_ALL.len() - 1]
    );
    let refused = e.adopt(2, &body(5, &two), 0).unwrap_err();
    assert_eq!(
        refused,
        SyncError::OverLimit {
            version: 5,
            rules: 2,
            max_rules: 1
        }
    );
    assert_eq!(
        (e.seq(), e.version(), e.set().rule_count()),
        (2, Some(4), 1)
    );
    // A reconfigured limit applies to the next publication.
    e.reconfigure(e.identity().clone(), &PluginConfig::default());
    assert_eq!(e.adopt(3, &body(5, &two), 0).unwrap().version, 5);
}

#[test]
fn grpc_requests_get_a_grpc_status() {
    let mut e = engine(10);
    e.adopt(1, &body(1, ABORT_ALL), 0).unwrap();
    let r = SimpleRequest::new("POST", "/pkg.S/M").with_header("content-type", "application/grpc");
    let Verdict::Reply(reply) = e.on_request(1, &r, 0, &mut CounterValues::default()) else {
        panic!()
    };
    assert_eq!(reply.status, 200);
    assert!(reply.headers.contains(&("grpc-status".into(), "14".into())));
}

#[test]
fn delays_hold_until_due_then_resume_or_abort() {
    let mut e = engine(10);
    let mut c = CounterValues::default();
    e.adopt(1, &body(1, DELAY_ABORT), 0).unwrap();
    let v = e.on_request(5, &SimpleRequest::new("GET", "/"), 1_000, &mut c);
    assert_eq!(v, Verdict::Hold { due_ms: 1_100 });
    assert_eq!(e.next_due_ms(), Some(1_100));
    assert!(e.release_due(1_099, &mut c).is_empty());
    assert_eq!(c.get(Counter::Aborts), 0);
    let released = e.release_due(1_100, &mut c);
    assert_eq!(released.len(), 1);
    assert_eq!(released.first().map(|r| r.stream), Some(5));
    assert!(
        matches!(released.first().map(|r| &r.then), Some(Release::Reply(r)) if r.status == 500)
    );
    assert_eq!(
        (
            c.get(Counter::Delays),
            c.get(Counter::DelayMs),
            c.get(Counter::Aborts)
        ),
        (1, 100, 1)
    );
    assert_eq!(e.held(), 0);

    e.adopt(2, &body(2, DELAY_ALL), 0).unwrap();
    e.on_request(6, &SimpleRequest::new("GET", "/"), 0, &mut c);
    e.on_request(7, &SimpleRequest::new("GET", "/"), 0, &mut c);
    assert!(e.forget(6));
    let released = e.release_due(100, &mut c);
    assert_eq!(
        released,
        [Released {
            stream: 7,
            then: Release::Resume,
            target: FaultTarget::Request
        }]
    );
}

#[test]
fn over_the_cap_a_request_passes_unfaulted_and_is_counted() {
    let mut e = engine(3);
    let mut c = CounterValues::default();
    e.adopt(1, &body(1, DELAY_ABORT), 0).unwrap();
    let verdicts: Vec<Verdict> = (0..10)
        .map(|i| e.on_request(i, &SimpleRequest::new("GET", "/"), 0, &mut c))
        .collect();
    let held = verdicts
        .iter()
        .filter(|v| matches!(v, Verdict::Hold { .. }))
        .count();
    let passed = verdicts.iter().filter(|v| **v == Verdict::Continue).count();
    assert_eq!((held, passed, e.held()), (3, 7, 3));
    assert_eq!(c.get(Counter::DelaysOverCap), 7);
    assert_eq!(c.get(Counter::Delays), 3);
    // Released requests free their places.
    assert_eq!(e.release_due(100, &mut c).len(), 3);
    assert!(matches!(
        e.on_request(99, &SimpleRequest::new("GET", "/"), 100, &mut c),
        Verdict::Hold { .. }
    ));
    // Reconfiguring the cap keeps what is held.
    let config = PluginConfig {
        max_active_delays: 0,
        ..PluginConfig::default()
    };
    e.reconfigure(e.identity().clone(), &config);
    assert_eq!(e.held(), 1);
    assert_eq!(
        e.on_request(100, &SimpleRequest::new("GET", "/"), 100, &mut c),
        Verdict::Continue
    );
}

#[test]
fn install_shares_a_set_compiled_elsewhere() {
    let mut a = engine(10);
    a.adopt(3, &body(9, ABORT_ALL), 0).unwrap();
    let mut b = engine(10);
    b.install(3, 9, a.set().clone());
    let (PolicySet::Sidecar(x), PolicySet::Sidecar(y)) = (a.set(), b.set()) else {
        panic!("a sidecar's set");
    };
    assert!(Arc::ptr_eq(x, y));
    assert!(!b.is_idle());
}

mod shared;

const RESPONSE_ABORT: &str = r#"[{"match":{"path":{"prefix":"/"}},"fault":{"percentage":100,"target":"response","abort":{"httpStatus":503}}}]"#;
const RESPONSE_DELAY_RESET: &str = r#"[{"match":{"path":{"prefix":"/"}},"fault":{"percentage":100,"target":"response","delay":{"fixed_delay_ms":300},"reset":true}}]"#;
const REQUEST_RESET: &str =
    r#"[{"match":{"path":{"prefix":"/"}},"fault":{"percentage":100,"reset":true}}]"#;

#[test]
fn a_response_abort_lets_the_request_pass_and_replaces_the_answer() {
    let mut e = engine(10);
    let mut c = CounterValues::default();
    e.adopt(1, &body(1, RESPONSE_ABORT), 0).unwrap();
    assert!(!e.awaits_responses());
    let request = SimpleRequest::new("POST", "/cart");
    assert_eq!(e.on_request(5, &request, 0, &mut c), Verdict::Continue);
    // The request reaches the app marked as evaluated; nothing is counted yet.
    assert!(request.marked.borrow().is_some());
    assert!(e.awaits_responses());
    assert_eq!(c.get(Counter::ResponseAborts), 0);
    // Another stream's answer is left alone.
    assert_eq!(e.on_response(6, 0, &mut c), Verdict::Continue);
    let Verdict::Reply(reply) = e.on_response(5, 0, &mut c) else {
        panic!("no reply")
    };
    assert_eq!(reply.status, 503);
    assert_eq!(c.get(Counter::ResponseAborts), 1);
    assert_eq!(c.get(Counter::Aborts), 0);
    assert_eq!(c.policy("pol", PolicyCounter::ResponseAborts), 1);
    assert!(!e.awaits_responses());
    // Applied once: a second answer on the stream passes.
    assert_eq!(e.on_response(5, 0, &mut c), Verdict::Continue);
}

#[test]
fn a_response_delay_then_reset_holds_the_answer_and_resets_it() {
    let mut e = engine(10);
    let mut c = CounterValues::default();
    e.adopt(1, &body(1, RESPONSE_DELAY_RESET), 0).unwrap();
    assert_eq!(
        e.on_request(1, &SimpleRequest::new("GET", "/"), 1_000, &mut c),
        Verdict::Continue
    );
    assert_eq!(e.held(), 0);
    assert_eq!(
        e.on_response(1, 2_000, &mut c),
        Verdict::Hold { due_ms: 2_300 }
    );
    assert_eq!(c.get(Counter::ResponseDelays), 1);
    assert_eq!(c.get(Counter::Delays), 0);
    assert!(e.release_due(2_299, &mut c).is_empty());
    let released = e.release_due(2_300, &mut c);
    assert_eq!(
        released,
        [Released {
            stream: 1,
            then: Release::Reset,
            target: FaultTarget::Response
        }]
    );
    assert_eq!(c.get(Counter::Resets), 1);
    assert_eq!(c.policy("pol", PolicyCounter::Resets), 1);
}

#[test]
fn a_request_reset_never_reaches_the_app_and_a_stream_without_answer_is_forgotten() {
    let mut e = engine(10);
    let mut c = CounterValues::default();
    e.adopt(1, &body(1, REQUEST_RESET), 0).unwrap();
    let request = SimpleRequest::new("GET", "/");
    assert_eq!(e.on_request(1, &request, 0, &mut c), Verdict::Reset);
    assert!(request.marked.borrow().is_none());
    assert_eq!(c.get(Counter::Resets), 1);
    assert!(!e.awaits_responses());

    e.adopt(2, &body(2, RESPONSE_ABORT), 0).unwrap();
    assert_eq!(
        e.on_request(2, &SimpleRequest::new("GET", "/"), 0, &mut c),
        Verdict::Continue
    );
    assert!(e.forget(2));
    assert!(!e.awaits_responses());
}

#[test]
fn response_faults_awaited_are_bounded_by_the_delay_cap() {
    let mut e = engine(1);
    let mut c = CounterValues::default();
    e.adopt(1, &body(1, RESPONSE_ABORT), 0).unwrap();
    let request = SimpleRequest::new("GET", "/");
    assert_eq!(e.on_request(1, &request, 0, &mut c), Verdict::Continue);
    assert_eq!(e.on_request(2, &request, 0, &mut c), Verdict::Continue);
    assert_eq!(c.get(Counter::DelaysOverCap), 1);
    assert_eq!(e.on_response(2, 0, &mut c), Verdict::Continue);
    assert!(matches!(e.on_response(1, 0, &mut c), Verdict::Reply(_)));
}
