//! The one semantic validation of a policy: every bound, form and cross-field rule a
//! [`PolicyDocument`] must meet, whichever reader built it.
//!
//! [`validate`] walks the model and reports every problem with its field path. The JSON/YAML
//! reader calls it on each document it has built, and the control plane on each policy before
//! it stores it; proxies get policies in their sidecar form, built from validated documents,
//! and check only that form's invariants ([`crate::wire::compact`]). The JSON/YAML reader also
//! calls the field checks below where it reads each field, so a document that cannot be built
//! at all (a wrong type beside a bad value) still gets every problem reported, in reading
//! order; each rule still lives only here.
//!
//! What the model's types already bound (a [`Percentage`] is at most 100 %, a status fits a
//! `u16`) is checked here on the wider number a reader holds before it narrows it
//! ([`http_status`], [`grpc_status`], [`priority`]).

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use super::error::{FieldError, FieldErrorKind, ValidationErrors};
use super::guard::{
    Comparison, Guard, MAX_FAILURE_LIMIT, MAX_GUARDS, MAX_INTERVAL_SECONDS, MAX_QUERY_LEN,
};
use super::name::{check_name, is_header_name, is_header_value, namespace_problem};
use super::{
    Abort, Delay, Fault, PolicyDocument, RequestMatch, SourceMatch, StringMatch, Window,
    MAX_ANNOTATIONS_BYTES, MAX_BODY_BYTES, MAX_DELAY_MS, MAX_DURATION_SECONDS, MAX_HEADERS,
    MAX_HEARTBEAT_SECONDS, MAX_LABEL_LEN, MAX_METADATA_ENTRIES, MAX_REGEX_LEN, MAX_RULES,
};
use crate::pattern::Pattern;

/// The range of `fixed_delay_ms`, `jitter_ms` and `start_delay_ms`, as messages show it.
pub(crate) const DELAY_RANGE: &str = "0..=300000";
/// The range of `duration_seconds`, as messages show it.
pub(crate) const DURATION_RANGE: &str = "0..=2592000";
/// The range of `percentage`, as messages show it.
pub(crate) const PERCENT_RANGE: &str = "0..=100";
/// The range of `abort.httpStatus`, as messages show it.
pub(crate) const HTTP_STATUS_RANGE: &str = "200..=599";
/// The range of `abort.grpcStatus`, as messages show it.
pub(crate) const GRPC_STATUS_RANGE: &str = "0..=16";
/// The range of `spec.heartbeat_seconds`, as messages show it.
pub(crate) const HEARTBEAT_RANGE: &str = "1..=86400";
/// The range of `spec.guards[].interval_seconds`, as messages show it.
pub(crate) const INTERVAL_RANGE: &str = "1..=3600";
/// The range of `spec.guards[].failure_limit`, as messages show it.
pub(crate) const FAILURE_LIMIT_RANGE: &str = "1..=100";
/// The range of `spec.priority`, as messages show it.
pub(crate) const PRIORITY_RANGE: &str = "-2147483648..=2147483647";

/// Checks a policy: `Ok` when it meets every rule, else every problem with its field path
/// (`spec.rules[0].fault.delay.fixed_delay_ms: `400000` is outside 0..=300000`).
pub fn validate(policy: &PolicyDocument) -> Result<(), ValidationErrors> {
    let mut problems = Problems(Vec::new());
    problems.policy(policy);
    if problems.0.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(problems.0))
    }
}

/// A field path, written out only when a problem is reported there.
#[derive(Clone, Copy)]
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    step: Step<'a>,
}

#[derive(Clone, Copy)]
enum Step<'a> {
    Field(&'a str),
    Index(usize),
}

impl<'a> Path<'a> {
    const fn top(field: &'a str) -> Path<'a> {
        Path {
            parent: None,
            step: Step::Field(field),
        }
    }

    fn field(&'a self, field: &'a str) -> Path<'a> {
        Path {
            parent: Some(self),
            step: Step::Field(field),
        }
    }

