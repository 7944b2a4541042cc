//! The harness's promise: no process outlives its mesh, also when a test panics.

use std::path::Path;

use boifi_mesh::Topology;

use crate::support::*;

fn alive(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie would still show `State: Z`.
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| {
            !s.lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'))
        })
        .unwrap_or(false)
}

#[test]
fn teardown_leaves_no_process_and_no_directory_even_when_a_test_panics() {
    let _machine = exclusive();
    let topology = Topology::online_boutique()
        .leaves()
        .only(&["cartservice", "adservice"]);
    let mut o = options(topology);
    o.filter = false;
    o.start_control_plane = false;
    let mut pids = Vec::new();
    let mut dir = None;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mesh = start(o);
        pids.extend(mesh.processes().iter().map(|p| p.pid()));
        dir = Some(mesh.dir().to_owned());
        assert!(pids.iter().all(|p| alive(*p)));
        panic!("a failing scenario");
    }));
    assert!(outcome.is_err());
    assert_eq!(pids.len(), 5, "2 apps, 2 sidecars, the ingress");
    let left: Vec<u32> = pids.into_iter().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "still running: {left:?}");
    assert!(
        !dir.as_deref().is_some_and(Path::exists),
        "{dir:?} was left behind"
    );
}
