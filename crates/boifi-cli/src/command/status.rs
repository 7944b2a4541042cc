//! `status`: policies with their state, and which sidecars hold the latest config version
//! (like `istioctl proxy-status`); `--watch` waits for a rollout to finish.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Instant;

use serde_json::Value;

use crate::cli::{GlobalArgs, OutputFormat, StatusArgs};
use crate::client::Client;
use crate::error::CliError;
use crate::output::{self, Table};

/// Frames of the `--watch` spinner.
const SPINNER: &[char] = &['|', '/', '-', '\\'];

/// Prints the status once, or with `--watch` polls until every sidecar holds the latest
/// config version.
pub fn run(global: &GlobalArgs, args: &StatusArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let client = Client::from_args(global)?;
    if !args.watch {
        let status = fetch(&client)?;
        return print(global.output, &status, out);
    }
    let started = Instant::now();
    let interactive = std::io::stderr().is_terminal();
    let mut frame = 0usize;
    loop {
        let status = fetch(&client)?;
        let rollout = Rollout::of(&status);
        if rollout.done() {
            if interactive {
                eprint!("\r\x1b[2K");
            }
            print(global.output, &status, out)?;
            return Ok(());
        }
        if let Some(limit) = args.watch_timeout {
            if started.elapsed() >= limit {
                if interactive {
                    eprint!("\r\x1b[2K");
                }
                print(global.output, &status, out)?;
                return Err(CliError::WatchTimeout(rollout.describe()));
            }
        }
        if interactive {
            let spin = SPINNER.get(frame % SPINNER.len()).copied().unwrap_or('-');
            eprint!("\r\x1b[2K{spin} waiting: {}", rollout.describe());
            frame += 1;
        }
        std::thread::sleep(args.interval);
    }
}

fn fetch(client: &Client) -> Result<Value, CliError> {
    client.get("/v1/policies/status")?.json()
}

/// How far sidecars are behind the latest config version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollout {
    /// The latest config version.
    pub version: Option<u64>,
    /// Sidecars that hold it.
    pub synced: usize,
    /// Sidecars known to the server.
    pub total: usize,
}

impl Rollout {
    /// Reads the rollout from a status answer.
    pub fn of(status: &Value) -> Rollout {
        let version = latest_version(status);
        let sidecars = sidecars(status);
        let synced = sidecars.iter().filter(|s| holds(s, version)).count();
        Rollout {
            version,
            synced,
            total: sidecars.len(),
        }
    }

    /// Whether this sidecar entry holds the latest version.
    pub fn holds_latest(&self, sidecar: &Value) -> bool {
        holds(sidecar, self.version)
    }

    /// Every sidecar holds the latest version (trivially so when there are none).
    pub fn done(&self) -> bool {
        self.synced == self.total
    }

    /// `3 of 5 sidecars hold config version 12`.
    pub fn describe(&self) -> String {
        format!(
            "{} of {} sidecars hold config version {}",
            self.synced,
            self.total,
            self.version
                .map_or_else(|| "-".to_owned(), |v| v.to_string())
        )
    }
}

/// The server's own verdict (`current`) when given, else a comparison of versions.
fn holds(sidecar: &Value, latest: Option<u64>) -> bool {
    match sidecar.get("current").and_then(Value::as_bool) {
        Some(current) => current,
        None => latest.is_some() && number(sidecar, &["version", "config_version"]) == latest,
    }
}

fn latest_version(status: &Value) -> Option<u64> {
    number(status, &["version", "config_version"])
        .or_else(|| status.get("totals").and_then(|t| number(t, &["version"])))
}

