use super::*;
use boifi_engine::metrics;
use core::cell::{Cell, RefCell};
use std::rc::Rc;

/// Envoy's shared data, shared by the VMs of one test.
type SharedStore = Rc<crate::shared::ModelStore>;
/// A local reply the filter sent: status, headers, body.
type Reply = (u32, Vec<(Vec<u8>, Vec<u8>)>, Vec<u8>);

/// A scripted host: a clock, shared data, the current request's header map, and a record of
/// what the filter did. `calls` counts every host call.
#[derive(Default)]
struct FakeHost {
    now_ms: Cell<u64>,
    config: RefCell<Vec<u8>>,
    shared: SharedStore,
    headers: RefCell<Vec<u8>>,
    call_status: RefCell<Option<Vec<u8>>>,
    call_body: RefCell<Option<Vec<u8>>>,
    calls: Cell<u32>,
    http_calls: RefCell<Vec<String>>,
    /// The `authorization` header of each config request, in order.
    http_call_authorization: RefCell<Vec<Option<Vec<u8>>>>,
    replies: RefCell<Vec<Reply>>,
    resumed: RefCell<Vec<u32>>,
    resumed_responses: RefCell<Vec<u32>>,
    /// Streams reset: `(effective context, from the response path)`.
    resets: RefCell<Vec<(u32, bool)>>,
    effective: Cell<u32>,
    tick_ms: Cell<u32>,
    metrics: RefCell<Vec<(String, i64)>>,
    logs: RefCell<Vec<String>>,
    /// What `connection.uri_san_peer_certificate` returns, and how often it was read.
    peer_uri_san: RefCell<Option<Vec<u8>>>,
    peer_reads: Cell<u32>,
    /// What `xds.filter_chain_name` and `filter_state.io.istio.peer_principal` return (a
    /// waypoint), and how often the chain name was read.
    filter_chain: RefCell<Option<Vec<u8>>>,
    filter_chain_reads: Cell<u32>,
    peer_principal: RefCell<Option<Vec<u8>>>,
    /// Request headers the filter set.
    set_headers: RefCell<Vec<(String, Vec<u8>)>>,
}

impl FakeHost {
    fn call(&self) {
        self.calls.set(self.calls.get() + 1);
    }

    fn metric(&self, name: &str) -> i64 {
        self.metrics
            .borrow()
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }
}

