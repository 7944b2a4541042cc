//! Error messages for a table of bad documents, snapshotted: they are part of the interface.

use boifi_core::policy::{parse_policies_json, parse_policies_yaml, PolicyDocument, PolicyError};

const GOOD_RULES: &str = r#"[{"match": {"path": {"prefix": "/"}}, "fault": {"percentage": 10, "abort": {"httpStatus": 503}}}]"#;

fn doc(name: &str, spec_extra: &str, rules: &str) -> String {
    format!(r#"{{"metadata": {{"name": "{name}"}}, "spec": {{{spec_extra} "rules": {rules}}}}}"#)
}

fn rule(matches: &str, fault: &str) -> String {
    doc(
        "bad-policy",
        "",
        &format!(r#"[{{"match": {matches}, "fault": {fault}}}]"#),
    )
}

fn abort_rule(fault_fields: &str) -> String {
    rule(
        r#"{"path": {"prefix": "/"}}"#,
        &format!("{{{fault_fields}}}"),
    )
}

fn errors_of(json: &str) -> String {
    messages(parse_policies_json(json))
}

/// A parse's error messages, one a line, or `ok`.
pub fn messages(parsed: Result<Vec<PolicyDocument>, Vec<PolicyError>>) -> String {
    match parsed {
        Ok(_) => "ok".into(),
        Err(errors) => errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

#[test]
fn bad_documents_get_field_path_messages() {
    let long_part = "a".repeat(64);
    let long_name = ["a"; 128].join(".");
    let huge_regex = format!(r#"{{"path": {{"regex": "{}"}}}}"#, "a".repeat(1100));
    let cases: Vec<(&str, String)> = vec![
        ("empty name", doc("", "", GOOD_RULES)),
        ("name too long", doc(&long_name, "", GOOD_RULES)),
        ("name part too long", doc(&long_part, "", GOOD_RULES)),
        ("name with a slash", doc("checkout/slow", "", GOOD_RULES)),
        ("name with an empty part", doc("checkout..slow", "", GOOD_RULES)),
        ("name starting with a dash", doc("-checkout", "", GOOD_RULES)),
        ("reserved name", doc("status", "", GOOD_RULES)),
        ("metadata.namespace with a dot", r#"{"metadata": {"name": "abc", "namespace": "a.b"}, "spec": {"rules": [{"match": {"path": {"exact": "/"}}, "fault": {"percentage": 1, "delay": {"fixed_delay_ms": 1}}}]}}"#.into()),
        ("label key with `=`", r#"{"metadata": {"name": "abc", "labels": {"a=b": "c", "team": 5}}, "spec": {"rules": [{"match": {"path": {"exact": "/"}}, "fault": {"percentage": 1, "delay": {"fixed_delay_ms": 1}}}]}}"#.into()),
        ("priority not whole", doc("bad-priority", r#""priority": 1.5,"#, GOOD_RULES)),
        ("priority out of range", doc("bad-priority", r#""priority": 4294967296,"#, GOOD_RULES)),
        ("enabled not true/false", doc("bad-enabled", r#""enabled": "no","#, GOOD_RULES)),
        ("missing metadata", r#"{"spec": {"rules": []}}"#.into()),
        ("missing name", r#"{"metadata": {}, "spec": {"rules": []}}"#.into()),
        ("no rules", doc("no-rules", "", "[]")),
        ("rules not a list", doc("rules-object", "", "{}")),
        ("unknown top-level field", r#"{"metadata": {"name": "abc"}, "spec": {"rules": [{"match": {"path": {"exact": "/"}}, "fault": {"percentage": 1, "delay": {"fixed_delay_ms": 1}}}]}, "extra": 1}"#.into()),
        ("unknown field deep inside", abort_rule(r#""percentage": 10, "abort": {"httpStatus": 503, "colour": "red"}"#)),
        ("wrong apiVersion", r#"{"apiVersion": "v2", "kind": "Pod", "metadata": {"name": "abc"}, "spec": {"rules": []}}"#.into()),
        ("rule without match condition", rule("{}", r#"{"percentage": 10, "abort": {"httpStatus": 503}}"#)),
        ("rule without fault action", abort_rule(r#""percentage": 10"#)),
        ("reset with abort", abort_rule(r#""percentage": 10, "reset": true, "abort": {"httpStatus": 503}"#)),
        ("reset not true/false", abort_rule(r#""percentage": 10, "reset": "yes""#)),
        ("unknown target", abort_rule(r#""percentage": 10, "target": "upstream", "abort": {"httpStatus": 503}"#)),
        ("heartbeat zero", doc("bad-heartbeat", r#""heartbeat_seconds": 0,"#, GOOD_RULES)),
        ("heartbeat not whole", doc("bad-heartbeat", r#""heartbeat_seconds": 1.5,"#, GOOD_RULES)),
        ("percentage above 100", abort_rule(r#""percentage": 130, "abort": {"httpStatus": 503}"#)),
        ("negative percentage", abort_rule(r#""percentage": -1, "abort": {"httpStatus": 503}"#)),
        ("percentage too precise", abort_rule(r#""percentage": 12.345678, "abort": {"httpStatus": 503}"#)),
        ("percentage as a string", abort_rule(r#""percentage": "20%", "abort": {"httpStatus": 503}"#)),
        ("missing percentage", abort_rule(r#""abort": {"httpStatus": 503}"#)),
        ("http status below 200", abort_rule(r#""percentage": 10, "abort": {"httpStatus": 99}"#)),
        ("http status above 599", abort_rule(r#""percentage": 10, "abort": {"httpStatus": 600}"#)),
        ("grpc status above 16", abort_rule(r#""percentage": 10, "abort": {"httpStatus": 503, "grpcStatus": 17}"#)),
        ("delay above the cap", abort_rule(r#""percentage": 10, "delay": {"fixed_delay_ms": 300001}"#)),
        ("jitter above the delay", abort_rule(r#""percentage": 10, "delay": {"fixed_delay_ms": 100, "jitter_ms": 200}"#)),
        ("fractional delay", abort_rule(r#""percentage": 10, "delay": {"fixed_delay_ms": 1.5}"#)),
        ("regex that does not compile", rule(r#"{"path": {"regex": "(unclosed"}}"#, r#"{"percentage": 10, "abort": {"httpStatus": 503}}"#)),
        ("regex too long", rule(&huge_regex, r#"{"percentage": 10, "abort": {"httpStatus": 503}}"#)),
        ("regex that compiles too large", rule(r#"{"path": {"regex": "\\w{1000}\\w{1000}"}}"#, r#"{"percentage": 10, "abort": {"httpStatus": 503}}"#)),
        ("two matcher kinds", rule(r#"{"path": {"exact": "/", "prefix": "/"}}"#, r#"{"percentage": 10, "abort": {"httpStatus": 503}}"#)),
        ("bad header name", rule(r#"{"headers": [{"name": "x user", "exact": "a"}]}"#, r#"{"percentage": 10, "abort": {"httpStatus": 503}}"#)),
        ("header match without value matcher", rule(r#"{"headers": [{"name": "x-user"}]}"#, r#"{"percentage": 10, "abort": {"httpStatus": 503}}"#)),
        ("abort header with newline", abort_rule(r#""percentage": 10, "abort": {"httpStatus": 503, "headers": {"x-a": "b\r\nc"}}"#)),
        ("window ends before it starts", doc("bad-window", r#""window": {"start": "2026-11-26T10:00:00Z", "end": "2026-11-26T09:00:00Z"},"#, GOOD_RULES)),
        ("window with a bad timestamp", doc("bad-window", r#""window": {"start": "tomorrow", "end": "2026-11-26T09:00:00Z"},"#, GOOD_RULES)),
        ("unknown sampling", doc("bad-sampling", r#""sampling": "sometimes","#, GOOD_RULES)),
        ("selector service not a string", doc("bad-selector", r#""selector": {"service": 5},"#, GOOD_RULES)),
        ("many errors at once", r#"{"metadata": {"name": "x/"}, "spec": {"selector": {"zone": "a"}, "rules": [{"match": {}, "fault": {"percentage": 101}}, {"match": {"method": {"exact": "GET"}}, "fault": {"percentage": 5, "abort": {"httpStatus": 700}}}]}}"#.into()),
        ("malformed json", r#"{"metadata": {"name": "abc"},, }"#.into()),
    ];
    assert!(cases.len() >= 25);
    let report: String = cases
        .iter()
        .map(|(label, json)| format!("## {label}\n{}\n", errors_of(json)))
        .collect();
    insta::assert_snapshot!(report);
}

#[test]
fn malformed_yaml_gets_line_and_column() {
    let text = "metadata:\n  name: abc\nspec:\n  rules: [\n    - oops\n";
    let errors = parse_policies_yaml(text).unwrap_err();
    insta::assert_snapshot!(errors[0].to_string());
}

#[test]
fn multi_document_yaml_reports_each_bad_document() {
    let text = "metadata: {name: good-one}\nspec:\n  rules:\n    - match: {path: {prefix: /}}\n      fault: {percentage: 1, abort: {httpStatus: 503}}\n---\nmetadata: {name: b.}\nspec: {rules: []}\n---\nmetadata: {name: c!}\nspec: {rules: [{match: {path: {prefix: /}}, fault: {percentage: 200, delay: {fixed_delay_ms: 1}}}]}\n";
    let errors = parse_policies_yaml(text).unwrap_err();
    let report: Vec<String> = errors.iter().map(ToString::to_string).collect();
    insta::assert_snapshot!(report.join("\n"));
}

#[test]
fn an_empty_file_is_an_error() {
    let errors = parse_policies_yaml("# nothing here\n").unwrap_err();
    assert_eq!(errors[0].to_string(), "no policy document found");
}

/// `5.0` is the JSON number `5` (RFC 8259 section 6) and JSON Schema's `integer` admits it, so
/// every whole-number field reads it as `5`; a true fraction or an out-of-range whole number is
/// still refused, each with its own message.
#[test]
fn whole_numbers_written_with_a_fraction_part_are_whole() {
    let json = doc(
        "whole-floats",
        r#""priority": -3.0,"#,
        r#"[{"match": {"path": {"prefix": "/"}}, "fault": {"percentage": 10, "start_delay_ms": 2.0, "duration_seconds": 60.0, "delay": {"fixed_delay_ms": 100.0, "jitter_ms": 5e1}, "abort": {"httpStatus": 503.0, "grpcStatus": 14.0}}}]"#,
    );
    let policies = parse_policies_json(&json).unwrap();
    let spec = &policies[0].spec;
    assert_eq!(spec.priority, -3);
    let fault = &spec.rules[0].fault;
    assert_eq!((fault.start_delay_ms, fault.duration_seconds), (2, 60));
    let delay = fault.delay.as_ref().unwrap();
    assert_eq!((delay.fixed_delay_ms, delay.jitter_ms), (100, 50));
    let abort = fault.abort.as_ref().unwrap();
    assert_eq!((abort.http_status, abort.grpc_status), (503, Some(14)));

    let fraction = errors_of(&abort_rule(
        r#""percentage": 10, "abort": {"httpStatus": 503.5}"#,
    ));
    assert!(fraction.contains("found a fraction"), "{fraction}");
    let too_big = errors_of(&abort_rule(
        r#""percentage": 10, "delay": {"fixed_delay_ms": 1e30}"#,
    ));
    assert!(too_big.contains("outside 0..=300000"), "{too_big}");
    let priority = errors_of(&doc("p", r#""priority": 3e9,"#, GOOD_RULES));
    assert!(
        priority.contains("spec.priority") && !priority.contains("fraction"),
        "{priority}"
    );
}
