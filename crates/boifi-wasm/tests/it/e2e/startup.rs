//! Startup cost of the filter: Envoy exec → first 200 through the listener, with and without it
//! (a bound asserted here; the figures are boifi-bench's `footprint`).

use super::*;
use boifi_testkit::ports::free_port;

#[test]
fn the_filter_adds_less_than_the_seed_target_to_envoys_start() {
    let p = Prereqs::find();
    let _serial = serial();
    let upstream = Upstream::start();
    let runs = 3;
    let start = |with_filter: bool| {
        let mut o = EnvoyOptions::new(
            Workload::new("frontend", "demo"),
            &p.wasm,
            free_port().unwrap(),
            upstream.port,
        );
        o.plugin_config = plugin_config();
        if !with_filter {
            o.wasm = None;
        }
        let envoy = Envoy::start(&p.envoy, &o);
        (envoy.startup, envoy.startup_cpu)
    };
    // Interleaved, so load from elsewhere on the machine hits both sides alike.
    let runs: Vec<((Duration, Duration), (Duration, Duration))> =
        (0..runs).map(|_| (start(false), start(true))).collect();
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let without = median(runs.iter().map(|r| r.0 .0).collect());
    let with = median(runs.iter().map(|r| r.1 .0).collect());
    let cpu_without = median(runs.iter().map(|r| r.0 .1).collect());
    let cpu_with = median(runs.iter().map(|r| r.1 .1).collect());
    // The figures (wall and CPU, module size) are boifi-bench's `footprint`; here the property:
    // the filter adds less than the seed target to Envoy's start, measured against no filter
    // in this run. On CPU time, which the machine's load hardly moves (wall time waits for
    // the cores).
    let seed = Duration::from_millis(500);
    assert!(
        cpu_with < cpu_without + seed,
        "Envoy used {cpu_with:?} of CPU to start with the filter, {cpu_without:?} without \
         (wall {with:?} vs {without:?}): the filter adds more than {seed:?}"
    );
}
