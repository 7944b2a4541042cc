//! Reading policy documents from JSON values, JSON text and YAML text.

use alloc::borrow::ToOwned;
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde_json::{Map, Value};

use super::error::{FieldErrorKind, PolicyError, ValidationErrors};
use super::guard::{
    Guard, GuardCondition, GuardState, OnError, Trip, DEFAULT_FAILURE_LIMIT,
    DEFAULT_INTERVAL_SECONDS,
};
use super::validate::{self, validate};
use super::*;
use crate::parse::{index, join, Walker};

const DOCUMENT_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];
const METADATA_FIELDS: &[&str] = &["name", "version", "namespace", "labels", "annotations"];
const SPEC_FIELDS: &[&str] = &[
    "selector",
    "rules",
    "sampling",
    "window",
    "priority",
    "enabled",
    "heartbeat_seconds",
    "guards",
];
const GUARD_FIELDS: &[&str] = &[
    "name",
    "query",
    "success_condition",
    "failure_condition",
    "interval_seconds",
    "failure_limit",
    "on_error",
];
const SELECTOR_FIELDS: &[&str] = &["service", "namespace", "labels"];
const RULE_FIELDS: &[&str] = &["match", "fault"];
const MATCH_FIELDS: &[&str] = &["method", "path", "headers", "source"];
// `labels` is read only to refuse it with a reason rather than as an unknown field.
const SOURCE_FIELDS: &[&str] = &["service", "namespace", "serviceAccount", "labels"];
const STRING_MATCH_FIELDS: &[&str] = &["exact", "prefix", "regex"];
const HEADER_MATCH_FIELDS: &[&str] = &["name", "exact", "prefix", "regex"];
const FAULT_FIELDS: &[&str] = &[
    "percentage",
    "start_delay_ms",
    "duration_seconds",
    "target",
    "delay",
    "abort",
    "reset",
];
const DELAY_FIELDS: &[&str] = &["fixed_delay_ms", "jitter_ms"];
const ABORT_FIELDS: &[&str] = &["httpStatus", "grpcStatus", "body", "headers"];
const WINDOW_FIELDS: &[&str] = &["start", "end"];
// `state` is derived (written by listings for people) and ignored on input.
const STATUS_FIELDS: &[&str] = &[
    "stored_at_ms",
    "expires_at_ms",
    "revision",
    "state",
    "guard",
];
const GUARD_STATE_FIELDS: &[&str] = &["state", "guard", "value", "at_ms"];

impl PolicyDocument {
    /// Reads and validates one document, reporting every problem with its field path.
    ///
    /// The walk calls [`validate`]'s field checks where it reads each field, so a document
    /// that cannot be built still gets every problem reported in reading order; the document
    /// it builds then goes through [`validate`] itself, the check every reader ends with.
    pub fn from_value(value: &Value) -> Result<PolicyDocument, ValidationErrors> {
        let mut w = Walker::default();
        let document = read_document(&mut w, value);
        match document {
            Some(document) if w.errors.is_empty() => validate(&document).map(|()| document),
            _ => Err(ValidationErrors(w.errors)),
        }
    }
}

impl<'de> serde::Deserialize<'de> for PolicyDocument {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        PolicyDocument::from_value(&value).map_err(serde::de::Error::custom)
    }
}

/// Parses one JSON policy document.
pub fn parse_policy_json(text: &str) -> Result<PolicyDocument, PolicyError> {
    let value: Value = serde_json::from_str(text).map_err(json_syntax)?;
    PolicyDocument::from_value(&value).map_err(|errors| invalid(1, &value, errors))
}

/// Parses JSON holding one policy, a list of policies, or `{"policies": [...]}` (the API's list
/// answer, so `get -o json` output can be applied again).
pub fn parse_policies_json(text: &str) -> Result<Vec<PolicyDocument>, Vec<PolicyError>> {
    let value: Value = serde_json::from_str(text).map_err(|e| alloc::vec![json_syntax(e)])?;
    let documents: Vec<Value> = match value {
        Value::Array(items) => items,
        Value::Object(mut map) if map.len() == 1 && map.contains_key("policies") => {
            match map.remove("policies") {
                Some(Value::Array(items)) => items,
                Some(other) => alloc::vec![other],
                None => Vec::new(),
            }
        }
        other => alloc::vec![other],
    };
    read_all(documents.iter())
}