    fn index(&'a self, i: usize) -> Path<'a> {
        Path {
            parent: Some(self),
            step: Step::Index(i),
        }
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(parent) = self.parent {
            parent.fmt(f)?;
        }
        match (self.parent, self.step) {
            (None, Step::Field(name)) => f.write_str(name),
            (Some(_), Step::Field(name)) => write!(f, ".{name}"),
            (_, Step::Index(i)) => write!(f, "[{i}]"),
        }
    }
}

struct Problems(Vec<FieldError>);

impl Problems {
    /// Records `result`'s problem at `at`; whether there was none.
    fn check<T>(&mut self, at: Path<'_>, result: Result<T, FieldErrorKind>) -> bool {
        match result {
            Ok(_) => true,
            Err(kind) => {
                self.0.push(FieldError {
                    path: at.to_string(),
                    kind,
                });
                false
            }
        }
    }

    /// Records keyed problems of a map at `at` (`None`: the map itself).
    fn keyed(&mut self, at: Path<'_>, problems: Vec<(Option<&str>, FieldErrorKind)>) {
        for (key, kind) in problems {
            match key {
                None => self.check::<()>(at, Err(kind)),
                Some(key) => self.check::<()>(at.field(key), Err(kind)),
            };
        }
    }

    fn policy(&mut self, policy: &PolicyDocument) {
        let m = &policy.metadata;
        let metadata = Path::top("metadata");
        self.check(metadata.field("name"), name(&m.name));
        if let Some(ns) = &m.namespace {
            self.check(metadata.field("namespace"), namespace(ns));
        }
        self.keyed(metadata.field("labels"), labels(&m.labels));
        self.keyed(metadata.field("annotations"), annotations(&m.annotations));

        let s = &policy.spec;
        let spec = Path::top("spec");
        let rules = spec.field("rules");
        if self.check(rules, rule_count(s.rules.len())) {
            for (i, rule) in s.rules.iter().enumerate() {
                let at = rules.index(i);
                self.request_match(at.field("match"), &rule.matches);
                self.fault(at.field("fault"), &rule.fault);
            }
        }
        if let Some(w) = &s.window {
            self.check(spec.field("window").field("end"), window(w));
        }
        if let Some(seconds) = s.heartbeat_seconds {
            self.check(spec.field("heartbeat_seconds"), heartbeat_seconds(seconds));
        }
        let guards = spec.field("guards");
        if self.check(guards, guard_count(s.guards.len())) {
            for (i, guard) in s.guards.iter().enumerate() {
                self.guard(guards.index(i), guard);
            }
            for (i, kind) in guard_names(s.guards.iter().map(|g| g.name.as_str())) {
                self.check::<()>(guards.index(i).field("name"), Err(kind));
            }
        }
    }

    fn guard(&mut self, at: Path<'_>, guard: &Guard) {
        self.check(at.field("name"), guard_name(&guard.name));
        self.check(at.field("query"), guard_query(&guard.query));
        self.check(
            at.field("interval_seconds"),
            interval_seconds(guard.interval_seconds),
        );
        self.check(
            at.field("failure_limit"),
            failure_limit(guard.failure_limit),
        );
    }

    fn string_match(&mut self, at: Path<'_>, m: &StringMatch) {
        if let StringMatch::Regex(pattern) = m {
            self.check(at.field("regex"), regex(pattern));
        }
    }

    fn request_match(&mut self, at: Path<'_>, m: &RequestMatch) {
        if let Some(method) = &m.method {
            self.string_match(at.field("method"), method);
        }
        if let Some(path) = &m.path {
            self.string_match(at.field("path"), path);
        }
        let headers = at.field("headers");
        if self.check(headers, header_count(m.headers.len())) {
            for (i, header) in m.headers.iter().enumerate() {
                let item = headers.index(i);
                self.check(item.field("name"), lower_case_header_name(&header.name));
                self.string_match(item, &header.value);
            }
        }
        if let Some(source) = &m.source {
            self.source(at.field("source"), source);
        }
        self.check(at, has_condition(m));
    }

    fn source(&mut self, at: Path<'_>, source: &SourceMatch) {
        let names = [
            ("service", &source.service, 63),
            ("namespace", &source.namespace, 63),
            ("serviceAccount", &source.service_account, 253),
        ];
        for (field, value, max) in names {
            if let Some(value) = value {
                self.check(at.field(field), source_name(value, max));
            }
        }
        self.check(at, source_not_empty(source));
    }

