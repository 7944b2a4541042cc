//! One validation: each bound of a policy refused by the JSON reader and by [`validate`] on a
//! document built in code, with the same field path and message. (Proxies never validate: the
//! compact decoder checks the sidecar form's ranges, `boifi_core::wire::compact` tests.)

use boifi_core::policy::{validate, PolicyDocument, StringMatch};
use serde_json::{json, Value};

/// A valid policy whose values the cases push out of range.
fn base() -> Value {
    json!({
        "metadata": {"name": "bounds", "namespace": "demo", "labels": {"team": "sre"}},
        "spec": {
            "priority": 1_234_567,
            "window": {"start": "2026-11-26T09:00:00Z", "end": "2026-11-26T10:00:00Z"},
            "rules": [{
                "match": {"path": {"prefix": "/"},
                          "headers": [{"name": "x-user", "exact": "a"}],
                          "source": {"service": "frontend"}},
                "fault": {"percentage": 12.3456, "start_delay_ms": 5, "duration_seconds": 60,
                          "delay": {"fixed_delay_ms": 100, "jitter_ms": 10},
                          "abort": {"httpStatus": 503, "grpcStatus": 14, "body": "no",
                                    "headers": {"x-a": "1"}}}
            }]
        }
    })
}

/// How the model holds a case's value.
enum Compact {
    /// The model holds the bad value: [`validate`] must refuse it like the JSON reader.
    Model(fn(&mut PolicyDocument)),
    /// The model's type cannot hold it (only the JSON reader sees it).
    Varint,
}

struct Case {
    field: &'static str,
    json: fn(&mut Value),
    compact: Compact,
    message: String,
}

fn case(field: &'static str, json: fn(&mut Value), compact: Compact, message: &str) -> Case {
    Case {
        field,
        json,
        compact,
        message: message.to_owned(),
    }
}

fn rule0(p: &mut PolicyDocument) -> &mut boifi_core::policy::Rule {
    &mut p.spec.rules[0]
}

