//! Data plane: one Envoy (`--concurrency 1`) in front of the fixed upstream, the same wrk
//! load in alternating rounds over every configuration, ratios taken within each round.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::envoy::{Envoy, EnvoySpec, Filters};
use crate::error::BenchError;
use crate::policies;
use crate::report::{self, Table};
use crate::server::Server;
use crate::stats::{self, median};
use crate::upstream::Upstream;
use crate::wrk::{self, Load, WrkRun};

/// How to run the data-plane benchmark.
#[derive(Debug, Clone)]
pub struct Options {
    /// Envoy.
    pub envoy: PathBuf,
    /// The filter module.
    pub wasm: PathBuf,
    /// Rounds (each runs every configuration once; the order alternates).
    pub rounds: usize,
    /// Measured run per configuration and round.
    pub duration: Duration,
    /// Unmeasured run before each measured one.
    pub warmup: Duration,
    /// wrk connections.
    pub connections: u32,
    /// Other builds of the filter to compare in configuration (d): `(label, module)`.
    pub extra_wasm: Vec<(String, PathBuf)>,
    /// Only these configurations (`"acd"`); `None`: all. Extra modules always run.
    pub only: Option<String>,
    /// Also record each configuration's Envoy with `perf record` (first round) into this
    /// directory (`<n>.perf.data`), to see where its CPU goes.
    pub perf_dir: Option<PathBuf>,
    /// Pin Envoy to CPU 1 and this process (the upstream, and wrk, which inherits it) to CPU
    /// 0, so the proxy has a core of its own.
    pub pin: bool,
    /// The native dynamic module (`libboifi.so`): its rows run in the same rounds.
    pub native: Option<PathBuf>,
}

/// One configuration under test.
#[derive(Debug, Clone)]
struct Config {
    label: String,
    filters: Filters,
    /// boifi: policies expected to be active in the filter.
    active: Option<u64>,
}

/// What one configuration measured in one round.
#[derive(Debug, Clone)]
struct Sample {
    run: WrkRun,
    /// Proxy CPU per request, µs.
    cpu_us: f64,
}

/// The label of the floor module's row: every boifi row is measured against it.
const FLOOR: &str = "(w) floor module (empty, straight on the proxy-wasm ABI)";

fn configs(
    wasm: &Path,
    floor: &Path,
    sdk: &Path,
    extra: &[(String, PathBuf)],
    server: &Server,
) -> Vec<Config> {
    let with = |wasm: &Path, service: &str| Filters::Boifi {
        wasm: wasm.to_owned(),
        plugin_config: policies::plugin_config(service),
        control_plane: server.addr,
    };
    let boifi = |service: &str| with(wasm, service);
    let mut list = vec![
        Config {
            label: "(a) plain router".to_owned(),
            filters: Filters::Plain,
            active: None,
        },
        Config {
            label: "(b) native fault filter, 0 %".to_owned(),
            filters: Filters::NativeFault { percent: 0 },
            active: None,
        },
        Config {
            label: FLOOR.to_owned(),
            filters: Filters::Module {
                wasm: floor.to_owned(),
            },
            active: None,
        },
        Config {
            label: "(s) SDK-only module (proxy-wasm Rust SDK, does nothing)".to_owned(),
            filters: Filters::Module {
                wasm: sdk.to_owned(),
            },
            active: None,
        },
        Config {
            label: "(c) boifi, 0 policies".to_owned(),
            filters: boifi("dp-c"),
            active: Some(0),
        },
        Config {
            label: "(d) boifi, 10 policies, none fires".to_owned(),
            filters: boifi("dp-d"),
            active: Some(10),
        },
        Config {
            label: "(g) boifi, 10 response-phase policies, none fires".to_owned(),
            filters: boifi("dp-g"),
            active: Some(10),
        },
        Config {
            label: "(e) boifi, 100 policies, 10 for this service".to_owned(),
            filters: boifi("dp-e"),
            active: Some(10),
        },
        Config {
            label: "(f) native fault filter, abort 10 %".to_owned(),
            filters: Filters::NativeFault { percent: 10 },
            active: None,
        },
        Config {
            label: "(f) boifi, abort 10 %".to_owned(),
            filters: boifi("dp-f"),
            active: Some(1),
        },
    ];
    for (label, module) in extra {
        list.push(Config {
            label: format!("(d) boifi [{label}], 10 policies, none fires"),
            filters: with(module, "dp-d"),
            active: Some(10),
        });
    }
    list
}