fn sidecars(status: &Value) -> &[Value] {
    status
        .get("sidecars")
        .or_else(|| status.get("proxies"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn number(v: &Value, keys: &[&str]) -> Option<u64> {
    keys.iter().find_map(|k| v.get(*k).and_then(Value::as_u64))
}

/// The first present field of `keys`, as text; `-` when none.
fn text(v: &Value, keys: &[&str]) -> String {
    keys.iter()
        .find_map(|k| v.get(*k).filter(|x| !x.is_null()))
        .map_or_else(|| "-".to_owned(), show)
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(show).collect::<Vec<_>>().join(","),
        Value::Object(map) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| format!("{k}={}", show(v)))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

fn time_of(v: &Value, ms_keys: &[&str], text_keys: &[&str]) -> String {
    match number(v, ms_keys) {
        Some(ms) => output::time(Some(ms)),
        None => text(v, text_keys),
    }
}

/// `frontend.demo version=v2`, `*.staging`: a policy's targets (its selector).
fn targets(p: &Value) -> String {
    let Some(t) = p.get("targets").or_else(|| p.get("selector")) else {
        return "-".to_owned();
    };
    let part = |k: &str| {
        t.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("*")
            .to_owned()
    };
    let mut text = format!("{}.{}", part("service"), part("namespace"));
    if let Some(labels) = t.get("labels").and_then(Value::as_object) {
        for (k, v) in labels {
            text.push_str(&format!(" {k}={}", show(v)));
        }
    }
    text
}

/// Prints a status answer.
pub fn print(format: OutputFormat, status: &Value, out: &mut dyn Write) -> Result<(), CliError> {
    match format {
        OutputFormat::Json => return output::json(out, status),
        OutputFormat::Yaml => return output::yaml(out, status),
        OutputFormat::Table => {}
    }
    let rollout = Rollout::of(status);
    let totals = status.get("totals").cloned().unwrap_or(Value::Null);
    let count = |k: &str| number(&totals, &[k]).unwrap_or(0);
    let empty = Vec::new();
    let policies = status
        .get("policies")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    writeln!(
        out,
        "Config version {}: {} policies ({} active, {} scheduled, {} expired); {}",
        text(status, &["version", "config_version"]),
        number(&totals, &["policies"]).unwrap_or(policies.len() as u64),
        count("active"),
        count("scheduled"),
        count("expired"),
        rollout.describe()
    )?;
    writeln!(out)?;
    if policies.is_empty() {
        writeln!(out, "No policies.")?;
    } else {
        let mut table = Table::new(&["NAME", "TARGETS", "FAULTS", "STATE", "EXPIRES", "SIDECARS"]);
        for p in policies {
            table.row(vec![
                text(p, &["name"]),
                targets(p),
                text(p, &["fault_kinds", "fault_types", "faults"]),
                text(p, &["state"]),
                time_of(p, &["expires_at_ms"], &["expires_at"]),
                text(p, &["matching_sidecars"]),
            ]);
        }
        table.write(out)?;
    }
    writeln!(out)?;
    let sidecars = sidecars(status);
    if sidecars.is_empty() {
        writeln!(out, "No sidecar has asked for its config yet.")?;
    } else {
        // Per service first, as `istioctl proxy-status` sums up a rollout.
        let mut services: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
        for s in sidecars {
            let entry = services
                .entry((text(s, &["service"]), text(s, &["namespace"])))
                .or_default();
            entry.0 += 1;
            if rollout.holds_latest(s) {
                entry.1 += 1;
            }
        }
        let mut table = Table::new(&["SERVICE", "NAMESPACE", "SIDECARS", "AT LATEST VERSION"]);
        for ((service, namespace), (total, synced)) in services {
            table.row(vec![
                service,
                namespace,
                total.to_string(),
                synced.to_string(),
            ]);
        }
        table.write(out)?;
        writeln!(out)?;
        let mut table = Table::new(&[
            "POD",
            "SERVICE",
            "NAMESPACE",
            "VERSION",
            "SYNC",
            "LAST SEEN",
        ]);
        for s in sidecars {
            table.row(vec![
                text(s, &["pod"]),
                text(s, &["service"]),
                text(s, &["namespace"]),
                text(s, &["version", "config_version"]),
                if rollout.holds_latest(s) {
                    "SYNCED"
                } else {
                    "STALE"
                }
                .to_owned(),
                time_of(s, &["last_seen_ms"], &["last_seen"]),
            ]);
        }
        table.write(out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollout_counts_sidecars_at_the_latest_version() {
        let status = serde_json::json!({
            "version": 7,
            "sidecars": [{"pod": "a", "version": 7}, {"pod": "b", "version": 6}]
        });
        let r = Rollout::of(&status);
        assert_eq!((r.synced, r.total, r.done()), (1, 2, false));
        assert_eq!(r.describe(), "1 of 2 sidecars hold config version 7");
        assert!(Rollout::of(&serde_json::json!({"version": 1})).done());
    }
}
