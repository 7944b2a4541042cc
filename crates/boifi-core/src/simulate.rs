//! Dry runs: the outcome distribution of many simulated requests, computed with the very
//! [`decide`] the filter runs, and the distribution the rules promise.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::compiled::{
    decide, fires, rule_draw, rule_seed, CompiledPolicySet, FaultDecision, MatchedRule,
    RequestView, REQUEST_ID_HEADER,
};
use crate::policy::{FaultTarget, Percentage, Sampling};
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
    /// Forwarded: the app did its work, then its answer was replaced by an error
    /// (`target: response`; after a wait, if the rule has one).
    ResponseAbort {
        /// The HTTP status.
        http_status: u16,
    },
    /// No HTTP answer: the stream was reset (before the app saw the request, or after it
    /// answered with `target: response`; after a wait, if the rule has one).
    Reset,
}

impl Outcome {
    /// The outcome of a decision.
    pub fn of(decision: Option<&FaultDecision<'_>>) -> Outcome {
        match decision {
            None => Outcome::Pass,
            Some(d) => Outcome::of_fault(
                d.total_wait_ms() > 0 || d.delay_ms.is_some(),
                d.abort.map(|a| a.http_status),
                d.reset,
                d.target,
            ),
        }
    }

    /// The outcome a rule's fault gives whenever it fires: what [`Outcome::of`] says of its
    /// decision.
    pub fn of_rule(rule: &MatchedRule<'_>) -> Outcome {
        Outcome::of_fault(rule.waits, rule.abort_status, rule.reset, rule.target)
    }

    /// A fault that fired: whether it waits, its abort status if it aborts, whether it resets,
    /// and the phase it acts in. A response delay is a delay to the caller.
    fn of_fault(
        waits: bool,
        abort_status: Option<u16>,
        reset: bool,
        target: FaultTarget,
    ) -> Outcome {
        match (reset, target, waits, abort_status) {
            (true, _, _, _) => Outcome::Reset,
            (false, _, _, None) => Outcome::Delay,
            (false, FaultTarget::Response, _, Some(http_status)) => {
                Outcome::ResponseAbort { http_status }
            }
            (false, FaultTarget::Request, false, Some(http_status)) => {
                Outcome::Abort { http_status }
            }
            (false, FaultTarget::Request, true, Some(http_status)) => {
                Outcome::DelayThenAbort { http_status }
            }
        }
    }

    /// The abort status, for the outcomes that abort.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Outcome::Abort { http_status }
            | Outcome::DelayThenAbort { http_status }
            | Outcome::ResponseAbort { http_status } => Some(*http_status),
            Outcome::Pass | Outcome::Delay | Outcome::Reset => None,
        }
    }

    /// Whether requests with this outcome wait (a delay, or a delay before the abort).
    pub fn waits(&self) -> bool {
        matches!(self, Outcome::Delay | Outcome::DelayThenAbort { .. })
    }

    /// A short label: `pass`, `delay`, `abort`, `delay_then_abort`, `response_abort`, `reset`.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Delay => "delay",
            Outcome::Abort { .. } => "abort",
            Outcome::DelayThenAbort { .. } => "delay_then_abort",
            Outcome::ResponseAbort { .. } => "response_abort",
            Outcome::Reset => "reset",
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
    /// The waits of the requests of each outcome (an outcome without waits has zeros).
    pub waits: BTreeMap<Outcome, WaitStats>,
}

/// The waits of a set of requests, in ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaitStats {
    /// Requests counted.
    pub count: u64,
    /// The smallest wait.
    pub min: u64,
    /// The largest wait.
    pub max: u64,
    /// The sum of the waits (saturating).
    pub sum: u64,
}

impl WaitStats {
    /// Counts one more request that waited `wait_ms`.
    pub fn record(&mut self, wait_ms: u64) {
        self.min = if self.count == 0 {
            wait_ms
        } else {
            self.min.min(wait_ms)
        };
        self.max = self.max.max(wait_ms);
        self.sum = self.sum.saturating_add(wait_ms);
        self.count += 1;
    }

    /// Adds another set's waits.
    pub fn merge(&mut self, other: &WaitStats) {
        if other.count == 0 {
            return;
        }
        self.min = if self.count == 0 {
            other.min
        } else {
            self.min.min(other.min)
        };
        self.max = self.max.max(other.max);
        self.sum = self.sum.saturating_add(other.sum);
        self.count += other.count;
    }

