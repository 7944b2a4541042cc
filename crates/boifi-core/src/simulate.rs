//! Dry runs: the outcome distribution of many simulated requests, computed with the very
//! [`decide`] the filter runs, and the distribution the rules promise.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use crate::compiled::{
    decide, fires, rule_draw, rule_seed, CompiledPolicySet, FaultDecision, RequestView,
    REQUEST_ID_HEADER,
};
use crate::policy::{Sampling, PPM_SCALE};
use crate::rng::XorShift64Star;

/// What happened to one request.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// Forwarded untouched.
    Pass,
    /// Forwarded after a wait.
    Delay,
    /// Answered with an error at once.
    Abort {
        /// The HTTP status.
        http_status: u16,
    },
    /// Answered with an error after a wait.
    DelayThenAbort {
        /// The HTTP status.
        http_status: u16,
    },
}

impl Outcome {
    /// The outcome of a decision.
    pub fn of(decision: Option<&FaultDecision<'_>>) -> Outcome {
        match decision {
            None => Outcome::Pass,
            Some(d) => match (d.total_wait_ms() > 0 || d.delay_ms.is_some(), d.abort) {
                (_, None) => Outcome::Delay,
                (false, Some(a)) => Outcome::Abort {
                    http_status: a.http_status,
                },
                (true, Some(a)) => Outcome::DelayThenAbort {
                    http_status: a.http_status,
                },
            },
        }
    }

    /// A short label: `pass`, `delay`, `abort`, `delay_then_abort`.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Delay => "delay",
            Outcome::Abort { .. } => "abort",
            Outcome::DelayThenAbort { .. } => "delay_then_abort",
        }
    }
}

/// Counts of outcomes over simulated requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Distribution {
    /// Requests simulated.
    pub total: u64,
    /// Count per outcome.
    pub counts: BTreeMap<Outcome, u64>,
    /// Count per policy that fired.
    pub by_policy: BTreeMap<String, u64>,
    /// Sum of the waits of delayed requests, in ms.
    pub total_wait_ms: u64,
}

impl Distribution {
    /// The count of one outcome.
    pub fn count(&self, outcome: &Outcome) -> u64 {
        self.counts.get(outcome).copied().unwrap_or(0)
    }

    /// Requests that got any fault.
    pub fn faulted(&self) -> u64 {
        self.total - self.count(&Outcome::Pass)
    }
}

/// Runs `requests` draws of one request through `decide`, with a seeded generator: the same
/// seed gives the same distribution.
pub fn sample<R: RequestView + ?Sized>(
    set: &CompiledPolicySet,
    request: &R,
    now_ms: u64,
    requests: u64,
    seed: u64,
) -> Distribution {
    let mut rng = XorShift64Star::new(seed);
    let mut out = Distribution::default();
    for _ in 0..requests {
        let decision = decide(set, request, now_ms, rng.next_u64());
        out.total += 1;
        if let Some(d) = &decision {
            *out.by_policy.entry(String::from(d.policy)).or_insert(0) += 1;
            out.total_wait_ms = out.total_wait_ms.saturating_add(d.total_wait_ms());
        }
        *out.counts
            .entry(Outcome::of(decision.as_ref()))
            .or_insert(0) += 1;
    }
    out
}

/// One rule's share of requests, as the rules promise it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedShare {
    /// The policy.
    pub policy: String,
    /// The rule within it.
    pub rule_index: usize,
    /// The rule's configured percentage, in ppm.
    pub configured_ppm: u32,
    /// The share of all requests this rule decides, in 0..=1: its percentage times the chance
    /// that no earlier matching rule fired.
    pub share: f64,
}

/// The share each matching rule is expected to take: its percentage times the chance that no
/// earlier matching rule fired, with independent draws (`random` sampling, or `request`
/// sampling without an `x-request-id`). A `request`-sampled rule with a request id present is
/// deterministic: it takes all that is left, or nothing.
pub fn expected_shares<R: RequestView + ?Sized>(
    set: &CompiledPolicySet,
    request: &R,
    now_ms: u64,
) -> Vec<ExpectedShare> {
    let request_id = request.header(REQUEST_ID_HEADER);
    let mut not_yet = 1.0f64;
    let mut shares = Vec::new();
    for rule in set.matching_rules(request, now_ms) {
        let p = match (rule.sampling, request_id) {
            (Sampling::Request, Some(id)) => {
                let seed = rule_seed(rule.policy, rule.rule_index);
                if fires(rule_draw(rule.sampling, seed, 0, Some(id)), rule.ppm) {
                    1.0
                } else {
                    0.0
                }
            }
            _ => f64::from(rule.ppm) / f64::from(PPM_SCALE),
        };
        shares.push(ExpectedShare {
            policy: String::from(rule.policy),
            rule_index: rule.rule_index,
            configured_ppm: rule.ppm,
            share: not_yet * p,
        });
        not_yet *= 1.0 - p;
    }
    shares
}
