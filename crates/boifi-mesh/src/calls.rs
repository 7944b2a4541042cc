//! What an app does with a request: the calls it makes to its dependencies, in order, and how
//! it answers when one of them fails.
//!
//! The built-in plan is Online Boutique's code reduced to its calls (frontend's
//! `handlers.go`, checkoutservice's `PlaceOrder`, ...): the same calls in the same order, the
//! same fatal-or-ignored choice per call, and the status the real service answers with when a
//! fatal call fails. Every call follows an edge of `online-boutique-graph.json` (a test checks
//! it), so a fault on one service reaches exactly the callers the real application has.
//!
//! The services with side effects act on a business key the request carries from the
//! customer: paymentservice charges an order, cartservice adds an item to a user's cart. The
//! keys travel as request headers ([`BusinessKey::header`]) that every app copies onto its
//! calls; frontend gives a request the keys it lacks ([`Handler::mints`]), so every retry of a
//! call below it carries the same key and a duplicate shows as a key acted on twice.

use serde::{Deserialize, Serialize};

/// How a caller reacts when one of its calls fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The caller carries on (frontend's ads, checkoutservice's `EmptyCart` and e-mail).
    Ignore,
    /// The caller answers its own request with this HTTP status (frontend's
    /// `renderHTTPError(..., 500)`).
    Http(u16),
    /// The caller answers its own gRPC call with this `grpc-status` (checkoutservice's
    /// `codes.Internal`, a Python servicer's unhandled exception as `UNKNOWN`, ...).
    Grpc(u8),
}

/// One call to a dependency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// The callee's service name.
    pub service: String,
    /// The gRPC method (`GetCart`), or for a non-gRPC callee the operation, sent as
    /// `GET /<operation>`.
    pub operation: String,
    /// What a failure of this call does to the caller's answer.
    pub on_failure: OnFailure,
}

/// A business key carried end to end: the customer's user id (Online Boutique's session id)
/// and an order's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusinessKey {
    /// The customer (`x-mesh-user-id`).
    User,
    /// One order, from the checkout page to the charge (`x-mesh-order-id`).
    Order,
}

impl BusinessKey {
    /// Every key, in the order they are copied onto calls.
    pub const ALL: [BusinessKey; 2] = [BusinessKey::User, BusinessKey::Order];

    /// The request header that carries it.
    pub fn header(self) -> &'static str {
        match self {
            BusinessKey::User => "x-mesh-user-id",
            BusinessKey::Order => "x-mesh-order-id",
        }
    }
}

/// The side effect a handler has once every fatal call succeeded, counted per business key
/// (see [`crate::app::SideEffects`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideEffect {
    /// What is counted: [`CHARGES`], [`ITEMS_ADDED`].
    pub name: String,
    /// The key it is counted per.
    pub key: BusinessKey,
}

/// paymentservice's `Charge`: one charge of the order's card.
pub const CHARGES: &str = "charges";
/// cartservice's `AddItem`: one item added to the user's cart.
pub const ITEMS_ADDED: &str = "items_added";

/// What one kind of request (a frontend page, a gRPC method) does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handler {
    /// A short name for tables (`home`, `cart`, `PlaceOrder`).
    pub name: String,
    /// The HTTP method (`POST` for gRPC).
    pub method: String,
    /// The path template: `/product/{id}` (a `{..}` segment matches any one segment), or
    /// `/hipstershop.CheckoutService/PlaceOrder` for a gRPC method.
    pub path: String,
    /// A concrete path that matches, for traffic (`/product/OLJCESPC7Z`).
    pub example: String,
    /// The status of a successful answer (frontend redirects after a form: 302).
    pub ok_status: u16,
    /// In order; each waits for the previous one, as the real handlers do.
    pub calls: Vec<Call>,
    /// The keys it gives a request that arrives without them (frontend: a visitor's user id,
    /// a checkout's order id), before its first call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mints: Vec<BusinessKey>,
    /// What it does once its calls succeeded, before it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side_effect: Option<SideEffect>,
}

impl Handler {
    /// Whether a request is this handler's.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        if !self.method.eq_ignore_ascii_case(method) {
            return false;
        }
        let mut template = self.path.split('/');
        let mut actual = path.split('/');
        loop {
            match (template.next(), actual.next()) {
                (None, None) => return true,
                (Some(t), Some(a)) if t.starts_with('{') && t.ends_with('}') && !a.is_empty() => {}
                (Some(t), Some(a)) if t == a => {}
                _ => return false,
            }
        }
    }

    /// Whether any call, directly, goes to `service`.
    pub fn calls_service(&self, service: &str) -> bool {
        self.calls.iter().any(|c| c.service == service)
    }
}