impl Host for FakeHost {
    fn now_nanos(&self) -> u64 {
        self.call();
        self.now_ms.get() * 1_000_000
    }
    fn log(&self, _level: Level, message: &str) {
        self.call();
        self.logs.borrow_mut().push(message.to_owned());
    }
    fn set_tick_period_ms(&self, ms: u32) -> bool {
        self.call();
        self.tick_ms.set(ms);
        true
    }
    fn plugin_configuration(&self) -> Option<Vec<u8>> {
        self.call();
        Some(self.config.borrow().clone())
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.call();
        match path {
            ["plugin_name"] => Some(b"boifi".to_vec()),
            ["xds", "node", "metadata", "WORKLOAD_NAME"] => Some(b"frontend".to_vec()),
            ["xds", "node", "metadata", "NAMESPACE"] => Some(b"demo".to_vec()),
            ["connection", "uri_san_peer_certificate"] => {
                self.peer_reads.set(self.peer_reads.get() + 1);
                self.peer_uri_san.borrow().clone()
            }
            ["xds", "filter_chain_name"] => {
                self.filter_chain_reads
                    .set(self.filter_chain_reads.get() + 1);
                self.filter_chain.borrow().clone()
            }
            ["filter_state", "io.istio.peer_principal"] => self.peer_principal.borrow().clone(),
            _ => None,
        }
    }
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.call();
        shared::CasStore::get(&*self.shared, key)
    }
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        self.call();
        shared::CasStore::set(&*self.shared, key, value, cas)
    }
    fn request_headers(&self) -> Option<Vec<u8>> {
        self.call();
        Some(self.headers.borrow().clone())
    }
    fn replace_request_header(&self, name: &str, value: &[u8]) -> bool {
        self.call();
        self.set_headers
            .borrow_mut()
            .push((name.to_owned(), value.to_vec()));
        true
    }
    fn call_response_header(&self, name: &str) -> Option<Vec<u8>> {
        self.call();
        (name == ":status")
            .then(|| self.call_status.borrow().clone())
            .flatten()
    }
    fn call_response_body(&self, _size: usize) -> Option<Vec<u8>> {
        self.call();
        self.call_body.borrow().clone()
    }
    fn http_call(&self, call: &HttpCall<'_>) -> Result<u32, u32> {
        self.call();
        let cluster = call.cluster;
        let path = call
            .headers
            .iter()
            .find(|(k, _)| *k == b":path")
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        self.http_calls
            .borrow_mut()
            .push(format!("{cluster} {path}"));
        let authorization = call
            .headers
            .iter()
            .find(|(k, _)| *k == b"authorization")
            .map(|(_, v)| v.to_vec());
        self.http_call_authorization
            .borrow_mut()
            .push(authorization);
        Ok(u32::try_from(self.http_calls.borrow().len()).unwrap())
    }
    fn send_local_reply(&self, status: u32, headers: &[(&[u8], &[u8])], body: &[u8]) -> bool {
        self.call();
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        self.replies
            .borrow_mut()
            .push((status, headers, body.to_vec()));
        true
    }
    fn resume_request(&self) -> bool {
        self.call();
        self.resumed.borrow_mut().push(self.effective.get());
        true
    }
    fn resume_response(&self) -> bool {
        self.call();
        self.resumed_responses
            .borrow_mut()
            .push(self.effective.get());
        true
    }
    fn reset_stream(&self, response: bool) -> bool {
        self.call();
        self.resets
            .borrow_mut()
            .push((self.effective.get(), response));
        true
    }
    fn set_effective_context(&self, context_id: u32) -> bool {
        self.call();
        self.effective.set(context_id);
        true
    }
    fn define_metric(&self, _kind: MetricKind, name: &str) -> Option<u32> {
        self.call();
        let mut metrics = self.metrics.borrow_mut();
        metrics.push((name.to_owned(), 0));
        Some(u32::try_from(metrics.len() - 1).unwrap())
    }
    fn increment_metric(&self, id: u32, by: i64) {
        self.call();
        if let Some((_, v)) = self.metrics.borrow_mut().get_mut(id as usize) {
            *v += by;
        }
    }
    fn record_metric(&self, id: u32, value: u64) {
        self.call();
        if let Some((_, v)) = self.metrics.borrow_mut().get_mut(id as usize) {
            *v = i64::try_from(value).unwrap();
        }
    }
}

const ROOT: u32 = 1;
const ROOT_PATH: &[(&[u8], &[u8])] = &[(b":path", b"/")];

/// The compact `/v1/config` answer (what the control plane sends sidecars) of this JSON one.
fn compact(json: &str) -> Vec<u8> {
    let response: boifi_core::wire::ConfigResponse = serde_json::from_str(json).unwrap();
    let sidecar = boifi_core::wire::compact::SidecarConfig::from_documents(
        response.version,
        &response.policies,
    )
    .unwrap();
    boifi_core::wire::compact::encode(&sidecar)
}

fn config_body(version: u64, rules: &str) -> Vec<u8> {
    compact(&format!(
        r#"{{"version":{version},"policies":[{{"metadata":{{"name":"pol"}},"spec":{{"selector":{{"service":"frontend"}},"rules":{rules}}}}}]}}"#
    ))
}

const ABORT_ALL: &str =
    r#"[{"match":{"path":{"prefix":"/"}},"fault":{"percentage":100,"abort":{"httpStatus":503}}}]"#;

/// A configured filter whose root context holds the poller lease and has a config request
/// in flight.
fn polling_filter(shared: SharedStore, config: &str) -> Filter<FakeHost> {
    filter_at(shared, config, 1_000)
}

