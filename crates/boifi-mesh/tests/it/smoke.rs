use crate::support::*;

#[test]
fn smoke_pods_serve_through_sidecars_and_ingress() {
    let _machine = exclusive();
    let mut o = options(&["frontend", "productcatalogservice"]);
    o.start_control_plane = false;
    o.progress = true;
    let mesh = start(o);
    let r = mesh.send("frontend", 30, 4).unwrap();
    eprintln!("{r:?}");
    assert_eq!(r.status(200), 30);
    assert_eq!(r.by_pod.len(), 3);
    let g = mesh.send("productcatalogservice", 10, 2).unwrap();
    eprintln!("{g:?}");
    assert_eq!(g.by_grpc_status.get(&0), Some(&10));
    eprintln!("rss {:?}", mesh.sidecar_rss_kib());
}
