//! The observed rate over 10^5 draws is within 4σ of the configured one; one draw per rule
//! decision means two chained 30 % rules do not become 9 % (the legacy double-check bug), and
//! 100 % means every request (not 100/101).

use boifi_core::compiled::{decide, CompiledPolicySet, SimpleRequest};
use boifi_core::identity::Identity;
use boifi_core::policy::parse_policy_json;
use boifi_core::rng::XorShift64Star;
use boifi_core::scenario::check_binomial;
use proptest::prelude::*;

fn abort_policy(name: &str, percentage: &str) -> boifi_core::PolicyDocument {
    parse_policy_json(&format!(
        r#"{{"metadata": {{"name": "{name}"}}, "spec": {{"rules": [{{"match": {{"path": {{"prefix": "/"}}}}, "fault": {{"percentage": {percentage}, "abort": {{"httpStatus": 503}}}}}}]}}}}"#
    ))
    .unwrap()
}

fn observed(set: &CompiledPolicySet, n: u64, seed: u64) -> u64 {
    let request = SimpleRequest::new("GET", "/x");
    let mut rng = XorShift64Star::new(seed);
    (0..n)
        .filter(|_| decide(set, &request, 0, rng.next_u64()).is_some())
        .count() as u64
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn observed_rate_is_within_four_sigma(ppm in 0u32..=1_000_000, seed in any::<u64>()) {
        let pct = format!("{}.{:04}", ppm / 10_000, ppm % 10_000);
        let set = CompiledPolicySet::from_documents(&[abort_policy("rate", &pct)], &Identity::default(), 0).unwrap();
        let n = 100_000;
        let hits = observed(&set, n, seed);
        let check = check_binomial("rate", hits, n, f64::from(ppm) / 1e6);
        prop_assert!(check.is_ok(), "{:?}", check);
    }
}

#[test]
fn thirty_percent_stays_thirty_percent() {
    let set =
        CompiledPolicySet::from_documents(&[abort_policy("thirty", "30")], &Identity::default(), 0)
            .unwrap();
    let n = 100_000;
    let hits = observed(&set, n, 42);
    check_binomial("thirty", hits, n, 0.30).unwrap();
}

#[test]
fn hundred_percent_is_every_request() {
    let set =
        CompiledPolicySet::from_documents(&[abort_policy("all", "100")], &Identity::default(), 0)
            .unwrap();
    assert_eq!(observed(&set, 100_000, 7), 100_000);
    let set =
        CompiledPolicySet::from_documents(&[abort_policy("none", "0")], &Identity::default(), 0)
            .unwrap();
    assert_eq!(observed(&set, 100_000, 7), 0);
}

#[test]
fn smallest_step_is_representable() {
    let set = CompiledPolicySet::from_documents(
        &[abort_policy("tiny", "0.0001")],
        &Identity::default(),
        0,
    )
    .unwrap();
    // 1 ppm over 25 million draws: 25 ± 20 hits at 4σ. The band must exclude 0 (and 2 ppm's 50),
    // or a rate rounded down to 0 % (or up) would pass — the very bug this test is about.
    let n = 25_000_000;
    let (expected, four_sigma) = (
        n as f64 * 1e-6,
        4.0 * (n as f64 * 1e-6 * (1.0 - 1e-6)).sqrt(),
    );
    assert!(expected - four_sigma > 0.0 && expected + four_sigma < 2.0 * expected);
    let hits = observed(&set, n, 3);
    check_binomial("tiny", hits, n, 1e-6).unwrap();
}

#[test]
fn expected_shares_follow_rule_order_and_fixed_request_ids() {
    use boifi_core::simulate::expected_shares;
    let a = abort_policy("a-first", "30");
    let b = abort_policy("b-second", "50");
    let set = CompiledPolicySet::from_documents(&[b, a], &Identity::default(), 0).unwrap();
    let shares = expected_shares(&set, &SimpleRequest::new("GET", "/"), 0);
    assert_eq!(shares.len(), 2);
    assert_eq!(shares[0].policy, "a-first");
    assert_eq!(shares[0].share.percent(), "30");
    assert_eq!(shares[1].share.percent(), "35", "50% of the 70% left");

    // `request` sampling with a fixed id: all or nothing, and exactly what decide does.
    let mut p = abort_policy("by-request", "50");
    p.spec.sampling = boifi_core::policy::Sampling::Request;
    let set = CompiledPolicySet::from_documents(&[p], &Identity::default(), 0).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for id in ["r-1", "r-2", "r-3", "r-4", "r-5", "r-6"] {
        let request = SimpleRequest::new("GET", "/").with_header("x-request-id", id);
        let share = expected_shares(&set, &request, 0)[0].share.percent();
        let fired = decide(&set, &request, 0, 12345).is_some();
        assert_eq!(share, if fired { "100" } else { "0" }, "{id}");
        seen.insert(share);
    }
    assert_eq!(seen.len(), 2, "both outcomes among the ids: {seen:?}");
}

#[test]
fn expected_shares_are_exact_decimals() {
    use boifi_core::simulate::{expected_outcomes, expected_shares, Outcome};
    let set = |percentages: &[&str]| {
        let policies: Vec<_> = percentages
            .iter()
            .enumerate()
            .map(|(i, p)| abort_policy(&format!("p{i}"), p))
            .collect();
        CompiledPolicySet::from_documents(&policies, &Identity::default(), 0).unwrap()
    };
    let request = SimpleRequest::new("GET", "/");
    let percent = |percentages: &[&str]| -> (Vec<String>, String) {
        let shares = expected_shares(&set(percentages), &request, 0);
        let outcomes = expected_outcomes(&shares);
        (
            shares.iter().map(|s| s.share.percent()).collect(),
            outcomes[&Outcome::Pass].percent(),
        )
    };
    // The float arithmetic this replaces printed 0.00010000000000287557 for the pass share.
    assert_eq!(
        percent(&["99.9999"]),
        (vec!["99.9999".into()], "0.0001".into())
    );
    assert_eq!(percent(&["0.0001"]).1, "99.9999");
    assert_eq!(percent(&["100"]), (vec!["100".into()], "0".into()));
    assert_eq!(percent(&["0"]).1, "100");
    // 33.3333 %, then 33.3333 % of the 66.6667 % left, ...: the products of whole ppm,
    // computed here in integers (percent = ppm products over 10^(6k - 2)).
    let (shares, pass) = percent(&["33.3333", "33.3333", "33.3333"]);
    assert_eq!(
        shares,
        ["33.3333", "22.2222111111", "14.8148148148037037"],
        "333333 * 666667 = 222222111111; 333333 * 666667^2 = 148148148148037037"
    );
    assert_eq!(pass, "29.6296740740962963", "666667^3 = 296296740740962963");
    // The shares and the pass share add up to exactly 100 %.
    let all = set(&["12.5", "0.0003", "99.9999", "7"]);
    let shares = expected_shares(&all, &request, 0);
    let total = expected_outcomes(&shares)
        .values()
        .fold(boifi_core::simulate::Share::none(), |sum, s| sum.plus(s));
    assert_eq!(total, boifi_core::simulate::Share::all());
}

#[test]
fn percentages_print_at_their_full_resolution() {
    use boifi_core::policy::Percentage;
    for (ppm, number) in [
        (100_000, "10"),
        (1_000_000, "100"),
        (1, "0.0001"),
        (12_345, "1.2345"),
        (5_000, "0.5"),
        (0, "0"),
    ] {
        let p = Percentage::from_ppm(ppm).unwrap();
        assert_eq!(p.number(), number);
        assert_eq!(p.to_string(), format!("{number}%"));
    }
}
