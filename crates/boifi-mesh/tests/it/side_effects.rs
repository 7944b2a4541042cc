//! Issue 27: the failures that charge a customer twice. The apps with side effects count them
//! per business key (paymentservice: charges per order id, cartservice: items per user id;
//! frontend mints the keys, every app carries them on its calls), so the mesh shows in numbers
//! what a fault did to them: a request-phase abort stops the work, a response-phase abort lets
//! the app do it and loses the answer, and a caller's retry of a lost answer does it again.
//! A reset after the app answered leaves the caller's Envoy an upstream reset (its own stats
//! say so), which it retries, charging again, only when its retry policy names `reset`.
//!
//! One small shop per filter build (frontend → checkoutservice → cartservice, paymentservice;
//! frontend → cartservice for add-to-cart), the callers' retries set per run.
#![allow(non_snake_case)]

use std::time::{Duration, Instant};

use boifi_mesh::app::{AppStats, SideEffects};
use boifi_mesh::calls::{Handler, CHARGES, ITEMS_ADDED};
use boifi_mesh::http::TrafficReport;
use boifi_mesh::mesh::{rollout, FilterBuild};
use boifi_mesh::process::wait_for;
use boifi_mesh::stats::duplicates_per_call;
use boifi_mesh::{Mesh, Retries, RoutePolicy, Topology};

use crate::support::*;

const CART: &str = "cartservice";
const PAYMENT: &str = "paymentservice";
const CHECKOUT: &str = "checkoutservice";
const ADD_ITEM: &str = "/hipstershop.CartService/AddItem";
const CHARGE: &str = "/hipstershop.PaymentService/Charge";
/// Add-to-cart pages per abort run (the issue asks ≥ 200 calls).
const ADDS: usize = 200;
/// Checkout pages (orders) of the duplicate-charge run (the issue asks ≥ 500).
const ORDERS: usize = 500;
/// Checkout pages of the request-phase run beside it, which must charge nobody twice.
const ORDERS_REQUEST_PHASE: usize = 200;
/// Page requests in flight.
const CONCURRENCY: usize = 32;
/// The share of Charge answers lost in the duplicate-charge run: high enough that one retry
/// more or fewer moves the expected duplicates by more than 4σ over 500 orders.
const LOST_PERCENT: u32 = 60;

/// The shop: the services an order and an item touch, one pod each.
fn shop(filter: FilterBuild) -> Mesh {
    let topology = Topology::online_boutique()
        .only(&["frontend", CHECKOUT, CART, "redis-cart", PAYMENT])
        .with_replicas("frontend", 1);
    let mut o = options(topology);
    o.filter_build = filter;
    o.progress = true;
    start(o)
}

/// Policy `name`: `percentage` % of `service`'s requests to `path` aborted with 503 /
/// `UNAVAILABLE`, on the request or (`response`) after the app answered.
fn abort_policy(name: &str, service: &str, path: &str, percentage: u32, response: bool) -> String {
    let target = if response { "target: response, " } else { "" };
    format!(
        "metadata: {{name: {name}}}\n\
         spec:\n  selector: {{service: {service}, namespace: demo}}\n  \
         rules: [{{match: {{path: {{exact: {path}}}}}, fault: {{percentage: {percentage}, {target}\
         abort: {{httpStatus: 503, grpcStatus: 14}}}}}}]\n"
    )
}

/// frontend's page `name`.
fn page(mesh: &Mesh, name: &str) -> Handler {
    mesh.pages("frontend")
        .unwrap()
        .into_iter()
        .find(|p| p.name == name)
        .unwrap()
}

/// `n` requests of frontend's page `name` through the ingress, app counters zeroed first;
/// returns the pages' answers and every app's counters after them.
fn pages(mesh: &Mesh, name: &str, n: usize) -> (TrafficReport, Shop) {
    mesh.reset_app_stats().unwrap();
    let report = mesh
        .send_page("frontend", &page(mesh, name), n, CONCURRENCY)
        .unwrap();
    assert_eq!(report.errors, 0, "{name}: {:?}", report.first_error);
    let app = |s: &str| mesh.app_stats(s).unwrap();
    let shop = Shop {
        frontend: app("frontend"),
        checkout: app(CHECKOUT),
        cart: app(CART),
        payment: app(PAYMENT),
    };
    (report, shop)
}