/// The handler of `method path` among `handlers`.
pub fn find<'a>(handlers: &'a [Handler], method: &str, path: &str) -> Option<&'a Handler> {
    handlers.iter().find(|h| h.matches(method, path))
}

fn call(service: &str, operation: &str, on_failure: OnFailure) -> Call {
    Call {
        service: service.to_owned(),
        operation: operation.to_owned(),
        on_failure,
    }
}

fn page(name: &str, method: &str, path: &str, example: &str, ok: u16, calls: Vec<Call>) -> Handler {
    Handler {
        name: name.to_owned(),
        method: method.to_owned(),
        path: path.to_owned(),
        example: example.to_owned(),
        ok_status: ok,
        calls,
        mints: Vec::new(),
        side_effect: None,
    }
}

impl Handler {
    /// Gives requests without them these keys.
    fn minting(mut self, keys: &[BusinessKey]) -> Handler {
        self.mints = keys.to_vec();
        self
    }

    /// Counts `name` per `key` once its calls succeeded.
    fn with_side_effect(mut self, name: &str, key: BusinessKey) -> Handler {
        self.side_effect = Some(SideEffect {
            name: name.to_owned(),
            key,
        });
        self
    }
}

fn rpc(grpc_service: &str, method: &str, calls: Vec<Call>) -> Handler {
    let path = format!("/{grpc_service}/{method}");
    page(method, "POST", &path, &path, 200, calls)
}

/// frontend answers 500 whatever failed (`renderHTTPError(..., http.StatusInternalServerError)`).
const PAGE_ERROR: OnFailure = OnFailure::Http(500);
/// `codes.Internal`: checkoutservice's answer to a failed cart, catalog, currency, shipping
/// quote or payment call.
const INTERNAL: OnFailure = OnFailure::Grpc(13);
/// `codes.Unavailable`: checkoutservice's answer to a failed `ShipOrder`.
const UNAVAILABLE: OnFailure = OnFailure::Grpc(14);
/// `StatusCode.UNKNOWN`: what grpcio answers when a Python servicer raises
/// (recommendationservice does not catch a failed `ListProducts`).
const UNKNOWN: OnFailure = OnFailure::Grpc(2);
/// `StatusCode.FailedPrecondition`: cartservice's `RpcException` when redis fails.
const FAILED_PRECONDITION: OnFailure = OnFailure::Grpc(9);