/// The native module's rows: same services (so the same policies) as (c) and (d).
fn native_configs(module: &Path, server: &Server) -> Vec<Config> {
    let native = |service: &str| Filters::BoifiNative {
        module: module.to_owned(),
        plugin_config: policies::plugin_config(service),
        control_plane: server.addr,
    };
    vec![
        Config {
            label: "(c) boifi native module, 0 policies".to_owned(),
            filters: native("dp-c"),
            active: Some(0),
        },
        Config {
            label: NATIVE_D.to_owned(),
            filters: native("dp-d"),
            active: Some(10),
        },
    ]
}

const NATIVE_D: &str = "(d) boifi native module, 10 policies, none fires";

/// The native module's goals (issue 14): (d) native ≥ 0.97× (b) throughput, p99 ≤ 1.05× (b).
fn native_goals(configs: &[Config], samples: &[Vec<Sample>], b: &[Sample]) -> String {
    let Some(d) = configs
        .iter()
        .position(|c| c.label == NATIVE_D)
        .and_then(|i| samples.get(i))
    else {
        return "Native module: not measured (no `--native` module).\n".to_owned();
    };
    let thr = per_round(d, b, |s| s.run.rps);
    let lat = per_round(d, b, |s| stats::ms(s.run.p99));
    format!(
        "Goals (issue 14): native (d) throughput ≥ 0.97× (b): {}; native (d) p99 ≤ 1.05× (b): {}.\n",
        verdict(thr, |v| v >= 0.97),
        verdict(lat, |v| v <= 1.05)
    )
}

fn verdict(v: Option<f64>, ok: fn(f64) -> bool) -> String {
    match v {
        Some(v) if ok(v) => format!("{v:.3}× — met"),
        Some(v) => format!("{v:.3}× — **not met**"),
        None => "not measured".to_owned(),
    }
}

fn write_policies(server: &Server) -> Result<(), BenchError> {
    for i in 0..10 {
        server.put(&policies::dormant(&format!("dp-d-{i}"), "dp-d", i))?;
        server.put(&policies::dormant(&format!("dp-e-{i}"), "dp-e", i))?;
        server.put(&policies::dormant_response(&format!("dp-g-{i}"), "dp-g", i))?;
    }
    for i in 0..90 {
        let other = format!("dp-other-{i}");
        server.put(&policies::dormant(&format!("{other}-p"), &other, i))?;
    }
    server.put(&policies::abort("dp-f-abort", "dp-f", 10))
}

