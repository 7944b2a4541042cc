//! Every example policy loads; every scenario of the corpus holds in the core.

use boifi_core::compiled::CompiledPolicySet;
use boifi_core::policy::{parse_policies_text, PolicyDocument};
use boifi_core::scenario::load_scenarios;
use boifi_core::simulate::sample;
use boifi_core::time::parse_rfc3339;

use crate::repo_root;

fn policy_files() -> Vec<std::path::PathBuf> {
    boifi_testkit::files::files_under(&repo_root().join("examples/policies"))
}

#[test]
fn every_example_policy_parses_validates_and_round_trips() {
    let files = policy_files();
    assert!(files.len() >= 10, "the corpus has {} files", files.len());
    let mut documents = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let policies =
            parse_policies_text(&text).unwrap_or_else(|e| panic!("{}: {e:?}", file.display()));
        for policy in policies {
            documents += 1;
            let json = serde_json::to_string(&policy).unwrap();
            let back: PolicyDocument = serde_json::from_str(&json).unwrap();
            assert_eq!(back, policy, "{}", file.display());
        }
    }
    assert!(documents >= 12);
}

#[test]
fn legacy_files_load_unchanged() {
    let text =
        std::fs::read_to_string(repo_root().join("examples/policies/legacy/checkout-slow.yaml"))
            .unwrap();
    let policy = parse_policies_text(&text).unwrap().remove(0);
    assert_eq!(policy.name(), "checkout-slow");
    assert_eq!(policy.metadata.version.as_deref(), Some("1.0.0"));
    let fault = &policy.spec.rules[0].fault;
    assert_eq!(fault.percentage.ppm(), 200_000);
    assert_eq!(fault.start_delay_ms, 500);
    assert_eq!(fault.duration_seconds, 300);
    assert_eq!(fault.delay.as_ref().unwrap().fixed_delay_ms, 2000);
    assert_eq!(fault.abort.as_ref().unwrap().http_status, 503);
    assert_eq!(policy.spec.rules[0].matches.headers[0].name, "x-user-id");
    // Output always carries apiVersion and kind.
    let out = serde_json::to_value(&policy).unwrap();
    assert_eq!(out["apiVersion"], "boifi.io/v1alpha1");
    assert_eq!(out["kind"], "FaultInjectionPolicy");
}

#[test]
fn scenario_corpus_holds_in_the_core() {
    let scenarios = load_scenarios(&repo_root().join("examples/scenarios/corpus.yaml")).unwrap();
    assert!(scenarios.len() >= 20);
    let now = parse_rfc3339("2026-11-26T12:00:00Z").unwrap();
    let policy_dir = repo_root().join("examples/policies");
    let mut failures = Vec::new();
    for (i, scenario) in scenarios.iter().enumerate() {
        let policies = scenario.load_policies(&policy_dir).unwrap();
        let set = CompiledPolicySet::from_documents(&policies, &scenario.identity(), now).unwrap();
        let request = scenario.request();
        // Each scenario gets fresh request ids so `request` sampling sees distinct requests.
        let mut dist = boifi_core::simulate::Distribution::default();
        for n in 0..10_000u64 {
            let r = request
                .clone()
                .with_header("x-request-id", &format!("req-{i}-{n}"));
            dist.merge(&sample(&set, &r, now, 1, n ^ 0xC0FFEE));
        }
        if let Err(e) = scenario.check_distribution(&dist) {
            failures.push(e);
        }
        // Wait bounds, checked on individual decisions.
        if let (Some(min), Some(max)) = (scenario.expect.wait_ms_min, scenario.expect.wait_ms_max) {
            for draw in 0..2_000u64 {
                if let Some(d) = boifi_core::decide(&set, &request, now, draw) {
                    let wait = d.total_wait_ms();
                    if !(min..=max).contains(&wait) {
                        failures.push(format!(
                            "{}: wait {wait} outside {min}..={max}",
                            scenario.name
                        ));
                        break;
                    }
                }
            }
        }
        if let Some(grpc) = scenario.expect.grpc_status {
            let d = (0..1000)
                .find_map(|draw| boifi_core::decide(&set, &request, now, draw))
                .unwrap();
            assert_eq!(d.abort.unwrap().grpc_status_for_grpc_request(), grpc);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn time_limited_policy_stops_firing_after_its_duration() {
    let text = std::fs::read_to_string(
        repo_root().join("examples/policies/recommendation-time-limited.yaml"),
    )
    .unwrap();
    let stored_at = 1_000_000;
    let policy = parse_policies_text(&text)
        .unwrap()
        .remove(0)
        .stored(stored_at, 1);
    let identity = boifi_core::Identity::for_service("recommendationservice", "demo");
    let request = boifi_core::compiled::SimpleRequest::new("GET", "/");
    let set =
        CompiledPolicySet::from_documents(std::slice::from_ref(&policy), &identity, stored_at)
            .unwrap();
    let fired = |now| {
        (0..1000)
            .filter(|&d| boifi_core::decide(&set, &request, now, d).is_some())
            .count()
    };
    assert!(fired(stored_at + 299_999) > 100);
    assert_eq!(fired(stored_at + 300_000), 0);
    assert_eq!(
        policy.status.unwrap().expires_at_ms,
        Some(stored_at + 300_000)
    );
    assert_eq!(
        policy.state_at(stored_at + 300_000),
        boifi_core::policy::PolicyState::Expired
    );
}