/// Parses YAML with one or more `---`-separated documents (empty documents are skipped).
#[cfg(feature = "std")]
pub fn parse_policies_yaml(text: &str) -> Result<Vec<PolicyDocument>, Vec<PolicyError>> {
    use serde::Deserialize;
    let mut values = Vec::new();
    for document in serde_norway::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(|e| {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            alloc::vec![syntax(line, column, &e.to_string())]
        })?;
        if !value.is_null() {
            values.push(value);
        }
    }
    read_all(values.iter())
}

/// Parses JSON or YAML, choosing by the first non-blank character (`{` or `[` means JSON).
#[cfg(feature = "std")]
pub fn parse_policies_text(text: &str) -> Result<Vec<PolicyDocument>, Vec<PolicyError>> {
    match text.trim_start().chars().next() {
        Some('{') | Some('[') => parse_policies_json(text),
        _ => parse_policies_yaml(text),
    }
}

fn read_all<'a>(
    values: impl Iterator<Item = &'a Value>,
) -> Result<Vec<PolicyDocument>, Vec<PolicyError>> {
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    for (i, value) in values.enumerate() {
        match PolicyDocument::from_value(value) {
            Ok(document) => documents.push(document),
            Err(e) => errors.push(invalid(i + 1, value, e)),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if documents.is_empty() {
        return Err(alloc::vec![PolicyError::NoDocument]);
    }
    Ok(documents)
}

fn invalid(document: usize, value: &Value, errors: ValidationErrors) -> PolicyError {
    let name = value
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .map(ToOwned::to_owned);
    PolicyError::Invalid {
        document,
        name,
        errors,
    }
}

fn json_syntax(e: serde_json::Error) -> PolicyError {
    syntax(e.line(), e.column(), &e.to_string())
}

/// A syntax error whose message does not repeat the position the error already carries.
pub(crate) fn syntax(line: usize, column: usize, message: &str) -> PolicyError {
    let position = alloc::format!(" at line {line} column {column}");
    PolicyError::Syntax {
        line,
        column,
        message: message.replacen(&position, "", 1),
    }
}

fn read_document(w: &mut Walker, value: &Value) -> Option<PolicyDocument> {
    let map = w.object(value, "", DOCUMENT_FIELDS)?;
    if let Some(v) = Walker::field(map, "apiVersion") {
        fixed_value(w, v, "apiVersion", API_VERSION);
    }
    if let Some(v) = Walker::field(map, "kind") {
        fixed_value(w, v, "kind", KIND);
    }
    let metadata = w
        .required(map, "", "metadata")
        .and_then(|v| read_metadata(w, v));
    let spec = w.required(map, "", "spec").and_then(|v| read_spec(w, v));
    // `status` is the control plane's to write; it is read so sidecars learn `stored_at_ms`,
    // and the control plane replaces whatever a client sent.
    let guards = spec.as_ref().map_or(&[][..], |s| s.guards.as_slice());
    let status = match Walker::field(map, "status") {
        None => Some(None),
        Some(v) => read_status_block(w, v, guards).map(Some),
    };
    Some(PolicyDocument {
        metadata: metadata?,
        spec: spec?,
        status: status?,
    })
}

fn fixed_value(w: &mut Walker, value: &Value, path: &str, expected: &'static str) {
    if let Some(s) = w.string(value, path) {
        if s != expected {
            w.error(path, FieldErrorKind::UnexpectedValue { value: s, expected });
        }
    }
}

fn read_metadata(w: &mut Walker, value: &Value) -> Option<Metadata> {
    let map = w.object(value, "metadata", METADATA_FIELDS)?;
    let name = w
        .required(map, "metadata", "name")
        .and_then(|v| w.string(v, "metadata.name"));
    if let Some(name) = &name {
        w.check("metadata.name", validate::name(name));
    }
    let version = match Walker::field(map, "version") {
        // Versions are often written unquoted (`version: 1.0`): keep the text.
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(v) => w.string(v, "metadata.version"),
        None => None,
    };
    let namespace = match Walker::field(map, "namespace") {
        None => Some(None),
        Some(v) => w.string(v, "metadata.namespace").and_then(|ns| {
            w.check("metadata.namespace", validate::namespace(&ns))
                .map(|()| Some(ns))
        }),
    };
    let labels = match Walker::field(map, "labels") {
        None => Some(BTreeMap::new()),
        Some(v) => read_labels(w, v, "metadata.labels"),
    };
    let annotations = match Walker::field(map, "annotations") {
        None => Some(BTreeMap::new()),
        Some(v) => read_annotations(w, v, "metadata.annotations"),
    };
    Some(Metadata {
        name: name?,
        version,
        namespace: namespace?,
        labels: labels?,
        annotations: annotations?,
    })
}

fn read_labels(w: &mut Walker, value: &Value, path: &str) -> Option<BTreeMap<String, String>> {
    let map = w.string_map(value, path)?;
    w.keyed(path, validate::labels(&map)).then_some(map)
}

fn read_annotations(w: &mut Walker, value: &Value, path: &str) -> Option<BTreeMap<String, String>> {
    let map = w.string_map(value, path)?;
    w.keyed(path, validate::annotations(&map)).then_some(map)
}

fn read_spec(w: &mut Walker, value: &Value) -> Option<PolicySpec> {
    let map = w.object(value, "spec", SPEC_FIELDS)?;
    let selector = match Walker::field(map, "selector") {
        Some(v) => read_selector(w, v),
        None => Some(Selector::default()),
    };
    let rules = w
        .required(map, "spec", "rules")
        .and_then(|v| read_rules(w, v));
    let sampling = match Walker::field(map, "sampling") {
        None => Some(Sampling::Random),
        Some(v) => match w.string(v, "spec.sampling").as_deref() {
            None => None,
            Some("random") => Some(Sampling::Random),
            Some("request") => Some(Sampling::Request),
            Some(other) => {
                w.error(
                    "spec.sampling",
                    FieldErrorKind::NotAChoice {
                        value: other.to_owned(),
                        choices: "`random`, `request`",
                    },
                );
                None
            }
        },
    };
    let window = match Walker::field(map, "window") {
        None => Some(None),
        Some(v) => read_window(w, v, "spec.window").map(Some),
    };
    let priority = match Walker::field(map, "priority") {
        None => Some(0),
        Some(v) => read_priority(w, v, "spec.priority"),
    };
    let enabled = match Walker::field(map, "enabled") {
        None => Some(true),
        Some(v) => read_bool(w, v, "spec.enabled"),
    };
    let heartbeat_seconds = match Walker::field(map, "heartbeat_seconds") {
        None => Some(None),
        Some(v) => w
            .bounded_integer(
                v,
                "spec.heartbeat_seconds",
                validate::HEARTBEAT_RANGE,
                validate::heartbeat_seconds,
            )
            .map(Some),
    };
    let guards = match Walker::field(map, "guards") {
        None => Some(Vec::new()),
        Some(v) => read_guards(w, v),
    };
    Some(PolicySpec {
        selector: selector?,
        rules: rules?,
        sampling: sampling?,
        window: window?,
        priority: priority?,
        enabled: enabled?,
        heartbeat_seconds: heartbeat_seconds?,
        guards: guards?,
    })
}

fn read_guards(w: &mut Walker, value: &Value) -> Option<Vec<Guard>> {
    let items = w.array(value, "spec.guards")?;
    w.check("spec.guards", validate::guard_count(items.len()))?;
    let mut guards = Vec::new();
    let mut complete = true;
    for (i, item) in items.iter().enumerate() {
        match read_guard(w, item, &index("spec.guards", i)) {
            Some(guard) => guards.push(guard),
            None => complete = false,
        }
    }
    if complete {
        let names = guards.iter().map(|g| g.name.as_str());
        for (i, problem) in validate::guard_names(names) {
            w.error(join(&index("spec.guards", i), "name"), problem);
        }
    }
    complete.then_some(guards)
}

fn read_guard(w: &mut Walker, value: &Value, path: &str) -> Option<Guard> {
    let map = w.object(value, path, GUARD_FIELDS)?;
    let name = w
        .required(map, path, "name")
        .and_then(|v| w.string(v, &join(path, "name")))
        .and_then(|n| {
            w.check(&join(path, "name"), validate::guard_name(&n))
                .map(|()| n)
        });
    let query = w
        .required(map, path, "query")
        .and_then(|v| w.string(v, &join(path, "query")))
        .and_then(|q| {
            w.check(&join(path, "query"), validate::guard_query(&q))
                .map(|()| q)
        });
    let comparison = |w: &mut Walker, key: &str| {
        w.optional(map, path, key, |w, v, at| {
            let text = w.string(v, at)?;
            w.check(at, validate::guard_condition(&text))
        })
    };
    let success = comparison(w, "success_condition");
    let failure = comparison(w, "failure_condition");
    let condition = match (success?, failure?) {
        (Some(c), None) => Some(GuardCondition::Success(c)),
        (None, Some(c)) => Some(GuardCondition::Failure(c)),
        _ => {
            w.error(path, FieldErrorKind::GuardConditionKind);
            None
        }
    };
    let interval_seconds = match Walker::field(map, "interval_seconds") {
        None => Some(DEFAULT_INTERVAL_SECONDS),
        Some(v) => w.bounded_integer(
            v,
            &join(path, "interval_seconds"),
            validate::INTERVAL_RANGE,
            validate::interval_seconds,
        ),
    };
    let failure_limit = match Walker::field(map, "failure_limit") {
        None => Some(DEFAULT_FAILURE_LIMIT),
        Some(v) => w.bounded_integer(
            v,
            &join(path, "failure_limit"),
            validate::FAILURE_LIMIT_RANGE,
            validate::failure_limit,
        ),
    };
    let on_error = match Walker::field(map, "on_error") {
        None => Some(OnError::Fail),
        Some(v) => {
            let at = join(path, "on_error");
            match w.string(v, &at).as_deref() {
                None => None,
                Some("fail") => Some(OnError::Fail),
                Some("ignore") => Some(OnError::Ignore),
                Some(other) => {
                    w.error(
                        at,
                        FieldErrorKind::NotAChoice {
                            value: other.to_owned(),
                            choices: "`fail`, `ignore`",
                        },
                    );
                    None
                }
            }
        }
    };
    Some(Guard {
        name: name?,
        query: query?,
        condition: condition?,
        interval_seconds: interval_seconds?,
        failure_limit: failure_limit?,
        on_error: on_error?,
    })
}

fn read_priority(w: &mut Walker, value: &Value, path: &str) -> Option<i32> {
    let whole = match value {
        Value::Number(n) => crate::parse::whole_i64(n),
        _ => None,
    };
    match (value, whole) {
        (_, Some(whole)) => w.check(path, validate::priority(whole)),
        (Value::Number(n), _) if n.as_f64().is_some_and(|f| !crate::parse::is_whole(f)) => {
            w.fraction(path);
            None
        }
        (Value::Number(n), _) => {
            w.out_of_range(path, n.to_string(), validate::PRIORITY_RANGE);
            None
        }
        (other, _) => {
            w.error(
                path,
                FieldErrorKind::WrongType {
                    expected: "a whole number",
                    found: crate::parse::type_name(other),
                },
            );
            None
        }
    }
}

fn read_selector(w: &mut Walker, value: &Value) -> Option<Selector> {
    let map = w.object(value, "spec.selector", SELECTOR_FIELDS)?;
    let mut wildcard = |key: &str| -> Option<Option<String>> {
        match Walker::field(map, key) {
            None => Some(None),
            Some(v) => {
                let s = w.string(v, &join("spec.selector", key))?;
                Some(if s.is_empty() || s == "*" {
                    None
                } else {
                    Some(s)
                })
            }
        }
    };
    let service = wildcard("service");
    let namespace = wildcard("namespace");
    let labels = match Walker::field(map, "labels") {
        None => Some(BTreeMap::new()),
        Some(v) => w.string_map(v, "spec.selector.labels"),
    };
    Some(Selector {
        service: service?,
        namespace: namespace?,
        labels: labels?,
    })
}

fn read_rules(w: &mut Walker, value: &Value) -> Option<Vec<Rule>> {
    let items = w.array(value, "spec.rules")?;
    w.check("spec.rules", validate::rule_count(items.len()))?;
    let rules: Vec<Option<Rule>> = items
        .iter()
        .enumerate()
        .map(|(i, item)| read_rule(w, item, &index("spec.rules", i)))
        .collect();
    rules.into_iter().collect()
}

fn read_rule(w: &mut Walker, value: &Value, path: &str) -> Option<Rule> {
    let map = w.object(value, path, RULE_FIELDS)?;
    let matches = w
        .required(map, path, "match")
        .and_then(|v| read_match(w, v, &join(path, "match")));
    let fault = w
        .required(map, path, "fault")
        .and_then(|v| read_fault(w, v, &join(path, "fault")));
    Some(Rule {
        matches: matches?,
        fault: fault?,
    })
}

fn read_match(w: &mut Walker, value: &Value, path: &str) -> Option<RequestMatch> {
    let map = w.object(value, path, MATCH_FIELDS)?;
    let method = w.optional(map, path, "method", read_string_match);
    let path_match = w.optional(map, path, "path", read_string_match);
    let headers = match Walker::field(map, "headers") {
        None => Some(Vec::new()),
        Some(v) => read_header_matches(w, v, &join(path, "headers")),
    };
    let source = w.optional(map, path, "source", read_source);
    let result = RequestMatch {
        method: method?,
        path: path_match?,
        headers: headers?,
        source: source?,
    };
    w.check(path, validate::has_condition(&result))?;
    Some(result)
}

fn read_source(w: &mut Walker, value: &Value, path: &str) -> Option<SourceMatch> {
    let map = w.object(value, path, SOURCE_FIELDS)?;
    if Walker::field(map, "labels").is_some() {
        w.error(
            join(path, "labels"),
            FieldErrorKind::UnverifiableSourceLabels,
        );
    }
    let mut name = |key: &str, max: usize| -> Option<Option<String>> {
        let Some(v) = Walker::field(map, key) else {
            return Some(None);
        };
        let field_path = join(path, key);
        let text = w.string(v, &field_path)?;
        w.check(&field_path, validate::source_name(&text, max))?;
        Some(Some(text))
    };
    // Kubernetes: a namespace is a DNS label (63), a service a DNS label, a service account a
    // DNS subdomain (253).
    let service = name("service", 63);
    let namespace = name("namespace", 63);
    let service_account = name("serviceAccount", 253);
    let source = SourceMatch {
        service: service?,
        namespace: namespace?,
        service_account: service_account?,
    };
    w.check(path, validate::source_not_empty(&source))?;
    Some(source)
}

fn read_string_match(w: &mut Walker, value: &Value, path: &str) -> Option<StringMatch> {
    let map = w.object(value, path, STRING_MATCH_FIELDS)?;
    string_match_of(w, map, path)
}

/// Reads exactly one of `exact`, `prefix`, `regex` from `map`.
fn string_match_of(w: &mut Walker, map: &Map<String, Value>, path: &str) -> Option<StringMatch> {
    let present: Vec<&str> = STRING_MATCH_FIELDS
        .iter()
        .copied()
        .filter(|k| Walker::field(map, k).is_some())
        .collect();
    let [kind] = present.as_slice() else {
        w.error(path, FieldErrorKind::MatcherKind);
        return None;
    };
    let field_path = join(path, kind);
    let text = w.string(Walker::field(map, kind)?, &field_path)?;
    match *kind {
        "exact" => Some(StringMatch::Exact(text)),
        "prefix" => Some(StringMatch::Prefix(text)),
        _ => {
            w.check(&field_path, validate::regex(&text))?;
            Some(StringMatch::Regex(text))
        }
    }
}

fn read_header_matches(w: &mut Walker, value: &Value, path: &str) -> Option<Vec<HeaderMatch>> {
    let items = w.array(value, path)?;
    w.check(path, validate::header_count(items.len()))?;
    let read: Vec<Option<HeaderMatch>> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let item_path = index(path, i);
            let map = w.object(item, &item_path, HEADER_MATCH_FIELDS)?;
            let name = w
                .required(map, &item_path, "name")
                .and_then(|v| header_name(w, v, &join(&item_path, "name")));
            let value = string_match_of(w, map, &item_path);
            Some(HeaderMatch {
                name: name?,
                value: value?,
            })
        })
        .collect();
    read.into_iter().collect()
}