    /// The mean wait, rounded down (0 for no requests).
    pub fn mean(&self) -> u64 {
        self.sum.checked_div(self.count).unwrap_or(0)
    }
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

    /// Counts one request and the decision it got.
    pub fn record(&mut self, decision: Option<&FaultDecision<'_>>) {
        self.total += 1;
        let wait = decision.map_or(0, FaultDecision::total_wait_ms);
        if let Some(d) = decision {
            *self.by_policy.entry(String::from(d.policy)).or_insert(0) += 1;
            self.total_wait_ms = self.total_wait_ms.saturating_add(wait);
        }
        let outcome = Outcome::of(decision);
        self.waits.entry(outcome.clone()).or_default().record(wait);
        *self.counts.entry(outcome).or_insert(0) += 1;
    }

    /// Adds another distribution's requests.
    pub fn merge(&mut self, other: &Distribution) {
        self.total += other.total;
        self.total_wait_ms = self.total_wait_ms.saturating_add(other.total_wait_ms);
        for (k, v) in &other.counts {
            *self.counts.entry(k.clone()).or_insert(0) += v;
        }
        for (k, v) in &other.by_policy {
            *self.by_policy.entry(k.clone()).or_insert(0) += v;
        }
        for (k, v) in &other.waits {
            self.waits.entry(k.clone()).or_default().merge(v);
        }
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
        out.record(decide(set, request, now_ms, rng.next_u64()).as_ref());
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
    /// The rule's configured percentage.
    pub percentage: Percentage,
    /// What the rule does to a request when it fires.
    pub outcome: Outcome,
    /// The share of all requests this rule decides: its percentage times the chance that no
    /// earlier matching rule fired.
    pub share: Share,
}

/// A share of requests in 0..=1, exact. Every rate is a whole number of parts per million, so
/// each share the rules promise is a product of such rates, a decimal with finitely many
/// digits, and is kept as one: its numerator's decimal digits over a power of ten. No float
/// rounding, so `99.9999 %` leaves exactly `0.0001 %` to pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// The numerator's decimal digits, least significant first, without leading zeros.
    digits: Vec<u8>,
    /// The value is the numerator over `10^scale`.
    scale: usize,
}

impl Share {
    /// No request.
    pub fn none() -> Share {
        Share {
            digits: Vec::new(),
            scale: 0,
        }
    }

    /// Every request.
    pub fn all() -> Share {
        Share {
            digits: alloc::vec![1],
            scale: 0,
        }
    }

    /// This share of it, taken at a rate of `percentage`.
    pub fn times(&self, percentage: Percentage) -> Share {
        let mut digits = Vec::with_capacity(self.digits.len() + 7);
        let mut carry: u64 = 0;
        for d in &self.digits {
            let v = u64::from(*d) * u64::from(percentage.ppm()) + carry;
            digits.push((v % 10) as u8);
            carry = v / 10;
        }
        while carry > 0 {
            digits.push((carry % 10) as u8);
            carry /= 10;
        }
        Share {
            digits,
            scale: self.scale + 6,
        }
        .trimmed()
    }

    /// What is left of it when `percentage` of it is taken.
    pub fn times_rest(&self, percentage: Percentage) -> Share {
        self.minus(&self.times(percentage))
    }

    /// The sum of two shares.
    pub fn plus(&self, other: &Share) -> Share {
        let scale = self.scale.max(other.scale);
        let (a, b) = (self.digits_at(scale), other.digits_at(scale));
        let mut digits = Vec::with_capacity(a.len().max(b.len()) + 1);
        let mut carry = 0u8;
        for i in 0..a.len().max(b.len()) {
            let v = a.get(i).copied().unwrap_or(0) + b.get(i).copied().unwrap_or(0) + carry;
            digits.push(v % 10);
            carry = v / 10;
        }
        if carry > 0 {
            digits.push(carry);
        }
        Share { digits, scale }.trimmed()
    }

    /// What is left of this share when `other` is taken from it (none if `other` is larger).
    pub fn minus(&self, other: &Share) -> Share {
        let scale = self.scale.max(other.scale);
        let (a, b) = (self.digits_at(scale), other.digits_at(scale));
        let mut digits = Vec::with_capacity(a.len());
        let mut borrow = 0u8;
        for i in 0..a.len().max(b.len()) {
            let (x, y) = (
                a.get(i).copied().unwrap_or(0),
                b.get(i).copied().unwrap_or(0) + borrow,
            );
            borrow = u8::from(x < y);
            digits.push(x + 10 * borrow - y);
        }
        if borrow > 0 {
            return Share::none();
        }
        Share { digits, scale }.trimmed()
    }