/// [`polling_filter`] whose VM starts at `start_ms` (VMs started at different times draw
/// different lease ids).
fn filter_at(shared: SharedStore, config: &str, start_ms: u64) -> Filter<FakeHost> {
    let host = FakeHost {
        shared,
        now_ms: Cell::new(start_ms),
        ..FakeHost::default()
    };
    *host.config.borrow_mut() = config.as_bytes().to_vec();
    let mut f = Filter::new(host);
    f.on_context_create(ROOT, 0);
    assert!(f.on_configure(ROOT));
    f.on_tick(ROOT);
    f
}

/// Delivers a 200 answer to the filter's latest config request.
fn answer(f: &mut Filter<FakeHost>, body: &[u8]) {
    let token = u32::try_from(f.host().http_calls.borrow().len()).unwrap();
    *f.host().call_status.borrow_mut() = Some(b"200".to_vec());
    *f.host().call_body.borrow_mut() = Some(body.to_vec());
    f.on_http_call_response(ROOT, token, 3, body.len());
}

fn request(f: &mut Filter<FakeHost>, context_id: u32, headers: &[(&[u8], &[u8])]) -> Action {
    *f.host().headers.borrow_mut() = encode(headers);
    f.on_context_create(context_id, ROOT);
    f.on_request_headers(context_id)
}

fn encode(headers: &[(&[u8], &[u8])]) -> Vec<u8> {
    props::encode_pairs(headers)
}

#[test]
fn polls_applies_and_aborts_with_counters() {
    let mut f = polling_filter(SharedStore::default(), "");
    let calls = f.host().http_calls.borrow().clone();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].contains("/v1/config?service=frontend&namespace=demo"));
    answer(&mut f, &config_body(3, ABORT_ALL));
    let action = request(&mut f, 2, &[(b":method", b"GET"), (b":path", b"/x")]);
    assert_eq!(action, Action::Pause);
    let replies = f.host().replies.borrow();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].0, 503);
    assert_eq!(f.host().metric(metrics::ABORTS_TOTAL), 1);
    assert_eq!(f.host().metric("hfi.policy.pol.aborts_total"), 1);
    drop(replies);
    // The version gauge claims the set only once every worker VM had its ticks to adopt it.
    f.on_tick(ROOT);
    assert_eq!(f.host().metric(metrics::CONFIG_VERSION), 0);
    let now = f.host().now_ms.get();
    f.host().now_ms.set(now + super::GAUGE_GRACE_MS);
    f.on_tick(ROOT);
    assert_eq!(f.host().metric(metrics::CONFIG_VERSION), 3);
}

#[test]
fn the_read_credential_goes_on_every_config_request_and_nowhere_else() {
    let config = r#"{"control_plane_token":"s3cr3t-read","backoff_initial_ms":100}"#;
    let mut f = polling_filter(SharedStore::default(), config);
    answer(&mut f, &config_body(3, ABORT_ALL));
    // The control plane now refuses the credential: the set stays, the failure is counted.
    let token = u32::try_from(f.host().http_calls.borrow().len()).unwrap();
    *f.host().call_status.borrow_mut() = Some(b"401".to_vec());
    *f.host().call_body.borrow_mut() = Some(b"{}".to_vec());
    f.on_http_call_response(ROOT, token, 3, 2);
    assert_eq!(f.host().metric(metrics::CONFIG_POLL_FAILURES_TOTAL), 1);
    assert_eq!(
        request(&mut f, 2, &[(b":method", b"GET"), (b":path", b"/x")]),
        Action::Pause
    );
    assert_eq!(f.host().replies.borrow()[0].0, 503);
    let sent = f.host().http_call_authorization.borrow().clone();
    assert_eq!(sent.len(), 2, "{sent:?}");
    for authorization in sent {
        assert_eq!(authorization.as_deref(), Some(&b"Bearer s3cr3t-read"[..]));
    }
    let logs = f.host().logs.borrow();
    assert!(
        logs.iter()
            .any(|l| l.contains("refused this sidecar's read credential")),
        "{logs:?}"
    );
    assert!(logs.iter().all(|l| !l.contains("s3cr3t")), "{logs:?}");
    // Without a token configured, no header at all.
    let f = polling_filter(SharedStore::default(), "");
    assert_eq!(*f.host().http_call_authorization.borrow(), [None]);
}