    fn fault(&mut self, at: Path<'_>, fault: &Fault) {
        self.check(at.field("start_delay_ms"), delay_ms(fault.start_delay_ms));
        self.check(
            at.field("duration_seconds"),
            duration_seconds(fault.duration_seconds),
        );
        if let Some(delay) = &fault.delay {
            self.delay(at.field("delay"), delay);
        }
        if let Some(abort) = &fault.abort {
            self.abort(at.field("abort"), abort);
        }
        let abort = fault.abort.is_some();
        self.check(at.field("reset"), reset_without_abort(fault.reset, abort));
        self.check(at, has_action(fault.delay.is_some(), abort, fault.reset));
    }

    fn delay(&mut self, at: Path<'_>, delay: &Delay) {
        let fixed = self.check(at.field("fixed_delay_ms"), delay_ms(delay.fixed_delay_ms));
        let jitter = self.check(at.field("jitter_ms"), delay_ms(delay.jitter_ms));
        if fixed && jitter {
            self.check(at.field("jitter_ms"), jitter_within_delay(delay));
        }
    }

    fn abort(&mut self, at: Path<'_>, abort: &Abort) {
        self.check(
            at.field("httpStatus"),
            http_status(abort.http_status.into()),
        );
        if let Some(grpc) = abort.grpc_status {
            self.check(at.field("grpcStatus"), grpc_status(grpc.into()));
        }
        if let Some(text) = &abort.body {
            self.check(at.field("body"), body(text));
        }
        let headers = at.field("headers");
        if self.check(headers, header_count(abort.headers.len())) {
            for (name, value) in &abort.headers {
                let item = headers.field(name);
                if self.check(item, lower_case_header_name(name)) {
                    self.check(item, response_header(name, value));
                }
            }
        }
    }
}

/// `metadata.name`: the one rule for policy names ([`check_name`]).
pub(crate) fn name(name: &str) -> Result<(), FieldErrorKind> {
    check_name(name)
}

/// `metadata.namespace`: a DNS-1123 label, upper case and `_` allowed as in names.
pub(crate) fn namespace(namespace: &str) -> Result<(), FieldErrorKind> {
    match namespace_problem(namespace) {
        None => Ok(()),
        Some(reason) => Err(FieldErrorKind::BadValue {
            value: namespace.to_string(),
            reason,
        }),
    }
}

/// `metadata.labels`: at most [`MAX_METADATA_ENTRIES`]; selected with
/// `-l key=value[,key=value]`, so keys hold no `=`, `,` or space and values no `,`. Each
/// problem with the key it concerns (`None`: the map).
pub(crate) fn labels(labels: &BTreeMap<String, String>) -> Vec<(Option<&str>, FieldErrorKind)> {
    let mut problems = Vec::new();
    if let Err(kind) = entry_count(labels.len()) {
        problems.push((None, kind));
        return problems;
    }
    for (key, value) in labels {
        let key_ok = !key.is_empty()
            && key.len() <= MAX_LABEL_LEN
            && key
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'=' && b != b',');
        let value_ok = value.len() <= MAX_LABEL_LEN
            && value.bytes().all(|b| b.is_ascii_graphic() && b != b',');
        let checks = [
            (
                key,
                key_ok,
                "a label key is 1 to 253 printable ASCII characters without `=` or `,`",
            ),
            (
                value,
                value_ok,
                "a label value is at most 253 printable ASCII characters without `,`",
            ),
        ];
        for (text, ok, reason) in checks {
            if !ok {
                let kind = FieldErrorKind::BadValue {
                    value: text.clone(),
                    reason,
                };
                problems.push((Some(key.as_str()), kind));
            }
        }
    }
    problems
}

/// `metadata.annotations`: at most [`MAX_METADATA_ENTRIES`] entries and
/// [`MAX_ANNOTATIONS_BYTES`] of keys and values.
pub(crate) fn annotations(
    annotations: &BTreeMap<String, String>,
) -> Vec<(Option<&str>, FieldErrorKind)> {
    let bytes: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    entry_count(annotations.len())
        .and_then(|()| within(bytes, MAX_ANNOTATIONS_BYTES))
        .err()
        .map(|kind| (None, kind))
        .into_iter()
        .collect()
}

fn entry_count(len: usize) -> Result<(), FieldErrorKind> {
    within(len, MAX_METADATA_ENTRIES)
}

fn within(len: usize, limit: usize) -> Result<(), FieldErrorKind> {
    if len > limit {
        return Err(FieldErrorKind::TooLong { len, limit });
    }
    Ok(())
}

