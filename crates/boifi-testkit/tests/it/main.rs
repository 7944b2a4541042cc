//! The etcd harness against the real etcd binary.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test helpers")]

use std::time::{Duration, Instant};

use boifi_testkit::etcd::EtcdCluster;
use boifi_testkit::http;

fn put(addr: std::net::SocketAddr, key: &str, value: &str) -> http::Response {
    try_put(addr, key, value).unwrap()
}

fn try_put(
    addr: std::net::SocketAddr,
    key: &str,
    value: &str,
) -> Result<http::Response, http::HttpError> {
    // etcd's JSON gateway (v3 API over HTTP): keys and values are base64.
    let body = format!(
        r#"{{"key":"{}","value":"{}"}}"#,
        base64(key.as_bytes()),
        base64(value.as_bytes())
    );
    http::send_json(addr, "POST", "/v3/kv/put", &body, Duration::from_secs(10))
}

fn range(addr: std::net::SocketAddr, key: &str) -> String {
    let body = format!(r#"{{"key":"{}"}}"#, base64(key.as_bytes()));
    http::send_json(addr, "POST", "/v3/kv/range", &body, Duration::from_secs(5))
        .unwrap()
        .text()
}

/// Whether member `index` is the leader, from its status (JSON gateway; ids are strings).
fn is_leader(etcd: &EtcdCluster, index: usize) -> bool {
    let addr = etcd.member(index).unwrap().client_addr();
    let status = http::send_json(
        addr,
        "POST",
        "/v3/maintenance/status",
        "{}",
        Duration::from_secs(5),
    )
    .unwrap()
    .text();
    let field = |name: &str| {
        let at = status.find(&format!("\"{name}\":\"")).unwrap() + name.len() + 4;
        status[at..].split('"').next().unwrap().to_owned()
    };
    field("member_id") == field("leader")
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn single_member_starts_answers_and_dies_with_its_guard() {
    let etcd = EtcdCluster::for_test(1);
    let member = etcd.member(0).unwrap();
    assert!(member.is_healthy());
    assert_eq!(put(member.client_addr(), "k", "v").status, 200);
    assert!(range(member.client_addr(), "k").contains(&base64(b"v")));
    let addr = member.client_addr();
    let dir = etcd.dir().to_path_buf();
    drop(etcd);
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err());
    assert!(!dir.exists(), "the temporary directory is removed");
}

#[test]
fn three_member_cluster_replicates_and_survives_one_member_loss() {
    let mut etcd = EtcdCluster::for_test(3);
    assert_eq!(etcd.endpoints().len(), 3);
    assert_eq!(etcd.endpoints_arg().matches(',').count(), 2);
    // Kill a follower: no election to wait for, so the test stays fast.
    let lost = (0..3).find(|&i| !is_leader(&etcd, i)).unwrap();
    let a = etcd.member(lost).unwrap().client_addr();
    let c = etcd.member((lost + 1) % 3).unwrap().client_addr();
    assert_eq!(put(a, "replicated", "yes").status, 200);
    // A linearizable read through another member sees the write.
    assert!(range(c, "replicated").contains(&base64(b"yes")));

    etcd.kill_member(lost).unwrap();
    assert!(!etcd.member(lost).unwrap().is_healthy());
    // Two of three keep a quorum: writes still commit.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let outcome = try_put(c, "after-kill", "ok");
        if outcome.as_ref().is_ok_and(|r| r.status == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no write after losing one member: {outcome:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    etcd.restart_member(lost).unwrap();
    assert!(range(a, "after-kill").contains(&base64(b"ok")));
}

#[test]
fn a_panicking_test_leaves_no_etcd_behind() {
    let etcd = EtcdCluster::for_test(1);
    let addr = etcd.member(0).unwrap().client_addr();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _etcd = etcd;
        panic!("test failure while etcd runs");
    }));
    assert!(outcome.is_err());
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err());
}