/// A valid HTTP header name (RFC 9110 token), lower-cased; pseudo-headers such as `:authority`
/// are allowed in matches.
fn header_name(w: &mut Walker, value: &Value, path: &str) -> Option<String> {
    let name = w.string(value, path)?;
    w.check(path, validate::header_name(&name))?;
    Some(name.to_ascii_lowercase())
}

fn read_fault(w: &mut Walker, value: &Value, path: &str) -> Option<Fault> {
    let map = w.object(value, path, FAULT_FIELDS)?;
    let percentage = w
        .required(map, path, "percentage")
        .and_then(|v| read_percentage(w, v, &join(path, "percentage")));
    let mut whole_field =
        |key: &str, range, check: fn(u64) -> Result<(), FieldErrorKind>| match Walker::field(
            map, key,
        ) {
            None => Some(0),
            Some(v) => w.bounded_integer(v, &join(path, key), range, check),
        };
    let start_delay_ms = whole_field("start_delay_ms", validate::DELAY_RANGE, validate::delay_ms);
    let duration_seconds = whole_field(
        "duration_seconds",
        validate::DURATION_RANGE,
        validate::duration_seconds,
    );
    let target = w.optional(map, path, "target", read_target);
    let delay = w.optional(map, path, "delay", read_delay);
    let abort = w.optional(map, path, "abort", read_abort);
    let reset = match Walker::field(map, "reset") {
        None => Some(false),
        Some(v) => read_bool(w, v, &join(path, "reset")),
    };
    let has_delay = Walker::field(map, "delay").is_some();
    let has_abort = Walker::field(map, "abort").is_some();
    if let Some(reset) = reset {
        w.check(
            &join(path, "reset"),
            validate::reset_without_abort(reset, has_abort),
        )?;
        w.check(path, validate::has_action(has_delay, has_abort, reset))?;
    }
    let fault = Fault {
        percentage: percentage?,
        start_delay_ms: start_delay_ms?,
        duration_seconds: duration_seconds?,
        target: target?.unwrap_or_default(),
        delay: delay?,
        abort: abort?,
        reset: reset?,
    };
    Some(fault)
}

