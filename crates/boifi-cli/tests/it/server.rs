//! Every server verb against a real `boifi-server` (embedded store in a temp dir, free loopback
//! port), started by the test and killed on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use boifi_core::policy::{parse_policies_text, PolicyDocument};
use boifi_testkit::process::ChildGuard;
use serde_json::Value;

use crate::support::{cli, root, transcript, FIXTURES};

/// The `boifi-server` binary: `BOIFI_SERVER_BIN`, else the one cargo built beside
/// `boifi-cli` (`cargo test --workspace` builds it), else built now.
fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("BOIFI_SERVER_BIN") {
        return PathBuf::from(path);
    }
    boifi_testkit::process::workspace_binary(
        Path::new(env!("CARGO_BIN_EXE_boifi-cli")),
        "boifi-server",
        &root(),
    )
}

/// A running server; killed (SIGKILL) when dropped, also when the test panics.
pub struct Server {
    pub url: String,
    _child: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    pub fn start_with(extra: &[&std::ffi::OsStr]) -> Server {
        let binary = server_binary();
        let dir = tempfile::tempdir().unwrap();
        let mut last_log = String::new();
        // A free port can be taken by someone else before the server binds it: try again.
        for _ in 0..3 {
            let port = boifi_testkit::ports::free_port().unwrap();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let log = dir.path().join(format!("server-{port}.log"));
            let child = Command::new(&binary)
                .arg("--listen")
                .arg(addr.to_string())
                .args([
                    "--replica-id",
                    "cp-0",
                    "--storage",
                    "embedded",
                    "--data-dir",
                ])
                .arg(dir.path().join("data"))
                .args(extra)
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(
                    std::fs::File::create(dir.path().join(format!("server-{port}.err"))).unwrap(),
                )
                .spawn()
                .unwrap();
            let mut child = ChildGuard::new("boifi-server", child);
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                let ready = boifi_testkit::http::get(addr, "/v1/ready", Duration::from_secs(1))
                    .is_ok_and(|r| r.status == 200);
                if ready {
                    return Server {
                        url: format!("http://{addr}"),
                        _child: child,
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            last_log = std::fs::read_to_string(dir.path().join(format!("server-{port}.err")))
                .unwrap_or_default();
        }
        panic!("boifi-server did not become ready:\n{last_log}");
    }

    /// `boifi-cli` pointed at this server.
    pub fn cli(&self) -> assert_cmd::Command {
        let mut cmd = cli();
        cmd.env("BOIFI_SERVER", &self.url);
        cmd
    }

    pub fn run(&self, args: &[&str]) -> std::process::Output {
        self.cli().args(args).output().unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(output.status.success(), "{args:?}: {}", transcript(&output));
        String::from_utf8(output.stdout).unwrap()
    }

    /// `simulate --from-server` as the frontend sidecar in `demo`, with `args` added.
    pub fn simulate_frontend(&self, args: &[&str]) -> String {
        let mut all = vec![
            "simulate",
            "--from-server",
            "--service",
            "frontend",
            "--namespace",
            "demo",
        ];
        all.extend_from_slice(args);
        self.ok(&all)
    }

    pub fn list(&self) -> Vec<PolicyDocument> {
        let text = self.ok(&["policy", "list", "-o", "json"]);
        let value: Value = serde_json::from_str(&text).unwrap();
        value["policies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| PolicyDocument::from_value(p).unwrap())
            .collect()
    }
}

fn fixture(name: &str) -> String {
    format!("{FIXTURES}/{name}")
}

fn local(name: &str) -> Vec<PolicyDocument> {
    let text = std::fs::read_to_string(root().join(fixture(name))).unwrap();
    parse_policies_text(&text).unwrap()
}

/// Status fields and times change from run to run: hide them in snapshots.
fn redact(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let redacted = [
            "stored_at_ms:",
            "revision:",
            "expires_at_ms:",
            "\"stored_at_ms\":",
            "\"revision\":",
        ]
        .iter()
        .find(|k| trimmed.starts_with(*k))
        .map(|k| format!("{}{k} [redacted]", &line[..line.len() - trimmed.len()]));
        let redacted = redacted.or_else(|| {
            ["Stored at:", "Revision:"]
                .iter()
                .find(|k| line.starts_with(*k))
                .map(|k| format!("{k:<12} [redacted]"))
        });
        out.push_str(&redacted.unwrap_or_else(|| line.to_owned()));
        out.push('\n');
    }
    out
}

/// Replaces every RFC 3339 time with `[time]`, keeping the columns aligned.
fn redact_times(text: &str) -> String {
    text.split_inclusive(' ')
        .map(|word| {
            let trimmed = word.trim_end();
            if boifi_core::time::parse_rfc3339(trimmed).is_some() {
                let pad = trimmed.chars().count().saturating_sub("[time]".len());
                format!("[time]{}{}", " ".repeat(pad), &word[trimmed.len()..])
            } else {
                word.to_owned()
            }
        })
        .collect()
}

#[test]
fn apply_list_get_describe_delete_halt_against_a_real_server() {
    let server = Server::start();
    let selectors = fixture("selectors.yaml");
    let want = local("selectors.yaml");
    assert_eq!(want.len(), 3);

    // --dry-run changes nothing.
    let dry = server.ok(&["policy", "apply", "--dry-run", "-f", &selectors]);
    insta::assert_snapshot!("apply_dry_run_new", dry);
    assert!(server.list().is_empty());
    assert_eq!(server.ok(&["policy", "list"]), "no policies\n");

    // Every document of the multi-document file is applied.
    insta::assert_snapshot!(
        "apply_created",
        server.ok(&["policy", "apply", "-f", &selectors])
    );
    insta::assert_snapshot!(
        "apply_unchanged",
        server.ok(&["policy", "apply", "-f", &selectors])
    );

    // The selectors (and everything else) survive the round trip: the legacy bug.
    let stored = server.list();
    assert_eq!(stored.len(), 3);
    for w in &want {
        let s = stored.iter().find(|s| s.name() == w.name()).unwrap();
        assert_eq!(s.spec.selector, w.spec.selector, "{}", w.name());
        assert_eq!(s.spec, w.spec);
        assert_eq!(s.metadata, w.metadata);
        assert!(s.status.is_some(), "the server fills status");
    }
    let labels = &stored
        .iter()
        .find(|s| s.name() == "cli-frontend-abort")
        .unwrap()
        .spec
        .selector
        .labels;
    assert_eq!(labels.get("version").map(String::as_str), Some("v2"));

    // Table, JSON and YAML output.
    insta::assert_snapshot!("list_table", server.ok(&["policy", "list"]));
    insta::assert_snapshot!(
        "get_yaml",
        redact(&server.ok(&["policy", "get", "cli-frontend-abort", "-o", "yaml"]))
    );
    insta::assert_snapshot!(
        "get_json",
        redact(&server.ok(&["policy", "get", "cli-frontend-abort", "-o", "json"]))
    );
    insta::assert_snapshot!(
        "describe",
        redact(&server.ok(&["policy", "describe", "cli-staging-any"]))
    );

    // `get -o yaml` output applies again unchanged (the server's status is ignored).
    let yaml = server.ok(&["policy", "get", "-o", "yaml"]);
    let output = server
        .cli()
        .args(["policy", "apply", "-f", "-"])
        .write_stdin(yaml)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", transcript(&output));
    assert_eq!(
        String::from_utf8(output.stdout)
            .unwrap()
            .matches(" unchanged")
            .count(),
        3
    );

    // A change: --dry-run names it and changes nothing; then it is applied.
    let changed = fixture("changed.yaml");
    let dry = server.ok(&["policy", "apply", "--dry-run", "-f", &changed]);
    insta::assert_snapshot!("apply_dry_run_changed", dry);
    assert_eq!(server.list(), stored, "--dry-run changed nothing");
    insta::assert_snapshot!(
        "apply_configured",
        server.ok(&["policy", "apply", "-f", &changed])
    );
    let now = server.list();
    let frontend = now
        .iter()
        .find(|p| p.name() == "cli-frontend-abort")
        .unwrap();
    assert_eq!(frontend.spec.rules[0].fault.percentage.ppm(), 500_000);

    // simulate --from-server sees what the server gives that sidecar.
    let report: Value = serde_json::from_str(&server.simulate_frontend(&[
        "--pod",
        "frontend-1",
        "--label",
        "version=v2",
        "--path",
        "/cart/add",
        "--seed",
        "3",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(report["matched_rule"]["policy"], "cli-frontend-abort");
    assert_eq!(report["matching_rules"][0]["percentage"], "50");
    let v1: Value = serde_json::from_str(&server.simulate_frontend(&[
        "--label",
        "version=v1",
        "--path",
        "/cart",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(
        v1["matched_rule"],
        Value::Null,
        "the label selector keeps v1 out"
    );

    // status: the policies and the sidecar that asked.
    let status = server.ok(&["status"]);
    for name in [
        "cli-frontend-abort",
        "cli-checkout-delay",
        "cli-staging-any",
    ] {
        assert!(status.contains(name), "{status}");
    }
    assert!(status.contains("frontend-1"), "{status}");
    let status_json: Value = serde_json::from_str(&server.ok(&["status", "-o", "json"])).unwrap();
    assert_eq!(status_json["policies"].as_array().unwrap().len(), 3);

    // delete: one by one, with the server's message for a missing one.
    assert_eq!(
        server.ok(&["policy", "delete", "cli-checkout-delay"]),
        "faultinjectionpolicy \"cli-checkout-delay\" deleted\n"
    );
    let missing = server.run(&["policy", "get", "cli-checkout-delay"]);
    assert_eq!(missing.status.code(), Some(1));
    insta::assert_snapshot!("get_missing", transcript(&missing));
    let again = server.run(&["policy", "delete", "cli-checkout-delay"]);
    assert_eq!(again.status.code(), Some(1), "{}", transcript(&again));
    server.ok(&[
        "policy",
        "delete",
        "--ignore-not-found",
        "cli-checkout-delay",
    ]);

    // halt: the kill switch.
    insta::assert_snapshot!("halt", server.ok(&["halt", "--yes"]));
    assert!(server.list().is_empty());

    // The legacy hfi-cli's overrides: every rule of every document.
    server.ok(&[
        "policy",
        "apply",
        "-f",
        &selectors,
        "--duration-seconds",
        "60",
        "--start-delay-ms",
        "5",
    ]);
    for p in server.list() {
        for rule in &p.spec.rules {
            assert_eq!(
                (rule.fault.duration_seconds, rule.fault.start_delay_ms),
                (60, 5)
            );
        }
        let status = p.status.unwrap();
        assert_eq!(status.expires_at_ms, Some(status.stored_at_ms + 60_000));
    }
}

#[test]
fn the_servers_4xx_message_is_shown_and_exits_1() {
    // Valid locally, refused by the server: larger than its body limit.
    let server = Server::start_with(&["--max-body-bytes".as_ref(), "400".as_ref()]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("large.yaml");
    std::fs::write(
        &file,
        format!(
            "metadata: {{name: large, annotations: {{note: {}}}}}\nspec:\n  rules:\n  - match: {{path: {{prefix: /}}}}\n    fault: {{percentage: 1, abort: {{httpStatus: 503}}}}\n",
            "x".repeat(500)
        ),
    )
    .unwrap();
    let output = server.run(&["policy", "apply", "-f", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", transcript(&output));
    let text = transcript(&output).replace(file.to_str().unwrap(), "large.yaml");
    insta::assert_snapshot!("server_rejects", text);
    assert!(server.list().is_empty());
}

/// One poll of the `frontend` sidecar `pod` in `demo`, as the filter sends it (the version it
/// applied, the one it refused and why; no wait); the answer's HTTP status.
fn frontend_poll(
    server: &Server,
    pod: &str,
    applied: Option<u64>,
    refused: Option<boifi_core::wire::Refusal>,
) -> u16 {
    let mut identity = boifi_core::identity::Identity::for_service("frontend", "demo");
    identity.pod = Some(pod.to_owned());
    let query = boifi_core::wire::ConfigQuery {
        identity,
        version: applied,
        encoding: boifi_core::wire::ConfigEncoding::CompactV3,
        refused,
        ..boifi_core::wire::ConfigQuery::default()
    };
    let addr: SocketAddr = server.url.strip_prefix("http://").unwrap().parse().unwrap();
    let path = format!("/v1/config?{}", query.to_query_string());
    boifi_testkit::http::get(addr, &path, Duration::from_secs(10))
        .unwrap()
        .status
}

/// `status --watch` with a 300 ms limit: it must time out with `message`; its output.
fn watch_times_out(server: &Server, message: &str) -> String {
    let output = server.run(&[
        "status",
        "--watch",
        "--interval",
        "50ms",
        "--watch-timeout",
        "300ms",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", transcript(&output));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains(message), "{stderr}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn status_shows_applied_pending_and_refused_and_watch_waits_for_the_pending() {
    let server = Server::start();
    // No sidecar yet: nothing to wait for.
    server.ok(&["status", "--watch"]);
    server.ok(&["policy", "apply", "-f", &fixture("selectors.yaml")]);
    // frontend-1 fetches version 3 and its next poll says it applied it.
    assert_eq!(frontend_poll(&server, "frontend-1", None, None), 200);
    assert_eq!(frontend_poll(&server, "frontend-1", Some(3), None), 304);
    server.ok(&[
        "status",
        "--watch",
        "--interval",
        "50ms",
        "--watch-timeout",
        "5s",
    ]);
    // frontend-2 was sent version 3 and has not said it applied it; frontend-3 refused it.
    assert_eq!(frontend_poll(&server, "frontend-2", None, None), 200);
    assert_eq!(frontend_poll(&server, "frontend-3", None, None), 200);
    let refusal = boifi_core::wire::Refusal::new(
        3,
        "policy `cli-staging-any`: 3 policies is over this sidecar's limit of 2",
    );
    assert_eq!(
        frontend_poll(&server, "frontend-3", None, Some(refusal.clone())),
        304
    );
    watch_times_out(
        &server,
        "timed out: 1 of 3 sidecars applied config version 3 (1 pending, 1 refused)",
    );
    insta::assert_snapshot!("status_table", redact_times(&server.ok(&["status"])));
    // Once frontend-2 applies it none is pending: the watch ends, and fails on the refusal.
    assert_eq!(frontend_poll(&server, "frontend-2", Some(3), None), 304);
    let refused = server.run(&["status", "--watch", "--interval", "50ms"]);
    assert_eq!(refused.status.code(), Some(1), "{}", transcript(&refused));
    assert_eq!(
        String::from_utf8(refused.stderr).unwrap(),
        "error: refused: 1 of 3 sidecars refused config version 3; their reasons are listed under `Refusals`\n"
    );
    let table = String::from_utf8(refused.stdout).unwrap();
    assert!(
        table.contains("REFUSED") && table.contains(&refusal.reason),
        "{table}"
    );
    // A write moves the version on: every sidecar is pending until it says otherwise.
    server.ok(&["policy", "apply", "-f", &fixture("changed.yaml")]);
    let stale = watch_times_out(
        &server,
        "timed out: 0 of 3 sidecars applied config version 4 (3 pending, 0 refused)",
    );
    assert!(stale.contains("PENDING"), "{stale}");
}

#[test]
fn tokens_from_flag_file_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let server = Server::start_with(&["--auth-token-file".as_ref(), token_file.as_os_str()]);
    let selectors = fixture("selectors.yaml");

    let refused = server.run(&["policy", "apply", "-f", &selectors]);
    assert_eq!(refused.status.code(), Some(1), "{}", transcript(&refused));
    let stderr = String::from_utf8(refused.stderr).unwrap();
    assert!(stderr.to_lowercase().contains("token"), "{stderr}");
    let wrong = server.run(&["policy", "delete", "--token", "nope", "cli-staging-any"]);
    assert_eq!(wrong.status.code(), Some(1), "{}", transcript(&wrong));

    server.ok(&[
        "policy",
        "apply",
        "--token",
        "s3cret-token",
        "-f",
        &selectors,
    ]);
    let from_env = server
        .cli()
        .env("BOIFI_TOKEN", "s3cret-token")
        .args(["policy", "delete", "cli-staging-any"])
        .output()
        .unwrap();
    assert!(from_env.status.success(), "{}", transcript(&from_env));
    server.ok(&[
        "halt",
        "--yes",
        "--token-file",
        token_file.to_str().unwrap(),
    ]);
    assert!(server.list().is_empty());
}

/// One poll with the query `query`, as plain HTTP; the answer's HTTP status.
fn raw_poll(server: &Server, query: &str) -> u16 {
    let addr: SocketAddr = server.url.strip_prefix("http://").unwrap().parse().unwrap();
    boifi_testkit::http::get(
        addr,
        &format!("/v1/config?{query}"),
        Duration::from_secs(10),
    )
    .unwrap()
    .status
}

#[test]
fn status_shows_a_shared_proxy_as_what_it_is_in_its_own_table() {
    let server = Server::start();
    server.ok(&["policy", "apply", "-f", &fixture("selectors.yaml")]);
    // A sidecar that applied version 3, a waypoint of demo that also serves staging and
    // applied it with 5 destination services compiled, and a gateway that has not applied it.
    assert_eq!(frontend_poll(&server, "frontend-1", Some(3), None), 304);
    let waypoint = "service=waypoint&namespace=demo&pod=waypoint-7d9f&proxy=waypoint&namespaces=staging&destinations=5&version=3";
    assert_eq!(raw_poll(&server, waypoint), 304);
    let gateway = "service=istio-ingressgateway&namespace=istio-system&pod=ingress-5c8b&proxy=gateway&destinations=1";
    assert_eq!(raw_poll(&server, gateway), 200);
    let table = redact_times(&server.ok(&["status"]));
    assert!(
        table.contains(
            "  waypoint demo/waypoint-7d9f: serving 5 services, config version 3 applied\n"
        ),
        "{table}"
    );
    assert!(
        table.contains("cli-frontend-abort   frontend.demo version=v2   abort    active   -         0          never (selects pods)"),
        "{table}"
    );
    insta::assert_snapshot!("status_shared_proxies", table);
    // The watch waits for the gateway, and counts proxies now.
    watch_times_out(
        &server,
        "timed out: 2 of 3 proxies applied config version 3 (1 pending, 0 refused)",
    );
}

#[test]
fn audit_shows_which_token_did_what_and_a_scoped_refusal_names_token_and_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials.yaml");
    std::fs::write(
        &credentials,
        "tokens:\n  - name: ci\n    token: ci-token-for-the-cli-0001\n    may: [read, write]\n    namespaces: [demo]\n  - name: oncall\n    token: oncall-token-for-the-cli-02\n    may: [read, halt]\n",
    )
    .unwrap();
    let server = Server::start_with(&["--credentials".as_ref(), credentials.as_os_str()]);
    let policy = |ns: &str| {
        format!(
            "metadata: {{name: cli-{ns}}}\nspec:\n  selector: {{service: frontend, namespace: {ns}}}\n  rules:\n    - match: {{path: {{prefix: /}}}}\n      fault: {{percentage: 10, abort: {{httpStatus: 503}}}}\n"
        )
    };
    let demo = dir.path().join("demo.yaml");
    std::fs::write(&demo, policy("demo")).unwrap();
    let payments = dir.path().join("payments.yaml");
    std::fs::write(&payments, policy("payments")).unwrap();
    let ci = ["--token", "ci-token-for-the-cli-0001"];

    server.ok(&[&["policy", "apply", "-f", demo.to_str().unwrap()][..], &ci].concat());
    let refused = server.run(
        &[
            &["policy", "apply", "-f", payments.to_str().unwrap()][..],
            &ci,
        ]
        .concat(),
    );
    assert_eq!(refused.status.code(), Some(1), "{}", transcript(&refused));
    let stderr = String::from_utf8(refused.stderr).unwrap();
    assert!(
        stderr.contains("token `ci` may not target namespace `payments`"),
        "{stderr}"
    );
    server.ok(&["halt", "--yes", "--token", "oncall-token-for-the-cli-02"]);

    let table = server.ok(&[&["audit"][..], &ci].concat());
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().skip(1).take(3).collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["ci", "create", "cli-demo"],
            vec!["oncall", "delete_all", "*"]
        ],
        "{table}"
    );
    let only_ci = server.ok(&[&["audit", "--who", "ci", "-o", "json"][..], &ci].concat());
    let parsed: serde_json::Value = serde_json::from_str(&only_ci).unwrap();
    assert_eq!(parsed["entries"].as_array().unwrap().len(), 1, "{only_ci}");
}
