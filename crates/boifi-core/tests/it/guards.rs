//! `spec.guards`: read, written back, and every bad guard refused with its field path.

use boifi_core::policy::guard::{Comparison, GuardCondition, OnError, Operator};
use boifi_core::policy::{parse_policies_json, parse_policies_yaml, validate};

const GUARDED: &str = r#"
metadata: {name: cart-abort}
spec:
  selector: {service: cartservice}
  rules:
    - match: {path: {prefix: /}}
      fault: {percentage: 50, abort: {httpStatus: 503}}
  guards:
    - name: frontend-success
      query: sum(rate(istio_requests_total{destination_service_name="frontend",response_code!~"5.."}[30s])) / sum(rate(istio_requests_total{destination_service_name="frontend"}[30s]))
      success_condition: result >= 0.95
      interval_seconds: 5
      failure_limit: 2
    - name: latency
      query: histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket[1m])))
      failure_condition: result>250
      on_error: ignore
"#;

fn guard_json(guard: &str) -> String {
    format!(
        r#"{{"metadata": {{"name": "g"}}, "spec": {{"rules": [{{"match": {{"path": {{"prefix": "/"}}}}, "fault": {{"percentage": 10, "abort": {{"httpStatus": 503}}}}}}], "guards": [{guard}]}}}}"#
    )
}

fn errors_of(guard: &str) -> Vec<String> {
    match parse_policies_json(&guard_json(guard)) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn a_guarded_policy_reads_with_its_defaults_and_writes_back_equal() {
    let policies = parse_policies_yaml(GUARDED).unwrap();
    let guards = &policies[0].spec.guards;
    assert_eq!(guards.len(), 2);
    assert_eq!(guards[0].name, "frontend-success");
    assert_eq!(
        guards[0].condition,
        GuardCondition::Success(Comparison::new(Operator::GreaterOrEqual, 0.95).unwrap())
    );
    assert_eq!(
        (guards[0].interval_seconds, guards[0].failure_limit),
        (5, 2)
    );
    assert_eq!(guards[0].on_error, OnError::Fail);
    assert_eq!(
        guards[1].condition,
        GuardCondition::Failure(Comparison::new(Operator::Greater, 250.0).unwrap())
    );
    assert_eq!(
        (guards[1].interval_seconds, guards[1].failure_limit),
        (10, 1)
    );
    assert_eq!(guards[1].on_error, OnError::Ignore);
    validate(&policies[0]).unwrap();
    let written = serde_json::to_string(&policies[0]).unwrap();
    assert!(
        written.contains(r#""success_condition":"result >= 0.95""#),
        "{written}"
    );
    assert_eq!(parse_policies_json(&written).unwrap(), policies);
}

#[test]
fn conditions_compare_like_promql() {
    let at_least = GuardCondition::Success(Comparison::parse("result >= 0.95").unwrap());
    assert!(at_least.passes(0.95));
    assert!(at_least.passes(1.0));
    assert!(!at_least.passes(0.5));
    assert!(!at_least.passes(f64::NAN), "no data is not health");
    let above = GuardCondition::Failure(Comparison::parse("result > 250").unwrap());
    assert!(above.passes(250.0));
    assert!(!above.passes(251.0));
    for text in [
        "result<1",
        "result <= 1",
        "result == 1",
        "result != 1e3",
        " result > -2.5 ",
    ] {
        assert!(Comparison::parse(text).is_ok(), "{text}");
    }
}

#[test]
fn bad_guards_are_refused_naming_the_field() {
    let base = r#""name": "ok", "query": "up", "success_condition": "result >= 1""#;
    let cases: Vec<(String, &str)> = vec![
        (
            r#"{"name": "q", "query": "sum(rate(x[1m]", "success_condition": "result > 1"}"#.into(),
            "spec.guards[0].query: `sum(rate(x[1m]` is not a PromQL query: ",
        ),
        (
            r#"{"name": "c", "query": "up", "success_condition": "value above 1"}"#.into(),
            "spec.guards[0].success_condition: `value above 1` is not a condition such as `result >= 0.95`",
        ),
        (
            r#"{"name": "c", "query": "up", "failure_condition": "result => 1"}"#.into(),
            "spec.guards[0].failure_condition: `result => 1` is not a condition",
        ),
        (
            r#"{"name": "c", "query": "up", "success_condition": "result > inf"}"#.into(),
            "spec.guards[0].success_condition: `result > inf` is not a condition",
        ),
        (
            r#"{"name": "c", "query": "up"}"#.into(),
            "spec.guards[0]: give exactly one of `success_condition` or `failure_condition`",
        ),
        (
            r#"{"name": "c", "query": "up", "success_condition": "result > 1", "failure_condition": "result < 0"}"#.into(),
            "spec.guards[0]: give exactly one of `success_condition` or `failure_condition`",
        ),
        (
            format!(r#"{{{base}, "interval_seconds": 0}}"#),
            "spec.guards[0].interval_seconds: `0` is outside 1..=3600",
        ),
        (
            format!(r#"{{{base}, "interval_seconds": -5}}"#),
            "spec.guards[0].interval_seconds: `-5` is outside 1..=3600",
        ),
        (
            format!(r#"{{{base}, "failure_limit": 0}}"#),
            "spec.guards[0].failure_limit: `0` is outside 1..=100",
        ),
        (
            format!(r#"{{{base}, "on_error": "panic"}}"#),
            "spec.guards[0].on_error: `panic` is not one of `fail`, `ignore`",
        ),
        (
            format!(r#"{{{base}, "timeout": 1}}"#),
            "spec.guards[0].timeout: unknown field",
        ),
        (
            format!(r#"{{{base}}}, {{{base}}}"#),
            "spec.guards[1].name: `ok` names another guard of this policy too",
        ),
        (
            r#"{"name": "a b", "query": "up", "success_condition": "result > 1"}"#.into(),
            "spec.guards[0].name: `a b` is not valid",
        ),
    ];
    for (guard, expected) in cases {
        let errors = errors_of(&guard);
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with(&format!("document 1: {expected}"))),
            "{guard}: expected `{expected}…`, got {errors:?}"
        );
    }
}

#[test]
fn validate_refuses_a_bad_guard_built_in_code() {
    let mut policy = parse_policies_yaml(GUARDED).unwrap().remove(0);
    policy.spec.guards[1].query = "rate(".into();
    policy.spec.guards[0].interval_seconds = 0;
    let errors = validate(&policy).unwrap_err().to_string();
    assert!(
        errors.contains("spec.guards[1].query: `rate(` is not a PromQL query"),
        "{errors}"
    );
    assert!(
        errors.contains("spec.guards[0].interval_seconds: `0` is outside 1..=3600"),
        "{errors}"
    );
}
