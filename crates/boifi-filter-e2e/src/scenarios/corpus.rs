//! The scenario corpus (examples/scenarios/corpus.yaml) in a real Envoy: the same scenarios
//! boifi-core and `boifi-cli simulate` check, so the three cannot disagree.
//!
//! One Envoy serves every scenario: one inbound listener per scenario, each with its own filter
//! instance whose `identity` override is the scenario's sidecar. Scenarios are grouped by their
//! policy files; each group's policies are written, followed by a sentinel policy written last
//! (seeing it fire on a listener proves that listener holds the whole group), then removed.

use super::*;
use crate::harness::http::{Client, HttpError};
use crate::harness::net::loopback;
use crate::harness::repo_root;
use boifi_core::scenario::{check_binomial, load_scenarios, Scenario};
use serde_json::json;

const SENTINEL_PATH: &str = "/__corpus_sentinel";

fn is_grpc_request(s: &Scenario) -> bool {
    s.request
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("content-type") && v.starts_with("application/grpc"))
}

/// Whether an abort carries the expected status: `grpc-status` (HTTP 200) for gRPC requests,
/// the HTTP status otherwise.
fn expected_abort(s: &Scenario, r: &Response, grpc: bool) -> bool {
    if grpc {
        r.status == 200
            && s.expect
                .grpc_status
                .is_some_and(|g| r.header("grpc-status") == Some(g.to_string().as_str()))
    } else {
        Some(r.status) == s.expect.http_status
    }
}

/// What one request got (`None`: no answer, the stream was reset).
fn classify(s: &Scenario, r: Option<&Response>) -> &'static str {
    let Some(r) = r else {
        return "reset";
    };
    let min_wait = Duration::from_millis(s.expect.wait_ms_min.unwrap_or(0));
    let faulted = r.header("x-boifi-fault").is_some();
    let grpc = is_grpc_request(s);
    match (faulted, s.expect.outcome.as_str()) {
        (false, "delay")
            if r.status == 200 && min_wait > Duration::ZERO && r.elapsed >= min_wait =>
        {
            "delay"
        }
        (false, _) if r.status == 200 => "pass",
        (true, "delay_then_abort") if expected_abort(s, r, grpc) && r.elapsed >= min_wait => {
            "delay_then_abort"
        }
        (true, "abort") if expected_abort(s, r, grpc) => "abort",
        (true, "response_abort") if expected_abort(s, r, grpc) => "response_abort",
        _ => "other",
    }
}

/// One request of the scenario; `None` when the stream was reset (no HTTP answer).
fn request(c: &mut Client, s: &Scenario, grpc: bool) -> Option<Response> {
    let mut headers: Vec<(&str, &str)> = s
        .request
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if grpc && !is_grpc_request(s) {
        headers.push(("content-type", "application/grpc"));
    }
    match c.request(&s.request.method, &s.request.path, &headers, &[]) {
        Ok(r) => Some(r),
        // A reset fault closes the connection without an answer; any other failure is one.
        Err(HttpError::Io { .. }) if s.expect.outcome == "reset" => None,
        Err(e) => panic!("{}: {e}", s.name),
    }
}

