//! `status`: policies with their state, and which sidecars hold the latest config version
//! (like `istioctl proxy-status`); `--watch` waits for a rollout to finish.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Instant;

use boifi_core::wire::{SidecarStatusEntry, StatusResponse, Targets};

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

fn fetch(client: &Client) -> Result<StatusResponse, CliError> {
    client.get("/v1/policies/status")?.json()
}

/// How far sidecars are behind the latest config version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollout {
    /// The latest config version.
    pub version: u64,
    /// Sidecars that hold it.
    pub synced: usize,
    /// Sidecars known to the server.
    pub total: usize,
}

impl Rollout {
    /// Reads the rollout from a status answer.
    pub fn of(status: &StatusResponse) -> Rollout {
        let version = status.version;
        let synced = status.sidecars.iter().filter(|s| holds(s, version)).count();
        Rollout {
            version,
            synced,
            total: status.sidecars.len(),
        }
    }

    /// Whether this sidecar entry holds the latest version.
    pub fn holds_latest(&self, sidecar: &SidecarStatusEntry) -> bool {
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
            self.synced, self.total, self.version
        )
    }
}

/// The server's verdict (`current`), or, from a server that does not give it, a comparison of
/// versions.
fn holds(sidecar: &SidecarStatusEntry, latest: u64) -> bool {
    sidecar.current || sidecar.version == Some(latest)
}

fn or_dash(value: Option<&str>) -> String {
    value.filter(|s| !s.is_empty()).unwrap_or("-").to_owned()
}

/// `frontend.demo version=v2`, `*.staging`: a policy's targets (its selector).
fn targets(t: &Targets) -> String {
    let part = |s: &str| {
        if s.is_empty() {
            "*".to_owned()
        } else {
            s.to_owned()
        }
    };
    let mut text = format!("{}.{}", part(&t.service), part(&t.namespace));
    for (k, v) in &t.labels {
        text.push_str(&format!(" {k}={v}"));
    }
    text
}

/// Prints a status answer.
pub fn print(
    format: OutputFormat,
    status: &StatusResponse,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    match format {
        OutputFormat::Json => return output::json(out, status),
        OutputFormat::Yaml => return output::yaml(out, status),
        OutputFormat::Table => {}
    }
    let rollout = Rollout::of(status);
    let totals = &status.totals;
    writeln!(
        out,
        "Config version {}: {} policies ({} active, {} scheduled, {} expired, {} disabled); {}",
        status.version,
        status.policies.len(),
        totals.active,
        totals.scheduled,
        totals.expired,
        totals.disabled,
        rollout.describe()
    )?;
    writeln!(out)?;
    if status.policies.is_empty() {
        writeln!(out, "No policies.")?;
    } else {
        let mut table = Table::new(&["NAME", "TARGETS", "FAULTS", "STATE", "EXPIRES", "SIDECARS"]);
        for p in &status.policies {
            table.row(vec![
                p.name.clone(),
                targets(&p.targets),
                p.fault_kinds.join(","),
                or_dash(Some(&p.state)),
                output::time(p.expires_at_ms),
                p.matching_sidecars.to_string(),
            ]);
        }
        table.write(out)?;
    }
    writeln!(out)?;
    let sidecars = &status.sidecars;
    if sidecars.is_empty() {
        writeln!(out, "No sidecar has asked for its config yet.")?;
    } else {
        // Per service first, as `istioctl proxy-status` sums up a rollout.
        let mut services: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
        for s in sidecars {
            let entry = services
                .entry((
                    or_dash(s.service.as_deref()),
                    or_dash(s.namespace.as_deref()),
                ))
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
            "REPLICA",
        ]);
        for s in sidecars {
            table.row(vec![
                or_dash(s.pod.as_deref()),
                or_dash(s.service.as_deref()),
                or_dash(s.namespace.as_deref()),
                s.version.map_or_else(|| "-".to_owned(), |v| v.to_string()),
                if rollout.holds_latest(s) {
                    "SYNCED"
                } else {
                    "STALE"
                }
                .to_owned(),
                output::time(Some(s.last_seen_ms)),
                or_dash(s.replica.as_deref()),
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
        let status: StatusResponse = serde_json::from_value(serde_json::json!({
            "version": 7,
            "sidecars": [{"pod": "a", "version": 7}, {"pod": "b", "version": 6}]
        }))
        .unwrap();
        let r = Rollout::of(&status);
        assert_eq!((r.synced, r.total, r.done()), (1, 2, false));
        assert_eq!(r.describe(), "1 of 2 sidecars hold config version 7");
        let empty: StatusResponse = serde_json::from_str(r#"{"version": 1}"#).unwrap();
        assert!(Rollout::of(&empty).done());
    }
}