#[test]
fn an_idle_filter_makes_no_host_call_per_request() {
    let mut f = polling_filter(SharedStore::default(), "");
    answer(&mut f, &compact(r#"{"version":1,"policies":[]}"#));
    let before = f.host().calls.get();
    for id in 2..100 {
        assert_eq!(request(&mut f, id, &[]), Action::Continue);
        f.on_delete(id);
    }
    assert_eq!(f.host().calls.get(), before);
}

#[test]
fn header_names_and_values_that_are_not_utf8_never_switch_the_filter_off() {
    let rules = r#"[{"match":{"headers":[{"name":"x-user","prefix":"caf"}]},"fault":{"percentage":100,"abort":{"httpStatus":418}}},
                   {"match":{"headers":[{"name":"x-re","regex":"^a.*"}]},"fault":{"percentage":100,"abort":{"httpStatus":419}}}]"#;
    let mut f = polling_filter(SharedStore::default(), "");
    answer(&mut f, &config_body(1, rules));
    let obs: Vec<u8> = (0x80..=0xffu8).collect();
    let status = |f: &mut Filter<FakeHost>, id, headers: &[(&[u8], &[u8])]| {
        let n = f.host().replies.borrow().len();
        let action = request(f, id, headers);
        let replies = f.host().replies.borrow();
        (action, replies.get(n).map(|r| r.0))
    };
    assert_eq!(
        status(&mut f, 2, &[(&obs, &obs), (b"x-user", b"caf\xe9\xff")]),
        (Action::Pause, Some(418))
    );
    assert_eq!(
        status(&mut f, 3, &[(b"x-re", b"a\xff"), (b":path", &obs)]),
        (Action::Continue, None),
        "a regex never matches a value that is not UTF-8"
    );
    assert_eq!(
        status(&mut f, 4, &[(b"x-re", b"abc")]),
        (Action::Pause, Some(419))
    );
    // A map the host garbled is a request with no headers, not a dead filter.
    *f.host().headers.borrow_mut() = vec![0xff; 7];
    f.on_context_create(5, ROOT);
    assert_eq!(f.on_request_headers(5), Action::Continue);
    for id in 6..1_006 {
        assert_eq!(
            status(&mut f, id, &[(b"x-user", b"cafe")]),
            (Action::Pause, Some(418))
        );
    }
}

#[test]
fn other_vms_adopt_a_published_set_on_their_tick() {
    let shared = SharedStore::default();
    let mut poller = polling_filter(Rc::clone(&shared), "");
    let mut worker = filter_at(Rc::clone(&shared), "", 1_001);
    assert_eq!(worker.host().http_calls.borrow().len(), 0, "one poller");
    answer(&mut poller, &config_body(5, ABORT_ALL));
    // Before its tick the worker still answers from its previous (empty) set...
    assert_eq!(request(&mut worker, 2, ROOT_PATH), Action::Continue);
    // ...and on the tick after REFRESH_MS it adopts the new one.
    let host = worker.host();
    host.now_ms.set(host.now_ms.get() + REFRESH_MS);
    worker.on_tick(ROOT);
    assert_eq!(request(&mut worker, 3, ROOT_PATH), Action::Pause);
    assert!(worker.host().tick_ms.get() <= u32::try_from(REFRESH_MS).unwrap());
}

#[test]
fn delays_are_held_released_on_the_tick_and_capped() {
    let rules = r#"[{"match":{"path":{"prefix":"/"}},"fault":{"percentage":100,"delay":{"fixed_delay_ms":100}}}]"#;
    let mut f = polling_filter(SharedStore::default(), r#"{"max_active_delays": 2}"#);
    answer(&mut f, &config_body(1, rules));
    let actions: Vec<Action> = (10..14).map(|id| request(&mut f, id, ROOT_PATH)).collect();
    assert_eq!(
        actions,
        [
            Action::Pause,
            Action::Pause,
            Action::Continue,
            Action::Continue
        ]
    );
    assert_eq!(f.host().metric(metrics::DELAYS_OVER_CAP_TOTAL), 2);
    assert_eq!(f.host().tick_ms.get(), 5);
    // A held stream whose client hung up is forgotten.
    f.on_delete(10);
    let host = f.host();
    host.now_ms.set(host.now_ms.get() + 100);
    f.on_tick(ROOT);
    assert_eq!(*f.host().resumed.borrow(), [11]);
    assert_eq!(f.host().effective.get(), ROOT);
}

#[test]
fn a_bad_configuration_passes_traffic_and_a_good_one_recovers() {
    let mut f = polling_filter(SharedStore::default(), r#"{"delay_tick_ms": 0}"#);
    assert!(f.host().logs.borrow()[0].contains("delay_tick_ms"));
    assert_eq!(request(&mut f, 2, &[]), Action::Continue);
    assert!(f.host().http_calls.borrow().is_empty());
    *f.host().config.borrow_mut() = b"{}".to_vec();
    assert!(f.on_configure(ROOT));
    f.on_tick(ROOT);
    assert_eq!(f.host().http_calls.borrow().len(), 1);
}

#[test]
fn failed_config_requests_back_off_and_keep_the_set() {
    let mut f = polling_filter(SharedStore::default(), "");
    answer(&mut f, &config_body(1, ABORT_ALL));
    // The answer to the long-poll that followed: a failure with no headers.
    let token = u32::try_from(f.host().http_calls.borrow().len()).unwrap();
    f.on_http_call_response(ROOT, token, 0, 0);
    assert_eq!(f.host().metric(metrics::CONFIG_POLL_FAILURES_TOTAL), 1);
    assert_eq!(request(&mut f, 2, ROOT_PATH), Action::Pause);
    let calls = f.host().http_calls.borrow().len();
    f.on_tick(ROOT);
    assert_eq!(
        f.host().http_calls.borrow().len(),
        calls,
        "not before the backoff"
    );
    let host = f.host();
    host.now_ms.set(host.now_ms.get() + 1_000);
    f.on_tick(ROOT);
    assert_eq!(f.host().http_calls.borrow().len(), calls + 1);
}

#[test]
fn a_source_rule_reads_the_peer_certificate_once_and_an_unreadable_one_is_an_unknown_caller() {
    let rules = r#"[{"match":{"path":{"prefix":"/cart"},"source":{"service":"checkoutservice","namespace":"demo"}},"fault":{"percentage":100,"abort":{"httpStatus":503}}}]"#;
    let mut f = polling_filter(SharedStore::default(), "");
    answer(&mut f, &config_body(1, rules));
    let mut id = 2;
    let mut faulted = |f: &mut Filter<FakeHost>, path: &[u8], san: Option<&[u8]>| {
        *f.host().peer_uri_san.borrow_mut() = san.map(<[u8]>::to_vec);
        let reads = f.host().peer_reads.get();
        id += 1;
        let action = request(
            f,
            id,
            &[
                (b":path", path),
                (
                    b"x-forwarded-client-cert",
                    b"URI=spiffe://cluster.local/ns/demo/sa/checkoutservice",
                ),
            ],
        );
        f.on_delete(id);
        (action == Action::Pause, f.host().peer_reads.get() - reads)
    };
    let checkout: &[u8] = b"spiffe://cluster.local/ns/demo/sa/checkoutservice";
    assert_eq!(faulted(&mut f, b"/cart", Some(checkout)), (true, 1));
    assert_eq!(
        faulted(
            &mut f,
            b"/cart",
            Some(b"spiffe://cluster.local/ns/demo/sa/frontend")
        ),
        (false, 1)
    );
    // Plaintext or a failed read (NotFound, SerializationFailure): unknown, whatever the
    // headers say; so are bytes that are no SPIFFE ID.
    assert_eq!(faulted(&mut f, b"/cart", None), (false, 1));
    assert_eq!(
        faulted(&mut f, b"/cart", Some(b"\xff\x00spiffe://")),
        (false, 1)
    );
    // A rule that fails on its path never asks the host for the certificate.
    assert_eq!(faulted(&mut f, b"/other", Some(checkout)), (false, 0));
}

#[test]
fn a_set_this_sidecar_cannot_apply_is_refused_kept_out_and_reported_on_the_next_poll() {
    let mut f = polling_filter(SharedStore::default(), "");
    answer(&mut f, &config_body(1, ABORT_ALL));
    let aborts = r#"[{"match":{"path":{"prefix":"/"}},"fault":{"percentage":100,"abort":{"httpStatus":500}}}]"#;
    let mut response = boifi_core::wire::compact::decode(&config_body(2, aborts)).unwrap();
    // A status no validated policy has.
    if let Some(abort) = &mut response.policies[0].rules[0].abort {
        abort.http_status = 600;
    }
    let calls = f.host().http_calls.borrow().len();
    answer(&mut f, &boifi_core::wire::compact::encode(&response));
    assert_eq!(f.host().metric(metrics::CONFIG_ERRORS_TOTAL), 1);
    assert_eq!(f.host().metric(metrics::CONFIG_UPDATES_TOTAL), 1);
    assert_eq!(f.host().metric(metrics::CONFIG_POLL_FAILURES_TOTAL), 0);
    // The old set still answers, and the next poll (sent at once) reports the refusal.
    assert_eq!(request(&mut f, 2, ROOT_PATH), Action::Pause);
    assert_eq!(f.host().replies.borrow()[0].0, 503);
    let polls = f.host().http_calls.borrow();
    assert_eq!(polls.len(), calls + 1, "{polls:?}");
    assert!(
        polls[calls].contains(
            "&version=1&wait=30000ms&encoding=compact&compact_version=3&refused=2&reason=compact%20config%2C%20policy%20%60pol%60"
        ),
        "{}",
        polls[calls]
    );
}

/// A waypoint (its Gateway class label set by the configuration's identity override): the
/// target service is read from `xds.filter_chain_name` once per request, the caller from the
/// filter state, and a request it evaluated policies for is marked.
#[test]
fn a_waypoint_reads_the_chain_name_once_and_marks_what_it_evaluated() {
    let config = r#"{"identity":{"labels":{"gateway.networking.k8s.io/gateway-class-name":"istio-waypoint"}}}"#;
    let mut f = polling_filter(SharedStore::default(), config);
    let body = compact(
        r#"{"version":1,"policies":[
          {"metadata":{"name":"cart-abort"},"spec":{"selector":{"service":"cartservice","namespace":"shop"},
           "rules":[{"match":{"path":{"prefix":"/"}},"fault":{"percentage":100,"abort":{"httpStatus":503}}}]}},
          {"metadata":{"name":"cart-for-frontend"},"spec":{"selector":{"service":"currencyservice"},
           "rules":[{"match":{"source":{"service":"frontend","namespace":"shop"}},"fault":{"percentage":100,"abort":{"httpStatus":500}}}]}},
          {"metadata":{"name":"never"},"spec":{"selector":{"service":"paymentservice"},
           "rules":[{"match":{"path":{"prefix":"/"}},"fault":{"percentage":0,"abort":{"httpStatus":500}}}]}}
        ]}"#,
    );
    answer(&mut f, &body);
    let mut id = 10;
    let mut send = |f: &mut Filter<FakeHost>, service: &str, principal: Option<&[u8]>| {
        *f.host().filter_chain.borrow_mut() =
            Some(format!("inbound-vip|8080|http|{service}.shop.svc.cluster.local").into_bytes());
        *f.host().peer_principal.borrow_mut() = principal.map(<[u8]>::to_vec);
        *f.host().peer_uri_san.borrow_mut() =
            Some(b"spiffe://cluster.local/ns/shop/sa/frontend".to_vec());
        f.host().set_headers.borrow_mut().clear();
        let reads = f.host().filter_chain_reads.get();
        id += 1;
        let action = request(f, id, &[(b":path", b"/")]);
        f.on_delete(id);
        assert_eq!(f.host().filter_chain_reads.get() - reads, 1, "{service}");
        action == Action::Pause
    };
    assert!(send(&mut f, "cartservice", None));
    assert!(!send(&mut f, "productcatalogservice", None));
    // The caller comes from the filter state, never from the certificate of `main_internal`.
    assert!(send(
        &mut f,
        "currencyservice",
        Some(b"spiffe://cluster.local/ns/shop/sa/frontend")
    ));
    assert!(!send(&mut f, "currencyservice", None));
    // Evaluated and forwarded: marked.
    assert!(!send(&mut f, "paymentservice", None));
    assert_eq!(
        *f.host().set_headers.borrow(),
        [("x-boifi-evaluated".to_owned(), b"never".to_vec())]
    );
}

#[test]
fn responses_cost_no_host_call_unless_a_response_rule_fired_and_then_get_their_fault() {
    let mut f = polling_filter(SharedStore::default(), "");
    answer(&mut f, &config_body(1, ABORT_ALL));
    // A request-phase set: the response callback makes no host call.
    request(&mut f, 2, ROOT_PATH);
    let before = f.host().calls.get();
    assert_eq!(f.on_response_headers(2), Action::Continue);
    assert_eq!(f.host().calls.get(), before);
    f.host().replies.borrow_mut().clear();

    let rules = r#"[{"match":{"path":{"prefix":"/a"}},"fault":{"percentage":100,"target":"response","abort":{"httpStatus":502}}},
                    {"match":{"path":{"prefix":"/r"}},"fault":{"percentage":100,"target":"response","reset":true}},
                    {"match":{"path":{"prefix":"/d"}},"fault":{"percentage":100,"target":"response","delay":{"fixed_delay_ms":300}}},
                    {"match":{"path":{"prefix":"/q"}},"fault":{"percentage":100,"reset":true}}]"#;
    f.on_tick(ROOT);
    answer(&mut f, &config_body(2, rules));
    let path = |p: &'static [u8]| [(&b":path"[..], p)];
    // The requests reach the app.
    assert_eq!(request(&mut f, 3, &path(b"/a")), Action::Continue);
    assert_eq!(request(&mut f, 4, &path(b"/r")), Action::Continue);
    assert_eq!(request(&mut f, 5, &path(b"/d")), Action::Continue);
    assert!(f.host().replies.borrow().is_empty());
    // A request-phase reset never does.
    assert_eq!(request(&mut f, 6, &path(b"/q")), Action::Pause);
    let reset_paths = |f: &Filter<FakeHost>| -> Vec<bool> {
        f.host()
            .resets
            .borrow()
            .iter()
            .map(|(_, response)| *response)
            .collect()
    };
    assert_eq!(reset_paths(&f), [false]);

    assert_eq!(f.on_response_headers(3), Action::Pause);
    assert_eq!(f.host().replies.borrow()[0].0, 502);
    assert_eq!(f.host().metric(metrics::RESPONSE_ABORTS_TOTAL), 1);
    // Only the request-phase abort of the first set.
    assert_eq!(f.host().metric(metrics::ABORTS_TOTAL), 1);
    assert_eq!(f.host().metric("hfi.policy.pol.response_aborts_total"), 1);
    assert_eq!(f.on_response_headers(4), Action::Pause);
    assert_eq!(reset_paths(&f), [false, true]);
    assert_eq!(f.host().metric(metrics::RESETS_TOTAL), 2);
    assert_eq!(f.on_response_headers(5), Action::Pause);
    assert_eq!(f.host().metric(metrics::RESPONSE_DELAYS_TOTAL), 1);
    let host = f.host();
    host.now_ms.set(host.now_ms.get() + 300);
    f.on_tick(ROOT);
    assert_eq!(*f.host().resumed_responses.borrow(), [5]);
    assert!(f.host().resumed.borrow().is_empty());
}

#[test]
fn the_poller_logs_its_identity_and_what_it_polls() {
    let config = r#"{"identity": {"service": "cart", "namespace": "shop", "pod": "cart-1"}}"#;
    let f = polling_filter(SharedStore::default(), config);
    let logs = f.host().logs.borrow();
    for line in [
        "boifi: identity service=cart namespace=shop pod=cart-1 (xds.node.metadata)",
        "boifi: polling outbound|8080||boifi-control-plane.boifi.svc.cluster.local for service=cart namespace=shop pod=cart-1 (version held: none)",
    ] {
        assert!(logs.iter().any(|l| l == line), "{line} not in {logs:?}");
    }
}