/// `spec.rules`: 1 to [`MAX_RULES`] rules.
pub(crate) fn rule_count(len: usize) -> Result<(), FieldErrorKind> {
    within(len, MAX_RULES)?;
    if len == 0 {
        return Err(FieldErrorKind::Empty);
    }
    Ok(())
}

/// `spec.priority`: a 32-bit integer.
pub(crate) fn priority(priority: i64) -> Result<i32, FieldErrorKind> {
    i32::try_from(priority).map_err(|_| FieldErrorKind::OutOfRange {
        value: priority.to_string(),
        range: PRIORITY_RANGE,
    })
}

/// `spec.window`: its end after its start.
pub(crate) fn window(window: &Window) -> Result<(), FieldErrorKind> {
    if window.end_ms <= window.start_ms {
        return Err(FieldErrorKind::WindowEndsBeforeStart {
            start: crate::time::format_rfc3339(window.start_ms),
            end: crate::time::format_rfc3339(window.end_ms),
        });
    }
    Ok(())
}

/// `match`: at least one condition.
pub(crate) fn has_condition(m: &RequestMatch) -> Result<(), FieldErrorKind> {
    if m.method.is_none() && m.path.is_none() && m.headers.is_empty() && m.source.is_none() {
        return Err(FieldErrorKind::NoCondition);
    }
    Ok(())
}

/// `match.headers` and `abort.headers`: at most [`MAX_HEADERS`].
pub(crate) fn header_count(len: usize) -> Result<(), FieldErrorKind> {
    within(len, MAX_HEADERS)
}

/// A header name as written: an HTTP token (RFC 9110), or a pseudo-header such as
/// `:authority` (refused where a response header is meant, by [`response_header`]).
pub(crate) fn header_name(name: &str) -> Result<(), FieldErrorKind> {
    if !is_header_name(name) {
        return Err(bad_header_name(name));
    }
    Ok(())
}

/// A header name as the model holds it: a [`header_name`], lower-cased (as the JSON reader
/// leaves it).
fn lower_case_header_name(name: &str) -> Result<(), FieldErrorKind> {
    header_name(name)?;
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(bad_header_name(name));
    }
    Ok(())
}

fn bad_header_name(name: &str) -> FieldErrorKind {
    FieldErrorKind::BadHeaderName {
        value: name.to_string(),
    }
}

/// One `abort.headers` entry whose name is a [`header_name`]: no pseudo-header, a value
/// without CR, LF or NUL.
pub(crate) fn response_header(name: &str, value: &str) -> Result<(), FieldErrorKind> {
    if name.starts_with(':') {
        return Err(bad_header_name(name));
    }
    if !is_header_value(value) {
        return Err(FieldErrorKind::BadHeaderValue);
    }
    Ok(())
}

/// A `match.source` name: a Kubernetes object name of at most `max` characters. A name
/// outside these rules could never appear in a workload certificate, so a policy with one
/// would silently never fire.
pub(crate) fn source_name(name: &str, max: usize) -> Result<(), FieldErrorKind> {
    match source_name_problem(name, max) {
        None => Ok(()),
        Some(reason) => Err(FieldErrorKind::BadSourceName {
            value: name.to_string(),
            reason,
        }),
    }
}

fn source_name_problem(name: &str, max: usize) -> Option<&'static str> {
    if name.is_empty() {
        return Some("it must not be empty (leave the field out to match any)");
    }
    if name == "*" {
        return Some("wildcards are not supported (leave the field out to match any)");
    }
    if name.len() > max {
        return Some(if max == 63 {
            "it must be at most 63 characters long"
        } else {
            "it must be at most 253 characters long"
        });
    }
    let dots_allowed = max > 63;
    if !name.bytes().all(|b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (dots_allowed && b == b'.')
    }) {
        return Some(if dots_allowed {
            "only lower-case letters, digits, `-` and `.` are allowed"
        } else {
            "only lower-case letters, digits and `-` are allowed"
        });
    }
    let edge = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    if !edge(name.bytes().next()) || !edge(name.bytes().last()) {
        return Some("it must start and end with a letter or digit");
    }
    None
}

/// `match.source`: at least one field.
pub(crate) fn source_not_empty(source: &SourceMatch) -> Result<(), FieldErrorKind> {
    if source.service.is_none() && source.namespace.is_none() && source.service_account.is_none() {
        return Err(FieldErrorKind::EmptySource);
    }
    Ok(())
}