/// Every app's counters after a run.
struct Shop {
    frontend: AppStats,
    checkout: AppStats,
    cart: AppStats,
    payment: AppStats,
}

impl Shop {
    fn items(&self) -> SideEffects {
        self.cart.side_effect(ITEMS_ADDED)
    }

    fn charges(&self) -> SideEffects {
        self.payment.side_effect(CHARGES)
    }
}

/// One stat of checkoutservice's sidecars for their cluster of paymentservice
/// (`upstream_rq_retry`: the retries they made on their calls to it), from the running Envoys.
fn payment_cluster_stat(mesh: &Mesh, stat: &str) -> u64 {
    let cluster = boifi_mesh::envoy::outbound_cluster(&mesh.service(PAYMENT).unwrap().spec);
    mesh.service_stat(CHECKOUT, &format!("cluster.{cluster}.{stat}"))
        .unwrap()
}

/// The retries checkoutservice's sidecar makes on its calls to paymentservice.
fn payment_retries(mesh: &Mesh) -> u64 {
    payment_cluster_stat(mesh, "upstream_rq_retry")
}

/// A 100 % abort on cartservice's `AddItem`, the callers' retries off: on the request, cart's
/// app adds nothing; on the response (once the filters can), it adds every item and every
/// caller still sees the failure.
fn abort_on_add_item(mesh: &Mesh, what: &str, response: bool) {
    let name = if response {
        "add-item-answer-lost"
    } else {
        "add-item-refused"
    };
    apply(mesh, &abort_policy(name, CART, ADD_ITEM, 100, response));
    let (report, shop) = pages(mesh, "add-to-cart", ADDS);
    let items = shop.items();
    let seen = shop.frontend.calls_to(CART);
    eprintln!(
        "{what}: {ADDS} add-to-cart pages: {} failed; cart's app received {} AddItem, added {} items for {} users; frontend's calls: {:?}",
        report.server_errors(),
        shop.cart.by_handler.get("AddItem").copied().unwrap_or(0),
        items.total(),
        items.keys(),
        seen.outcomes
    );
    // Every caller saw the failure: frontend's every AddItem call, every page.
    assert_eq!(
        (seen.calls, seen.failed),
        (ADDS as u64, ADDS as u64),
        "{what}: {seen:?}"
    );
    assert_eq!(
        seen.outcomes.get("grpc-status 14").copied(),
        Some(ADDS as u64),
        "{what}"
    );
    assert_eq!(report.status(500), ADDS, "{what}: {report:?}");
    let expected_items = if response { ADDS as u64 } else { 0 };
    assert_eq!(items.total(), expected_items, "{what}: items added");
    assert_eq!(
        shop.cart.by_handler.get("AddItem").copied().unwrap_or(0),
        expected_items,
        "{what}: AddItem requests cart's app received"
    );
    if response {
        // One item per page: frontend minted one user per page, and nobody retried.
        assert_eq!((items.keys(), items.duplicates()), (ADDS, 0), "{what}");
    }
    halt(mesh);
}

/// `orders` checkout pages with `percent` % of paymentservice's Charge requests (or answers,
/// with `response`) aborted, checkoutservice retrying Charge as its sidecar's served retry
/// policy says. Returns the pages' answers, every app's counters, the retries
/// checkoutservice's sidecar made and the retries its policy allows.
fn checkout_with_retries(
    mesh: &Mesh,
    orders: usize,
    percent: u32,
    response: bool,
) -> (TrafficReport, Shop, u64, u32) {
    let name = if response {
        "charge-answer-lost"
    } else {
        "charge-refused"
    };
    apply(
        mesh,
        &abort_policy(name, PAYMENT, CHARGE, percent, response),
    );
    let policy = mesh
        .served_retry_policy(CHECKOUT, PAYMENT)
        .unwrap()
        .expect("checkoutservice retries its calls to paymentservice");
    let retry_on = policy["retry_on"].as_str().unwrap();
    assert!(
        retry_on.split(',').any(|c| c == "unavailable"),
        "the fault's UNAVAILABLE must be a retry condition: {retry_on}"
    );
    let retries = u32::try_from(policy["num_retries"].as_u64().unwrap()).unwrap();
    let before = payment_retries(mesh);
    let (report, shop) = pages(mesh, "checkout", orders);
    let made = payment_retries(mesh) - before;
    let charges = shop.charges();
    let to_payment = shop.checkout.calls_to(PAYMENT);
    eprintln!(
        "{percent} % of Charge {} aborted, {retries} retries: {orders} orders, {} pages failed; \
         {} orders charged, {} charges, {} orders charged twice or more ({} duplicate charges); \
         checkoutservice's sidecar retried {made} times",
        if response { "answers" } else { "requests" },
        report.server_errors(),
        charges.keys(),
        charges.total(),
        charges.repeated_keys(),
        charges.duplicates(),
    );
    // Every order reached paymentservice once from checkoutservice's app (no cart fault).
    assert_eq!(to_payment.calls, orders as u64, "{to_payment:?}");
    // Each order carried its own id: no charge without one, no id shared by two orders.
    assert!(
        !charges.by_key.contains_key(""),
        "a charge without an order id"
    );
    assert!(charges.keys() <= orders);
    halt(mesh);
    (report, shop, made, retries)
}

