//! Issue 15: the mesh behaves like Online Boutique. Every app calls its dependencies through
//! its sidecar's outbound listener, so a fault on cartservice reaches the pages that need the
//! cart (and only those), the callers' Envoy retries absorb it, and a per-try timeout cuts a
//! delay short. One mesh of the whole application (12 pods, every app calling its graph
//! dependencies) with the control plane as 2 replicas on a 3-member etcd.
#![allow(non_snake_case)]

use std::time::Duration;

use boifi_mesh::calls::{Handler, OnFailure};
use boifi_mesh::cascade::Run;
use boifi_mesh::demo::{page_table, service_table};
use boifi_mesh::stats::quantile;
use boifi_mesh::{Mesh, Retries, RoutePolicy, Topology};

use crate::support::*;

const CART: &str = "cartservice";
/// Page requests per page type in the abort scenarios, and in the (slower) delay ones.
const PAGES: usize = 120;
const SLOW_PAGES: usize = 24;

/// How many calls to `target` can fail `handler` of `service` on its success path: the fatal
/// calls to it, directly or through a fatal call to a service that itself fails on it.
fn fatal_calls(topology: &Topology, handler: &Handler, target: &str) -> u32 {
    handler
        .calls
        .iter()
        .filter(|c| c.on_failure != OnFailure::Ignore)
        .map(|c| {
            if c.service == target {
                return 1;
            }
            let callee = topology.services.iter().find(|s| s.name == c.service);
            callee
                .and_then(|s| {
                    s.handlers
                        .iter()
                        .find(|h| h.name == c.operation)
                        .map(|h| fatal_calls(topology, h, target))
                })
                .unwrap_or(0)
        })
        .sum()
}

/// Sends every page type and checks its failures against `per_call_failure` of each fatal
/// call to cart: `1 - (1 - p)^k` within 4σ for the pages that need the cart (each alone and
/// all together), never for the others. Returns the run.
fn pages_fail_as_cart_does(mesh: &Mesh, what: &str, per_call_failure: f64) -> Run {
    let topology = Topology::online_boutique();
    let run = mesh.run_pages("frontend", PAGES, 16).unwrap();
    let (mut hits, mut n, mut expected) = (0, 0, 0.0);
    for row in &run.pages {
        let k = fatal_calls(&topology, &row.page, CART);
        let r = &row.report;
        assert_eq!(
            r.errors, 0,
            "{what}: {}: {:?}",
            row.page.name, r.first_error
        );
        if k == 0 {
            assert_eq!(
                row.failed(),
                0,
                "{what}: page {} does not need the cart but failed: {r:?}",
                row.page.name
            );
            eprintln!(
                "{what}: page {} (no cart): 0 of {} failed",
                row.page.name, r.requests
            );
            continue;
        }
        let p = 1.0 - (1.0 - per_call_failure).powi(k as i32);
        assert_rate(
            &format!("{what}: page {}", row.page.name),
            row.failed(),
            r.requests,
            p,
        );
        assert_eq!(
            row.failed(),
            r.status(500),
            "{what}: frontend answers 500: {r:?}"
        );
        hits += row.failed();
        n += r.requests;
        expected += p * r.requests as f64;
    }
    assert_rate(
        &format!("{what}: every cart page"),
        hits,
        n,
        expected / n as f64,
    );
    run
}

/// Only cart's sidecar injected anything (the run's tables are printed first, as `make demo`
/// prints them); returns what it injected.
fn only_cart_injects(run: &Run, what: &str) -> (u64, u64) {
    eprintln!("{what}:");
    for line in service_table(run).into_iter().chain(page_table(run)) {
        eprintln!("  {line}");
    }
    for s in run.services.iter().filter(|s| s.service != CART) {
        assert_eq!(
            (s.aborts, s.delays),
            (0, 0),
            "{what}: {}'s sidecar injected a fault",
            s.service
        );
    }
    let cart = run.service(CART).unwrap();
    (cart.aborts, cart.delays)
}

