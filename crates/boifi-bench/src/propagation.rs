//! Propagation: in a mesh of real Envoy sidecars, the time from a policy write being
//! acknowledged by the control plane to every sidecar having applied it.
//!
//! "Applied" is the moment the filter logs `boifi: applied config version N` (Envoy's log
//! timestamps, millisecond precision, compared with the wall clock at the acknowledgement);
//! the sidecars' `hfi.config.version` gauges, polled through their admin ports, confirm it
//! and give an upper bound (the polling sweep adds its own latency).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use boifi_mesh::mesh::wait_applied;
use boifi_mesh::topology::{Protocol, ServiceSpec, Topology};
use boifi_mesh::{Mesh, MeshOptions};

use crate::error::BenchError;
use crate::policies;
use crate::report::{self, Table};
use crate::server;
use crate::stats;
use boifi_mesh::stats::quantile;

/// The service every sidecar of the benchmark mesh belongs to.
pub const SERVICE: &str = "propagation";

/// How to run the propagation benchmark.
#[derive(Debug, Clone)]
pub struct Options {
    /// Sidecars to start.
    pub sidecars: usize,
    /// Writes to time.
    pub writes: usize,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix ms of an Envoy log line's `[2026-11-26 06:37:04.712]` prefix (UTC: the benchmark
/// runs Envoy with `TZ=UTC`).
pub fn log_time_ms(line: &str) -> Option<u64> {
    let ts = line.strip_prefix('[')?.get(..23)?;
    let num = |r: std::ops::Range<usize>| ts.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    let days = days_from_civil(y, mo, d);
    let total = ((days * 24 + h) * 60 + mi) * 60 + s;
    u64::try_from(total * 1000 + ms).ok()
}

/// When the log says config `version` was applied (the first such line).
pub fn applied_at_ms(log: &str, version: u64) -> Option<u64> {
    let needle = format!("boifi: applied config version {version}:");
    log.lines()
        .find(|l| l.contains(&needle))
        .and_then(log_time_ms)
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Starts a mesh of `wanted` sidecars, or of as many as the machine holds: when the mesh
/// does not come up in time, retries with 60 % of the sidecars (down to 5).
fn start_mesh(wanted: usize) -> Result<(Mesh, f64), BenchError> {
    let mut n = wanted;
    loop {
        let mut spec = ServiceSpec::new(SERVICE, policies::NAMESPACE, Protocol::Http);
        spec.replicas = n;
        let mut options = MeshOptions::new(Topology {
            services: vec![spec],
            ..Topology::default()
        });
        options.progress = true;
        let started = Instant::now();
        match Mesh::start(options) {
            Ok(mesh) => return Ok((mesh, started.elapsed().as_secs_f64())),
            Err(e @ boifi_mesh::MeshError::Timeout { .. }) if n > 5 => {
                let fewer = (n * 3 / 5).max(5);
                eprintln!(
                    "propagation: a mesh of {n} sidecars did not come up ({e}); trying {fewer}"
                );
                n = fewer;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Runs the benchmark; returns the Markdown section.
pub fn run(o: &Options) -> Result<String, BenchError> {
    let (mesh, start_s) = start_mesh(o.sidecars)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], mesh.control_plane.port));
    let version = server::version(addr)?;
    wait_applied(&mesh, version, Instant::now(), Duration::from_secs(60))?;
    let logs: Vec<(String, PathBuf)> = mesh
        .pods()
        .filter_map(|(_, p)| Some((p.name.clone(), p.sidecar.as_ref()?.log_path().to_owned())))
        .collect();
    let sidecars = logs.len();
    let mut slowest = Vec::new();
    let mut slowest_sent = Vec::new();
    let mut acks = Vec::new();
    let mut polled = Vec::new();
    let mut every = Vec::new();
    for w in 0..o.writes {
        // A real change each time: the abort share of the probe policy.
        let percent = u32::try_from(w % 50).unwrap_or(0) + 1;
        let policy = policies::abort("propagation-probe", SERVICE, percent);
        let sent_wall = unix_ms(SystemTime::now());
        server::put(addr, &policy)?;
        let acked_wall = unix_ms(SystemTime::now());
        acks.push(Duration::from_millis(acked_wall.saturating_sub(sent_wall)));
        let acked = Instant::now();
        let version = server::version(addr)?;
        let seen = wait_applied(&mesh, version, acked, Duration::from_secs(30))?;
        polled.push(seen.values().max().copied().unwrap_or_default());
        let mut per_write: BTreeMap<&str, Duration> = BTreeMap::new();
        let mut from_sent = Duration::ZERO;
        for (name, path) in &logs {
            let log = std::fs::read_to_string(path)
                .map_err(|e| BenchError::io(format!("reading `{}`", path.display()), e))?;
            let at = applied_at_ms(&log, version).ok_or_else(|| {
                BenchError::Unexpected(format!(
                    "`{name}` shows version {version} in its stats but no `applied` log line"
                ))
            })?;
            // Log times are whole milliseconds and a sidecar may apply the write before its
            // acknowledgement reaches the client: such a sidecar counts as 0 ms after it.
            per_write.insert(name, Duration::from_millis(at.saturating_sub(acked_wall)));
            from_sent = from_sent.max(Duration::from_millis(at.saturating_sub(sent_wall)));
        }
        let max = per_write.values().max().copied().unwrap_or_default();
        eprintln!(
            "propagation write {}: version {version}, every one of {sidecars} sidecars applied after {} ms (log), seen after {} ms (stats polling)",
            w + 1,
            max.as_millis(),
            polled.last().copied().unwrap_or_default().as_millis()
        );
        slowest.push(max);
        slowest_sent.push(from_sent);
        every.extend(per_write.into_values());
        std::thread::sleep(Duration::from_millis(200));
    }
    slowest.sort();
    slowest_sent.sort();
    acks.sort();
    polled.sort();
    every.sort();
    let q = |v: &[Duration], p: f64| {
        quantile(v, p).map_or_else(String::new, |d| report::millis(stats::ms(d)))
    };
    let mut t = Table::new(&["measure", "p50", "p99", "max"]);
    let rows = [
        (
            format!("write ack → all {sidecars} sidecars applied (log time)"),
            &slowest,
        ),
        (
            format!("write sent → all {sidecars} sidecars applied (log time)"),
            &slowest_sent,
        ),
        (
            "write sent → acknowledged (embedded store commit)".to_owned(),
            &acks,
        ),
        (
            "write ack → one sidecar applied (log time, every sidecar × write)".to_owned(),
            &every,
        ),
        (
            "write ack → all seen applied by polling their stats (upper bound)".to_owned(),
            &polled,
        ),
    ];
    for (measure, samples) in rows {
        t.row(vec![
            measure,
            q(samples, 0.5),
            q(samples, 0.99),
            q(samples, 1.0),
        ]);
    }
    let p99 = quantile(&slowest, 0.99).map(stats::ms);
    let verdict = match p99 {
        Some(v) if v <= 250.0 => "met",
        Some(_) => "**not met**",
        None => "not measured",
    };
    Ok(format!(
        "`boifi-bench propagation`: a mesh of {sidecars} Envoy sidecars (each `--concurrency 1` \
         with the boifi filter, in front of its own app; the mesh started in {start_s:.0} s) and \
         one `boifi-server` on its embedded store; {writes} writes of a policy selecting every \
         sidecar (`POST /v1/policies`, 200 ms apart). Time from the acknowledgement (wall clock \
         after the answer) to the filter's `applied config version N` log line in each sidecar \
         (Envoy log timestamps, ms); confirmed by each sidecar's `hfi.config.version` gauge.\n\n\
         {table}\nGoal (issue 9): p99 ≤ 250 ms — {verdict}.\n",
        writes = o.writes,
        table = t.to_markdown(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_envoy_log_times() {
        let line = "[2026-11-26 06:37:04.712][22913][info][wasm] [source/extensions/common/wasm/context.cc:1151] wasm log: boifi: applied config version 7: 1 policies for this sidecar [p]";
        // 2026-11-26T06:37:04.712Z
        assert_eq!(log_time_ms(line), Some(1_795_675_024_712));
        assert_eq!(applied_at_ms(line, 7), Some(1_795_675_024_712));
        assert_eq!(applied_at_ms(line, 70), None);
        assert_eq!(log_time_ms("no timestamp"), None);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }
}