/// Per filter build, on one shop: a 100 % abort on AddItem, no retries, on the request and
/// then on the response; with checkoutservice retrying Charge, a 60 % abort on the request
/// (nobody charged twice) and then on the response (duplicate charges as the retries predict);
/// then every Charge stream reset after the charge, which checkoutservice's sidecar retries
/// only when its retry policy names `reset` (the native module refuses resets).
fn side_effects(filter: FilterBuild) {
    let _machine = exclusive();
    let mut mesh = shop(filter);
    abort_on_add_item(&mesh, "request-phase abort on AddItem", false);
    abort_on_add_item(&mesh, "response-phase abort on AddItem", true);

    let retries = Retries::new(2, &["5xx", "gateway-error", "unavailable"]).unwrap();
    mesh.set_routes(vec![RoutePolicy::to(PAYMENT)
        .from(CHECKOUT)
        .retries(retries)])
        .unwrap();
    refused_charges_are_never_duplicated(&mesh);
    duplicate_charges_match_the_retries(&mesh);
    let started = Instant::now();
    resets_after_the_charge(&mut mesh, filter);
    eprintln!("reset runs took {}", ms(started.elapsed()));
}

/// The checkout pages failed at `LOST_PERCENT`^(retries + 1) within 4σ: an order fails only
/// when each of its tries was aborted.
fn orders_fail_when_every_try_did(what: &str, report: &TrafficReport, retries: u32) {
    let lost = f64::from(LOST_PERCENT) / 100.0;
    assert_rate(
        &format!("{what}: orders whose every try was aborted"),
        report.server_errors(),
        report.requests,
        lost.powi(i32::try_from(retries).unwrap() + 1),
    );
}

/// The retried fault on the request side: a refused charge never reaches the app, so nobody
/// is charged twice, although checkoutservice retried.
fn refused_charges_are_never_duplicated(mesh: &Mesh) {
    let (report, shop, made, retries) =
        checkout_with_retries(mesh, ORDERS_REQUEST_PHASE, LOST_PERCENT, false);
    let charges = shop.charges();
    assert_eq!(
        charges.duplicates(),
        0,
        "request phase: {} orders charged twice or more",
        charges.repeated_keys()
    );
    assert!(
        made > 0,
        "checkoutservice's sidecar retried refused charges"
    );
    // An order fails when every try was refused, and is charged once otherwise.
    orders_fail_when_every_try_did("request phase", &report, retries);
    assert_eq!(
        charges.total() as usize,
        ORDERS_REQUEST_PHASE - report.server_errors(),
        "request phase: every order that went through was charged once"
    );
    assert_eq!(
        shop.payment.by_handler.get("Charge").copied().unwrap_or(0),
        charges.total(),
        "request phase: payment's app saw only the tries that got through"
    );
}