/// The handlers of an Online Boutique service (empty for the leaves).
pub fn online_boutique(service: &str) -> Vec<Handler> {
    use OnFailure::Ignore;
    match service {
        "frontend" => vec![
            page(
                "home",
                "GET",
                "/",
                "/",
                200,
                vec![
                    call("currencyservice", "GetSupportedCurrencies", PAGE_ERROR),
                    call("productcatalogservice", "ListProducts", PAGE_ERROR),
                    call("cartservice", "GetCart", PAGE_ERROR),
                    call("currencyservice", "Convert", PAGE_ERROR),
                    call("adservice", "GetAds", Ignore),
                ],
            ),
            page(
                "product",
                "GET",
                "/product/{id}",
                "/product/OLJCESPC7Z",
                200,
                vec![
                    call("productcatalogservice", "GetProduct", PAGE_ERROR),
                    call("currencyservice", "GetSupportedCurrencies", PAGE_ERROR),
                    call("cartservice", "GetCart", PAGE_ERROR),
                    call("currencyservice", "Convert", PAGE_ERROR),
                    call("recommendationservice", "ListRecommendations", PAGE_ERROR),
                    call("adservice", "GetAds", Ignore),
                ],
            ),
            page(
                "view-cart",
                "GET",
                "/cart",
                "/cart",
                200,
                vec![
                    call("currencyservice", "GetSupportedCurrencies", PAGE_ERROR),
                    call("cartservice", "GetCart", PAGE_ERROR),
                    call("recommendationservice", "ListRecommendations", PAGE_ERROR),
                    call("shippingservice", "GetQuote", PAGE_ERROR),
                    // One item in the cart.
                    call("productcatalogservice", "GetProduct", PAGE_ERROR),
                    call("currencyservice", "Convert", PAGE_ERROR),
                ],
            ),
            page(
                "add-to-cart",
                "POST",
                "/cart",
                "/cart",
                302,
                vec![
                    call("productcatalogservice", "GetProduct", PAGE_ERROR),
                    call("cartservice", "AddItem", PAGE_ERROR),
                ],
            )
            .minting(&[BusinessKey::User]),
            page(
                "checkout",
                "POST",
                "/cart/checkout",
                "/cart/checkout",
                200,
                vec![
                    call("checkoutservice", "PlaceOrder", PAGE_ERROR),
                    // `recommendations, _ := fe.getRecommendations(...)`.
                    call("recommendationservice", "ListRecommendations", Ignore),
                    call("currencyservice", "GetSupportedCurrencies", PAGE_ERROR),
                ],
            )
            .minting(&[BusinessKey::User, BusinessKey::Order]),
            // The product lookup behind the shopping assistant: the catalog only.
            page(
                "product-meta",
                "GET",
                "/product-meta/{ids}",
                "/product-meta/OLJCESPC7Z",
                200,
                vec![call("productcatalogservice", "GetProduct", PAGE_ERROR)],
            ),
            // A cookie and a redirect: no backend call.
            page(
                "set-currency",
                "POST",
                "/setCurrency",
                "/setCurrency",
                302,
                Vec::new(),
            ),
        ],
        "checkoutservice" => vec![rpc(
            "hipstershop.CheckoutService",
            "PlaceOrder",
            vec![
                call("cartservice", "GetCart", INTERNAL),
                // One item: its product and its price in the user's currency.
                call("productcatalogservice", "GetProduct", INTERNAL),
                call("currencyservice", "Convert", INTERNAL),
                call("shippingservice", "GetQuote", INTERNAL),
                call("currencyservice", "Convert", INTERNAL),
                call("paymentservice", "Charge", INTERNAL),
                call("shippingservice", "ShipOrder", UNAVAILABLE),
                // `_ = cs.emptyUserCart(...)`; a failed confirmation e-mail is only logged.
                call("cartservice", "EmptyCart", Ignore),
                call("emailservice", "SendOrderConfirmation", Ignore),
            ],
        )],
        "recommendationservice" => vec![rpc(
            "hipstershop.RecommendationService",
            "ListRecommendations",
            vec![call("productcatalogservice", "ListProducts", UNKNOWN)],
        )],
        "cartservice" => ["GetCart", "AddItem", "EmptyCart"]
            .iter()
            .map(|m| {
                let handler = rpc(
                    "hipstershop.CartService",
                    m,
                    vec![call("redis-cart", "redis", FAILED_PRECONDITION)],
                );
                // The item is in the cart once redis stored it.
                if *m == "AddItem" {
                    handler.with_side_effect(ITEMS_ADDED, BusinessKey::User)
                } else {
                    handler
                }
            })
            .collect(),
        // The real service charges the card it is given; here the order's id comes along, so
        // a second charge of one order shows.
        "paymentservice" => vec![rpc("hipstershop.PaymentService", "Charge", Vec::new())
            .with_side_effect(CHARGES, BusinessKey::Order)],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{default_graph_path, Topology};

    #[test]
    fn templates_match_one_segment_per_placeholder() {
        let frontend = online_boutique("frontend");
        let name = |m: &str, p: &str| find(&frontend, m, p).map(|h| h.name.as_str());
        assert_eq!(name("GET", "/"), Some("home"));
        assert_eq!(name("GET", "/product/X1"), Some("product"));
        assert_eq!(name("GET", "/product/"), None);
        assert_eq!(name("GET", "/product/a/b"), None);
        assert_eq!(name("GET", "/cart"), Some("view-cart"));
        assert_eq!(name("POST", "/cart"), Some("add-to-cart"));
        assert_eq!(name("post", "/cart/checkout"), Some("checkout"));
        assert_eq!(name("GET", "/cart/checkout"), None);
        for h in &frontend {
            assert!(h.matches(&h.method, &h.example), "{}", h.name);
        }
    }

    /// Every call of the plan is an edge of the shared graph, with that operation listed.
    #[test]
    fn every_call_follows_an_edge_of_the_graph() {
        let Ok(text) = std::fs::read_to_string(default_graph_path()) else {
            return;
        };
        let graph: serde_json::Value = serde_json::from_str(&text).unwrap();
        let edges = graph["edges"].as_array().unwrap();
        let mut used = 0;
        for s in Topology::built_in().services {
            for h in online_boutique(&s.name) {
                for c in &h.calls {
                    let edge = edges
                        .iter()
                        .find(|e| e["from"] == s.name.as_str() && e["to"] == c.service.as_str())
                        .unwrap_or_else(|| panic!("{} → {}: no such edge", s.name, c.service));
                    assert!(
                        edge["calls"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|op| op == c.operation.as_str()),
                        "{} → {} {}: not a call of the edge",
                        s.name,
                        c.service,
                        c.operation
                    );
                    used += 1;
                }
            }
        }
        assert!(used > 20, "{used}");
    }
}
