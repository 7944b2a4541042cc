//! Offline verbs (`validate`, `simulate`) and the error messages of every verb, as snapshots.

use crate::support::{cli, transcript, FIXTURES};

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    boifi_testkit::ports::free_port().unwrap()
}

/// `boifi ARGS FILES…`, each file of the fixtures folder.
fn on_fixtures(args: &[&str], files: &[&str]) -> std::process::Output {
    cli()
        .args(args)
        .args(files.iter().map(|file| format!("{FIXTURES}/{file}")))
        .output()
        .unwrap()
}

#[test]
fn validate_accepts_the_example_corpus() {
    let output = cli()
        .args(["validate", "-R", "-f", "examples/policies"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", transcript(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    // Every document of the multi-document file is read, not only the first.
    assert!(
        stdout.contains("multi-document.yaml: document 2: "),
        "{stdout}"
    );
    assert!(stdout.lines().count() >= 8, "{stdout}");
}

#[test]
fn validate_reports_every_error_with_file_document_and_field_path() {
    let output = on_fixtures(
        &["validate", "-f"],
        &[
            "invalid.yaml",
            "syntax.yaml",
            "selectors.yaml",
            "missing.yaml",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    insta::assert_snapshot!(transcript(&output));
}

#[test]
fn validate_json_lists_the_errors() {
    let output = on_fixtures(&["validate", "-o", "json", "-f"], &["invalid.yaml"]);
    assert_eq!(output.status.code(), Some(1));
    insta::assert_snapshot!(transcript(&output));
}

#[test]
fn validate_reads_stdin() {
    let text =
        std::fs::read_to_string(crate::support::root().join(FIXTURES).join("selectors.yaml"))
            .unwrap();
    let output = cli()
        .args(["validate", "-f", "-"])
        .write_stdin(text)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", transcript(&output));
    insta::assert_snapshot!(transcript(&output));
}

const AT: &str = "2026-11-26T10:00:00Z";

fn simulate(extra: &[&str]) -> std::process::Output {
    cli()
        .args([
            "simulate",
            "-f",
            "examples/policies/",
            "--service",
            "frontend",
            "--namespace",
            "demo",
            "--path",
            "/cart",
            "-H",
            "x-boifi-abort: 1",
            "--at",
            AT,
        ])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn simulate_table_json_and_yaml() {
    for format in ["table", "json", "yaml"] {
        let output = simulate(&["--seed", "42", "-o", format]);
        assert!(output.status.success(), "{}", transcript(&output));
        insta::assert_snapshot!(format!("simulate_{format}"), transcript(&output));
    }
}

#[test]
fn simulate_prints_exact_shares() {
    for format in ["json", "table"] {
        let output = on_fixtures(
            &[
                "simulate",
                "--service",
                "cart",
                "--seed",
                "1",
                "--at",
                AT,
                "-o",
                format,
                "-f",
            ],
            &["nearly-always.yaml"],
        );
        insta::assert_snapshot!(format!("simulate_exact_{format}"), transcript(&output));
    }
}

#[test]
fn simulate_is_reproducible_for_a_seed() {
    let a = simulate(&["--seed", "7", "-o", "json"]);
    let b = simulate(&["--seed", "7", "-o", "json"]);
    let c = simulate(&["--seed", "8", "-o", "json"]);
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout);
    assert_ne!(a.stdout, c.stdout, "another seed draws differently");
}

#[test]
fn simulate_refuses_invalid_policies() {
    let output = on_fixtures(
        &["simulate", "--service", "frontend", "-f"],
        &["invalid.yaml"],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("document 2 (`x..y`): spec.rules[0].fault.percentage"),
        "{stderr}"
    );
}

#[test]
fn simulate_with_a_request_id_is_deterministic_for_request_sampling() {
    let output = cli()
        .args([
            "simulate",
            "-f",
            "examples/policies/ad-request-sampling.yaml",
            "--service",
            "adservice",
            "--namespace",
            "demo",
            "--request-id",
            "b1946ac9",
            "--requests",
            "1000",
            "--seed",
            "1",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let outcomes = report["outcomes"].as_array().unwrap();
    // One request id: every retry and replica draws the same, so one outcome for all.
    assert_eq!(outcomes.len(), 1, "{report}");
    assert_eq!(outcomes[0]["count"], 1000);
    assert_eq!(outcomes[0]["expected_percent"], 100.0);
}

#[test]
fn error_messages() {
    let port = closed_port().to_string();
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("halt_without_yes", vec!["halt".into()]),
        (
            "unreachable_server",
            vec![
                "policy".into(),
                "list".into(),
                "--server".into(),
                format!("http://127.0.0.1:{port}"),
            ],
        ),
        (
            "legacy_control_plane_addr",
            vec![
                "policy".into(),
                "get".into(),
                "x".into(),
                "--control-plane-addr".into(),
                format!("127.0.0.1:{port}"),
            ],
        ),
        (
            "https_without_tls",
            vec![
                "policy".into(),
                "list".into(),
                "--server".into(),
                "https://boifi.example".into(),
            ],
        ),
        (
            "bad_timeout",
            vec!["status".into(), "--timeout".into(), "soon".into()],
        ),
        (
            "bad_output",
            vec!["policy".into(), "list".into(), "-o".into(), "xml".into()],
        ),
        (
            "bad_label",
            vec![
                "simulate".into(),
                "-f".into(),
                "x.yaml".into(),
                "--label".into(),
                "novalue".into(),
            ],
        ),
        (
            "apply_validates_before_sending",
            vec![
                "policy".into(),
                "apply".into(),
                "--server".into(),
                format!("http://127.0.0.1:{port}"),
                "-f".into(),
                format!("{FIXTURES}/invalid.yaml"),
            ],
        ),
        (
            "missing_file",
            vec![
                "policy".into(),
                "apply".into(),
                "-f".into(),
                "nope.yaml".into(),
            ],
        ),
    ];
    for (name, args) in cases {
        let output = cli().args(&args).output().unwrap();
        let text = transcript(&output).replace(&port, "PORT");
        assert!(!text.contains("panicked"), "{name}: {text}");
        assert!(!text.contains("RUST_BACKTRACE"), "{name}: {text}");
        insta::assert_snapshot!(format!("error_{name}"), text);
    }
}

#[test]
fn unreachable_server_exits_2_with_one_line_naming_the_url() {
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}");
    for args in [
        vec!["policy", "list"],
        vec!["policy", "get", "some-policy"],
        vec!["policy", "describe", "some-policy"],
        vec!["policy", "delete", "some-policy"],
        vec!["halt", "--yes"],
        vec!["status"],
        vec!["simulate", "--from-server", "--service", "frontend"],
    ] {
        let output = cli()
            .args(&args)
            .env("BOIFI_SERVER", &url)
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            transcript(&output)
        );
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("error: cannot reach the server at `{url}/v1/")),
            "{stderr}"
        );
    }
}

#[test]
fn simulate_names_the_caller_and_faults_only_the_one_the_policy_names() {
    let run = |caller: &[&str]| {
        let output = cli()
            .args([
                "simulate",
                "-f",
                "examples/policies/cart-fails-for-frontend.yaml",
                "--service",
                "cartservice",
                "--namespace",
                "demo",
                "--requests",
                "200",
                "--seed",
                "1",
            ])
            .args(caller)
            .output()
            .unwrap();
        (output.status.code(), transcript(&output))
    };
    // (caller flags, exit code, what the output must say, why)
    let faulted = "abort 503   200     100.00%";
    let spared = "No rule matches this request";
    let cases: [(&[&str], Option<i32>, &str, &str); 6] = [
        (
            &["--source-service", "frontend", "--source-namespace", "demo"],
            Some(0),
            "Caller:    spiffe://cluster.local/ns/demo/sa/frontend",
            "the caller is named",
        ),
        (
            &["--source-service", "frontend", "--source-namespace", "demo"],
            Some(0),
            faulted,
            "the named caller is faulted",
        ),
        (
            &[
                "--source-service",
                "checkoutservice",
                "--source-namespace",
                "demo",
            ],
            Some(0),
            spared,
            "another caller is not",
        ),
        (
            &[
                "--source-service",
                "checkoutservice",
                "--source-service-account",
                "frontend",
                "--source-namespace",
                "demo",
            ],
            Some(0),
            faulted,
            "the account decides",
        ),
        (
            &[
                "--header",
                "x-forwarded-client-cert=URI=spiffe://cluster.local/ns/demo/sa/frontend",
            ],
            Some(0),
            spared,
            "a header is no certificate",
        ),
        (
            &["--source-namespace", "demo"],
            Some(1),
            "`--source-namespace` needs `--source-service` or `--source-service-account`",
            "a namespace alone names no caller",
        ),
    ];
    for (caller, expected_code, says, why) in cases {
        let (code, output) = run(caller);
        assert_eq!(code, expected_code, "{why}: {output}");
        assert!(output.contains(says), "{why}: {output}");
    }
    // clap refuses a service without a namespace before `simulate` runs.
    let (code, missing) = run(&["--source-service", "frontend"]);
    assert_ne!(code, Some(0), "{missing}");
    assert!(
        missing.contains("--source-namespace <NAMESPACE>"),
        "{missing}"
    );
}

/// `validate` refuses a guard whose query does not parse, whose condition is not a comparison
/// and whose interval is zero, naming each field (the one validation, PromQL parsed offline).
#[test]
fn validate_refuses_bad_guards_naming_the_field() {
    let text = r#"
apiVersion: boifi.io/v1alpha1
kind: FaultInjectionPolicy
metadata: {name: bad-guards}
spec:
  selector: {service: cartservice, namespace: demo}
  rules:
    - match: {path: {prefix: /}}
      fault: {percentage: 50, abort: {httpStatus: 503}}
  guards:
    - name: broken-query
      query: "sum(rate(istio_requests_total[1m]"
      success_condition: result >= 0.95
    - name: no-comparison
      query: up
      success_condition: result is fine
    - name: zero-interval
      query: up
      success_condition: result == 1
      interval_seconds: 0
"#;
    let output = cli()
        .args(["validate", "-f", "-"])
        .write_stdin(text)
        .output()
        .unwrap();
    assert!(!output.status.success(), "{}", transcript(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for field in [
        "spec.guards[0].query",
        "spec.guards[1].success_condition",
        "spec.guards[2].interval_seconds",
    ] {
        assert!(stderr.contains(field), "`{field}` not named: {stderr}");
    }
}
