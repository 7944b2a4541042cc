//! `status`: policies with their state, and where each sidecar stands with the latest config
//! version (like `istioctl proxy-status`): applied, pending, or refused with its reason.
//! `--watch` waits for a rollout to finish.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Instant;

use boifi_core::wire::{SidecarState, SidecarStatusEntry, StatusResponse, Targets};

use crate::cli::{GlobalArgs, OutputFormat, StatusArgs};
use crate::client::Client;
use crate::error::CliError;
use crate::output::{self, Table};

/// Frames of the `--watch` spinner.
const SPINNER: &[char] = &['|', '/', '-', '\\'];

/// Prints the status once, or with `--watch` polls until no sidecar is pending the latest
/// config version; sidecars that refused it make the watch fail.
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
            if rollout.refused > 0 {
                return Err(CliError::RolloutRefused(format!(
                    "{} of {} sidecars refused config version {}",
                    rollout.refused,
                    rollout.total(),
                    rollout.version
                )));
            }
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

/// Where the sidecars stand with the latest config version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollout {
    /// The latest config version.
    pub version: u64,
    /// Sidecars that applied it.
    pub applied: usize,
    /// Sidecars that have neither applied nor refused it yet.
    pub pending: usize,
    /// Sidecars that refused it.
    pub refused: usize,
}

impl Rollout {
    /// No sidecar yet, at config `version`.
    pub fn new(version: u64) -> Rollout {
        Rollout {
            version,
            applied: 0,
            pending: 0,
            refused: 0,
        }
    }

    /// Reads the rollout from a status answer.
    pub fn of(status: &StatusResponse) -> Rollout {
        let mut rollout = Rollout::new(status.version);
        for sidecar in &status.sidecars {
            rollout.count(state(sidecar, status.version));
        }
        rollout
    }

    /// Counts one sidecar in `state`.
    pub fn count(&mut self, state: SidecarState) {
        let count = match state {
            SidecarState::Applied => &mut self.applied,
            SidecarState::Pending => &mut self.pending,
            SidecarState::Refused => &mut self.refused,
        };
        *count += 1;
    }

    /// Sidecars counted.
    pub fn total(&self) -> usize {
        self.applied + self.pending + self.refused
    }

    /// No sidecar is pending (trivially so when there are none): each applied or refused.
    pub fn done(&self) -> bool {
        self.pending == 0
    }

    /// `3 of 5 sidecars applied config version 12 (1 pending, 1 refused)`.
    pub fn describe(&self) -> String {
        format!(
            "{} of {} sidecars applied config version {} ({} pending, {} refused)",
            self.applied,
            self.total(),
            self.version,
            self.pending,
            self.refused
        )
    }
}

/// The server's verdict, or, from a server that does not give one, a comparison of versions
/// (such a server cannot tell a refusal).
fn state(sidecar: &SidecarStatusEntry, latest: u64) -> SidecarState {
    SidecarState::from_name(&sidecar.state).unwrap_or(
        if sidecar.current || sidecar.version == Some(latest) {
            SidecarState::Applied
        } else {
            SidecarState::Pending
        },
    )
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
    if let Some(why) = &status.store_degraded {
        writeln!(
            out,
            "Store degraded: {why}; writes are refused (503) and sidecars keep the last config until it recovers"
        )?;
    }
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
        return Ok(());
    }
    // Per service first, as `istioctl proxy-status` sums up a rollout.
    let mut services: BTreeMap<(String, String), Rollout> = BTreeMap::new();
    for s in sidecars {
        services
            .entry((
                or_dash(s.service.as_deref()),
                or_dash(s.namespace.as_deref()),
            ))
            .or_insert_with(|| Rollout::new(status.version))
            .count(state(s, status.version));
    }
    let mut table = Table::new(&[
        "SERVICE",
        "NAMESPACE",
        "SIDECARS",
        "APPLIED",
        "PENDING",
        "REFUSED",
    ]);
    for ((service, namespace), counts) in services {
        table.row(vec![
            service,
            namespace,
            counts.total().to_string(),
            counts.applied.to_string(),
            counts.pending.to_string(),
            counts.refused.to_string(),
        ]);
    }
    table.write(out)?;
    writeln!(out)?;
    let mut table = Table::new(&[
        "POD",
        "SERVICE",
        "NAMESPACE",
        "STATE",
        "APPLIED",
        "LAST SEEN",
        "REPLICA",
    ]);
    for s in sidecars {
        table.row(vec![
            or_dash(s.pod.as_deref()),
            or_dash(s.service.as_deref()),
            or_dash(s.namespace.as_deref()),
            state(s, status.version).as_str().to_uppercase(),
            s.version.map_or_else(|| "-".to_owned(), |v| v.to_string()),
            output::time(Some(s.last_seen_ms)),
            or_dash(s.replica.as_deref()),
        ]);
    }
    table.write(out)?;
    // Reasons last: they can be long, and each is what a person reads to fix the set.
    let refusals: Vec<_> = sidecars
        .iter()
        .filter_map(|s| s.refused.as_ref().map(|r| (s, r)))
        .collect();
    if !refusals.is_empty() {
        writeln!(out)?;
        writeln!(out, "Refusals:")?;
        let mut table = Table::new(&["POD", "SERVICE", "NAMESPACE", "VERSION", "REASON"]);
        for (s, refusal) in refusals {
            table.row(vec![
                or_dash(s.pod.as_deref()),
                or_dash(s.service.as_deref()),
                or_dash(s.namespace.as_deref()),
                refusal.version.to_string(),
                or_dash(Some(&refusal.reason)),
            ]);
        }
        table.write_indented(out, "  ")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollout_counts_each_state_and_reads_servers_that_do_not_give_one() {
        let status: StatusResponse = serde_json::from_value(serde_json::json!({
            "version": 7,
            "sidecars": [
                {"pod": "a", "version": 7, "current": true, "state": "applied"},
                {"pod": "b", "version": 6, "state": "pending"},
                {"pod": "c", "version": 6, "state": "refused",
                 "refused": {"version": 7, "reason": "over the limit"}}
            ]
        }))
        .unwrap();
        let r = Rollout::of(&status);
        assert_eq!(
            (r.applied, r.pending, r.refused, r.done()),
            (1, 1, 1, false)
        );
        assert_eq!(
            r.describe(),
            "1 of 3 sidecars applied config version 7 (1 pending, 1 refused)"
        );
        // A server before sidecar states: the version decides, and none is refused.
        let older: StatusResponse = serde_json::from_value(serde_json::json!({
            "version": 7,
            "sidecars": [{"pod": "a", "version": 7}, {"pod": "b", "version": 6}]
        }))
        .unwrap();
        let r = Rollout::of(&older);
        assert_eq!((r.applied, r.pending, r.refused), (1, 1, 0));
        let empty: StatusResponse = serde_json::from_str(r#"{"version": 1}"#).unwrap();
        assert!(Rollout::of(&empty).done());
    }

    #[test]
    fn a_degraded_store_is_said_first() {
        let mut status: StatusResponse = serde_json::from_str(r#"{"version": 1}"#).unwrap();
        let table = |status: &StatusResponse| {
            let mut out = Vec::new();
            print(OutputFormat::Table, status, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert!(!table(&status).contains("Store degraded"));
        status.store_degraded = Some("etcd has no quorum".into());
        assert!(
            table(&status).starts_with("Store degraded: etcd has no quorum; writes are refused"),
            "{}",
            table(&status)
        );
    }
}