fn cases() -> Vec<Case> {
    use Compact::{Model, Varint};
    vec![
        case("fixed_delay_ms", |v| v["spec"]["rules"][0]["fault"]["delay"]["fixed_delay_ms"] = json!(300_001),
            Model(|p| rule0(p).fault.delay.as_mut().unwrap().fixed_delay_ms = 300_001),
            "spec.rules[0].fault.delay.fixed_delay_ms: `300001` is outside 0..=300000"),
        case("jitter_ms", |v| {
                v["spec"]["rules"][0]["fault"]["delay"] = json!({"fixed_delay_ms": 300_000, "jitter_ms": 300_001});
            },
            Model(|p| *rule0(p).fault.delay.as_mut().unwrap() = boifi_core::policy::Delay { fixed_delay_ms: 300_000, jitter_ms: 300_001 }),
            "spec.rules[0].fault.delay.jitter_ms: `300001` is outside 0..=300000"),
        case("jitter above the delay", |v| v["spec"]["rules"][0]["fault"]["delay"]["jitter_ms"] = json!(101),
            Model(|p| rule0(p).fault.delay.as_mut().unwrap().jitter_ms = 101),
            "spec.rules[0].fault.delay.jitter_ms: `101` is larger than `fixed_delay_ms` (`100`)"),
        case("start_delay_ms", |v| v["spec"]["rules"][0]["fault"]["start_delay_ms"] = json!(300_001),
            Model(|p| rule0(p).fault.start_delay_ms = 300_001),
            "spec.rules[0].fault.start_delay_ms: `300001` is outside 0..=300000"),
        case("duration_seconds", |v| v["spec"]["rules"][0]["fault"]["duration_seconds"] = json!(2_592_001),
            Model(|p| rule0(p).fault.duration_seconds = 2_592_001),
            "spec.rules[0].fault.duration_seconds: `2592001` is outside 0..=2592000"),
        case("percentage", |v| v["spec"]["rules"][0]["fault"]["percentage"] = json!(130),
            Varint,
            "spec.rules[0].fault.percentage: `130` is outside 0..=100"),
        case("percentage with decimals", |v| v["spec"]["rules"][0]["fault"]["percentage"] = json!(100.5),
            Varint,
            "spec.rules[0].fault.percentage: `100.5` is outside 0..=100"),
        case("httpStatus above", |v| v["spec"]["rules"][0]["fault"]["abort"]["httpStatus"] = json!(600),
            Model(|p| rule0(p).fault.abort.as_mut().unwrap().http_status = 600),
            "spec.rules[0].fault.abort.httpStatus: `600` is outside 200..=599"),
        case("httpStatus below", |v| v["spec"]["rules"][0]["fault"]["abort"]["httpStatus"] = json!(99),
            Model(|p| rule0(p).fault.abort.as_mut().unwrap().http_status = 99),
            "spec.rules[0].fault.abort.httpStatus: `99` is outside 200..=599"),
        case("httpStatus beyond 16 bits", |v| v["spec"]["rules"][0]["fault"]["abort"]["httpStatus"] = json!(70_000),
            Varint,
            "spec.rules[0].fault.abort.httpStatus: `70000` is outside 200..=599"),
        case("grpcStatus", |v| v["spec"]["rules"][0]["fault"]["abort"]["grpcStatus"] = json!(17),
            Model(|p| rule0(p).fault.abort.as_mut().unwrap().grpc_status = Some(17)),
            "spec.rules[0].fault.abort.grpcStatus: `17` is outside 0..=16"),
        case("body", |v| v["spec"]["rules"][0]["fault"]["abort"]["body"] = json!("x".repeat(16 * 1024 + 1)),
            Model(|p| rule0(p).fault.abort.as_mut().unwrap().body = Some("x".repeat(16 * 1024 + 1))),
            "spec.rules[0].fault.abort.body: is too long: 16385 is more than the limit of 16384"),
        case("abort header value", |v| v["spec"]["rules"][0]["fault"]["abort"]["headers"]["x-a"] = json!("1\r\n2"),
            Model(|p| { rule0(p).fault.abort.as_mut().unwrap().headers.insert("x-a".into(), "1\r\n2".into()); }),
            "spec.rules[0].fault.abort.headers.x-a: header value contains a control character (CR, LF or NUL)"),
        case("abort pseudo-header", |v| v["spec"]["rules"][0]["fault"]["abort"]["headers"] = json!({":status": "200"}),
            Model(|p| rule0(p).fault.abort.as_mut().unwrap().headers = [(":status".into(), "200".into())].into()),
            "spec.rules[0].fault.abort.headers.:status: `:status` is not a valid header name"),
        case("fault without action", |v| {
                let fault = v["spec"]["rules"][0]["fault"].as_object_mut().unwrap();
                fault.remove("delay");
                fault.remove("abort");
            },
            Model(|p| { rule0(p).fault.delay = None; rule0(p).fault.abort = None; }),
            "spec.rules[0].fault: a fault needs at least one of `delay`, `abort` and `reset`"),
        case("reset with abort", |v| v["spec"]["rules"][0]["fault"]["reset"] = json!(true),
            Model(|p| rule0(p).fault.reset = true),
            "spec.rules[0].fault.reset: `reset: true` cannot be combined with `abort`: a reset sends no answer at all; keep one of them"),
        case("heartbeat zero", |v| v["spec"]["heartbeat_seconds"] = json!(0),
            Model(|p| p.spec.heartbeat_seconds = Some(0)),
            "spec.heartbeat_seconds: `0` is outside 1..=86400"),
        case("heartbeat above a day", |v| v["spec"]["heartbeat_seconds"] = json!(86_401),
            Model(|p| p.spec.heartbeat_seconds = Some(86_401)),
            "spec.heartbeat_seconds: `86401` is outside 1..=86400"),
        case("match header name", |v| v["spec"]["rules"][0]["match"]["headers"][0]["name"] = json!("x user"),
            Model(|p| rule0(p).matches.headers[0].name = "x user".into()),
            "spec.rules[0].match.headers[0].name: `x user` is not a valid header name"),
        case("regex", |v| v["spec"]["rules"][0]["match"]["path"] = json!({"regex": "(unclosed"}),
            Model(|p| rule0(p).matches.path = Some(StringMatch::Regex("(unclosed".into()))),
            "spec.rules[0].match.path.regex: regex `(unclosed` does not compile: unclosed group `(` at byte 0"),
        case("source name", |v| v["spec"]["rules"][0]["match"]["source"]["service"] = json!("Frontend"),
            Model(|p| rule0(p).matches.source.as_mut().unwrap().service = Some("Frontend".into())),
            "spec.rules[0].match.source.service: `Frontend` is not a valid name: only lower-case letters, digits and `-` are allowed"),
        case("rule without condition", |v| v["spec"]["rules"][0]["match"] = json!({}),
            Model(|p| rule0(p).matches = Default::default()),
            "spec.rules[0].match: a rule needs at least one condition: `method`, `path`, `headers` or `source`"),
        case("match headers", |v| {
                let header = v["spec"]["rules"][0]["match"]["headers"][0].clone();
                v["spec"]["rules"][0]["match"]["headers"] = Value::Array(vec![header; 33]);
            },
            Model(|p| { let h = rule0(p).matches.headers[0].clone(); rule0(p).matches.headers = vec![h; 33]; }),
            "spec.rules[0].match.headers: is too long: 33 is more than the limit of 32"),
        case("no rules", |v| v["spec"]["rules"] = json!([]),
            Model(|p| p.spec.rules.clear()),
            "spec.rules: must not be empty"),
        case("too many rules", |v| {
                let rule = v["spec"]["rules"][0].clone();
                v["spec"]["rules"] = Value::Array(vec![rule; 65]);
            },
            Model(|p| { let r = p.spec.rules[0].clone(); p.spec.rules = vec![r; 65]; }),
            "spec.rules: is too long: 65 is more than the limit of 64"),
        case("priority", |v| v["spec"]["priority"] = json!(2_147_483_648_i64),
            Varint,
            "spec.priority: `2147483648` is outside -2147483648..=2147483647"),
        case("window", |v| v["spec"]["window"]["end"] = json!("2026-11-26T09:00:00Z"),
            Model(|p| { let w = p.spec.window.as_mut().unwrap(); w.end_ms = w.start_ms; }),
            "spec.window.end: `2026-11-26T09:00:00Z` is not after the window start `2026-11-26T09:00:00Z`"),
        case("name", |v| v["metadata"]["name"] = json!("x/"),
            Model(|p| p.metadata.name = "x/".into()),
            "metadata.name: `x/` is not a valid name: only letters, digits, `-`, `_` and `.` are allowed"),
        case("namespace", |v| v["metadata"]["namespace"] = json!("a.b"),
            Model(|p| p.metadata.namespace = Some("a.b".into())),
            "metadata.namespace: `a.b` is not valid: a namespace is 1 to 63 letters, digits, `-` or `_`, not starting or ending with `-`"),
        case("label key", |v| v["metadata"]["labels"] = json!({"a=b": "c"}),
            Model(|p| p.metadata.labels = [("a=b".into(), "c".into())].into()),
            "metadata.labels.a=b: `a=b` is not valid: a label key is 1 to 253 printable ASCII characters without `=` or `,`"),
        case("annotations", |v| v["metadata"]["annotations"] = json!({"note": "x".repeat(64 * 1024)}),
            Model(|p| p.metadata.annotations = [("note".into(), "x".repeat(64 * 1024))].into()),
            "metadata.annotations: is too long: 65540 is more than the limit of 65536"),
    ]
}

#[test]
fn every_bound_is_refused_alike_by_the_json_reader_and_validate() {
    let base_policy = PolicyDocument::from_value(&base()).unwrap();
    assert_eq!(validate(&base_policy), Ok(()));

    let cases = cases();
    assert!(cases.len() >= 25);
    for case in cases {
        let mut document = base();
        (case.json)(&mut document);
        let from_json = PolicyDocument::from_value(&document)
            .err()
            .unwrap_or_else(|| panic!("{}: the JSON reader accepted it", case.field));
        assert_eq!(from_json.to_string(), case.message, "{}: JSON", case.field);
        if let Compact::Model(set) = case.compact {
            let mut policy = PolicyDocument::from_value(&base()).unwrap();
            set(&mut policy);
            assert_eq!(
                validate(&policy),
                Err(from_json),
                "{}: validate",
                case.field
            );
        }
    }
}