/// `fault.target`: `request` or `response`; Chaos Mesh's capitalised `Request` and `Response`
/// are read too, so its users' habit works.
fn read_target(w: &mut Walker, value: &Value, path: &str) -> Option<FaultTarget> {
    match w.string(value, path)?.as_str() {
        "request" | "Request" => Some(FaultTarget::Request),
        "response" | "Response" => Some(FaultTarget::Response),
        other => {
            w.error(
                path,
                FieldErrorKind::NotAChoice {
                    value: other.to_owned(),
                    choices: "`request`, `response`",
                },
            );
            None
        }
    }
}

fn read_bool(w: &mut Walker, value: &Value, path: &str) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        other => {
            w.error(
                path,
                FieldErrorKind::WrongType {
                    expected: "true/false",
                    found: crate::parse::type_name(other),
                },
            );
            None
        }
    }
}

/// Reads 0..=100 with at most 4 decimals into parts per million.
fn read_percentage(w: &mut Walker, value: &Value, path: &str) -> Option<Percentage> {
    let Value::Number(n) = value else {
        w.error(
            path,
            FieldErrorKind::WrongType {
                expected: "a number",
                found: crate::parse::type_name(value),
            },
        );
        return None;
    };
    let out_of_range = |w: &mut Walker| {
        w.out_of_range(path, n.to_string(), validate::PERCENT_RANGE);
        None
    };
    if let Some(whole) = n.as_u64() {
        return match u32::try_from(whole) {
            Ok(whole) if whole <= 100 => Percentage::from_ppm(whole * 10_000),
            _ => out_of_range(w),
        };
    }
    let Some(f) = n.as_f64() else {
        return out_of_range(w);
    };
    if !(0.0..=100.0).contains(&f) {
        return out_of_range(w);
    }
    // 0.0001 % steps: the value times 10 000 must be (within float noise) a whole number.
    let scaled = f * 10_000.0;
    let ppm = (scaled + 0.5) as u32; // in 0..=1_000_000: the cast cannot saturate
    let diff = scaled - f64::from(ppm);
    if !(-1e-6..=1e-6).contains(&diff) {
        w.error(
            path,
            FieldErrorKind::TooPrecise {
                value: n.to_string(),
            },
        );
        return None;
    }
    Percentage::from_ppm(ppm)
}