/// The duplicate charges of a response-phase abort of `LOST_PERCENT` % on Charge, with
/// checkoutservice's retries on, against the capped geometric law of Envoy's retries
/// ([`duplicates_per_call`]): within 4σ for the retries the caller's Envoy serves, and the
/// predictions for one retry fewer and one more outside that band.
fn duplicate_charges_match_the_retries(mesh: &Mesh) {
    let (report, shop, made, retries) = checkout_with_retries(mesh, ORDERS, LOST_PERCENT, true);
    let charges = shop.charges();
    // An order fails when every answer was lost, yet it was charged (once per try).
    orders_fail_when_every_try_did("response phase", &report, retries);
    let lost = f64::from(LOST_PERCENT) / 100.0;
    // Every try charged: the charges are the calls plus the retries the caller's Envoy made.
    let calls = shop.checkout.calls_to(PAYMENT).calls;
    assert_eq!(charges.total(), calls + made, "every try charged once");
    assert_eq!(charges.keys(), ORDERS, "every order charged at least once");
    let n = ORDERS as f64;
    let band = |r: u32| {
        let (mean, variance) = duplicates_per_call(lost, r);
        (n * mean, 4.0 * (n * variance).sqrt())
    };
    let (mean, width) = band(retries);
    let observed = charges.duplicates() as f64;
    eprintln!(
        "duplicate charges: {observed} over {ORDERS} orders; {retries} retries predict {mean:.1} ± {width:.1} (4σ)"
    );
    assert!(
        (observed - mean).abs() <= width,
        "{observed} duplicate charges is not {mean:.1} ± {width:.1}"
    );
    for other in [retries - 1, retries + 1] {
        let (m, _) = band(other);
        eprintln!("  {other} retries would predict {m:.1}");
        assert!(
            (m - mean).abs() > width,
            "{other} retries ({m:.1}) are not told apart from {retries} ({mean:.1} ± {width:.1})"
        );
    }
}

/// Checkout pages of each reset run.
const ORDERS_RESET: usize = 50;
/// The retries checkoutservice's sidecar makes in the reset runs.
const RESET_RETRIES: u32 = 2;

/// What checkoutservice's sidecars saw of their calls to paymentservice in one reset run,
/// from their own stats, beside the pages' answers and the charges.
struct ResetRun {
    report: TrafficReport,
    charges: SideEffects,
    /// Calls checkoutservice's app made to paymentservice.
    calls: u64,
    /// Streams paymentservice's side reset (`upstream_rq_rx_reset`).
    resets: u64,
    /// Retries the sidecars made (`upstream_rq_retry`).
    retries: u64,
    /// Resets paymentservice's filter counted (`hfi.faults.resets_total`).
    injected: u64,
}

/// `ORDERS_RESET` checkout pages with checkoutservice retrying Charge `RESET_RETRIES` times on
/// the conditions `on`, whatever policy applies to paymentservice.
fn checkout_retrying_on(mesh: &mut Mesh, on: &[&str]) -> ResetRun {
    let retries = Retries::new(RESET_RETRIES, on).unwrap();
    mesh.set_routes(vec![RoutePolicy::to(PAYMENT)
        .from(CHECKOUT)
        .retries(retries)])
        .unwrap();
    let served = mesh
        .served_retry_policy(CHECKOUT, PAYMENT)
        .unwrap()
        .expect("checkoutservice retries its calls to paymentservice");
    assert_eq!(served["retry_on"].as_str(), Some(on.join(",").as_str()));
    let injected = |mesh: &Mesh| -> u64 {
        let payment = mesh.service(PAYMENT).unwrap();
        payment
            .running()
            .map(|p| mesh.metric(p, "hfi_faults_resets_total").unwrap())
            .sum()
    };
    let before = (
        payment_cluster_stat(mesh, "upstream_rq_rx_reset"),
        payment_retries(mesh),
        injected(mesh),
    );
    let (report, shop) = pages(mesh, "checkout", ORDERS_RESET);
    let run = ResetRun {
        report,
        charges: shop.charges(),
        calls: shop.checkout.calls_to(PAYMENT).calls,
        resets: payment_cluster_stat(mesh, "upstream_rq_rx_reset") - before.0,
        retries: payment_retries(mesh) - before.1,
        injected: injected(mesh) - before.2,
    };
    eprintln!(
        "retries on {}: {ORDERS_RESET} orders, {} pages failed; checkoutservice's sidecar saw \
         {} upstream resets and retried {} times; paymentservice's filter reset {}; {} charges \
         for {} orders",
        on.join(","),
        run.report.server_errors(),
        run.resets,
        run.retries,
        run.injected,
        run.charges.total(),
        run.charges.keys(),
    );
    // Every order reached paymentservice once from checkoutservice's app: any extra try is
    // the sidecar's.
    assert_eq!(run.calls, ORDERS_RESET as u64);
    run
}