/// Waits until a boifi Envoy holds `version` with `active` policies.
fn wait_applied(envoy: &Envoy, version: u64, active: u64) -> Result<(), BenchError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = envoy.prometheus()?;
        let v = boifi_mesh::stats::metric_sum(&text, "hfi_config_version");
        let a = boifi_mesh::stats::metric_sum(&text, "hfi_policies_active");
        if v == Some(version) && a == Some(active) {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(BenchError::Unexpected(format!(
                "`{}` did not apply version {version} with {active} policies (has {v:?}, {a:?}); log: {}",
                envoy.spec.name,
                envoy.log_tail(20)
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn measure(envoy: &Envoy, load: &Load, ticks_per_s: u64) -> Result<Sample, BenchError> {
    let before = stats::cpu_ticks(envoy.pid());
    let run = wrk::run(&envoy.url(), load)?;
    let after = stats::cpu_ticks(envoy.pid());
    let (Some(before), Some(after)) = (before, after) else {
        return Err(BenchError::Unexpected(format!(
            "`{}` is gone",
            envoy.spec.name
        )));
    };
    #[expect(
        clippy::cast_precision_loss,
        reason = "tick and request counts are far below 2^52"
    )]
    let cpu_us = (after.saturating_sub(before)) as f64 / ticks_per_s as f64 * 1e6
        / run.requests.max(1) as f64;
    Ok(Sample { run, cpu_us })
}

/// Runs this process (and what it starts afterwards, unless told otherwise) on CPU 0 only.
fn pin_to_cpu0() -> Result<(), BenchError> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", "0", &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| BenchError::io("running taskset", e))?;
    if status.success() {
        Ok(())
    } else {
        Err(BenchError::Unexpected(format!(
            "taskset exited with {status}"
        )))
    }
}

/// `perf record` of process `pid` for `duration`, into `out`.
fn perf_record(
    pid: u32,
    out: &Path,
    duration: Duration,
) -> Result<std::process::Child, BenchError> {
    std::process::Command::new("perf")
        .args(["record", "-q", "-F", "999", "-p", &pid.to_string(), "-o"])
        .arg(out)
        .args(["--", "sleep", &duration.as_secs().to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| BenchError::io("running perf record", e))
}

/// Runs the benchmark; returns the Markdown section.
pub fn run(o: &Options, dir: &Path) -> Result<String, BenchError> {
    if o.pin {
        pin_to_cpu0()?;
    }
    let upstream = Upstream::start()?;
    let server = Server::start(dir)?;
    write_policies(&server)?;
    let version = server.version()?;
    let floor = crate::modules::floor(dir)?;
    let sdk = crate::modules::sdk_noop(&o.wasm)?;
    let mut configs = configs(&o.wasm, &floor, &sdk, &o.extra_wasm, &server);
    if let Some(module) = &o.native {
        configs.extend(native_configs(module, &server));
    }
    if let Some(only) = &o.only {
        configs.retain(|c| {
            c.label.contains('[') || c.label.chars().nth(1).is_some_and(|l| only.contains(l))
        });
    }
    let mut envoys = Vec::new();
    for (i, c) in configs.iter().enumerate() {
        let spec = EnvoySpec {
            name: format!("dataplane-{i}"),
            filters: c.filters.clone(),
            upstream_port: upstream.port(),
            concurrency: 1,
            cpus: o.pin.then(|| "1".to_owned()),
        };
        let envoy = Envoy::start(&o.envoy, dir, spec)?;
        if let Some(active) = c.active {
            wait_applied(&envoy, version, active)?;
        }
        envoys.push(envoy);
    }
    let ticks = stats::clock_ticks_per_second();
    let load = Load {
        threads: 1,
        connections: o.connections,
        duration: o.duration,
    };
    let warmup = Load {
        duration: o.warmup,
        ..load.clone()
    };
    // samples[config][round]
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); configs.len()];
    for round in 0..o.rounds {
        for i in stats::round_order(configs.len(), round) {
            let (Some(envoy), Some(c)) = (envoys.get(i), configs.get(i)) else {
                continue;
            };
            if !o.warmup.is_zero() {
                wrk::run(&envoy.url(), &warmup)?;
            }
            let perf = match &o.perf_dir {
                Some(d) if round == 0 => Some(perf_record(
                    envoy.pid(),
                    &d.join(format!("{i}.perf.data")),
                    o.duration,
                )?),
                _ => None,
            };
            let s = measure(envoy, &load, ticks)?;
            if let Some(mut p) = perf {
                let _ = p.wait();
            }
            eprintln!(
                "dataplane round {}: {:<46} {:>9.0} req/s  p50 {:>8.3} ms  p99 {:>8.3} ms  cpu {:>6.1} us/req  non-2xx {}",
                round + 1,
                c.label,
                s.run.rps,
                stats::ms(s.run.p50),
                stats::ms(s.run.p99),
                s.cpu_us,
                s.run.non_2xx
            );
            if let Some(list) = samples.get_mut(i) {
                list.push(s);
            }
        }
    }
    Ok(render(o, &configs, &samples))
}

fn per_round(samples: &[Sample], base: &[Sample], f: impl Fn(&Sample) -> f64) -> Option<f64> {
    per_round_with(samples, base, f, |s, b| s / b)
}

/// The median over rounds of `combine(f(sample), f(base))`, both from the same round.
fn per_round_with(
    samples: &[Sample],
    base: &[Sample],
    f: impl Fn(&Sample) -> f64,
    combine: impl Fn(f64, f64) -> f64,
) -> Option<f64> {
    let values: Vec<f64> = samples
        .iter()
        .zip(base)
        .map(|(s, b)| combine(f(s), f(b)))
        .filter(|r| r.is_finite())
        .collect();
    median(&values)
}

