//! Smoke tests of the benchmark harness: a bounded 1-second wrk run against the upstream.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use boifi_bench::upstream::{Upstream, BODY};
use boifi_bench::wrk::{self, Load};

#[test]
fn upstream_answers_200_ok() {
    let upstream = Upstream::start().unwrap();
    let r = boifi_testkit::http::get(upstream.addr(), "/anything", Duration::from_secs(2)).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), BODY);
}

#[test]
fn one_second_wrk_run_against_the_upstream() {
    assert!(
        wrk::binary().is_ok(),
        "wrk is not installed (`make deps` installs it)"
    );
    let upstream = Upstream::start().unwrap();
    let load = Load {
        threads: 1,
        connections: 4,
        duration: Duration::from_secs(1),
    };
    let run = wrk::run(&format!("http://{}/", upstream.addr()), &load).unwrap();
    assert!(run.requests > 100, "{run:?}");
    assert_eq!(run.non_2xx, 0, "{run:?}");
    assert_eq!(run.socket_errors, 0, "{run:?}");
    assert!(run.p50 <= run.p99, "{run:?}");
}