    /// Whether it is no request at all.
    pub fn is_none(&self) -> bool {
        self.digits.is_empty()
    }

    /// The share in percent, as exact decimal text: `25`, `0.0001`, `33.3333`.
    pub fn percent(&self) -> String {
        // In percent the numerator is over 10^(scale - 2): `point` fraction digits.
        let scale = self.scale.max(2);
        let point = scale - 2;
        let mut text: String = self
            .digits_at(scale)
            .iter()
            .rev()
            .map(|d| char::from(b'0' + d))
            .collect();
        if text.len() <= point {
            text.insert_str(0, &"0".repeat(point + 1 - text.len()));
        }
        if point > 0 {
            // A trimmed numerator ends in a non-zero digit: no trailing zeros to drop.
            text.insert(text.len() - point, '.');
        }
        text
    }

    /// The share in percent as the nearest `f64` (exactly the [`Share::percent`] text whenever
    /// that has at most 15 significant digits).
    pub fn percent_f64(&self) -> f64 {
        self.percent().parse().unwrap_or(f64::NAN)
    }

    /// The digits of the numerator over `10^scale` (`scale` at least the share's own).
    fn digits_at(&self, scale: usize) -> Vec<u8> {
        if self.digits.is_empty() {
            return Vec::new();
        }
        let mut digits = alloc::vec![0; scale.saturating_sub(self.scale)];
        digits.extend_from_slice(&self.digits);
        digits
    }

    /// Without leading zeros, and without trailing decimal zeros (so equal shares are equal).
    fn trimmed(mut self) -> Share {
        while self.digits.last() == Some(&0) {
            self.digits.pop();
        }
        let zeros = self
            .digits
            .iter()
            .take_while(|d| **d == 0)
            .count()
            .min(self.scale);
        self.digits.drain(..zeros);
        self.scale -= zeros;
        if self.digits.is_empty() {
            self.scale = 0;
        }
        self
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.percent())
    }
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
    let mut not_yet = Share::all();
    let mut shares = Vec::new();
    for rule in set.matching_rules(request, now_ms) {
        let rate = match (rule.sampling, request_id) {
            (Sampling::Request, Some(id)) => {
                let seed = rule_seed(rule.policy, rule.rule_index);
                if fires(
                    rule_draw(rule.sampling, seed, 0, Some(id)),
                    rule.percentage.ppm(),
                ) {
                    Percentage::ALWAYS
                } else {
                    Percentage::NEVER
                }
            }
            _ => rule.percentage,
        };
        shares.push(ExpectedShare {
            policy: String::from(rule.policy),
            rule_index: rule.rule_index,
            percentage: rule.percentage,
            outcome: Outcome::of_rule(&rule),
            share: not_yet.times(rate),
        });
        not_yet = not_yet.times_rest(rate);
    }
    shares
}

/// The share of requests each outcome is expected to take, from the rules' shares: what no
/// rule takes passes.
pub fn expected_outcomes(shares: &[ExpectedShare]) -> BTreeMap<Outcome, Share> {
    let mut out: BTreeMap<Outcome, Share> = BTreeMap::new();
    let mut left = Share::all();
    for share in shares {
        left = left.minus(&share.share);
        let total = out.entry(share.outcome.clone()).or_insert_with(Share::none);
        *total = total.plus(&share.share);
    }
    let pass = out.entry(Outcome::Pass).or_insert_with(Share::none);
    *pass = pass.plus(&left);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_merge_as_if_recorded_together() {
        let mut a = WaitStats::default();
        let mut b = WaitStats::default();
        let mut both = WaitStats::default();
        for (i, w) in [30u64, 10, 50, 20].into_iter().enumerate() {
            if i % 2 == 0 {
                a.record(w)
            } else {
                b.record(w)
            }
            both.record(w);
        }
        a.merge(&b);
        a.merge(&WaitStats::default());
        assert_eq!(a, both);
        assert_eq!((both.min, both.max, both.mean()), (10, 50, 27));
        assert_eq!(WaitStats::default().mean(), 0);
    }
}
