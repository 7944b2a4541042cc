//! [`SidecarPolicy`]: what a proxy needs of a validated policy, with its matchers compiled. The
//! control plane (and `simulate`, the scenario corpus, the CLI) builds it from a
//! [`PolicyDocument`] with [`SidecarPolicy::from_document`], the one place a policy's regexes
//! are compiled; the compact encoding carries it to proxies
//! ([`crate::wire::compact`]), which only verify it, never validate or compile a pattern.

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;

use super::{AbortAction, CompileError};
use crate::identity::Identity;
use crate::pattern::Pattern;
use crate::policy::{
    build_regex, policy_expiry, policy_state, rule_expiry, Delay, FaultTarget, FieldErrorKind,
    Percentage, PolicyDocument, PolicyState, Sampling, SourceMatch, StringMatch, Window,
};

/// How a request value is compared, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    /// Equal bytes.
    Exact(String),
    /// Starts with these bytes.
    Prefix(String),
    /// A compiled regex (its program; a value that is not UTF-8 never matches).
    Program(Pattern),
}

impl Matcher {
    /// Compiles a policy's string match (a regex is compiled with the bounds validation uses).
    pub fn compile(m: &StringMatch) -> Result<Matcher, FieldErrorKind> {
        Ok(match m {
            StringMatch::Exact(s) => Matcher::Exact(s.clone()),
            StringMatch::Prefix(s) => Matcher::Prefix(s.clone()),
            StringMatch::Regex(s) => Matcher::Program(build_regex(s)?),
        })
    }

    /// Whether `value` matches.
    pub fn is_match(&self, value: &[u8]) -> bool {
        match self {
            Matcher::Exact(s) => value == s.as_bytes(),
            Matcher::Prefix(s) => value.starts_with(s.as_bytes()),
            // The pattern engine works on characters: a value that is not UTF-8 has none.
            Matcher::Program(p) => core::str::from_utf8(value).is_ok_and(|v| p.is_match(v)),
        }
    }
}

/// `match.source` resolved to what a certificate names: the namespace and service account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerMatch {
    /// The caller's namespace.
    pub namespace: Option<String>,
    /// The caller's service account (a `service` condition names the account of that name).
    pub service_account: Option<String>,
}

impl CallerMatch {
    /// Resolves a policy's `match.source`.
    pub fn from_source(source: &SourceMatch) -> CallerMatch {
        CallerMatch {
            namespace: source.namespace.clone(),
            service_account: source.required_service_account().map(ToOwned::to_owned),
        }
    }
}

/// Which proxies a policy applies to. `None` means any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SidecarSelector {
    /// The service name.
    pub service: Option<String>,
    /// The namespace.
    pub namespace: Option<String>,
    /// Pod labels that must all be present with these values, in key order.
    pub labels: Vec<(String, String)>,
}

/// One rule, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarRule {
    /// The method condition.
    pub method: Option<Matcher>,
    /// The path condition (without the query string).
    pub path: Option<Matcher>,
    /// Header conditions: lower-case name and matcher.
    pub headers: Vec<(String, Matcher)>,
    /// The caller condition.
    pub source: Option<CallerMatch>,
    /// Share of matching requests that get the fault.
    pub percentage: Percentage,
    /// The wait before the fault acts.
    pub start_delay_ms: u64,
    /// The rule stops this long after the policy was stored; 0 = never.
    pub duration_seconds: u64,
    /// The phase the fault acts in.
    pub target: FaultTarget,
    /// The delay.
    pub delay: Option<Delay>,
    /// The abort.
    pub abort: Option<AbortAction>,
    /// Whether the stream is reset.
    pub reset: bool,
}

/// A validated policy as a proxy gets it: what matching an identity, ordering, timing and the
/// decision need, with its matchers compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarPolicy {
    /// The policy's name.
    pub name: String,
    /// Which proxies it concerns.
    pub selector: SidecarSelector,
    /// `false`: never applied.
    pub enabled: bool,
    /// Evaluation order (higher first).
    pub priority: i32,
    /// How the percentage draw is made.
    pub sampling: Sampling,
    /// When set, the policy acts only inside this window.
    pub window: Option<Window>,
    /// When the control plane stored it (`duration_seconds` counts from here); `None`: when
    /// it is compiled.
    pub stored_at_ms: Option<u64>,
    /// A proxy that has not heard from the control plane this long stops applying it.
    pub heartbeat_seconds: Option<u64>,
    /// Its rules, in order.
    pub rules: Vec<SidecarRule>,
}

