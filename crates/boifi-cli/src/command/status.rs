//! `status`: policies with their state, and where each proxy stands with the latest config
//! version (like `istioctl proxy-status`): applied, pending, or refused with its reason. Sidecars
//! are summed up per service; a shared proxy (waypoint, gateway) is shown as what it is, with the
//! services it serves. `--watch` waits for a rollout to finish.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Instant;

use boifi_core::wire::{
    SidecarState, SidecarStatusEntry, StatusResponse, Targets, IN_SHARED_PROXIES_NEVER,
};

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
                    "{} of {} {} refused config version {}",
                    rollout.refused,
                    rollout.total(),
                    rollout.noun(),
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
    /// How many of those counted are shared proxies (waypoints, gateways).
    pub shared: usize,
}

impl Rollout {
    /// No sidecar yet, at config `version`.
    pub fn new(version: u64) -> Rollout {
        Rollout {
            version,
            applied: 0,
            pending: 0,
            refused: 0,
            shared: 0,
        }
    }

    /// Reads the rollout from a status answer.
    pub fn of(status: &StatusResponse) -> Rollout {
        let mut rollout = Rollout::new(status.version);
        for sidecar in &status.sidecars {
            rollout.count(state(sidecar, status.version));
        }
        for proxy in &status.shared_proxies {
            rollout.count(state(proxy, status.version));
            rollout.shared += 1;
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

    /// `sidecars`, or `proxies` once shared proxies are counted too.
    pub fn noun(&self) -> &'static str {
        if self.shared == 0 {
            "sidecars"
        } else {
            "proxies"
        }
    }

    /// `3 of 5 sidecars applied config version 12 (1 pending, 1 refused)`.
    pub fn describe(&self) -> String {
        format!(
            "{} of {} {} applied config version {} ({} pending, {} refused)",
            self.applied,
            self.total(),
            self.noun(),
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
    let shared = &status.shared_proxies;
    if status.policies.is_empty() {
        writeln!(out, "No policies.")?;
    } else {
        // Where each policy acts in shared proxies matters once there are some.
        let mut columns = vec!["NAME", "TARGETS", "FAULTS", "STATE", "EXPIRES", "SIDECARS"];
        if !shared.is_empty() {
            columns.push("SHARED PROXIES");
        }
        let mut table = Table::new(&columns);
        for p in &status.policies {
            let mut row = vec![
                p.name.clone(),
                targets(&p.targets),
                p.fault_kinds.join(","),
                output::policy_state(&p.state, p.guard.as_ref()),
                output::time(p.expires_at_ms),
                p.matching_sidecars.to_string(),
            ];
            if !shared.is_empty() {
                row.push(if p.in_shared_proxies == IN_SHARED_PROXIES_NEVER {
                    p.in_shared_proxies.clone()
                } else {
                    p.matching_shared_proxies.to_string()
                });
            }
            table.row(row);
        }
        table.write(out)?;
        for p in &status.policies {
            if let Some(line) = p.guard.as_ref().and_then(output::guard_stop) {
                writeln!(out, "{}: {line}", p.name)?;
            }
        }
    }
    writeln!(out)?;
    if !shared.is_empty() {
        print_shared_proxies(status, out)?;
        writeln!(out)?;
    }
    let sidecars = &status.sidecars;
    if sidecars.is_empty() {
        writeln!(out, "No sidecar has asked for its config yet.")?;
        return print_refusals(status, out);
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
    print_refusals(status, out)
}

/// `waypoint demo/waypoint-7d9f: serving 5 services, config version 9 applied`: a shared proxy
/// as what it is.
fn shared_proxy_line(proxy: &SidecarStatusEntry, latest: u64) -> String {
    let name = format!(
        "{}/{}",
        or_dash(proxy.namespace.as_deref()),
        or_dash(proxy.pod.as_deref().or(proxy.service.as_deref()))
    );
    let serving = match proxy.destinations {
        Some(1) => "serving 1 service".to_owned(),
        Some(n) => format!("serving {n} services"),
        None => "services served not reported".to_owned(),
    };
    let where_it_stands = match state(proxy, latest) {
        SidecarState::Applied => format!("config version {latest} applied"),
        SidecarState::Refused => format!("config version {latest} refused"),
        SidecarState::Pending => match proxy.version {
            Some(applied) => format!("config version {latest} pending (holds {applied})"),
            None => format!("config version {latest} pending"),
        },
    };
    format!(
        "{} {name}: {serving}, {where_it_stands}",
        proxy.proxy.as_str()
    )
}

/// The shared proxies: one line each, then their table.
fn print_shared_proxies(status: &StatusResponse, out: &mut dyn Write) -> Result<(), CliError> {
    let counts = &status.totals.proxies;
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    writeln!(
        out,
        "Proxies: {}, {}, {}",
        plural(counts.sidecar, "sidecar", "sidecars"),
        plural(counts.waypoint, "waypoint", "waypoints"),
        plural(counts.gateway, "gateway", "gateways"),
    )?;
    for proxy in &status.shared_proxies {
        writeln!(out, "  {}", shared_proxy_line(proxy, status.version))?;
    }
    writeln!(out)?;
    let mut table = Table::new(&[
        "KIND",
        "POD",
        "NAMESPACE",
        "SERVES NAMESPACES",
        "SERVICES",
        "POLICIES",
        "STATE",
        "APPLIED",
        "LAST SEEN",
        "REPLICA",
    ]);
    for proxy in &status.shared_proxies {
        // A gateway is sent every namespace's policies; a waypoint its own and those it names.
        let serves = if proxy.proxy == boifi_core::identity::ProxyKind::Gateway {
            "*".to_owned()
        } else {
            let own = proxy.namespace.iter();
            let all: std::collections::BTreeSet<&String> =
                own.chain(proxy.namespaces.iter()).collect();
            let all: Vec<&str> = all.into_iter().map(String::as_str).collect();
            or_dash(Some(&all.join(",")))
        };
        table.row(vec![
            proxy.proxy.as_str().to_owned(),
            or_dash(proxy.pod.as_deref()),
            or_dash(proxy.namespace.as_deref()),
            serves,
            proxy
                .destinations
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
            proxy.policies.to_string(),
            state(proxy, status.version).as_str().to_uppercase(),
            proxy
                .version
                .map_or_else(|| "-".to_owned(), |v| v.to_string()),
            output::time(Some(proxy.last_seen_ms)),
            or_dash(proxy.replica.as_deref()),
        ]);
    }
    table.write(out)?;
    Ok(())
}

/// The reasons of every refusal, sidecars' and shared proxies'.
fn print_refusals(status: &StatusResponse, out: &mut dyn Write) -> Result<(), CliError> {
    // Reasons last: they can be long, and each is what a person reads to fix the set.
    let refusals: Vec<_> = status
        .sidecars
        .iter()
        .chain(&status.shared_proxies)
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