/// A `regex` matcher: one that compiles within the bounds every regex in a policy obeys.
pub(crate) fn regex(pattern: &str) -> Result<(), FieldErrorKind> {
    build_regex(pattern).map(|_| ())
}

/// Compiles a pattern with the bounds every regex in a policy obeys.
pub(crate) fn build_regex(pattern: &str) -> Result<Pattern, FieldErrorKind> {
    within(pattern.len(), MAX_REGEX_LEN)?;
    Pattern::new(pattern).map_err(|e| FieldErrorKind::BadRegex {
        pattern: pattern.to_string(),
        reason: e.to_string(),
    })
}

/// `fault`: at least one of a delay, an abort and a reset.
pub(crate) fn has_action(delay: bool, abort: bool, reset: bool) -> Result<(), FieldErrorKind> {
    if !delay && !abort && !reset {
        return Err(FieldErrorKind::NoAction);
    }
    Ok(())
}

/// `fault.reset`: never beside an abort (a reset sends no answer; an abort is one).
pub(crate) fn reset_without_abort(reset: bool, abort: bool) -> Result<(), FieldErrorKind> {
    if reset && abort {
        return Err(FieldErrorKind::ResetWithAbort);
    }
    Ok(())
}

/// `spec.heartbeat_seconds`: 1..=[`MAX_HEARTBEAT_SECONDS`].
pub(crate) fn heartbeat_seconds(seconds: u64) -> Result<(), FieldErrorKind> {
    if seconds == 0 {
        return Err(FieldErrorKind::OutOfRange {
            value: seconds.to_string(),
            range: HEARTBEAT_RANGE,
        });
    }
    at_most(seconds, MAX_HEARTBEAT_SECONDS, HEARTBEAT_RANGE)
}

/// `fixed_delay_ms`, `jitter_ms` and `start_delay_ms`: at most [`MAX_DELAY_MS`].
pub(crate) fn delay_ms(ms: u64) -> Result<(), FieldErrorKind> {
    at_most(ms, MAX_DELAY_MS, DELAY_RANGE)
}

/// `duration_seconds`: at most [`MAX_DURATION_SECONDS`].
pub(crate) fn duration_seconds(seconds: u64) -> Result<(), FieldErrorKind> {
    at_most(seconds, MAX_DURATION_SECONDS, DURATION_RANGE)
}

fn at_most(value: u64, max: u64, range: &'static str) -> Result<(), FieldErrorKind> {
    if value > max {
        return Err(FieldErrorKind::OutOfRange {
            value: value.to_string(),
            range,
        });
    }
    Ok(())
}

/// `spec.guards`: at most [`MAX_GUARDS`].
pub(crate) fn guard_count(len: usize) -> Result<(), FieldErrorKind> {
    within(len, MAX_GUARDS)
}

/// `spec.guards[].name`: a DNS-1123 label (upper case and `_` allowed, as namespaces).
pub(crate) fn guard_name(name: &str) -> Result<(), FieldErrorKind> {
    match namespace_problem(name) {
        None => Ok(()),
        Some(_) => Err(FieldErrorKind::BadValue {
            value: name.to_string(),
            reason: "a guard name is 1 to 63 letters, digits, `-` or `_`, not starting or ending with `-`",
        }),
    }
}

/// `spec.guards[].name` across the guards of a policy: each name once. Each problem with the
/// index of the guard that repeats a name.
pub(crate) fn guard_names<'a>(
    names: impl Iterator<Item = &'a str>,
) -> Vec<(usize, FieldErrorKind)> {
    let mut seen = alloc::collections::BTreeSet::new();
    names
        .enumerate()
        .filter(|(_, name)| !seen.insert(*name))
        .map(|(i, name)| {
            let kind = FieldErrorKind::DuplicateGuardName {
                value: name.to_string(),
            };
            (i, kind)
        })
        .collect()
}

/// `spec.guards[].query`: at most [`MAX_QUERY_LEN`] bytes of PromQL (the syntax is checked
/// with the `std` feature only: sidecars, which build the core without it, never get guards).
pub(crate) fn guard_query(query: &str) -> Result<(), FieldErrorKind> {
    within(query.len(), MAX_QUERY_LEN)?;
    if query.trim().is_empty() {
        return Err(FieldErrorKind::Empty);
    }
    match super::guard::query_problem(query) {
        None => Ok(()),
        Some(reason) => Err(FieldErrorKind::BadQuery {
            query: query.to_string(),
            reason,
        }),
    }
}