impl SidecarPolicy {
    /// The sidecar form of a validated policy: regexes compiled (an error only for a document
    /// built in code, since parsed documents are validated), guards and metadata other than
    /// the name left out.
    pub fn from_document(policy: &PolicyDocument) -> Result<SidecarPolicy, CompileError> {
        let spec = &policy.spec;
        let mut rules = Vec::with_capacity(spec.rules.len());
        for (rule_index, rule) in spec.rules.iter().enumerate() {
            let error = |path: &str, kind| CompileError {
                policy: policy.name().to_owned(),
                path: alloc::format!("spec.rules[{rule_index}].match.{path}"),
                kind,
            };
            let compile = |m: &Option<StringMatch>, path: &str| {
                m.as_ref()
                    .map(Matcher::compile)
                    .transpose()
                    .map_err(|k| error(path, k))
            };
            let m = &rule.matches;
            let mut headers = Vec::with_capacity(m.headers.len());
            for (i, h) in m.headers.iter().enumerate() {
                let matcher = Matcher::compile(&h.value)
                    .map_err(|k| error(&alloc::format!("headers[{i}]"), k))?;
                headers.push((h.name.clone(), matcher));
            }
            let f = &rule.fault;
            rules.push(SidecarRule {
                method: compile(&m.method, "method")?,
                path: compile(&m.path, "path")?,
                headers,
                source: m.source.as_ref().map(CallerMatch::from_source),
                percentage: f.percentage,
                start_delay_ms: f.start_delay_ms,
                duration_seconds: f.duration_seconds,
                target: f.target,
                delay: f.delay.clone(),
                abort: f.abort.as_ref().map(AbortAction::from_policy),
                reset: f.reset,
            });
        }
        Ok(SidecarPolicy {
            name: policy.name().to_owned(),
            selector: SidecarSelector {
                service: spec.selector.service.clone(),
                namespace: spec.selector.namespace.clone(),
                labels: spec
                    .selector
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            },
            enabled: spec.enabled,
            priority: spec.priority,
            sampling: spec.sampling,
            window: spec.window,
            stored_at_ms: policy.status.map(|s| s.stored_at_ms),
            heartbeat_seconds: spec.heartbeat_seconds,
            rules,
        })
    }

    /// [`SidecarPolicy::from_document`] of each policy, in order.
    pub fn from_documents(policies: &[PolicyDocument]) -> Result<Vec<SidecarPolicy>, CompileError> {
        policies.iter().map(SidecarPolicy::from_document).collect()
    }

    /// Whether the policy concerns a proxy of this identity (as
    /// [`crate::policy::Selector::matches`]).
    pub fn applies_to(&self, identity: &Identity) -> bool {
        let named = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
        };
        let s = &self.selector;
        named(&s.service, &identity.service)
            && named(&s.namespace, &identity.namespace)
            && s.labels
                .iter()
                .all(|(k, v)| identity.labels.get(k) == Some(v))
    }

    /// When rule `rule` stops acting (`None`: never), for a policy compiled at `now_ms`.
    pub(crate) fn rule_until(&self, rule: &SidecarRule, now_ms: u64) -> u64 {
        let window_until = self.window.map_or(u64::MAX, |w| w.end_ms);
        rule_expiry(rule.duration_seconds, self.stored_at_ms.unwrap_or(now_ms))
            .map_or(window_until, |e| e.min(window_until))
    }

    /// Where the policy stands at `now_ms` (as [`PolicyDocument::state_at`]).
    pub fn state_at(&self, now_ms: u64) -> PolicyState {
        let expires = policy_expiry(
            self.rules.iter().map(|r| r.duration_seconds),
            self.window,
            self.stored_at_ms.unwrap_or(now_ms),
        );
        policy_state(expires, self.enabled, self.window, now_ms)
    }
}
