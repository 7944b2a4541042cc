//! Errors of policy parsing and validation.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// One problem with one field of a policy document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {kind}")]
pub struct FieldError {
    /// Where the problem is, e.g. `spec.rules[0].fault.percentage`.
    pub path: String,
    /// What is wrong.
    pub kind: FieldErrorKind,
}

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldErrorKind {
    /// The field is required.
    #[error("is required")]
    Missing,
    /// The field is not part of the format.
    #[error("unknown field")]
    UnknownField,
    /// The value has the wrong JSON/YAML type.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// What the field takes.
        expected: &'static str,
        /// What the document had.
        found: &'static str,
    },
    /// A number outside its allowed range.
    #[error("`{value}` is outside {range}")]
    OutOfRange {
        /// The value as written.
        value: String,
        /// The allowed range, e.g. `0..=100`.
        range: &'static str,
    },
    /// A percentage with more decimals than the 0.0001 % resolution.
    #[error("`{value}` has more than 4 decimal places (the resolution is 0.0001%)")]
    TooPrecise {
        /// The value as written.
        value: String,
    },
    /// A value other than the one fixed value the field takes.
    #[error("`{value}` is not supported, expected `{expected}`")]
    UnexpectedValue {
        /// The value as written.
        value: String,
        /// The value the field takes.
        expected: &'static str,
    },
    /// A value not among the allowed choices.
    #[error("`{value}` is not one of {choices}")]
    NotAChoice {
        /// The value as written.
        value: String,
        /// The allowed choices.
        choices: &'static str,
    },
    /// An invalid policy name.
    #[error("`{value}` is not a valid name: {reason}")]
    InvalidName {
        /// The name as written.
        value: String,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// A value outside the form its field takes (a namespace, a label).
    #[error("`{value}` is not valid: {reason}")]
    BadValue {
        /// The value as written.
        value: String,
        /// The form the field takes.
        reason: &'static str,
    },
    /// A list that must not be empty is empty.
    #[error("must not be empty")]
    Empty,
    /// More items or characters than allowed.
    #[error("is too long: {len} is more than the limit of {limit}")]
    TooLong {
        /// The length found.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A rule without any match condition.
    #[error("a rule needs at least one condition: `method`, `path`, `headers` or `source`")]
    NoCondition,
    /// A `match.source` without any field.
    #[error("give at least one of `service`, `namespace` or `serviceAccount`")]
    EmptySource,
    /// Caller labels asked for: a certificate does not carry them.
    #[error("caller labels cannot be verified from the caller's certificate, which names only its namespace and service account; match `service` or `serviceAccount` instead")]
    UnverifiableSourceLabels,
    /// A namespace, service or service account name that no Kubernetes object can have.
    #[error("`{value}` is not a valid name: {reason}")]
    BadSourceName {
        /// The name as written.
        value: String,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// A fault without an action.
    #[error("a fault needs at least one of `delay`, `abort` and `reset`")]
    NoAction,
    /// `reset` beside `abort`: a reset sends no answer, an abort is one.
    #[error("`reset: true` cannot be combined with `abort`: a reset sends no answer at all; keep one of them")]
    ResetWithAbort,
    /// A string matcher with zero or several of exact/prefix/regex.
    #[error("give exactly one of `exact`, `prefix` or `regex`")]
    MatcherKind,
    /// A regular expression that does not compile.
    #[error("regex `{pattern}` does not compile: {reason}")]
    BadRegex {
        /// The pattern as written.
        pattern: String,
        /// The regex engine's explanation.
        reason: String,
    },
    /// A header name that is not a valid HTTP token.
    #[error("`{value}` is not a valid header name")]
    BadHeaderName {
        /// The name as written.
        value: String,
    },
    /// A header value with control characters.
    #[error("header value contains a control character (CR, LF or NUL)")]
    BadHeaderValue,
    /// A credential that cannot be sent (its value is never repeated in the message).
    #[error("is not a usable bearer token: it {0}")]
    BadCredential(crate::wire::CredentialError),
    /// A timestamp that is not RFC 3339.
    #[error("`{value}` is not an RFC 3339 timestamp (e.g. `2026-11-26T10:00:00Z`)")]
    BadTimestamp {
        /// The timestamp as written.
        value: String,
    },
    /// A window whose end is not after its start.
    #[error("`{end}` is not after the window start `{start}`")]
    WindowEndsBeforeStart {
        /// The start as written.
        start: String,
        /// The end as written.
        end: String,
    },
    /// Jitter larger than the delay it varies.
    #[error("`{jitter}` is larger than `fixed_delay_ms` (`{fixed}`)")]
    JitterAboveDelay {
        /// The jitter.
        jitter: u64,
        /// The fixed delay.
        fixed: u64,
    },
    /// A guard with zero or both of `success_condition` and `failure_condition`.
    #[error("give exactly one of `success_condition` or `failure_condition`")]
    GuardConditionKind,
    /// A condition that is not `result <operator> <number>`.
    #[error("`{value}` is not a condition such as `result >= 0.95` (operators `<`, `<=`, `>`, `>=`, `==`, `!=`; a finite number)")]
    BadCondition {
        /// The condition as written.
        value: String,
    },
    /// A guard query that is not PromQL.
    #[error("`{query}` is not a PromQL query: {reason}")]
    BadQuery {
        /// The query as written.
        query: String,
        /// The PromQL parser's explanation.
        reason: String,
    },
    /// Two guards of one policy with the same name.
    #[error("`{value}` names another guard of this policy too")]
    DuplicateGuardName {
        /// The name.
        value: String,
    },
}

/// All the problems of one document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Joined(&self.0, "; ").fmt(f)
    }
}

/// Items displayed one after the other with a separator between them (`; ` for the field
/// errors of one document, a newline for the CLI's list of documents).
#[derive(Debug)]
pub struct Joined<'a, T>(pub &'a [T], pub &'a str);

impl<T: fmt::Display> fmt::Display for Joined<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(self.1)?;
            }
            write!(f, "{item}")?;
        }
        Ok(())
    }
}

impl core::error::Error for ValidationErrors {}

/// Why a policy file or body could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The text is not well-formed JSON or YAML.
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's explanation.
        message: String,
    },
    /// A well-formed document that is not a valid policy.
    #[error("document {document}: {errors}")]
    Invalid {
        /// 1-based position of the document in its file.
        document: usize,
        /// The name of the policy, when it could be read.
        name: Option<String>,
        /// Every problem found.
        errors: ValidationErrors,
    },
    /// The text holds no policy at all.
    #[error("no policy document found")]
    NoDocument,
}
