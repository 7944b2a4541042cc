use crate::harness::envoy::{Envoy, EnvoyOptions, Workload};
use crate::harness::net::free_port;
use crate::harness::upstream::Upstream;
use crate::harness::Prereqs;

#[test]
fn envoy_passes_traffic_with_the_filter_and_no_control_plane() {
    let Some(p) = Prereqs::find() else { return };
    let upstream = Upstream::start();
    let o = EnvoyOptions::new(
        Workload::new("frontend", "demo"),
        &p.wasm,
        free_port(),
        upstream.port,
    );
    let envoy = Envoy::start(&p.envoy, &o);
    let mut c = envoy.client();
    for _ in 0..10 {
        assert_eq!(c.get("/").unwrap().status, 200);
    }
    eprintln!("startup {:?}\n{}", envoy.startup, envoy.log());
}
