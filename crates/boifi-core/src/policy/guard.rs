//! `spec.guards`: health checks on the mesh's own metrics that stop a policy when they fail.
//!
//! The format follows Argo Rollouts' Prometheus analysis (`success_condition`,
//! `failure_limit`, `interval`) and AWS FIS stop conditions: a guard is a Prometheus instant
//! query, a condition on its one value (`result >= 0.95`), how often it is evaluated and how
//! many failed evaluations in a row stop the fault.
//!
//! The core only holds and checks the guard (the condition's form, the bounds, and with the
//! `std` feature the query's PromQL syntax); the control plane evaluates it. Sidecars never
//! receive guards.

use alloc::string::String;
use core::fmt;

/// Upper bound of the guards of one policy.
pub const MAX_GUARDS: usize = 8;
/// Upper bound of a guard's query, in bytes.
pub const MAX_QUERY_LEN: usize = 4096;
/// Upper bound of `interval_seconds`: one hour.
pub const MAX_INTERVAL_SECONDS: u64 = 3600;
/// Upper bound of `failure_limit`.
pub const MAX_FAILURE_LIMIT: u64 = 100;
/// `spec.heartbeat_seconds` the control plane gives a guarded policy that does not say: a
/// sidecar that has not heard from the control plane for that long stops applying it, since
/// no guard could stop it then.
pub const DEFAULT_GUARDED_HEARTBEAT_SECONDS: u64 = 30;
/// `interval_seconds` when the guard does not say.
pub const DEFAULT_INTERVAL_SECONDS: u64 = 10;
/// `failure_limit` when the guard does not say.
pub const DEFAULT_FAILURE_LIMIT: u64 = 1;

/// One guard of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    /// Unique within the policy; named in the stop record, the audit log and the metrics.
    pub name: String,
    /// A Prometheus instant query whose result is one number (a scalar or one sample).
    pub query: String,
    /// What the result must (or must not) satisfy.
    pub condition: GuardCondition,
    /// Seconds between evaluations, 1..=3600.
    pub interval_seconds: u64,
    /// Failed evaluations in a row that stop the policy, 1..=100.
    pub failure_limit: u64,
    /// What an evaluation that gets no number means.
    pub on_error: OnError,
}

/// `success_condition` or `failure_condition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardCondition {
    /// `success_condition`: the evaluation fails when the comparison does not hold.
    Success(Comparison),
    /// `failure_condition`: the evaluation fails when the comparison holds.
    Failure(Comparison),
}

impl GuardCondition {
    /// Whether an evaluation that returned `value` passed. NaN compares false with everything,
    /// as in PromQL, so a NaN fails a `success_condition` and passes a `failure_condition`.
    pub fn passes(&self, value: f64) -> bool {
        match self {
            GuardCondition::Success(c) => c.holds(value),
            GuardCondition::Failure(c) => !c.holds(value),
        }
    }

    /// The comparison, whichever kind.
    pub fn comparison(&self) -> &Comparison {
        match self {
            GuardCondition::Success(c) | GuardCondition::Failure(c) => c,
        }
    }
}

/// `result <operator> <threshold>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Comparison {
    /// The operator.
    pub operator: Operator,
    threshold_bits: u64,
}

/// A comparison operator of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `>`
    Greater,
    /// `>=`
    GreaterOrEqual,
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
}

impl Operator {
    /// As written in a condition.
    pub const fn as_str(self) -> &'static str {
        match self {
            Operator::Less => "<",
            Operator::LessOrEqual => "<=",
            Operator::Greater => ">",
            Operator::GreaterOrEqual => ">=",
            Operator::Equal => "==",
            Operator::NotEqual => "!=",
        }
    }
}

/// Why a condition does not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionProblem {
    /// Not `result <operator> <number>`.
    Form,
    /// The number is not finite.
    NotFinite,
}

impl Comparison {
    /// A comparison with a finite threshold.
    pub fn new(operator: Operator, threshold: f64) -> Option<Comparison> {
        threshold.is_finite().then(|| Comparison {
            operator,
            threshold_bits: threshold.to_bits(),
        })
    }

    /// The threshold.
    pub fn threshold(&self) -> f64 {
        f64::from_bits(self.threshold_bits)
    }