fn read_delay(w: &mut Walker, value: &Value, path: &str) -> Option<Delay> {
    let map = w.object(value, path, DELAY_FIELDS)?;
    let delay_ms = |w: &mut Walker, v: &Value, key: &str| {
        w.bounded_integer(
            v,
            &join(path, key),
            validate::DELAY_RANGE,
            validate::delay_ms,
        )
    };
    let fixed = w
        .required(map, path, "fixed_delay_ms")
        .and_then(|v| delay_ms(w, v, "fixed_delay_ms"));
    let jitter = match Walker::field(map, "jitter_ms") {
        None => Some(0),
        Some(v) => delay_ms(w, v, "jitter_ms"),
    };
    let delay = Delay {
        fixed_delay_ms: fixed?,
        jitter_ms: jitter?,
    };
    w.check(
        &join(path, "jitter_ms"),
        validate::jitter_within_delay(&delay),
    )?;
    Some(delay)
}

fn read_abort(w: &mut Walker, value: &Value, path: &str) -> Option<Abort> {
    let map = w.object(value, path, ABORT_FIELDS)?;
    let http_status = w
        .required(map, path, "httpStatus")
        .and_then(|v| read_status(w, v, &join(path, "httpStatus")));
    let grpc_status = match Walker::field(map, "grpcStatus") {
        None => Some(None),
        Some(v) => {
            let grpc_path = join(path, "grpcStatus");
            w.integer(v, &grpc_path, u64::MAX, validate::GRPC_STATUS_RANGE)
                .and_then(|s| w.check(&grpc_path, validate::grpc_status(s)))
                .map(Some)
        }
    };
    let body = match Walker::field(map, "body") {
        None => Some(None),
        Some(v) => {
            let body_path = join(path, "body");
            w.string(v, &body_path)
                .and_then(|b| w.check(&body_path, validate::body(&b)).map(|()| Some(b)))
        }
    };
    let headers = match Walker::field(map, "headers") {
        None => Some(BTreeMap::new()),
        Some(v) => read_response_headers(w, v, &join(path, "headers")),
    };
    Some(Abort {
        http_status: http_status?,
        grpc_status: grpc_status?,
        body: body?,
        headers: headers?,
    })
}