/// `spec.guards[].success_condition` / `failure_condition`: `result <operator> <number>`.
pub(crate) fn guard_condition(text: &str) -> Result<Comparison, FieldErrorKind> {
    Comparison::parse(text).map_err(|_| FieldErrorKind::BadCondition {
        value: text.to_string(),
    })
}

/// `spec.guards[].interval_seconds`: 1..=[`MAX_INTERVAL_SECONDS`].
pub(crate) fn interval_seconds(seconds: u64) -> Result<(), FieldErrorKind> {
    between(seconds, 1, MAX_INTERVAL_SECONDS, INTERVAL_RANGE)
}

/// `spec.guards[].failure_limit`: 1..=[`MAX_FAILURE_LIMIT`].
pub(crate) fn failure_limit(limit: u64) -> Result<(), FieldErrorKind> {
    between(limit, 1, MAX_FAILURE_LIMIT, FAILURE_LIMIT_RANGE)
}

fn between(value: u64, min: u64, max: u64, range: &'static str) -> Result<(), FieldErrorKind> {
    if value < min {
        return Err(FieldErrorKind::OutOfRange {
            value: value.to_string(),
            range,
        });
    }
    at_most(value, max, range)
}

/// `delay.jitter_ms`: no larger than the delay it varies.
pub(crate) fn jitter_within_delay(delay: &Delay) -> Result<(), FieldErrorKind> {
    if delay.jitter_ms > delay.fixed_delay_ms {
        return Err(FieldErrorKind::JitterAboveDelay {
            jitter: delay.jitter_ms,
            fixed: delay.fixed_delay_ms,
        });
    }
    Ok(())
}

/// `abort.httpStatus`: 200..=599.
pub(crate) fn http_status(status: u64) -> Result<u16, FieldErrorKind> {
    match u16::try_from(status) {
        Ok(s) if super::HTTP_STATUSES.contains(&s) => Ok(s),
        _ => Err(FieldErrorKind::OutOfRange {
            value: status.to_string(),
            range: HTTP_STATUS_RANGE,
        }),
    }
}

/// `abort.grpcStatus`: 0..=16.
pub(crate) fn grpc_status(status: u64) -> Result<u8, FieldErrorKind> {
    match u8::try_from(status) {
        Ok(s) if s <= super::MAX_GRPC_STATUS => Ok(s),
        _ => Err(FieldErrorKind::OutOfRange {
            value: status.to_string(),
            range: GRPC_STATUS_RANGE,
        }),
    }
}

/// `abort.body`: at most [`MAX_BODY_BYTES`].
pub(crate) fn body(body: &str) -> Result<(), FieldErrorKind> {
    within(body.len(), MAX_BODY_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PPM_SCALE;

    #[test]
    fn ranges_say_the_bounds() {
        assert_eq!(DELAY_RANGE, alloc::format!("0..={MAX_DELAY_MS}"));
        assert_eq!(DURATION_RANGE, alloc::format!("0..={MAX_DURATION_SECONDS}"));
        assert_eq!(
            HEARTBEAT_RANGE,
            alloc::format!("1..={MAX_HEARTBEAT_SECONDS}")
        );
        assert_eq!(PERCENT_RANGE, alloc::format!("0..={}", PPM_SCALE / 10_000));
        let statuses = super::super::HTTP_STATUSES;
        assert_eq!(
            HTTP_STATUS_RANGE,
            alloc::format!("{}..={}", statuses.start(), statuses.end())
        );
        assert_eq!(
            GRPC_STATUS_RANGE,
            alloc::format!("0..={}", super::super::MAX_GRPC_STATUS)
        );
        assert_eq!(
            PRIORITY_RANGE,
            alloc::format!("{}..={}", i32::MIN, i32::MAX)
        );
    }

    #[test]
    fn paths_are_written_as_documents_name_fields() {
        let spec = Path::top("spec");
        let rules = spec.field("rules");
        let rule = rules.index(3);
        assert_eq!(
            rule.field("fault").field("delay").to_string(),
            "spec.rules[3].fault.delay"
        );
        assert_eq!(spec.to_string(), "spec");
    }
}