    /// Reads `result <operator> <number>` (spaces optional around the operator).
    pub fn parse(text: &str) -> Result<Comparison, ConditionProblem> {
        let rest = text
            .trim()
            .strip_prefix("result")
            .ok_or(ConditionProblem::Form)?
            .trim_start();
        // Two-character operators first, so `<=` is not read as `<` and `=0.5`.
        let operators = [
            Operator::LessOrEqual,
            Operator::GreaterOrEqual,
            Operator::Equal,
            Operator::NotEqual,
            Operator::Less,
            Operator::Greater,
        ];
        let (operator, number) = operators
            .iter()
            .find_map(|op| rest.strip_prefix(op.as_str()).map(|n| (*op, n.trim())))
            .ok_or(ConditionProblem::Form)?;
        let plain = !number.is_empty()
            && number
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
        if !plain {
            return Err(ConditionProblem::Form);
        }
        let threshold: f64 = number.parse().map_err(|_| ConditionProblem::Form)?;
        Comparison::new(operator, threshold).ok_or(ConditionProblem::NotFinite)
    }

    /// Whether `value <operator> threshold` holds (false for NaN, as in PromQL).
    pub fn holds(&self, value: f64) -> bool {
        let t = self.threshold();
        match self.operator {
            Operator::Less => value < t,
            Operator::LessOrEqual => value <= t,
            Operator::Greater => value > t,
            Operator::GreaterOrEqual => value >= t,
            #[expect(
                clippy::float_cmp,
                reason = "`==` in a condition means exact equality, as in PromQL"
            )]
            Operator::Equal => value == t,
            #[expect(
                clippy::float_cmp,
                reason = "`!=` in a condition means exact inequality, as in PromQL"
            )]
            Operator::NotEqual => value != t,
        }
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "result {} {}", self.operator.as_str(), self.threshold())
    }
}

/// `on_error`: what an evaluation that gets no number (Prometheus unreachable, a query error,
/// no sample, several samples) counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// A failed evaluation (the default: a blind guard is a failed guard).
    #[default]
    Fail,
    /// Neither a pass nor a failure: the count of failures in a row is left as it was.
    Ignore,
}

impl OnError {
    /// As written in a policy.
    pub const fn as_str(self) -> &'static str {
        match self {
            OnError::Fail => "fail",
            OnError::Ignore => "ignore",
        }
    }
}

/// The PromQL syntax check of a query: the parser's explanation of why it does not parse.
#[cfg(feature = "std")]
pub fn query_problem(query: &str) -> Option<String> {
    use alloc::string::ToString;
    promql_parser::parser::parse(query)
        .err()
        .map(|reason| reason.to_string().trim().to_string())
}

/// Without `std` the query's syntax is not checked here (sidecars never receive guards; the
/// control plane and the CLI, which build the core with `std`, check it).
#[cfg(not(feature = "std"))]
pub fn query_problem(_query: &str) -> Option<String> {
    None
}

/// Where a guarded policy stands, as the control plane records it in the policy's status (a
/// store write, so every replica and every sidecar sees it). The names differ from the kill
/// switch (`halt`, which deletes policies) and from the sidecar states (applied, pending,
/// refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GuardState {
    /// Waiting for every guard to pass once; nothing is injected, the policy is not sent to
    /// sidecars. A guarded policy is stored in this state (and back in it when re-armed).
    #[default]
    Verifying,
    /// Every guard passed once; the fault is injected and the guards keep watching.
    Running,
    /// A guard failed `failure_limit` times in a row: the policy is kept but not sent to
    /// sidecars until it is re-armed.
    Tripped(Trip),
}

/// What stopped a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trip {
    /// The index of the guard in `spec.guards` (its name is there).
    pub guard: usize,
    /// The value the last failed evaluation saw (`None`: the evaluation got no value).
    value_bits: Option<u64>,
    /// When the policy was stopped (Unix ms).
    pub at_ms: u64,
}

impl Trip {
    /// A stop by guard `guard` at `at_ms`, having seen `value`.
    pub fn new(guard: usize, value: Option<f64>, at_ms: u64) -> Trip {
        Trip {
            guard,
            value_bits: value.map(f64::to_bits),
            at_ms,
        }
    }

    /// The value the last failed evaluation saw.
    pub fn value(&self) -> Option<f64> {
        self.value_bits.map(f64::from_bits)
    }
}

impl GuardState {
    /// Lower-case name, as shown by the API and the CLI.
    pub const fn as_str(&self) -> &'static str {
        match self {
            GuardState::Verifying => "verifying",
            GuardState::Running => "running",
            GuardState::Tripped(_) => "tripped",
        }
    }

    /// Whether sidecars may get the policy: only once its guards passed and until one trips.
    pub const fn injects(&self) -> bool {
        matches!(self, GuardState::Running)
    }
}
