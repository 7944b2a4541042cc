//! Issue 27: the failures that charge a customer twice. The apps with side effects count them
//! per business key (paymentservice: charges per order id, cartservice: items per user id;
//! frontend mints the keys, every app carries them on its calls), so the mesh shows in numbers
//! what a fault did to them: a request-phase abort stops the work, a response-phase abort lets
//! the app do it and loses the answer, and a caller's retry of a lost answer does it again.
//!
//! One small shop per filter build (frontend → checkoutservice → cartservice, paymentservice;
//! frontend → cartservice for add-to-cart), the callers' retries set per run.
#![allow(non_snake_case)]

use boifi_mesh::app::{AppStats, SideEffects};
use boifi_mesh::calls::{Handler, CHARGES, ITEMS_ADDED};
use boifi_mesh::http::TrafficReport;
use boifi_mesh::mesh::FilterBuild;
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

/// The retries checkoutservice's sidecar makes on its calls to paymentservice, from the
/// running Envoy.
fn payment_retries(mesh: &Mesh) -> u64 {
    let cluster = boifi_mesh::envoy::outbound_cluster(&mesh.service(PAYMENT).unwrap().spec);
    mesh.service_stat(CHECKOUT, &format!("cluster.{cluster}.upstream_rq_retry"))
        .unwrap()
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
/// (nobody charged twice) and then on the response (duplicate charges as the retries predict).
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

#[test]
fn SIDE_EFFECTS_wasm_lost_answers_are_retried_into_duplicate_charges() {
    side_effects(FilterBuild::Wasm);
}

#[test]
fn SIDE_EFFECTS_native_lost_answers_are_retried_into_duplicate_charges() {
    side_effects(FilterBuild::Native);
}