#[test]
fn CASCADE_faults_on_cart_fail_cart_pages_retries_absorb_them_timeouts_cut_delays() {
    let _machine = exclusive();
    let mut o = options(Topology::online_boutique().with_replicas("frontend", 1)).ha();
    o.progress = true;
    let mut mesh = start(o);

    // 50 % abort on cartservice, no retries.
    apply(
        &mesh,
        &every_path(
            "cascade-cart-abort",
            "{service: cartservice, namespace: demo}",
            "{percentage: 50, abort: {httpStatus: 503}}",
        ),
    );
    let what = "50 % abort, no retries";
    let run = pages_fail_as_cart_does(&mesh, what, 0.5);
    let (aborts, _) = only_cart_injects(&run, what);
    let cart = run.service(CART).unwrap();
    // Without retries every try is one call of an app, and every abort one failed call.
    assert_eq!(cart.sidecar_requests, cart.seen_by_callers.calls, "{what}");
    assert_eq!(aborts, cart.seen_by_callers.failed, "{what}");
    assert_eq!(
        cart.seen_by_callers.outcomes.get("grpc-status 14").copied(),
        Some(aborts),
        "{what}: the callers see UNAVAILABLE: {:?}",
        cart.seen_by_callers.outcomes
    );
    // checkoutservice's own calls to cart are faulted too (the fault is in cart's inbound
    // sidecar), and its failures reach frontend as checkoutservice's INTERNAL.
    let checkout = run.service("checkoutservice").unwrap();
    let to_cart = checkout.app.calls_to(CART);
    assert_rate(
        &format!("{what}: checkoutservice's calls to cart"),
        to_cart.failed as usize,
        to_cart.calls as usize,
        0.5,
    );
    let frontend = run.service("frontend").unwrap();
    assert_eq!(
        frontend
            .app
            .calls_to("checkoutservice")
            .outcomes
            .get("grpc-status 13")
            .copied(),
        Some(checkout.app.answered_errors),
        "{what}: {:?}",
        frontend.app.calls_to("checkoutservice")
    );

    // The same with 2 retries on every caller of cart: 0.5³ per call.
    let retries = Retries::new(2, &["5xx", "gateway-error", "unavailable"]).unwrap();
    mesh.set_routes(vec![RoutePolicy::to(CART).retries(retries)])
        .unwrap();
    let what = "50 % abort, 2 retries";
    let run = pages_fail_as_cart_does(&mesh, what, 0.125);
    only_cart_injects(&run, what);
    let cart = run.service(CART).unwrap();
    let calls = cart.seen_by_callers.calls as f64;
    // Tries per call: 1, 2 or 3 with probabilities ½, ¼, ¼: mean 1.75, variance 0.6875.
    let (mean, sigma) = (1.75 * calls, (0.6875 * calls).sqrt());
    let tries = cart.sidecar_requests as f64;
    eprintln!(
        "{what}: cart's sidecar received {tries} requests for {calls} calls ({:.3}×, expected 1.75 ± {:.3})",
        tries / calls,
        4.0 * sigma / calls
    );
    assert!(
        (tries - mean).abs() <= 4.0 * sigma,
        "{what}: {tries} tries for {calls} calls is not 1.75× within 4σ ({sigma:.1})"
    );
    assert_rate(
        &format!("{what}: failed calls to cart"),
        cart.seen_by_callers.failed as usize,
        cart.seen_by_callers.calls as usize,
        0.125,
    );

    // A 300 ms delay on every cart call, no retries: cart pages are 300 ms slower.
    halt(&mesh);
    mesh.set_routes(Vec::new()).unwrap();
    apply(
        &mesh,
        &every_path(
            "cascade-cart-delay",
            "{service: cartservice, namespace: demo}",
            "{percentage: 100, delay: {fixed_delay_ms: 300}}",
        ),
    );
    let what = "300 ms delay";
    let run = mesh.run_pages("frontend", SLOW_PAGES, 16).unwrap();
    only_cart_injects(&run, what);
    let topology = Topology::online_boutique();
    for row in &run.pages {
        let r = &row.report;
        let p50 = r.latency_quantile(0.5).unwrap();
        eprintln!("{what}: page {}: p50 {}", row.page.name, ms(p50));
        assert_eq!(row.failed(), 0, "{what}: {}: {r:?}", row.page.name);
        if fatal_calls(&topology, &row.page, CART) > 0 {
            assert!(
                p50 >= Duration::from_millis(300),
                "{what}: {}: p50 {p50:?}",
                row.page.name
            );
        } else {
            assert!(
                p50 < Duration::from_millis(300),
                "{what}: {}: p50 {p50:?}",
                row.page.name
            );
        }
    }
    let seen = run.service(CART).unwrap().seen_by_callers.latencies();
    assert!(quantile(&seen, 0.5).unwrap() >= Duration::from_millis(300));

    // A 100 ms per-try timeout on frontend's route to cart (one retry on UNAVAILABLE, which a
    // timeout is not): each of frontend's cart calls times out after 100 ms, Envoy counts it
    // (`upstream_rq_per_try_timeout`), and the pages fail fast instead of waiting 300 ms.
    // checkoutservice's route has no timeout: its cart calls still wait and succeed.
    let per_try = Retries::new(1, &["unavailable"])
        .unwrap()
        .per_try_timeout(Duration::from_millis(100));
    mesh.set_routes(vec![RoutePolicy::to(CART)
        .from("frontend")
        .retries(per_try)])
        .unwrap();
    let cart_cluster = "cluster.outbound|7070||cartservice.demo.svc.cluster.local";
    let timeouts = |mesh: &Mesh| {
        mesh.service_stat(
            "frontend",
            &format!("{cart_cluster}.upstream_rq_per_try_timeout"),
        )
        .unwrap()
    };
    let before = timeouts(&mesh);
    let what = "300 ms delay, 100 ms per-try timeout from frontend";
    let run = mesh.run_pages("frontend", SLOW_PAGES, 16).unwrap();
    let frontend_to_cart = run.service("frontend").unwrap().app.calls_to(CART);
    eprintln!(
        "{what}: frontend's cart calls: {:?}",
        frontend_to_cart.outcomes
    );
    assert_eq!(
        timeouts(&mesh) - before,
        frontend_to_cart.calls,
        "{what}: every frontend call to cart hit the per-try timeout once"
    );
    assert_eq!(frontend_to_cart.failed, frontend_to_cart.calls, "{what}");
    for row in &run.pages {
        let r = &row.report;
        let p50 = r.latency_quantile(0.5).unwrap();
        eprintln!(
            "{what}: page {}: {} of {} failed, p50 {}",
            row.page.name,
            row.failed(),
            r.requests,
            ms(p50)
        );
        let direct = row.page.calls.iter().any(|c| c.service == CART);
        if direct {
            assert_eq!(row.failed(), r.requests, "{what}: {}: {r:?}", row.page.name);
            assert!(
                p50 < Duration::from_millis(300),
                "{what}: {}: p50 {p50:?}",
                row.page.name
            );
        } else {
            assert_eq!(row.failed(), 0, "{what}: {}: {r:?}", row.page.name);
        }
    }
    let checkout = run.page("checkout").unwrap();
    let p50 = checkout.report.latency_quantile(0.5).unwrap();
    assert!(
        p50 >= Duration::from_millis(600),
        "{what}: checkout waits for GetCart and EmptyCart: {p50:?}"
    );
    // The timed-out calls never reached cart's app: only checkoutservice's did.
    let cart = run.service(CART).unwrap();
    let from_checkout = run.service("checkoutservice").unwrap().app.calls_to(CART);
    assert_eq!(cart.app.received, from_checkout.calls, "{what}");
}
