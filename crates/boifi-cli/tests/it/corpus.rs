//! The scenario corpus (`examples/scenarios/`) through `boifi-cli simulate`: for every scenario
//! the observed rate over 10 000 requests is within 4σ of the expected one (the very check the
//! core's corpus test makes), waits are within bounds, and a seed gives the same output.

use std::collections::BTreeMap;

use boifi_core::scenario::{load_scenarios, Scenario};
use boifi_core::simulate::{Distribution, Outcome};
use serde_json::Value;

use crate::support::{cli, root, transcript};

const REQUESTS: u64 = 10_000;

fn scenarios() -> Vec<Scenario> {
    let dir = root().join("examples/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let all: Vec<Scenario> = files
        .iter()
        .flat_map(|f| load_scenarios(f).unwrap())
        .collect();
    assert!(!all.is_empty(), "no scenario in {}", dir.display());
    all
}

fn simulate(scenario: &Scenario, seed: u64) -> std::process::Output {
    let identity = scenario.identity();
    let request = &scenario.request;
    let mut cmd = cli();
    cmd.arg("simulate").arg("-o").arg("json");
    for file in &scenario.policies {
        cmd.arg("-f").arg(format!("examples/policies/{file}"));
    }
    for (flag, value) in [
        ("--service", &identity.service),
        ("--namespace", &identity.namespace),
        ("--pod", &identity.pod),
    ] {
        if let Some(v) = value {
            cmd.arg(flag).arg(v);
        }
    }
    for (k, v) in &identity.labels {
        cmd.arg("--label").arg(format!("{k}={v}"));
    }
    cmd.arg("--method")
        .arg(&request.method)
        .arg("--path")
        .arg(&request.path);
    for (k, v) in &request.headers {
        cmd.arg("--header").arg(format!("{k}={v}"));
    }
    if let Some(source) = &request.source {
        cmd.arg("--source-namespace").arg(&source.namespace);
        if let Some(service) = &source.service {
            cmd.arg("--source-service").arg(service);
        }
        if let Some(account) = &source.service_account {
            cmd.arg("--source-service-account").arg(account);
        }
    }
    cmd.arg("--requests")
        .arg(REQUESTS.to_string())
        .arg("--seed")
        .arg(seed.to_string());
    cmd.output().unwrap()
}

/// The CLI's JSON report as the core's `Distribution`, so the core's own check applies.
fn distribution(report: &Value) -> Distribution {
    let mut counts = BTreeMap::new();
    for row in report["outcomes"].as_array().unwrap() {
        let status = row["http_status"]
            .as_u64()
            .map(|s| u16::try_from(s).unwrap());
        let outcome = match (row["outcome"].as_str().unwrap(), status) {
            ("pass", None) => Outcome::Pass,
            ("delay", None) => Outcome::Delay,
            ("abort", Some(http_status)) => Outcome::Abort { http_status },
            ("delay_then_abort", Some(http_status)) => Outcome::DelayThenAbort { http_status },
            ("response_abort", Some(http_status)) => Outcome::ResponseAbort { http_status },
            ("reset", None) => Outcome::Reset,
            other => panic!("unknown outcome {other:?}"),
        };
        let count = row["count"].as_u64().unwrap();
        if count > 0 {
            counts.insert(outcome, count);
        }
    }
    let by_policy = report["by_policy"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    Distribution {
        total: report["requests"].as_u64().unwrap(),
        counts,
        by_policy,
        ..Distribution::default()
    }
}

#[test]
fn every_scenario_is_within_4_sigma_through_the_cli() {
    let mut failures = Vec::new();
    let all = scenarios();
    for (i, scenario) in all.iter().enumerate() {
        let output = simulate(scenario, 1000 + i as u64);
        assert!(
            output.status.success(),
            "{}: {}",
            scenario.name,
            transcript(&output)
        );
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        let dist = distribution(&report);
        assert_eq!(
            dist.counts.values().sum::<u64>(),
            REQUESTS,
            "{}",
            scenario.name
        );
        if let Err(e) = scenario.check_distribution(&dist) {
            failures.push(e);
        }
        // The expected share the CLI prints is the scenario's promise too.
        let outcome = scenario.expected_outcome().unwrap();
        let want = if outcome == Outcome::Pass {
            100.0
        } else {
            scenario.expect.percent
        };
        let row = report["outcomes"].as_array().unwrap().iter().find(|r| {
            r["outcome"] == outcome.kind()
                && r["http_status"].as_u64() == status_of(&outcome).map(u64::from)
        });
        let printed = row.map_or(0.0, |r| r["expected_percent"].as_f64().unwrap());
        if (printed - want).abs() > 1e-6 {
            failures.push(format!(
                "{}: expected_percent {printed}, scenario says {want}",
                scenario.name
            ));
        }
        if let Some(row) = row.filter(|_| outcome != Outcome::Pass) {
            if let Some(wait) = row.get("wait_ms") {
                let (min, max) = (wait["min"].as_u64().unwrap(), wait["max"].as_u64().unwrap());
                if scenario.expect.wait_ms_min.is_some_and(|m| min < m)
                    || scenario.expect.wait_ms_max.is_some_and(|m| max > m)
                {
                    failures.push(format!(
                        "{}: waits {min}..={max} out of bounds",
                        scenario.name
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} scenarios:\n{}",
        all.len(),
        failures.join("\n")
    );
}

fn status_of(outcome: &Outcome) -> Option<u16> {
    outcome.http_status()
}

#[test]
fn the_same_seed_gives_the_same_output_for_every_scenario() {
    for scenario in scenarios() {
        let a = simulate(&scenario, 99);
        let b = simulate(&scenario, 99);
        assert_eq!(a.stdout, b.stdout, "{}", scenario.name);
    }
}