/// Runs one scenario against the listener on `port`; returns what went wrong, if anything.
fn run(s: &Scenario, port: u16) -> Result<String, String> {
    let slow = s.expect.wait_ms_max.unwrap_or(0) >= 20;
    // Delayed requests run side by side (sequentially a 2 s delay × 400 would take minutes).
    let responses: Vec<Option<Response>> = if slow {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..20)
                .map(|_| scope.spawn(move || request(&mut Client::new(loopback(port)), s, false)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    } else {
        let mut c = Client::new(loopback(port));
        // A reset scenario uses a connection per request: the client resends a request once
        // when a reused connection was closed, which would hide the reset it measures.
        let fresh = s.expect.outcome == "reset";
        (0..400)
            .map(|_| {
                if fresh {
                    c = Client::new(loopback(port));
                }
                request(&mut c, s, false)
            })
            .collect()
    };
    let total = responses.len() as u64;
    let count = |kind: &str| {
        responses
            .iter()
            .filter(|r| classify(s, r.as_ref()) == kind)
            .count() as u64
    };
    let outcome = s.expect.outcome.as_str();
    let observed = count(outcome);
    s.check_rate(observed, total)?;
    if outcome != "pass" {
        let others = total - observed - count("pass");
        check_binomial(
            &s.name,
            others,
            total,
            s.expect.other_faults_percent / 100.0,
        )
        .map_err(|e| format!("{e} (faults other than `{outcome}`)"))?;
    }
    if let Some(policy) = &s.expect.policy {
        let wrong = responses
            .iter()
            .flatten()
            .filter(|r| classify(s, Some(r)) == outcome)
            .filter_map(|r| r.header("x-boifi-fault"))
            .find(|p| p != policy);
        if let Some(p) = wrong {
            return Err(format!("{}: fault from `{p}`, expected `{policy}`", s.name));
        }
    }
    if let Some(max) = s.expect.wait_ms_max.filter(|_| outcome != "pass") {
        // Bounded above too: the tick adds a few ms; a loaded machine adds more.
        let late = responses
            .iter()
            .flatten()
            .filter(|r| classify(s, Some(r)) == outcome)
            .map(|r| r.elapsed)
            .max()
            .unwrap_or_default();
        if late > Duration::from_millis(max + 250) {
            return Err(format!(
                "{}: a {outcome} took {late:?}, max {max} ms",
                s.name
            ));
        }
    }
    if let Some(grpc_status) = s.expect.grpc_status {
        let mut c = Client::new(loopback(port));
        let faulted = (0..40)
            .filter_map(|_| request(&mut c, s, true))
            .find(|r| r.header("x-boifi-fault").is_some())
            .ok_or_else(|| format!("{}: no gRPC request was faulted", s.name))?;
        let got = faulted.header("grpc-status").map(str::to_owned);
        if got != Some(grpc_status.to_string()) {
            return Err(format!(
                "{}: grpc-status {got:?}, expected {grpc_status}",
                s.name
            ));
        }
    }
    Ok(format!("{}: {observed}/{total} {outcome}", s.name))
}

pub fn scenario_corpus_holds_in_envoy(filter: FilterKind) {
    let root = repo_root();
    let scenarios = load_scenarios(&root.join("examples/scenarios/corpus.yaml")).unwrap();
    let policy_dir = root.join("examples/policies");
    let mesh = Mesh::start(filter);

    let mut workload = Workload::new("corpus", "corpus");
    workload.bare = true;
    let mut o = mesh.options(workload);
    o.extra_listeners = scenarios
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let id = s.identity();
            let mut identity = json!({"labels": id.labels, "pod": format!("corpus-{i}")});
            if let Some(service) = &id.service {
                identity["service"] = json!(service);
            }
            if let Some(namespace) = &id.namespace {
                identity["namespace"] = json!(namespace);
            }
            let mut config = plugin_config();
            config["identity"] = identity;
            (format!("corpus-{i}"), config)
        })
        .collect();
    // Caller scenarios run over mTLS, as between mesh sidecars: their listener requires and
    // verifies a client certificate from this run's CA, and their requests come through a
    // relay presenting the caller's certificate; without `source` the caller is plaintext.
    let ca = boifi_mesh::pki::MeshCa::generate("cluster.local").unwrap();
    let certs = crate::harness::TempDir::new("boifi-corpus-certs");
    for (i, s) in scenarios.iter().enumerate() {
        let Some(source) = &s.request.source else {
            continue;
        };
        let id = s.identity();
        let callee_id = boifi_core::identity::spiffe_id(
            "cluster.local",
            id.namespace.as_deref().unwrap_or("default"),
            id.service.as_deref().unwrap_or("default"),
        );
        let callee = ca
            .write_workload(certs.path(), &format!("callee-{i}"), &callee_id)
            .unwrap();
        let caller = ca
            .write_workload(certs.path(), &format!("caller-{i}"), &source.spiffe_id())
            .unwrap();
        o.extra_callers
            .insert(i, crate::harness::envoy::CallerTls { callee, caller });
    }
    let envoy = Envoy::start(&mesh.prereqs.envoy, &o);

    // Scenarios grouped by policy files, in corpus order.
    let mut groups: Vec<(Vec<String>, Vec<usize>)> = Vec::new();
    for (i, s) in scenarios.iter().enumerate() {
        match groups.iter_mut().find(|(files, _)| *files == s.policies) {
            Some((_, members)) => members.push(i),
            None => groups.push((s.policies.clone(), vec![i])),
        }
    }
    let mut failures = Vec::new();
    for (phase, (_, members)) in groups.iter().enumerate() {
        let policies = scenarios[members[0]].load_policies(&policy_dir).unwrap();
        for policy in &policies {
            mesh.server
                .put_policy(&serde_json::to_value(policy).unwrap());
        }
        // The native module refuses a version with a fault it cannot inject (docs/native.md):
        // its log must name it, and the group's scenarios cannot run there.
        let refused_natively = policies.iter().flat_map(|p| &p.spec.rules).any(|r| {
            r.fault.reset
                || (r.fault.target == boifi_core::policy::FaultTarget::Response
                    && (r.fault.delay.is_some() || r.fault.start_delay_ms > 0))
        });
        if filter == FilterKind::Native && refused_natively {
            let name = policies[0].name();
            assert!(
                envoy.wait_for_log(&format!("policy `{name}`: spec.rules[0].fault.")),
                "{name}: the native module must log its refusal"
            );
            eprintln!("corpus in Envoy: {name}: refused by the native module, as documented");
            for policy in &policies {
                mesh.server.delete_policy(policy.name());
            }
            continue;
        }
        let sentinel = format!("aaaa-corpus-sentinel-{phase}");
        mesh.put(
            &sentinel,
            json!({"service": "*", "namespace": "*"}),
            SENTINEL_PATH,
            abort(100, 418),
        );
        for &i in members {
            let mut c = Client::new(loopback(envoy.extra_ports[i]));
            let seen = crate::harness::wait_for(Duration::from_secs(5), || {
                c.get(SENTINEL_PATH)
                    .ok()
                    .filter(|r| r.header("x-boifi-fault") == Some(sentinel.as_str()))
            });
            assert!(
                seen.is_some(),
                "{}: policies never arrived",
                scenarios[i].name
            );
        }
        for &i in members {
            match run(&scenarios[i], envoy.extra_ports[i]) {
                Ok(line) => eprintln!("corpus in Envoy: {line}"),
                Err(e) => failures.push(e),
            }
        }
        mesh.server.delete_policy(&sentinel);
        for policy in &policies {
            mesh.server.delete_policy(policy.name());
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