fn read_status(w: &mut Walker, value: &Value, path: &str) -> Option<u16> {
    let status = w.integer(value, path, u64::MAX, validate::HTTP_STATUS_RANGE)?;
    w.check(path, validate::http_status(status))
}

fn read_response_headers(
    w: &mut Walker,
    value: &Value,
    path: &str,
) -> Option<BTreeMap<String, String>> {
    let map = w.string_map(value, path)?;
    w.check(path, validate::header_count(map.len()))?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (name, header_value) in map {
        let item_path = join(path, &name);
        let checked = validate::header_name(&name)
            .and_then(|()| validate::response_header(&name, &header_value));
        if w.check(&item_path, checked).is_none() {
            ok = false;
            continue;
        }
        out.insert(name.to_ascii_lowercase(), header_value);
    }
    ok.then_some(out)
}

fn read_window(w: &mut Walker, value: &Value, path: &str) -> Option<Window> {
    let map = w.object(value, path, WINDOW_FIELDS)?;
    let mut timestamp = |key: &str| -> Option<u64> {
        let field_path = join(path, key);
        let text = w
            .required(map, path, key)
            .and_then(|v| w.string(v, &field_path))?;
        match crate::time::parse_rfc3339(&text) {
            Some(ms) => Some(ms),
            None => {
                w.error(field_path, FieldErrorKind::BadTimestamp { value: text });
                None
            }
        }
    };
    let start = timestamp("start");
    let end = timestamp("end");
    let window = Window {
        start_ms: start?,
        end_ms: end?,
    };
    w.check(&join(path, "end"), validate::window(&window))?;
    Some(window)
}