/// Waits until every sidecar of `service` refused config `version`, and returns a reason.
fn wait_refused(mesh: &Mesh, service: &str, version: u64) -> String {
    let pods: Vec<String> = mesh
        .service(service)
        .unwrap()
        .running()
        .map(|p| p.name.clone())
        .collect();
    wait_for(
        &format!("{service}'s sidecars to refuse config version {version}"),
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            let refusals: Vec<String> = status_at(mesh, &mesh.control_plane.url())?
                .sidecars
                .iter()
                .filter(|s| s.pod.as_ref().is_some_and(|p| pods.contains(p)))
                .filter(|s| s.state == "refused")
                .filter_map(|s| s.refused.as_ref())
                .filter(|r| r.version == version)
                .map(|r| r.reason.clone())
                .collect();
            Ok((refusals.len() == pods.len()).then(|| refusals.concat()))
        },
    )
    .unwrap()
}

/// Every Charge stream reset after paymentservice's app answered (100 %): the Wasm filter
/// charges, then resets; checkoutservice's sidecar sees an upstream reset for each try and
/// retries it only when its retry policy names `reset`, and each retry charges again. The
/// native module refuses the policy (status says why), and nothing is reset.
fn resets_after_the_charge(mesh: &mut Mesh, filter: FilterBuild) {
    let policy = "metadata: {name: charge-reset}\n\
         spec:\n  selector: {service: paymentservice, namespace: demo}\n  \
         rules: [{match: {path: {exact: /hipstershop.PaymentService/Charge}}, \
         fault: {percentage: 100, target: response, reset: true}}]\n";
    let orders = ORDERS_RESET as u64;
    match filter {
        FilterBuild::Wasm => {
            apply(mesh, policy);
            // Without `reset` in `retry_on`, the same resets are not retried: each order is
            // charged once and fails.
            let once = checkout_retrying_on(mesh, &["unavailable"]);
            assert_eq!(
                (once.resets, once.retries, once.injected),
                (orders, 0, orders),
                "retries without `reset`: upstream resets, retries, resets injected"
            );
            assert_eq!(once.report.server_errors(), ORDERS_RESET);
            assert_eq!(
                (
                    once.charges.total(),
                    once.charges.keys(),
                    once.charges.duplicates()
                ),
                (orders, ORDERS_RESET, 0),
                "retries without `reset`: charges, orders charged, duplicates"
            );
            // With `reset`, every try is reset after its charge and retried until none is
            // left: each order is charged once per try, and still fails.
            let tries = orders * u64::from(RESET_RETRIES + 1);
            let retried = checkout_retrying_on(mesh, &["unavailable", "reset"]);
            assert_eq!(
                (retried.resets, retried.retries, retried.injected),
                (tries, orders * u64::from(RESET_RETRIES), tries),
                "retries on `reset`: upstream resets, retries, resets injected"
            );
            assert_eq!(retried.report.server_errors(), ORDERS_RESET);
            assert_eq!(
                (
                    retried.charges.total(),
                    retried.charges.keys(),
                    retried.charges.duplicates()
                ),
                (tries, ORDERS_RESET, tries - orders),
                "retries on `reset`: charges, orders charged, duplicates"
            );
        }
        FilterBuild::Native => {
            apply_without_waiting(mesh, policy);
            let version = rollout(mesh).unwrap().version;
            let reason = wait_refused(mesh, PAYMENT, version);
            eprintln!("paymentservice's sidecar refused config version {version}: {reason}");
            assert!(
                reason.contains("the native module cannot inject this fault"),
                "the refusal names the native module: {reason}"
            );
            let run = checkout_retrying_on(mesh, &["unavailable", "reset"]);
            assert_eq!(
                (run.resets, run.retries, run.injected),
                (0, 0, 0),
                "a refused reset policy: upstream resets, retries, resets injected"
            );
            assert_eq!(run.report.server_errors(), 0);
            assert_eq!(
                (run.charges.total(), run.charges.duplicates()),
                (orders, 0),
                "a refused reset policy: charges, duplicates"
            );
        }
    }
    halt(mesh);
}

#[test]
fn SIDE_EFFECTS_wasm_lost_answers_are_retried_into_duplicate_charges() {
    side_effects(FilterBuild::Wasm);
}

#[test]
fn SIDE_EFFECTS_native_lost_answers_are_retried_into_duplicate_charges() {
    side_effects(FilterBuild::Native);
}