fn render(o: &Options, configs: &[Config], samples: &[Vec<Sample>]) -> String {
    let empty = Vec::new();
    let by_label = |prefix: &str| {
        configs
            .iter()
            .position(|c| c.label.starts_with(prefix))
            .and_then(|i| samples.get(i))
            .unwrap_or(&empty)
    };
    let a = by_label("(a)");
    let b = by_label("(b)");
    let w = by_label("(w)");
    let mut t = Table::new(&[
        "configuration",
        "req/s",
        "p50",
        "p99",
        "proxy CPU/req",
        "req/s ÷ (a)",
        "p99 ÷ (a)",
        "CPU ÷ (a)",
        "req/s ÷ (b)",
        "p99 ÷ (b)",
        "CPU ÷ (b)",
        "req/s ÷ (w)",
        "p99 ÷ (w)",
        "CPU − (w)",
        "faults",
    ]);
    let rps = |s: &Sample| s.run.rps;
    let p99 = |s: &Sample| stats::ms(s.run.p99);
    let cpu = |s: &Sample| s.cpu_us;
    let mut d_vs_b = (None, None);
    // (d) against the floor: throughput, p99, CPU difference; (c) throughput.
    let mut d_vs_w = (None, None, None);
    let mut c_vs_w = None;
    let cpu_diff = |list: &[Sample]| per_round_with(list, w, cpu, |s, b| s - b);
    for (c, list) in configs.iter().zip(samples) {
        let med = |f: &dyn Fn(&Sample) -> f64| median(&list.iter().map(f).collect::<Vec<_>>());
        #[expect(
            clippy::cast_precision_loss,
            reason = "request counts are far below 2^52"
        )]
        let faults: f64 = {
            let (n, r) = list.iter().fold((0u64, 0u64), |(n, r), s| {
                (n + s.run.non_2xx, r + s.run.requests)
            });
            n as f64 / r.max(1) as f64 * 100.0
        };
        if c.label.starts_with("(d) boifi,") {
            d_vs_b = (per_round(list, b, rps), per_round(list, b, p99));
            d_vs_w = (
                per_round(list, w, rps),
                per_round(list, w, p99),
                cpu_diff(list),
            );
        }
        if c.label.starts_with("(c) boifi,") {
            c_vs_w = per_round(list, w, rps);
        }
        t.row(vec![
            c.label.clone(),
            med(&rps).map_or_else(String::new, report::rps),
            med(&|s| stats::ms(s.run.p50)).map_or_else(String::new, report::millis),
            med(&p99).map_or_else(String::new, report::millis),
            med(&cpu).map_or_else(String::new, |v| format!("{v:.1} µs")),
            report::ratio(per_round(list, a, rps)),
            report::ratio(per_round(list, a, p99)),
            report::ratio(per_round(list, a, cpu)),
            report::ratio(per_round(list, b, rps)),
            report::ratio(per_round(list, b, p99)),
            report::ratio(per_round(list, b, cpu)),
            report::ratio(per_round(list, w, rps)),
            report::ratio(per_round(list, w, p99)),
            cpu_diff(list).map_or_else(String::new, |v| format!("{v:+.1} µs")),
            format!("{faults:.2} %"),
        ]);
    }
    format!(
        "`boifi-bench dataplane`: one Envoy 1.40 (`--concurrency 1`) per configuration, all \
         started once, in front of the same in-process Rust HTTP/1.1 upstream (`200 ok`), \
         loaded in turn by `wrk -t1 -c{conns} -d{secs}s --latency` on the loopback after a \
         {warm} s warm-up, {rounds} rounds in alternating order. Figures are medians over the \
         rounds; every ratio is the median of the per-round ratios (both sides measured in the \
         same round). Proxy CPU/req = Envoy's utime+stime over the run ÷ requests. \
         boifi policies come from a real `boifi-server --storage memory`; (d)/(e)/(g) policies \
         match a header or path prefix the load never sends (100 % abort if they did); (g)'s \
         act on the response (`target: response`), so Envoy enters the module on every \
         response too (the dormant cost of response-phase rules). `--extra-wasm main=<module>` \
         adds (d) for another build (e.g. the current main) in the same rounds.\n\n\
         (w) is the floor: a module of a few hundred bytes of WAT exporting only what Envoy \
         needs, each export doing nothing (`crates/boifi-bench/modules/floor.wat`); (s) a \
         proxy-wasm Rust SDK filter doing nothing. CPU − (w) is the median of the per-round \
         differences.\n\n\
         {table}\n\
         Goals (issue 13, against the floor (w)): (d) throughput ≥ 0.97×: {thr_w}; (d) p99 ≤ \
         1.05×: {lat_w}; (d) proxy CPU/req ≤ floor + 2 µs: {cpu_w}; (c) throughput ≥ 0.99×: \
         {thr_c}. Issue 9 (against (b)): (d) throughput ≥ 0.95×: {thr}; (d) p99 ≤ 1.05×: \
         {lat}.\n\n{native}",
        conns = o.connections,
        secs = o.duration.as_secs(),
        warm = o.warmup.as_secs(),
        rounds = o.rounds,
        table = t.to_markdown(),
        thr = verdict(d_vs_b.0, |v| v >= 0.95),
        lat = verdict(d_vs_b.1, |v| v <= 1.05),
        thr_w = verdict(d_vs_w.0, |v| v >= 0.97),
        lat_w = verdict(d_vs_w.1, |v| v <= 1.05),
        cpu_w = match d_vs_w.2 {
            Some(v) if v <= 2.0 => format!("{v:+.1} µs — met"),
            Some(v) => format!("{v:+.1} µs — **not met**"),
            None => "not measured".to_owned(),
        },
        thr_c = verdict(c_vs_w, |v| v >= 0.99),
        native = native_goals(configs, samples, b),
    )
}
