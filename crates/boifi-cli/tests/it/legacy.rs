//! The legacy BOIFI's clients against today's server through boifi-cli: the legacy CLI's flows
//! with its flag names, the documented legacy fields, and one table of names that the server,
//! `validate` and get/delete by URL all accept or refuse alike.

use std::path::Path;

use boifi_core::policy::{parse_policies_text, PolicyDocument};

use crate::server::Server;
use crate::support::{root, transcript};

/// Every example policy file, legacy ones included.
fn example_files() -> Vec<String> {
    boifi_testkit::files::files_under(&root().join("examples/policies"))
        .into_iter()
        .map(|p| p.to_str().unwrap().to_owned())
        .collect()
}

/// `boifi-cli` pointed at `server` the legacy way: `--control-plane-addr`, no environment.
fn legacy_cli(server: &Server, args: &[&str]) -> std::process::Output {
    crate::support::cli()
        .env_remove("BOIFI_SERVER")
        .arg("--control-plane-addr")
        .arg(&server.url)
        .args(args)
        .output()
        .unwrap()
}

fn legacy_ok(server: &Server, args: &[&str]) -> String {
    let output = legacy_cli(server, args);
    assert!(output.status.success(), "{args:?}: {}", transcript(&output));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_legacy_cli_flows_work_with_its_flags() {
    // A Prometheus address (nothing listens there) so the guarded example is taken too.
    let server = Server::start_with(&["--prometheus-url".as_ref(), "http://127.0.0.1:9".as_ref()]);
    let mut names = Vec::new();
    for file in example_files() {
        // `--file` is the legacy spelling of `-f`.
        legacy_ok(&server, &["policy", "apply", "--file", &file]);
        let text = std::fs::read_to_string(&file).unwrap();
        names.extend(
            parse_policies_text(&text)
                .unwrap()
                .iter()
                .map(|p| p.name().to_owned()),
        );
    }
    names.sort();
    let listed = legacy_ok(&server, &["policy", "list"]);
    for name in &names {
        assert!(
            listed.contains(name.as_str()),
            "{name} not listed:\n{listed}"
        );
        let got = legacy_ok(&server, &["policy", "get", name, "-o", "json"]);
        let got = PolicyDocument::from_value(&serde_json::from_str(&got).unwrap()).unwrap();
        assert_eq!(got.name(), name);
        let described = legacy_ok(&server, &["policy", "describe", name]);
        assert!(described.starts_with(&format!("Name:        {name}\n")));
    }
    // The documented legacy fields come back as they were written.
    let file = root().join("examples/policies/legacy/documented-fields.yaml");
    let want = parse_policies_text(&std::fs::read_to_string(file).unwrap()).unwrap();
    let want = want.first().unwrap();
    let stored = server
        .list()
        .into_iter()
        .find(|p| p.name() == want.name())
        .unwrap();
    assert_eq!(stored.metadata, want.metadata);
    assert_eq!(stored.spec, want.spec);
    let described = legacy_ok(&server, &["policy", "describe", want.name()]);
    for line in [
        "Namespace:   demo",
        "Labels:      experiment=42,team=reviews",
        "Annotations: owner=reviews on-call,ticket=CHAOS-42",
        "Priority:    10",
        "Enabled:     false",
        "State:       disabled",
    ] {
        assert!(described.contains(line), "{line} missing:\n{described}");
    }
    // `-l` filters by metadata.labels.
    let only = legacy_ok(
        &server,
        &["policy", "list", "-l", "team=reviews", "-o", "json"],
    );
    let only: serde_json::Value = serde_json::from_str(&only).unwrap();
    let only: Vec<&str> = only["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(only, [want.name()]);
    let none = legacy_ok(
        &server,
        &["policy", "list", "-l", "team=reviews,experiment=7"],
    );
    assert_eq!(none, "no policies\n");

    for name in &names {
        legacy_ok(&server, &["policy", "delete", name]);
    }
    assert!(server.list().is_empty());
}

fn policy_file(dir: &Path, name: &str) -> String {
    let path = dir.join("policy.json");
    let body = serde_json::json!({
        "metadata": {"name": name},
        "spec": {"rules": [{"match": {"path": {"prefix": "/"}},
                            "fault": {"percentage": 1, "abort": {"httpStatus": 503}}}]}
    });
    std::fs::write(&path, body.to_string()).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn names_are_accepted_and_refused_alike_by_server_validate_and_urls() {
    let table = boifi_testkit::names::policy_names();

    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let mut report = String::new();
    for (name, accepted) in &table {
        let file = policy_file(dir.path(), name);
        let validate = server.run(&["validate", "-f", &file]);
        let apply = server.run(&["policy", "apply", "-f", &file]);
        // `--`: a name such as `-dash` is an operand, not a flag.
        let get = server.run(&["policy", "get", "-o", "json", "--", name]);
        let delete = server.run(&["policy", "delete", "--", name]);
        let codes = [&validate, &apply, &get, &delete].map(|o| o.status.code());
        if *accepted {
            assert_eq!(codes, [Some(0); 4], "`{name}`: {}", transcript(&delete));
            let got = String::from_utf8(get.stdout.clone()).unwrap();
            let got = PolicyDocument::from_value(&serde_json::from_str(&got).unwrap()).unwrap();
            assert_eq!(got.name(), name);
        } else {
            assert_eq!(codes, [Some(1); 4], "`{name}`: {}", transcript(&apply));
            let said = transcript(&validate);
            assert!(said.contains("metadata.name"), "`{name}`: {said}");
            let said = transcript(&get);
            assert!(said.contains("policy name"), "`{name}`: {said}");
        }
        report.push_str(&format!(
            "{:<12} {name}\n",
            if *accepted { "accepted" } else { "refused" }
        ));
        assert!(server.list().is_empty(), "`{name}` left something behind");
    }
    eprintln!("{report}");
}
