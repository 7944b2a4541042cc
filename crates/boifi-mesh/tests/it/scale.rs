//! SC-007 (10+ services with independent policies) and SC-008 (sidecar start time with the
//! filter), each on its own mesh on the embedded store. These assert properties; the figures
//! (start-up, memory, propagation percentiles) are boifi-bench's (`footprint`, `propagation`).
#![allow(non_snake_case)]

use std::time::Duration;

use boifi_mesh::stats::quantile;
use boifi_mesh::Topology;

use crate::support::*;

/// The seed target for what the filter may add to a sidecar's start, and for propagation.
const SEED_STARTUP: Duration = Duration::from_millis(500);
const SEED_PROPAGATION: Duration = Duration::from_secs(5);

/// SC-007: the 11 services of Online Boutique, every pod serving, each with its own policy at
/// once; each service sees only its own, and every write reaches every sidecar.
#[test]
fn SC007_eleven_services_with_independent_policies_each_see_only_their_own() {
    let _machine = exclusive();
    let topology = Topology::online_boutique()
        .leaves()
        .with_replicas("frontend", 1);
    let mut o = options(topology.clone());
    o.progress = true;
    let mesh = start(o);
    assert!(mesh.all_pods_ready.is_some(), "not every pod got ready");
    for s in &topology.services {
        let r = send(&mesh, &s.name, 10);
        assert_eq!(
            r.passed, 10,
            "{} does not serve before any policy: {r:?}",
            s.name
        );
    }
    let mut yaml = String::new();
    for (i, s) in topology.services.iter().enumerate() {
        yaml.push_str(&format!(
            "---\nmetadata: {{name: sc007-{name}}}\n\
             spec:\n  selector: {{service: {name}, namespace: demo}}\n  \
             rules: [{{match: {{path: {{prefix: /}}}}, fault: {{percentage: 100, abort: {{httpStatus: {status}}}}}}}]\n",
            name = s.name,
            status = 500 + i
        ));
    }
    apply(&mesh, &yaml);
    for (i, s) in topology.services.iter().enumerate() {
        let r = send(&mesh, &s.name, 40);
        let own = format!("sc007-{}", s.name);
        assert_eq!(r.by_fault.get(&own), Some(&40), "{}: {r:?}", s.name);
        assert_eq!(
            r.by_fault.len(),
            1,
            "{} saw another service's policy: {r:?}",
            s.name
        );
        if !s.protocol.is_grpc() {
            assert_eq!(r.status(500 + i as u16), 40, "{}: {r:?}", s.name);
        }
    }
    // Every write reaches all 11 sidecars (measure_propagation fails otherwise), within the
    // seed target at p99.
    let (all, _) = measure_propagation(&mesh, 20);
    let p99 = quantile(&all, 0.99).unwrap();
    assert!(
        p99 < SEED_PROPAGATION,
        "propagation to every sidecar p99 {} (seed target {})",
        ms(p99),
        ms(SEED_PROPAGATION)
    );
}

/// SC-008: a sidecar's start (exec → first 200, each pod replaced one at a time on an
/// otherwise idle mesh) with the filter takes at most the seed target longer than without it,
/// both measured in this run so that the machine's load hits both alike.
#[test]
fn SC008_the_filter_adds_less_than_the_seed_target_to_a_sidecar_start() {
    let _machine = exclusive();
    let services = ["frontend", "productcatalogservice", "cartservice"];
    let mut p50 = Vec::new();
    for filter in [true, false] {
        let mut o = options(
            Topology::online_boutique()
                .leaves()
                .with_replicas("frontend", 1)
                .only(&services),
        );
        o.filter = filter;
        let mut mesh = start(o);
        let mut times = Vec::new();
        for _ in 0..2 {
            for s in services {
                times.push(mesh.restart_pod(s, 0).unwrap());
            }
        }
        times.sort();
        p50.push(quantile(&times, 0.5).unwrap());
    }
    let (with, without) = (p50[0], p50[1]);
    assert!(
        with < without + SEED_STARTUP,
        "with the filter p50 {}, without {}: the filter adds more than {}",
        ms(with),
        ms(without),
        ms(SEED_STARTUP)
    );
}
