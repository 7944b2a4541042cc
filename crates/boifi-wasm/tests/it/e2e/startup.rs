//! Startup cost of the filter: Envoy exec → first 200 through the listener, with and without it.

use super::*;
use crate::harness::net::free_port;

#[test]
fn startup_time_with_and_without_the_filter() {
    let Some(p) = Prereqs::find() else { return };
    let _serial = serial();
    let upstream = Upstream::start();
    let runs = 3;
    let start = |with_filter: bool| {
        let mut o = EnvoyOptions::new(
            Workload::new("frontend", "demo"),
            &p.wasm,
            free_port(),
            upstream.port,
        );
        o.plugin_config = plugin_config();
        if !with_filter {
            o.wasm = None;
        }
        Envoy::start(&p.envoy, &o).startup
    };
    // Interleaved, so load from elsewhere on the machine hits both sides alike.
    let (mut without, mut with): (Vec<Duration>, Vec<Duration>) =
        (0..runs).map(|_| (start(false), start(true))).unzip();
    without.sort();
    with.sort();
    let (without, with) = (without[runs / 2], with[runs / 2]);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let size = std::fs::metadata(&p.wasm).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "startup (median of {runs}): without filter {:.0} ms, with filter {:.0} ms, delta {:.0} ms; module {size} bytes",
        ms(without),
        ms(with),
        ms(with) - ms(without)
    );
    assert!(
        with < Duration::from_secs(5),
        "startup with the filter took {with:?}"
    );
}
