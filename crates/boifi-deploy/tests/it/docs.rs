//! docs/deploy-k8s.md names the real things: the overlay, the Secret the overlay expects, the
//! commands of the tools this repository builds.

use crate::support::{manifests, repo_root};

fn guide() -> String {
    std::fs::read_to_string(repo_root().join("docs/deploy-k8s.md")).expect("docs/deploy-k8s.md")
}

#[test]
fn guide_walks_from_build_to_fault_to_halt() {
    let guide = guide();
    for step in [
        "make oci",
        "kubectl apply -k manifests/overlays/k3s-demo",
        "kubectl -n boifi create secret generic boifi-auth-token --from-literal=token=",
        "kubectl -n boifi port-forward svc/boifi-control-plane 8080:8080",
        "kubectl get wasmplugins -n demo",
        "boifi-cli halt --yes",
        "/metrics",
        "could not be run here",
    ] {
        assert!(guide.contains(step), "the guide does not contain `{step}`");
    }
    for overlay in crate::support::overlay_dirs() {
        let relative = overlay
            .strip_prefix(repo_root())
            .unwrap()
            .display()
            .to_string();
        assert!(
            guide.contains(&relative),
            "the guide does not mention {relative}"
        );
    }
    assert!(manifests().join("overlays/k3s-demo").is_dir());
}

/// The `boifi-cli` command lines of the guide: each line of a shell block that starts with
/// `boifi-cli`, and each inline `` `boifi-cli …` ``.
fn cli_command_lines(guide: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut in_shell = false;
    for line in guide.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            in_shell = !in_shell;
            continue;
        }
        if in_shell {
            if trimmed.starts_with("boifi-cli ") {
                lines.push(trimmed.to_owned());
            }
            continue;
        }
        for span in line.split('`').skip(1).step_by(2) {
            if span.starts_with("boifi-cli ") {
                lines.push(span.to_owned());
            }
        }
    }
    lines
}

/// Every `boifi-cli` command line the guide shows parses with the CLI's own definition: the
/// subcommand path, every flag and every flag's value exist as written.
#[test]
fn guide_uses_real_cli_command_lines() {
    use clap::Parser;
    let lines = cli_command_lines(&guide());
    for line in &lines {
        if let Err(e) = boifi_cli::Cli::try_parse_from(shell_words(line)) {
            panic!("`{line}` (from the guide) is not a boifi-cli command line: {e}");
        }
    }
    assert!(lines.len() >= 3, "the guide shows {lines:?}");
}

/// The Dockerfile builds the binary the Deployment runs, as the user the pod runs as, on the
/// port the Service targets, and the guide tags it as the k3s-demo overlay expects.
#[test]
fn dockerfile_agrees_with_the_deployment_and_the_overlay() {
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).expect("Dockerfile");
    let docs = crate::support::base();
    let spec = &crate::support::find(&docs, "Deployment", "boifi-control-plane").value["spec"]
        ["template"]["spec"];
    let uid = spec["securityContext"]["runAsUser"].as_u64().unwrap();
    assert!(
        dockerfile.contains(&format!("\nUSER {uid}:")),
        "the image does not run as uid {uid}"
    );
    let port = spec["containers"][0]["ports"][0]["containerPort"]
        .as_u64()
        .unwrap();
    assert!(dockerfile.contains(&format!("\nEXPOSE {port}\n")));
    assert!(dockerfile.contains("-p boifi-server"));
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/boifi-server\"]"));
    assert!(repo_root()
        .join("crates/boifi-server/src/main.rs")
        .is_file());
    let stages = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert_eq!(stages, 2, "a multi-stage build");

    let overlay =
        boifi_deploy::yaml::load_file(&manifests().join("overlays/k3s-demo/kustomization.yaml"))
            .unwrap();
    let image = &overlay[0].value["images"][0];
    let tag = format!(
        "{}:{}",
        image["newName"].as_str().unwrap(),
        image["newTag"].as_str().unwrap()
    );
    let guide = guide();
    assert!(
        guide.contains(&format!("docker build -t {tag} .")),
        "the guide does not build `{tag}`"
    );
    assert!(guide.contains(&format!("docker save {tag} | sudo k3s ctr images import -")));
}

/// The Istio inclusion the guide and the chart's README install is the chart's documented
/// `metrics.proxyStatsInclusionRegexps`, the list the dashboard test runs against.
#[test]
fn guide_and_chart_readme_install_the_charts_stats_inclusion() {
    let values: serde_json::Value = serde_norway::from_str(
        &std::fs::read_to_string(crate::support::chart().join("values.yaml")).unwrap(),
    )
    .unwrap();
    let regexps = values["metrics"]["proxyStatsInclusionRegexps"]
        .as_array()
        .unwrap();
    assert!(!regexps.is_empty());
    let readme = std::fs::read_to_string(crate::support::chart().join("README.md")).unwrap();
    for (name, text) in [
        ("docs/deploy-k8s.md", guide()),
        ("charts/boifi/README.md", readme),
    ] {
        for (i, regex) in regexps.iter().enumerate() {
            let flag = format!(
                "'meshConfig.defaultConfig.proxyStatsMatcher.inclusionRegexps[{i}]={}'",
                regex.as_str().unwrap()
            );
            assert!(text.contains(&flag), "{name}: {flag}");
        }
        let next = format!("inclusionRegexps[{}]", regexps.len());
        assert!(
            !text.contains(&next),
            "{name}: more regexps than the chart lists"
        );
    }
}

/// Splits a shell command line of the guide: whitespace-separated words, '…' quoting, a `#`
/// comment at the end.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            '#' if !quoted && !any && word.is_empty() => break,
            c if c.is_whitespace() && !quoted => {
                if any || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                any = false;
            }
            c => word.push(c),
        }
    }
    if any || !word.is_empty() {
        words.push(word);
    }
    words
}

/// Every `helm install` of the guide and of the chart's README renders with the real helm (as
/// `helm template`, the same arguments), so the values they show exist and are accepted.
#[test]
fn the_documented_helm_installs_render() {
    let readme = std::fs::read_to_string(crate::support::chart().join("README.md")).unwrap();
    let docs = format!("{}\n{readme}", guide()).replace("\\\n", " ");
    let installs: Vec<&str> = docs
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("helm install "))
        .collect();
    assert!(installs.len() >= 5, "{installs:#?}");
    for line in installs {
        let mut args = shell_words(line);
        assert_eq!(args[1], "install");
        args[1] = "template".to_owned();
        args.retain(|a| a != "--create-namespace");
        // The guide's paths are relative to the repository root.
        for arg in &mut args {
            if arg.starts_with("charts/") {
                *arg = repo_root().join(&*arg).display().to_string();
            }
        }
        let text = crate::support::helm()
            .run(args.iter().skip(1))
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(text.contains("kind: Deployment"), "{line}");
    }
}