fn read_status_block(w: &mut Walker, value: &Value, guards: &[Guard]) -> Option<PolicyStatus> {
    let map = w.object(value, "status", STATUS_FIELDS)?;
    let mut number = |key: &str| match Walker::field(map, key) {
        None => Some(None),
        Some(v) => w
            .integer(v, &join("status", key), u64::MAX, "0..")
            .map(Some),
    };
    let stored_at_ms = number("stored_at_ms");
    let expires_at_ms = number("expires_at_ms");
    let revision = number("revision");
    let guard = match Walker::field(map, "guard") {
        None => Some(None),
        // The control plane writes it and reads it back; a client's is dropped anyway, so one
        // that does not read is left out rather than refused.
        Some(v) => Some(read_guard_state(&mut Walker::default(), v, guards)),
    };
    Some(PolicyStatus {
        stored_at_ms: stored_at_ms?.unwrap_or(0),
        expires_at_ms: expires_at_ms?,
        revision: revision?.unwrap_or(0),
        guard: guard?,
    })
}

/// `status.guard`, as the control plane wrote it.
fn read_guard_state(w: &mut Walker, value: &Value, guards: &[Guard]) -> Option<GuardState> {
    let path = "status.guard";
    let map = w.object(value, path, GUARD_STATE_FIELDS)?;
    let state = w
        .required(map, path, "state")
        .and_then(|v| w.string(v, "status.guard.state"))?;
    match state.as_str() {
        "verifying" => Some(GuardState::Verifying),
        "running" => Some(GuardState::Running),
        "tripped" => {
            let name = w
                .required(map, path, "guard")
                .and_then(|v| w.string(v, "status.guard.guard"))?;
            let Some(index) = guards.iter().position(|g| g.name == name) else {
                w.error(
                    "status.guard.guard",
                    FieldErrorKind::BadValue {
                        value: name,
                        reason: "it names no guard of `spec.guards`",
                    },
                );
                return None;
            };
            let value = match Walker::field(map, "value") {
                None => None,
                Some(Value::Number(n)) => n.as_f64(),
                Some(Value::String(s)) => s.parse::<f64>().ok(),
                Some(_) => None,
            };
            let at_ms = w
                .required(map, path, "at_ms")
                .and_then(|v| w.integer(v, "status.guard.at_ms", u64::MAX, "0.."))?;
            Some(GuardState::Tripped(Trip::new(index, value, at_ms)))
        }
        other => {
            w.error(
                "status.guard.state",
                FieldErrorKind::NotAChoice {
                    value: other.to_owned(),
                    choices: "`verifying`, `running`, `tripped`",
                },
            );
            None
        }
    }
}
