//! SC-007 (10+ services with independent policies) and SC-008 (sidecar start time with the
//! filter), each on its own mesh on the embedded store.
#![allow(non_snake_case)]

use std::time::Duration;

use boifi_mesh::stats::quantile;
use boifi_mesh::Topology;

use crate::support::*;

/// SC-007: the 11 services of Online Boutique, each with its own policy at once; each service
/// sees only its own.
#[test]
fn SC007_eleven_services_with_independent_policies_each_see_only_their_own() {
    let _machine = exclusive();
    let topology = Topology::online_boutique()
        .leaves()
        .with_replicas("frontend", 1);
    let mut o = options(topology.clone());
    o.progress = true;
    let mesh = start(o);
    let rss = mesh.sidecar_rss_kib();
    eprintln!(
        "SC-007: {} sidecars serving {} after the first exec; control plane ready after {}; sidecar RSS {:.0}..{:.0} MiB (mean {:.0} MiB)",
        rss.len(),
        ms(mesh.all_pods_ready.unwrap()),
        ms(mesh.control_plane_ready.unwrap()),
        *rss.iter().min().unwrap() as f64 / 1024.0,
        *rss.iter().max().unwrap() as f64 / 1024.0,
        rss.iter().sum::<u64>() as f64 / 1024.0 / rss.len() as f64,
    );
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
    let (all, per_sidecar) = measure_propagation(&mesh, 20);
    eprintln!(
        "SC-007: propagation to all {} sidecars (embedded store, 1 replica) over {} writes: p50 {} p99 {}; per sidecar p50 {} p99 {}",
        mesh.pods().count(),
        all.len(),
        ms(quantile(&all, 0.5).unwrap()),
        ms(quantile(&all, 0.99).unwrap()),
        ms(quantile(&per_sidecar, 0.5).unwrap()),
        ms(quantile(&per_sidecar, 0.99).unwrap()),
    );
}

/// SC-008: the time a sidecar takes from exec to its first 200, with and without the filter
/// (each pod replaced one at a time on an otherwise idle mesh, so they do not compete).
#[test]
fn SC008_sidecar_start_time_with_and_without_the_filter() {
    let _machine = exclusive();
    let services = ["frontend", "productcatalogservice", "cartservice"];
    let mut figures = Vec::new();
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
        let rss = mesh.sidecar_rss_kib();
        let mean_rss = rss.iter().sum::<u64>() as f64 / 1024.0 / rss.len() as f64;
        eprintln!(
            "SC-008: sidecar exec → first 200 {} the filter: p50 {} max {} over {} starts; RSS {mean_rss:.0} MiB",
            if filter { "with" } else { "without" },
            ms(quantile(&times, 0.5).unwrap()),
            ms(*times.last().unwrap()),
            times.len()
        );
        figures.push(quantile(&times, 0.5).unwrap());
    }
    eprintln!(
        "SC-008: the filter adds {} at p50",
        ms(figures[0].saturating_sub(figures[1]))
    );
    assert!(figures[0] < Duration::from_secs(10), "{figures:?}");
}
