//! Istio's own WasmPlugin test cases (istio/api tests/testdata) through the same checker:
//! the valid ones pass, each invalid one fails for the reason its `_err` names.

use boifi_deploy::check::Problem;
use boifi_deploy::yaml::{load_file, Document};

use crate::support::{checker, testdata};

fn cases(file: &str) -> Vec<(Document, Option<String>)> {
    load_file(&testdata().join("istio-api-testdata").join(file))
        .unwrap()
        .into_iter()
        .map(|mut doc| {
            let expected = doc
                .value
                .as_object_mut()
                .and_then(|m| m.remove("_err"))
                .and_then(|e| e.as_str().map(str::to_owned));
            (doc, expected)
        })
        .collect()
}

/// `spec.match[0].ports[0].number` → `/spec/match/0/ports/0/number`.
fn pointer_of(dotted: &str) -> String {
    let mut out = String::new();
    for part in dotted.split('.') {
        let (name, indexes) = part
            .split_once('[')
            .map_or((part, ""), |(n, rest)| (n, rest));
        out.push('/');
        out.push_str(name);
        for index in indexes.split('[').filter(|s| !s.is_empty()) {
            out.push('/');
            out.push_str(index.trim_end_matches(']'));
        }
    }
    out
}

/// The field path an apiserver message starts with (`spec.url in body ...`, `spec.x: ...`).
fn field_of(expected: &str) -> Option<&str> {
    let end = expected.find(" in body").or_else(|| expected.find(": "))?;
    let field = expected.get(..end)?;
    (field.starts_with("spec") && !field.contains(' ')).then_some(field)
}

fn explains(problem: &Problem, expected: &str) -> bool {
    if problem.message.contains(expected) {
        return true;
    }
    let Some(field) = field_of(expected) else {
        return false;
    };
    let pointer = pointer_of(field);
    if problem.path == pointer {
        return true;
    }
    // `required` is reported on the parent object, naming the missing property.
    let (parent, last) = pointer.rsplit_once('/').unwrap();
    problem.path == parent
        && expected.contains("Required value")
        && problem.message.contains(&format!("\"{last}\""))
}

#[test]
fn istio_valid_wasmplugins_pass() {
    let mut checker = checker();
    let cases = cases("wasm-valid.yaml");
    assert_eq!(cases.len(), 4);
    for (doc, expected) in cases {
        assert_eq!(expected, None);
        let problems = checker.check_document(&doc);
        assert!(
            problems.is_empty(),
            "{} `{}`: {problems:#?}",
            doc.source,
            doc.name()
        );
    }
}

#[test]
fn istio_invalid_wasmplugins_fail_for_the_expected_reason() {
    let mut checker = checker();
    let cases = cases("wasm-invalid.yaml");
    assert_eq!(cases.len(), 15);
    for (doc, expected) in cases {
        let expected = expected.expect("every invalid case names its error");
        let problems = checker.check_document(&doc);
        assert!(
            problems.iter().any(|p| explains(p, &expected)),
            "{} `{}`: expected `{expected}`, got {problems:#?}",
            doc.source,
            doc.name()
        );
    }
}

#[test]
fn apiserver_paths_become_pointers() {
    assert_eq!(
        pointer_of("spec.match[0].ports[0].number"),
        "/spec/match/0/ports/0/number"
    );
    assert_eq!(
        field_of("spec.url in body should be at least 1 chars long"),
        Some("spec.url")
    );
    assert_eq!(field_of("url must have schema one of"), None);
}
