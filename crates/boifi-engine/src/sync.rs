//! The config long-poll against the control plane (`GET /v1/config`), as a state machine the
//! host glue drives: what to ask, what an answer means, when to ask again.
//!
//! Every answer is interpreted here, once, for every host: the host hands over what it received
//! ([`ConfigSync::on_answer`]: the `:status` and the body as bytes, or
//! [`ConfigSync::on_failed_call`] when the call produced no answer at all) and does what the
//! returned [`Step`] says: install a compiled set, add a counter, write log lines, poll again
//! now or at a time. So the proxy-wasm filter and the native module install, count and log the
//! same for the same answers.
//!
//! # What each answer means
//!
//! | answer | installs | counts | next poll | refusal reported |
//! |---|---|---|---|---|
//! | 200, decodes and compiles | the set, as its version | [`Counter::ConfigUpdates`] | at once (the server holds it) | cleared |
//! | 200, decodes, but holds a value no validated policy has ([`CompactError::Invalid`]), a fault this host cannot inject, or more rules for this sidecar than its `max_rules` | nothing: the old set stays | [`Counter::ConfigErrors`] | at once: the refusal tells the server which version was seen, so it holds the poll until a newer one | `refused=<version>&reason=<why>` |
//! | 200, does not decode (malformed compact, or another version of it: a control plane older than the filter answers version 2) | nothing | [`Counter::ConfigErrors`] | after backoff with jitter | the header's version with the decode error, when the header is readable |
//! | 304 | nothing | nothing | at once | kept |
//! | 401, 403: the read credential is missing or refused | nothing | [`Counter::PollFailures`] | after backoff with jitter | kept |
//! | other 4xx, 5xx, timeout, reset, connection refused | nothing | [`Counter::PollFailures`] | after backoff with jitter | kept |
//!
//! A refusal is reported on every following poll until a set is applied. The version a poll
//! reports (`version=`) is always the one applied. A server that sends a refused version again
//! (one that does not read `refused=`) is answered with backoff, never with a tight loop.
//! Without long-poll (`long_poll_wait_ms` 0), "at once" is after `backoff_initial_ms`.
//!
//! # Heartbeat bound
//! A policy with `spec.heartbeat_seconds` (a guarded one) is applied only while the control
//! plane answers: when no 200 or 304 came for that long, the sidecar installs the set without
//! it ([`Counter::HeartbeatLapses`], a warn line) and puts it back on the next 200 or 304.
//! Policies without a bound keep the fail-open behaviour (the last good set stays forever).
//! The check runs on every failed call, and a failed call's retry is never later than the next
//! bound to lapse, so a dead control plane is noticed on time; a host may also call
//! [`ConfigSync::check_heartbeat`] at any time. While such a policy is held, a long-poll asks
//! the server to answer (304) within half the smallest bound, so a live control plane is
//! always heard in time.
//!
//! Logging: a failure (no answer, a bad status, a malformed body) is logged at warn once per
//! episode of consecutive failures, then at debug; a refused credential is logged at warn once
//! more in an episode that began otherwise (a control plane restarted with rotated credentials
//! first refuses connections, then the old credential: the operator must see the second). The
//! first usable answer after it logs the end of the episode at info. Each refused version is
//! logged at warn, each applied set at info.
//!
//! The read credential ([`ReadCredential`], from `control_plane_token` or the native module's
//! token file) is sent by the host as [`ConfigSync::authorization`]; it appears in no log line,
//! message or metric: a refusal says that the credential was refused, never what it is.

use alloc::string::String;
use alloc::vec::Vec;

use boifi_core::compiled::CompiledPolicySet;
use boifi_core::identity::Identity;
use boifi_core::policy::FaultTarget;
use boifi_core::text::{concat, decimal, push_decimal};
use boifi_core::wire::compact::{self, CompactError, SidecarConfig};
use boifi_core::wire::{ConfigEncoding, ConfigQuery, PluginConfig, ReadCredential, Refusal};

use crate::backoff::Backoff;
use crate::destinations::SharedPolicies;
use crate::engine::PolicySet;
use crate::metrics::Counter;
use alloc::sync::Arc;

/// Why a config answer could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The call did not complete (no `:status`): cluster unknown, timeout, reset.
    NoResponse,
    /// The control plane answered with an unexpected status.
    Status(u16),
    /// 401 or 403: the control plane requires a read credential this sidecar lacks, or refuses
    /// the one it sent.
    Credential {
        /// 401 or 403.
        status: u16,
        /// Whether the request carried a credential.
        sent: bool,
    },
    /// A 200 whose body is not a valid compact answer (version 3).
    Body(compact::CompactError),
    /// A policy with a fault this host cannot inject ([`HostFaults`]).
    Unsupported {
        /// The rejected version.
        version: u64,
        /// The policy.
        policy: String,
        /// The field path of the fault.
        path: String,
        /// What this host cannot do, and why.
        what: &'static str,
    },
    /// More rules apply to this sidecar than its `max_rules` allows.
    OverLimit {
        /// The rejected version.
        version: u64,
        /// Rules that apply to this sidecar in it.
        rules: usize,
        /// The sidecar's `max_rules`.
        max_rules: u64,
    },
}

impl SyncError {
    /// Appends the message (what `Display` writes) to `out`, without `core::fmt`: the Wasm
    /// filter logs it and reports it in a refusal.
    pub fn push_message(&self, out: &mut String) {
        match self {
            SyncError::NoResponse => out.push_str("config request failed without a response"),
            SyncError::Status(status) => {
                out.push_str("config request answered with status `");
                push_decimal(out, u64::from(*status));
                out.push('`');
            }
            SyncError::Credential { status, sent } => {
                out.push_str(if *sent {
                    "the control plane refused this sidecar's read credential (status `"
                } else {
                    "the control plane requires a read credential (status `"
                });
                push_decimal(out, u64::from(*status));
                out.push_str(if *sent {
                    "`): check that its token (control_plane_token, or the native module's control_plane_token_file) is one the control plane accepts for reads"
                } else {
                    "`) and none is configured: set control_plane_token (the native module: control_plane_token_file)"
                });
            }
            SyncError::Body(source) => {
                out.push_str("config response is invalid: ");
                source.push_message(out);
            }
            SyncError::Unsupported {
                policy, path, what, ..
            } => {
                for part in ["policy `", policy, "`: ", path, ": ", what] {
                    out.push_str(part);
                }
            }
            SyncError::OverLimit {
                version,
                rules,
                max_rules,
            } => {
                out.push_str("config version ");
                push_decimal(out, *version);
                out.push_str(" has ");
                push_decimal(out, *rules as u64);
                out.push_str(" rules for this sidecar, over its limit of ");
                push_decimal(out, *max_rules);
                out.push_str(" (max_rules)");
            }
        }
    }

    /// The message, as `Display` writes it.
    pub fn message(&self) -> String {
        let mut out = String::new();
        self.push_message(&mut out);
        out
    }
}

impl core::fmt::Display for SyncError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.message())
    }
}

/// Appends `names` separated by `, `.
fn push_list(out: &mut String, names: &[impl AsRef<str>]) {
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name.as_ref());
    }
}

/// What an answer means for the poller.
#[derive(Debug)]
pub enum PollOutcome {
    /// A new policy set (the version and the raw body, which is shared with the other VMs).
    Updated {
        /// The decoded answer.
        response: SidecarConfig,
    },
    /// 304: what we hold is current.
    Unchanged,
}

/// Reads one `/v1/config` answer: its `:status` header and body, as the host hands them over
/// (bytes; anything that is not a 3-digit status counts as no response).
pub fn classify(status: Option<&[u8]>, body: Option<&[u8]>) -> Result<PollOutcome, SyncError> {
    let status: u16 = status
        .and_then(|s| core::str::from_utf8(s).ok())
        .and_then(|s| s.trim().parse().ok())
        .ok_or(SyncError::NoResponse)?;
    match status {
        200 => {
            let response = compact::decode(body.unwrap_or_default()).map_err(SyncError::Body)?;
            Ok(PollOutcome::Updated { response })
        }
        304 => Ok(PollOutcome::Unchanged),
        other => Err(SyncError::Status(other)),
    }
}

/// Compiles a `/v1/config` body for `identity` at `now_ms`, refusing a set of more than
/// `max_rules` rules for it.
/// The policies named in `left_out` (their heartbeat bound lapsed) are not compiled.
pub fn compile_body(
    body: &[u8],
    left_out: &[String],
    identity: &Identity,
    now_ms: u64,
    max_rules: u64,
) -> Result<(u64, PolicySet), SyncError> {
    let mut response = compact::decode(body).map_err(SyncError::Body)?;
    if !left_out.is_empty() {
        response.policies.retain(|p| !left_out.contains(&p.name));
    }
    compile_response(response, identity, now_ms, max_rules)
}

/// Compiles a decoded answer for `identity` at `now_ms`: the one place a set becomes what a
/// proxy serves, so every host refuses alike a set of more than `max_rules` rules (`PluginConfig::max_rules`): a sidecar's set, or, for a shared proxy, the
/// policy list its destinations' sets are compiled from ([`SharedPolicies`]; there the limit
/// counts the rules of every policy it keeps, an upper bound of any destination's set).
pub fn compile_response(
    response: SidecarConfig,
    identity: &Identity,
    now_ms: u64,
    max_rules: u64,
) -> Result<(u64, PolicySet), SyncError> {
    let version = response.version;
    let set = if identity.proxy.is_shared() {
        PolicySet::Shared(Arc::new(SharedPolicies::new(
            response.policies,
            identity.proxy,
        )))
    } else {
        PolicySet::Sidecar(Arc::new(CompiledPolicySet::compile(
            &response.policies,
            identity,
            now_ms,
        )))
    };
    let rules = set.rule_count();
    if u64::try_from(rules).map_or(true, |n| n > max_rules) {
        return Err(SyncError::OverLimit {
            version,
            rules,
            max_rules,
        });
    }
    Ok((version, set))
}

/// The faults a host can inject beyond request-phase aborts and delays, which every host can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFaults {
    /// Hold the app's response (`target: response` with a delay or a start delay).
    pub response_delay: bool,
    /// Reset a stream (`reset: true`).
    pub reset: bool,
    /// Why the host cannot, for the refusal (e.g. which ABI lacks the call).
    pub why_not: &'static str,
}

impl HostFaults {
    /// A host that can inject every fault (the proxy-wasm filter).
    pub const ALL: HostFaults = HostFaults {
        response_delay: true,
        reset: true,
        why_not: "",
    };

    /// `Ok` when the host can inject every fault of the answer's enabled policies, else the
    /// first one it cannot, named by policy and field path.
    pub fn check(&self, response: &SidecarConfig) -> Result<(), SyncError> {
        for policy in response.policies.iter().filter(|p| p.enabled) {
            for (i, f) in policy.rules.iter().enumerate() {
                let holds_response = f.target == FaultTarget::Response
                    && (f.delay.is_some() || f.start_delay_ms > 0);
                let refused = if f.reset && !self.reset {
                    Some("reset")
                } else if holds_response && !self.response_delay {
                    Some("delay")
                } else {
                    None
                };
                if let Some(field) = refused {
                    return Err(SyncError::Unsupported {
                        version: response.version,
                        policy: policy.name.clone(),
                        path: concat(&["spec.rules[", &decimal(i as u64), "].fault.", field]),
                        what: self.why_not,
                    });
                }
            }
        }
        Ok(())
    }
}

/// When the poller acts next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Send the next request now.
    PollNow,
    /// Wait until this host time (ms), then poll.
    RetryAt(u64),
}

/// How important a log line is (the host maps it to its own levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Detail for a person debugging the sidecar.
    Debug,
    /// A change worth knowing: a set applied, the control plane back.
    Info,
    /// Something an operator should look at: the first failure of an episode, a refused set.
    Warn,
}

/// A line for the host's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// How important it is.
    pub level: LogLevel,
    /// The text, `boifi: ` first.
    pub message: String,
}

/// A set to install: compiled for this sidecar's identity, every worker serves it.
#[derive(Debug)]
pub struct Install {
    /// The control plane's config version.
    pub version: u64,
    /// The compiled set (a shared proxy's: its policy list).
    pub set: PolicySet,
    /// The compact answer the set was compiled from, when it is not the body just received (the
    /// applied answer, installed again after a heartbeat lapse or its end): what a host that
    /// shares the body with other workers publishes instead.
    pub body: Option<Vec<u8>>,
    /// Names of the body's policies left out of the set (their heartbeat bound lapsed): a host
    /// that shares the body publishes them with it, and its other workers leave them out too
    /// ([`compile_body`]).
    pub lapsed: Vec<String>,
}

/// What the host does after one answer: the only place a host learns what an answer means.
#[derive(Debug)]
#[must_use = "a step says what to install, count and log, and when to poll next"]
pub struct Step {
    /// A new set to install (and publish to the host's other workers); `None`: keep the set.
    pub install: Option<Install>,
    /// The counter to add one to (at most one per answer).
    pub counter: Option<Counter>,
    /// Policies were left out because their heartbeat bound lapsed: add one to
    /// [`Counter::HeartbeatLapses`].
    pub heartbeat_lapsed: bool,
    /// Lines to log, in order (the host may skip those below its level).
    pub log: Vec<LogLine>,
    /// When to poll next.
    pub next: Next,
}

/// The applied answer while one of its policies has a heartbeat bound: its body (compiled
/// again, without or with the lapsed policies, when a bound lapses or the control plane answers
/// again), and the bounds.
#[derive(Debug, Clone)]
struct Held {
    body: Vec<u8>,
    /// The bounded policies' names and bounds in ms.
    bounds: Vec<(String, u64)>,
}

/// The poller's state: the version it applied, the version it refused, and its backoff.
#[derive(Debug, Clone)]
pub struct ConfigSync {
    identity: Identity,
    faults: HostFaults,
    wait_ms: u64,
    poll_interval_ms: u64,
    max_rules: u64,
    version: Option<u64>,
    refused: Option<Refusal>,
    backoff: Backoff,
    credential: Option<ReadCredential>,
    /// Whether the current failure episode logged a refused credential at warn.
    credential_warned: bool,
    /// Host time of the last 200 or 304.
    heard_ms: Option<u64>,
    /// The applied answer, kept while one of its policies has a heartbeat bound.
    held: Option<Held>,
    /// Names of the held policies left out of the installed set (their bound lapsed).
    lapsed: Vec<String>,
}

impl ConfigSync {
    /// A poller for `identity` with the plugin's settings; it holds no version yet.
    pub fn new(identity: Identity, config: &PluginConfig) -> ConfigSync {
        ConfigSync {
            identity,
            faults: HostFaults::ALL,
            wait_ms: config.long_poll_wait_ms,
            poll_interval_ms: config.backoff_initial_ms,
            max_rules: config.max_rules,
            version: None,
            refused: None,
            backoff: Backoff::new(config.backoff_initial_ms, config.backoff_max_ms),
            credential: config.control_plane_token.clone(),
            credential_warned: false,
            heard_ms: None,
            held: None,
            lapsed: Vec::new(),
        }
    }

    /// The same poller for a host that cannot inject every fault: an answer with a policy that
    /// needs one it cannot is refused ([`SyncError::Unsupported`]), never applied in part.
    pub fn with_host_faults(mut self, faults: HostFaults) -> ConfigSync {
        self.faults = faults;
        self
    }

    /// The `Authorization` header value of the next request, when a read credential is
    /// configured (the host sends it; it never appears anywhere else).
    pub fn authorization(&self) -> Option<&str> {
        self.credential.as_ref().map(ReadCredential::header_value)
    }

    /// Replaces the read credential (the native module re-reads its token file before each
    /// request, so a rotated Secret is used without a restart).
    pub fn set_credential(&mut self, credential: Option<ReadCredential>) {
        self.credential = credential;
    }

    /// Names of the policies left out now because their heartbeat bound lapsed.
    pub fn lapsed(&self) -> &[String] {
        &self.lapsed
    }

    /// The held policies' heartbeat bounds in ms, with their names.
    fn bounds(&self) -> impl Iterator<Item = (&str, u64)> {
        self.held
            .iter()
            .flat_map(|h| h.bounds.iter())
            .map(|(name, bound)| (name.as_str(), *bound))
    }

    /// Host time at which the next applied policy's heartbeat bound lapses, if one is held.
    pub fn heartbeat_due_ms(&self) -> Option<u64> {
        let heard = self.heard_ms?;
        self.bounds()
            .filter(|(name, _)| !self.lapsed.iter().any(|l| l == name))
            .map(|(_, bound)| heard.saturating_add(bound))
            .min()
    }

    /// Leaves out of the installed set every held policy whose heartbeat bound lapsed at
    /// `now_ms`: a step installing the smaller set (its `next`: when the next bound lapses),
    /// or `None` when nothing changed.
    pub fn check_heartbeat(&mut self, now_ms: u64) -> Option<Step> {
        let heard = self.heard_ms?;
        let lapsed: Vec<String> = self
            .bounds()
            .filter(|(_, bound)| now_ms >= heard.saturating_add(*bound))
            .map(|(name, _)| String::from(name))
            .collect();
        if lapsed == self.lapsed {
            return None;
        }
        let held = self.held.as_ref()?;
        let (version, set) =
            compile_body(&held.body, &lapsed, &self.identity, now_ms, self.max_rules).ok()?;
        let body = Some(held.body.clone());
        let mut message = String::from("boifi: no answer from the control plane for ");
        push_decimal(&mut message, now_ms.saturating_sub(heard));
        message.push_str(" ms: stopped applying [");
        push_list(&mut message, &lapsed);
        message.push_str("] (heartbeat bound lapsed) until it answers again");
        let log = alloc::vec![LogLine {
            level: LogLevel::Warn,
            message,
        }];
        self.lapsed = lapsed.clone();
        let next = Next::RetryAt(self.heartbeat_due_ms().unwrap_or(now_ms));
        Some(Step {
            install: Some(Install {
                version,
                set,
                body,
                lapsed,
            }),
            counter: None,
            heartbeat_lapsed: true,
            log,
            next,
        })
    }

    /// The version applied (reported to the control plane in every request).
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// The version refused since the last one applied, and why (reported in every request).
    pub fn refused(&self) -> Option<&Refusal> {
        self.refused.as_ref()
    }

    /// Adopts a version applied another way (published by a previous poller).
    pub fn set_version(&mut self, version: u64) {
        self.version = Some(version);
    }

    /// `:path` of the next request: identity, applied version and refusal always; `wait` only
    /// once a version was seen (the first request must answer at once).
    pub fn request_path(&self) -> String {
        let seen = self.version.or(self.refused.as_ref().map(|r| r.version));
        let query = ConfigQuery {
            identity: self.identity.clone(),
            version: self.version,
            wait_ms: seen.and(Some(self.wait_for_heartbeat())).filter(|w| *w > 0),
            encoding: ConfigEncoding::CompactV3,
            refused: self.refused.clone(),
            ..ConfigQuery::default()
        };
        concat(&["/v1/config?", &query.to_query_string()])
    }

    /// The long-poll's wait: at most half the smallest heartbeat bound held, so a live control
    /// plane's 304 always comes before a bound lapses.
    fn wait_for_heartbeat(&self) -> u64 {
        let half_bound = self.bounds().map(|(_, bound)| bound / 2).min();
        half_bound.map_or(self.wait_ms, |half| self.wait_ms.min(half.max(1)))
    }

    /// Consecutive failures (calls without a usable answer) of the current episode.
    pub fn failures(&self) -> u32 {
        self.backoff.failures()
    }

    /// Interprets one answer at host time `now_ms`: `status` is the `:status` header (anything
    /// that is not a 3-digit status counts as no answer), `body` the body; `draw` is a random
    /// number for the backoff's jitter.
    pub fn on_answer(
        &mut self,
        status: Option<&[u8]>,
        body: Option<&[u8]>,
        now_ms: u64,
        draw: u64,
    ) -> Step {
        match classify(status, body) {
            Ok(PollOutcome::Updated { response }) => {
                self.heard_ms = Some(now_ms);
                let refused_version = response.version;
                let bounds: Vec<(String, u64)> = response
                    .policies
                    .iter()
                    .filter_map(|p| {
                        let seconds = p.heartbeat_seconds?;
                        Some((p.name.clone(), seconds.saturating_mul(1_000)))
                    })
                    .collect();
                let compiled = self.faults.check(&response).and_then(|()| {
                    compile_response(response, &self.identity, now_ms, self.max_rules)
                });
                match compiled {
                    Ok((version, set)) => {
                        self.held = (!bounds.is_empty()).then(|| Held {
                            body: body.unwrap_or_default().to_vec(),
                            bounds,
                        });
                        self.lapsed.clear();
                        self.apply(version, set, now_ms)
                    }
                    Err(e) => {
                        let step = self.refuse(refused_version, &e, now_ms, draw);
                        self.resume(step, now_ms)
                    }
                }
            }
            Ok(PollOutcome::Unchanged) => {
                self.heard_ms = Some(now_ms);
                let log = self.recover().into_iter().collect();
                let step = self.step(None, None, log, now_ms);
                self.resume(step, now_ms)
            }
            // A well-formed answer with a policy the one validation refuses is a set this host
            // cannot apply, like one that does not compile: refused, and the poll waits for the
            // next version.
            Err(error @ SyncError::Body(CompactError::Invalid { .. })) => {
                match compact::peek_version(body.unwrap_or_default()) {
                    Some(version) => self.refuse(version, &error, now_ms, draw),
                    None => self.failed(Counter::ConfigErrors, &error.message(), now_ms, draw),
                }
            }
            Err(SyncError::Body(e)) => self.malformed(body.unwrap_or_default(), &e, now_ms, draw),
            Err(SyncError::Status(status @ (401 | 403))) => {
                let error = SyncError::Credential {
                    status,
                    sent: self.credential.is_some(),
                };
                let warn_again = !self.credential_warned;
                self.credential_warned = true;
                let mut step = self.failed(Counter::PollFailures, &error.message(), now_ms, draw);
                if warn_again {
                    for line in &mut step.log {
                        line.level = LogLevel::Warn;
                    }
                }
                step
            }
            Err(e) => self.failed(Counter::PollFailures, &e.message(), now_ms, draw),
        }
    }

    /// Interprets a call that produced no answer (it could not be sent, timed out, was
    /// refused or reset); `cause` says what happened, for the log.
    pub fn on_failed_call(&mut self, cause: &str, now_ms: u64, draw: u64) -> Step {
        self.failed(Counter::PollFailures, cause, now_ms, draw)
    }

    /// The control plane answered without a new set to apply: `step`, installing the whole
    /// held set again if policies had been left out for a lapsed heartbeat.
    fn resume(&mut self, mut step: Step, now_ms: u64) -> Step {
        if self.lapsed.is_empty() {
            return step;
        }
        let Some(held) = self.held.as_ref() else {
            return step;
        };
        if let Ok((version, set)) =
            compile_body(&held.body, &[], &self.identity, now_ms, self.max_rules)
        {
            let mut message = String::from("boifi: the control plane answers again: applying [");
            push_list(&mut message, &self.lapsed);
            message.push_str("] again");
            step.log.push(LogLine {
                level: LogLevel::Info,
                message,
            });
            step.install = Some(Install {
                version,
                set,
                body: Some(held.body.clone()),
                lapsed: Vec::new(),
            });
            self.lapsed.clear();
        }
        step
    }

    /// A usable answer: installs it.
    fn apply(&mut self, version: u64, set: PolicySet, now_ms: u64) -> Step {
        let mut log: Vec<LogLine> = self.recover().into_iter().collect();
        let names = set.policy_names();
        let mut message = String::from("boifi: applied config version ");
        push_decimal(&mut message, version);
        message.push_str(": ");
        push_decimal(&mut message, names.len() as u64);
        message.push_str(" policies for this ");
        message.push_str(self.identity.proxy.as_str());
        message.push_str(" [");
        push_list(&mut message, &names);
        message.push(']');
        log.push(LogLine {
            level: LogLevel::Info,
            message,
        });
        self.version = Some(version);
        self.refused = None;
        let install = Some(Install {
            version,
            set,
            body: None,
            lapsed: Vec::new(),
        });
        self.step(install, Some(Counter::ConfigUpdates), log, now_ms)
    }

    /// A well-formed answer this sidecar cannot use: refuses its version and waits for a newer
    /// one (the server holds the poll, having been told which version was seen).
    fn refuse(&mut self, version: u64, error: &SyncError, now_ms: u64, draw: u64) -> Step {
        let reason = match error {
            SyncError::Body(source) => {
                let mut reason = String::new();
                source.push_message(&mut reason);
                reason
            }
            other => other.message(),
        };
        if self.refused.as_ref().is_some_and(|r| r.version == version) {
            // The server sent the refused version again: it does not read `refused=`. Asking
            // again at once would loop; back off like on a failure.
            let cause = concat(&[
                "the control plane sent refused config version ",
                &decimal(version),
                " again (",
                &reason,
                ")",
            ]);
            return self.failed(Counter::ConfigErrors, &cause, now_ms, draw);
        }
        let mut log: Vec<LogLine> = self.recover().into_iter().collect();
        log.push(LogLine {
            level: LogLevel::Warn,
            message: concat(&[
                "boifi: refusing config version ",
                &decimal(version),
                ": ",
                &reason,
                "; keeping the ",
                &self.held(),
                ", and reporting the refusal to the control plane",
            ]),
        });
        self.refused = Some(Refusal::new(version, &reason));
        self.step(None, Some(Counter::ConfigErrors), log, now_ms)
    }

    /// A 200 whose body does not decode: refuses the version its header names, if any, and
    /// backs off (the server or something between is broken: asking again at once would not
    /// help).
    fn malformed(&mut self, body: &[u8], error: &CompactError, now_ms: u64, draw: u64) -> Step {
        let version = compact::peek_version(body).filter(|v| Some(*v) != self.version);
        let mut message = String::new();
        error.push_message(&mut message);
        if let Some(version) = version {
            self.refused = Some(Refusal::new(version, &message));
        }
        let cause = match version {
            Some(v) => concat(&[
                "config version ",
                &decimal(v),
                " is malformed (",
                &message,
                ")",
            ]),
            None => concat(&["config answer is malformed (", &message, ")"]),
        };
        self.failed(Counter::ConfigErrors, &cause, now_ms, draw)
    }

    /// No usable answer: counts `counter`, keeps the set, backs off with jitter. Logs at warn
    /// once per episode, then at debug.
    fn failed(&mut self, counter: Counter, cause: &str, now_ms: u64, draw: u64) -> Step {
        let retry_in_ms = self.backoff.next_delay_ms(draw);
        let failures = self.backoff.failures();
        let held = self.held();
        let line = if failures <= 1 {
            LogLine {
                level: LogLevel::Warn,
                message: concat(&["boifi: ", cause, "; keeping the ", &held, " and retrying with backoff (further failures are logged at debug level until the control plane answers)"]),
            }
        } else {
            LogLine {
                level: LogLevel::Debug,
                message: concat(&[
                    "boifi: ",
                    cause,
                    "; keeping the ",
                    &held,
                    ", retry #",
                    &decimal(u64::from(failures)),
                    " in ",
                    &decimal(retry_in_ms),
                    " ms",
                ]),
            }
        };
        let retry_at = now_ms.saturating_add(retry_in_ms);
        let mut step = Step {
            install: None,
            counter: Some(counter),
            heartbeat_lapsed: false,
            log: alloc::vec![line],
            next: Next::RetryAt(retry_at),
        };
        if let Some(lapse) = self.check_heartbeat(now_ms) {
            step.install = lapse.install;
            step.heartbeat_lapsed = true;
            step.log.extend(lapse.log);
        }
        // The next bound to lapse is checked on time: retry no later than it.
        if let Some(due) = self.heartbeat_due_ms() {
            step.next = Next::RetryAt(retry_at.min(due.max(now_ms)));
        }
        step
    }

    /// The end of a failure episode: resets the backoff, and says so once.
    fn recover(&mut self) -> Option<LogLine> {
        let failures = self.backoff.failures();
        self.backoff.reset();
        self.credential_warned = false;
        (failures > 0).then(|| LogLine {
            level: LogLevel::Info,
            message: concat(&[
                "boifi: the control plane answers again after ",
                &decimal(u64::from(failures)),
                " failed attempts",
            ]),
        })
    }

    /// A step after a usable answer: poll again at once (the server holds a long-poll), or at
    /// the base interval without long-poll.
    fn step(
        &self,
        install: Option<Install>,
        counter: Option<Counter>,
        log: Vec<LogLine>,
        now_ms: u64,
    ) -> Step {
        let next = if self.wait_ms == 0 {
            Next::RetryAt(now_ms.saturating_add(self.poll_interval_ms))
        } else {
            Next::PollNow
        };
        Step {
            install,
            counter,
            heartbeat_lapsed: false,
            log,
            next,
        }
    }

    /// What is kept, for the log.
    fn held(&self) -> String {
        match self.version {
            Some(v) => concat(&["policies of config version ", &decimal(v)]),
            None => String::from("current policies (none yet)"),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use boifi_core::wire::ConfigResponse;

    /// The compact answer the control plane sends for this JSON one.
    pub(crate) fn compact(json: &str) -> alloc::vec::Vec<u8> {
        let response: ConfigResponse = serde_json::from_str(json).unwrap();
        encode(&response)
    }

    /// The compact answer the control plane sends for these documents.
    pub(crate) fn encode(response: &ConfigResponse) -> alloc::vec::Vec<u8> {
        compact::encode(&sidecar(response))
    }

    /// The sidecar form of an answer of documents.
    pub(crate) fn sidecar(response: &ConfigResponse) -> SidecarConfig {
        SidecarConfig::from_documents(response.version, &response.policies).unwrap()
    }

    fn config() -> PluginConfig {
        PluginConfig {
            long_poll_wait_ms: 30_000,
            ..PluginConfig::default()
        }
    }

    fn frontend() -> Identity {
        let mut identity = Identity::for_service("frontend", "demo");
        identity.pod = Some("frontend-1".into());
        identity
    }

    /// A compact answer of `version` with one policy `name` for frontend that aborts every
    /// request.
    pub(crate) fn answer(version: u64, name: &str) -> ConfigResponse {
        serde_json::from_str(&format!(
            r#"{{"version":{version},"policies":[{{"metadata":{{"name":"{name}"}},
              "spec":{{"selector":{{"service":"frontend"}},
              "rules":[{{"match":{{"path":{{"prefix":"/"}}}},"fault":{{"percentage":100,"abort":{{"httpStatus":503}}}}}}]}}}}]}}"#
        ))
        .unwrap()
    }

    fn good(version: u64) -> alloc::vec::Vec<u8> {
        encode(&answer(version, "good"))
    }

    /// Well-formed, but with a value no validated policy holds (an abort status of 600): a
    /// set this proxy cannot apply, as a server with other bounds might send it.
    fn out_of_range(version: u64) -> alloc::vec::Vec<u8> {
        let mut config = sidecar(&answer(version, "bad-status"));
        for policy in &mut config.policies {
            for rule in &mut policy.rules {
                if let Some(abort) = &mut rule.abort {
                    abort.http_status = 600;
                }
            }
        }
        compact::encode(&config)
    }

    /// Its header names `version`, the rest is cut short.
    fn malformed(version: u64) -> alloc::vec::Vec<u8> {
        let mut body = good(version);
        body.truncate(body.len() / 2);
        body
    }

    /// A poller that applied version 5 and long-polls.
    fn holding_5() -> ConfigSync {
        let mut s = ConfigSync::new(frontend(), &config());
        let step = s.on_answer(Some(b"200"), Some(&good(5)), 0, 0);
        assert_eq!(step.install.map(|i| i.version), Some(5));
        s
    }

    const HOLDING_5: &str =
        "/v1/config?service=frontend&namespace=demo&pod=frontend-1&version=5&wait=30000ms&encoding=compact&compact_version=3";

    /// How a step reads in the answer table.
    #[derive(Debug, PartialEq, Eq)]
    enum When {
        Now,
        /// After a backoff of the first failure (1 000 ms initial: 500..=1 000 ms).
        Backoff,
    }

    fn when(next: Next, now_ms: u64) -> When {
        match next {
            Next::PollNow => When::Now,
            Next::RetryAt(t) if (now_ms + 500..=now_ms + 1_000).contains(&t) => When::Backoff,
            Next::RetryAt(t) => panic!("retry at {t}, not a first backoff from {now_ms}"),
        }
    }

    #[test]
    fn every_answer_has_one_meaning() {
        let reason_compile =
            "reason=compact%20config%2C%20policy%20%60bad-status%60%20at%20byte%20";
        let reason_decode = "reason=compact%20config%20at%20byte%20";
        // What, the status and body received; then the version installed, the counter added,
        // when to poll next, and the start of the refusal the next request reports.
        type Row<'a> = (
            &'a str,
            Option<&'a [u8]>,
            Option<alloc::vec::Vec<u8>>,
            Option<u64>,
            Option<Counter>,
            When,
            Option<&'a str>,
        );
        #[rustfmt::skip]
        let table: [Row<'_>; 12] = [
            ("200 good", Some(b"200"), Some(good(6)), Some(6), Some(Counter::ConfigUpdates), When::Now, None),
            ("200 uncompilable", Some(b"200"), Some(out_of_range(6)), None, Some(Counter::ConfigErrors), When::Now, Some(reason_compile)),
            ("200 malformed, version readable", Some(b"200"), Some(malformed(6)), None, Some(Counter::ConfigErrors), When::Backoff, Some(reason_decode)),
            ("200 malformed, no header", Some(b"200"), Some(b"{\"version\":6}".to_vec()), None, Some(Counter::ConfigErrors), When::Backoff, None),
            ("304", Some(b"304"), None, None, None, When::Now, None),
            ("404", Some(b"404"), Some(b"not found".to_vec()), None, Some(Counter::PollFailures), When::Backoff, None),
            ("4xx 400", Some(b"400"), Some(b"{}".to_vec()), None, Some(Counter::PollFailures), When::Backoff, None),
            ("401 credential missing or refused", Some(b"401"), Some(b"{}".to_vec()), None, Some(Counter::PollFailures), When::Backoff, None),
            ("403 credential may not read", Some(b"403"), Some(b"{}".to_vec()), None, Some(Counter::PollFailures), When::Backoff, None),
            ("503", Some(b"503"), Some(b"no healthy upstream".to_vec()), None, Some(Counter::PollFailures), When::Backoff, None),
            ("timeout (no headers)", None, None, None, Some(Counter::PollFailures), When::Backoff, None),
            ("not a status", Some(b"2\xff0"), Some(good(6)), None, Some(Counter::PollFailures), When::Backoff, None),
        ];
        for (what, status, body, installs, counter, next, refusal) in table {
            let mut s = holding_5();
            let step = s.on_answer(status, body.as_deref(), 1_000, 0);
            assert_eq!(step.install.as_ref().map(|i| i.version), installs, "{what}");
            assert_eq!(step.counter, counter, "{what}");
            assert_eq!(when(step.next, 1_000), next, "{what}");
            let path = s.request_path();
            match (installs, refusal) {
                (Some(v), _) => assert_eq!(
                    path,
                    HOLDING_5.replace("version=5", &format!("version={v}")),
                    "{what}"
                ),
                (None, None) => assert_eq!(path, HOLDING_5, "{what}"),
                (None, Some(reason)) => {
                    let rest = path
                        .strip_prefix(&format!("{HOLDING_5}&refused=6&"))
                        .unwrap_or_else(|| panic!("{what}: {path}"));
                    assert!(rest.starts_with(reason), "{what}: {rest}");
                }
            }
        }
        // Connection refused: the call produced no answer at all.
        let mut s = holding_5();
        let step = s.on_failed_call("connection refused", 1_000, 0);
        assert!(step.install.is_none());
        assert_eq!(step.counter, Some(Counter::PollFailures));
        assert_eq!(when(step.next, 1_000), When::Backoff);
        assert_eq!(s.request_path(), HOLDING_5);
    }

    /// A poller like [`holding_5`]'s whose config carries `token`.
    fn holding_5_with(token: Option<&str>) -> ConfigSync {
        let config = PluginConfig {
            control_plane_token: token.map(|t| ReadCredential::parse(t).unwrap()),
            ..config()
        };
        let mut s = ConfigSync::new(frontend(), &config);
        let step = s.on_answer(Some(b"200"), Some(&good(5)), 0, 0);
        assert_eq!(step.install.map(|i| i.version), Some(5));
        s
    }

    fn lines(step: &Step) -> Vec<(LogLevel, &str)> {
        step.log
            .iter()
            .map(|l| (l.level, l.message.as_str()))
            .collect()
    }

    #[test]
    fn a_refused_credential_keeps_the_set_backs_off_and_is_logged_without_the_token() {
        let mut s = holding_5_with(Some("s3cr3t-read"));
        assert_eq!(s.authorization(), Some("Bearer s3cr3t-read"));
        let first = s.on_answer(Some(b"401"), Some(b"{}"), 1_000, 0);
        assert!(first.install.is_none());
        assert_eq!(first.counter, Some(Counter::PollFailures));
        assert_eq!(when(first.next, 1_000), When::Backoff);
        let [(level, message)] = lines(&first)[..] else {
            panic!("{:?}", first.log)
        };
        assert_eq!(level, LogLevel::Warn);
        assert!(
            message.starts_with(
                "boifi: the control plane refused this sidecar's read credential (status `401`)"
            ),
            "{message}"
        );
        assert!(
            message.contains("keeping the policies of config version 5"),
            "{message}"
        );
        // Once per episode: the next refusal is at debug.
        let second = s.on_answer(Some(b"401"), None, 2_000, 0);
        assert_eq!(lines(&second)[0].0, LogLevel::Debug);
        // The set stays, the version reported is still the one applied.
        assert_eq!(s.request_path(), HOLDING_5);
        // A rotated credential, then an answer: the episode ends, the new token is sent.
        s.set_credential(Some(ReadCredential::parse("rotated").unwrap()));
        assert_eq!(s.authorization(), Some("Bearer rotated"));
        let back = s.on_answer(Some(b"200"), Some(&good(6)), 3_000, 0);
        assert_eq!(back.install.map(|i| i.version), Some(6));
        for step in [&first, &second] {
            for line in &step.log {
                assert!(!line.message.contains("s3cr3t"), "{}", line.message);
            }
        }
        assert!(!format!("{s:?}").contains("rotated"), "{s:?}");
    }

    #[test]
    fn a_credential_refused_after_the_control_plane_was_unreachable_is_still_logged_at_warn() {
        let mut s = holding_5_with(None);
        assert_eq!(s.authorization(), None);
        let down = s.on_failed_call("connection refused", 1_000, 0);
        assert_eq!(lines(&down)[0].0, LogLevel::Warn);
        let down = s.on_failed_call("connection refused", 2_000, 0);
        assert_eq!(lines(&down)[0].0, LogLevel::Debug);
        // The control plane is back, now requiring a credential this sidecar lacks.
        let refused = s.on_answer(Some(b"401"), None, 3_000, 0);
        let [(level, message)] = lines(&refused)[..] else {
            panic!("{:?}", refused.log)
        };
        assert_eq!(level, LogLevel::Warn);
        assert!(
            message.starts_with("boifi: the control plane requires a read credential (status `401`) and none is configured"),
            "{message}"
        );
        let again = s.on_answer(Some(b"403"), None, 4_000, 0);
        assert_eq!(lines(&again)[0].0, LogLevel::Debug);
    }

    #[test]
    fn the_installed_set_is_the_answer_compiled_for_this_sidecar() {
        let body = compact(
            r#"{"version":9,"policies":[
          {"metadata":{"name":"cart-only"},"spec":{"selector":{"service":"cart"},
           "rules":[{"match":{"path":{"prefix":"/"}},"fault":{"percentage":100,"abort":{"httpStatus":503}}}]}},
          {"metadata":{"name":"everyone"},"spec":{"selector":{"service":"*"},
           "rules":[{"match":{"path":{"prefix":"/"}},"fault":{"percentage":100,"abort":{"httpStatus":500}}}]}}
        ]}"#,
        );
        let mut s = ConfigSync::new(frontend(), &config());
        let step = s.on_answer(Some(b"200"), Some(&body), 0, 0);
        let install = step.install.unwrap();
        assert_eq!(install.version, 9);
        assert_eq!(install.set.policy_names(), ["everyone".to_string()]);
        assert_eq!(
            step.log,
            [LogLine {
                level: LogLevel::Info,
                message: "boifi: applied config version 9: 1 policies for this sidecar [everyone]"
                    .into()
            }]
        );
    }

    #[test]
    fn first_request_does_not_wait_then_long_polls_with_the_applied_version() {
        let mut s = ConfigSync::new(frontend(), &config());
        assert_eq!(
            s.request_path(),
            "/v1/config?service=frontend&namespace=demo&pod=frontend-1&encoding=compact&compact_version=3"
        );
        assert_eq!(
            s.on_answer(Some(b"200"), Some(&good(4)), 0, 0).next,
            Next::PollNow
        );
        assert_eq!(
            s.request_path(),
            HOLDING_5.replace("version=5", "version=4")
        );
    }

    #[test]
    fn a_refusal_is_reported_until_a_newer_version_applies() {
        let mut s = holding_5();
        let step = s.on_answer(Some(b"200"), Some(&out_of_range(6)), 0, 0);
        assert_eq!(step.log.len(), 1);
        assert_eq!(step.log[0].level, LogLevel::Warn);
        assert!(
            step.log[0].message.starts_with(
                "boifi: refusing config version 6: compact config, policy `bad-status` at byte "
            ) && step.log[0]
                .message
                .contains(": fault.abort.httpStatus: outside 200..=599; keeping"),
            "{:?}",
            step.log
        );
        assert_eq!(s.refused().map(|r| r.version), Some(6));
        let refused_path = s.request_path();
        assert!(
            refused_path.contains(
                "version=5&wait=30000ms&encoding=compact&compact_version=3&refused=6&reason="
            ),
            "{refused_path}"
        );
        // Through 304s and failures, the refusal stays in every request.
        let _ = s.on_answer(Some(b"304"), None, 0, 0);
        let _ = s.on_answer(Some(b"503"), None, 0, 0);
        let _ = s.on_failed_call("connection refused", 0, 0);
        assert_eq!(s.request_path(), refused_path);
        // A newer refused version replaces it; an applied one clears it.
        let _ = s.on_answer(Some(b"200"), Some(&out_of_range(7)), 0, 0);
        assert_eq!(s.refused().map(|r| r.version), Some(7));
        let step = s.on_answer(Some(b"200"), Some(&good(8)), 0, 0);
        assert_eq!(step.install.map(|i| i.version), Some(8));
        assert_eq!(s.refused(), None);
        assert_eq!(
            s.request_path(),
            HOLDING_5.replace("version=5", "version=8")
        );
    }

    #[test]
    fn a_refusal_before_any_set_still_long_polls() {
        let mut s = ConfigSync::new(frontend(), &config());
        let _ = s.on_answer(Some(b"200"), Some(&out_of_range(3)), 0, 0);
        let path = s.request_path();
        assert!(
            path.starts_with("/v1/config?service=frontend&namespace=demo&pod=frontend-1&wait=30000ms&encoding=compact&compact_version=3&refused=3&reason="),
            "{path}"
        );
    }

    #[test]
    fn a_refused_version_sent_again_backs_off_instead_of_looping() {
        let mut s = holding_5();
        let first = s.on_answer(Some(b"200"), Some(&out_of_range(6)), 0, 0);
        assert_eq!(first.next, Next::PollNow);
        // A server that does not read `refused=` answers 6 again at once.
        let again = s.on_answer(Some(b"200"), Some(&out_of_range(6)), 0, 0);
        assert_eq!(again.counter, Some(Counter::ConfigErrors));
        assert_eq!(when(again.next, 0), When::Backoff);
        assert!(
            again.log[0]
                .message
                .contains("sent refused config version 6 again"),
            "{:?}",
            again.log
        );
        assert_eq!(s.refused().map(|r| r.version), Some(6));
    }

    #[test]
    fn a_malformed_answer_of_the_applied_version_is_not_refused() {
        let mut s = holding_5();
        let _ = s.on_answer(Some(b"200"), Some(&malformed(5)), 0, 0);
        assert_eq!(s.refused(), None);
        assert_eq!(s.request_path(), HOLDING_5);
    }

    #[test]
    fn failures_back_off_log_once_per_episode_and_recovery_resets() {
        let mut s = holding_5();
        let mut levels = alloc::vec::Vec::new();
        let mut last = 0;
        for draw in [0, u64::MAX, 0, u64::MAX, 0, 0, 0, 0] {
            let step = s.on_answer(Some(b"503"), None, 0, draw);
            levels.push(step.log[0].level);
            assert!(step.log[0]
                .message
                .contains("keeping the policies of config version 5"));
            let Next::RetryAt(t) = step.next else {
                panic!()
            };
            last = t;
        }
        assert_eq!(levels[0], LogLevel::Warn);
        assert!(
            levels[1..].iter().all(|l| *l == LogLevel::Debug),
            "{levels:?}"
        );
        assert_eq!(s.failures(), 8);
        assert!((15_000..=30_000).contains(&last), "capped at 30 s: {last}");
        // A malformed body is part of the same episode (debug), and so backs off further.
        let step = s.on_answer(Some(b"200"), Some(b"garbage"), 0, 0);
        assert_eq!(step.log[0].level, LogLevel::Debug);
        // The first usable answer ends the episode: one info line, backoff from the start.
        let step = s.on_answer(Some(b"304"), None, 0, 0);
        assert_eq!(
            step.log,
            [LogLine {
                level: LogLevel::Info,
                message: "boifi: the control plane answers again after 9 failed attempts".into()
            }]
        );
        assert_eq!(s.failures(), 0);
        let step = s.on_answer(Some(b"503"), None, 1_000, 0);
        assert_eq!(
            step.log[0].level,
            LogLevel::Warn,
            "a new episode warns again"
        );
        assert_eq!(when(step.next, 1_000), When::Backoff);
        assert!(s.on_answer(Some(b"304"), None, 0, 0).log.len() == 1);
        assert!(
            s.on_answer(Some(b"304"), None, 0, 0).log.is_empty(),
            "no episode, no line"
        );
    }

    #[test]
    fn short_poll_when_wait_is_zero() {
        let c = PluginConfig {
            long_poll_wait_ms: 0,
            ..PluginConfig::default()
        };
        let mut s = ConfigSync::new(Identity::default(), &c);
        assert_eq!(
            s.on_answer(Some(b"200"), Some(&good(1)), 100, 0).next,
            Next::RetryAt(1_100)
        );
        assert_eq!(
            s.on_answer(Some(b"304"), None, 200, 0).next,
            Next::RetryAt(1_200)
        );
        assert!(!s.request_path().contains("wait="));
    }

    #[test]
    fn classify_answers() {
        let body = compact(r#"{"version":3,"policies":[]}"#);
        let ok = classify(Some(b"200"), Some(&body)).unwrap();
        assert!(matches!(ok, PollOutcome::Updated { response } if response.version == 3));
        assert!(matches!(
            classify(Some(b"304"), None),
            Ok(PollOutcome::Unchanged)
        ));
        assert_eq!(
            classify(Some(b"503"), Some(b"no healthy upstream")).unwrap_err(),
            SyncError::Status(503)
        );
        assert_eq!(classify(None, None).unwrap_err(), SyncError::NoResponse);
        assert_eq!(
            classify(Some(b"2\xff0"), None).unwrap_err(),
            SyncError::NoResponse
        );
        // A server too old for `encoding=compact` answers JSON: refused, the set is kept.
        let bad = classify(Some(b"200"), Some(b"{\"version\":1}")).unwrap_err();
        assert!(matches!(bad, SyncError::Body(_)), "{bad:?}");
        assert_eq!(
            bad.to_string(),
            "config response is invalid: compact config at byte 0: not a compact config answer of version 3 (magic `BFC\\x03`)"
        );
    }

    #[test]
    fn an_old_control_plane_answering_version_2_is_refused_and_the_set_kept_pending() {
        let mut s = holding_5();
        let v2 = compact::v2::encode(&answer(6, "good"));
        let step = s.on_answer(Some(b"200"), Some(&v2), 0, 0);
        assert!(step.install.is_none());
        assert_eq!(step.counter, Some(Counter::ConfigErrors));
        assert_eq!(step.log.len(), 1);
        assert_eq!(step.log[0].level, LogLevel::Warn);
        assert!(
            step.log[0].message.contains(
                "compact version 2, from a control plane older than this filter: this filter reads version 3; upgrade the control plane first"
            ),
            "{:?}",
            step.log
        );
        // Not refused (status shows the sidecar pending at version 5), backed off, still
        // asking for version 3.
        assert_eq!(s.refused(), None);
        assert_eq!(s.version(), Some(5));
        assert_eq!(when(step.next, 0), When::Backoff);
        assert_eq!(s.request_path(), HOLDING_5);
    }

    #[test]
    fn compile_body_refuses_what_does_not_decode() {
        let (v, set) = compile_body(&good(2), &[], &frontend(), 0, 1).unwrap();
        assert_eq!(v, 2);
        assert_eq!(set.policy_names(), ["good".to_string()]);
        assert!(compile_body(b"[]", &[], &Identity::default(), 0, 1).is_err());
    }

    /// Version `version`: `frontend` rules for frontend, and 5 rules for cart only.
    fn rules_for_frontend(version: u64, frontend: usize) -> alloc::vec::Vec<u8> {
        let rule = r#"{"match":{"path":{"prefix":"/"}},"fault":{"percentage":100,"abort":{"httpStatus":503}}}"#;
        let rules = |n: usize| alloc::vec![rule; n].join(",");
        compact(&format!(
            r#"{{"version":{version},"policies":[
              {{"metadata":{{"name":"cart-only"}},"spec":{{"selector":{{"service":"cart"}},"rules":[{}]}}}},
              {{"metadata":{{"name":"front"}},"spec":{{"selector":{{"service":"frontend"}},"rules":[{}]}}}}
            ]}}"#,
            rules(5),
            rules(frontend)
        ))
    }

    #[test]
    fn a_set_over_max_rules_for_this_sidecar_is_refused_naming_the_limit() {
        let limited = PluginConfig {
            max_rules: 2,
            ..config()
        };
        let mut s = ConfigSync::new(frontend(), &limited);
        // 5 rules for cart do not count: only those for this sidecar do.
        let step = s.on_answer(Some(b"200"), Some(&rules_for_frontend(6, 2)), 0, 0);
        assert_eq!(step.install.map(|i| i.set.rule_count()), Some(2));
        let step = s.on_answer(Some(b"200"), Some(&rules_for_frontend(7, 3)), 0, 0);
        assert!(step.install.is_none());
        assert_eq!(step.counter, Some(Counter::ConfigErrors));
        assert_eq!(step.next, Next::PollNow, "the server holds the poll");
        let reason =
            "config version 7 has 3 rules for this sidecar, over its limit of 2 (max_rules)";
        assert_eq!(s.refused(), Some(&Refusal::new(7, reason)));
        assert_eq!(
            step.log[0].message,
            format!("boifi: refusing config version 7: {reason}; keeping the policies of config version 6, and reporting the refusal to the control plane")
        );
        assert_eq!(s.version(), Some(6));
        assert!(
            s.request_path().ends_with(
                "version=6&wait=30000ms&encoding=compact&compact_version=3&refused=7&reason=config%20version%207%20has%203%20rules%20for%20this%20sidecar%2C%20over%20its%20limit%20of%202%20%28max_rules%29"
            ),
            "{}",
            s.request_path()
        );
        // Back within the limit: applied, the refusal cleared.
        let step = s.on_answer(Some(b"200"), Some(&rules_for_frontend(8, 1)), 0, 0);
        assert_eq!(step.install.map(|i| i.version), Some(8));
        assert_eq!(s.refused(), None);
        // The default limit takes far more than an experiment's handful.
        let mut default = ConfigSync::new(frontend(), &config());
        let step = default.on_answer(Some(b"200"), Some(&rules_for_frontend(9, 3)), 0, 0);
        assert_eq!(step.install.map(|i| i.version), Some(9));
    }

    #[test]
    fn a_host_refuses_an_answer_with_a_fault_it_cannot_inject_and_keeps_its_set() {
        const CANNOT: HostFaults = HostFaults {
            response_delay: false,
            reset: false,
            why_not: "this host cannot",
        };
        let with_fault = |version: u64, edit: fn(&mut boifi_core::policy::Fault)| {
            let mut response = answer(version, "lost-answer");
            for policy in &mut response.policies {
                for rule in &mut policy.spec.rules {
                    rule.fault.abort = None;
                    edit(&mut rule.fault);
                }
            }
            encode(&response)
        };
        let reset = with_fault(6, |f| f.reset = true);
        let held = with_fault(6, |f| {
            f.target = FaultTarget::Response;
            f.delay = Some(boifi_core::policy::Delay {
                fixed_delay_ms: 300,
                jitter_ms: 0,
            });
        });
        for (what, body, field) in [("reset", reset, "reset"), ("response delay", held, "delay")] {
            let mut s = holding_5().with_host_faults(CANNOT);
            let step = s.on_answer(Some(b"200"), Some(&body), 1_000, 0);
            assert!(step.install.is_none(), "{what}");
            assert_eq!(step.counter, Some(Counter::ConfigErrors), "{what}");
            let refusal = s.refused().unwrap();
            assert_eq!(refusal.version, 6);
            assert_eq!(
                refusal.reason,
                format!("policy `lost-answer`: spec.rules[0].fault.{field}: this host cannot"),
                "{what}"
            );
            // A host that can inject it applies the same answer.
            let mut able = holding_5();
            let step = able.on_answer(Some(b"200"), Some(&body), 1_000, 0);
            assert_eq!(step.install.map(|i| i.version), Some(6), "{what}");
        }
    }

    /// Version `version`: `guarded` (aborts, heartbeat bound `heartbeat_s`) beside `open`
    /// (aborts, no bound), both for frontend.
    fn guarded_answer(version: u64, heartbeat_s: u64) -> Vec<u8> {
        let rule = r#"[{"match":{"path":{"prefix":"/"}},"fault":{"percentage":100,"abort":{"httpStatus":503}}}]"#;
        compact(&format!(
            r#"{{"version":{version},"policies":[
              {{"metadata":{{"name":"guarded"}},"spec":{{"selector":{{"service":"frontend"}},
                "heartbeat_seconds":{heartbeat_s},"rules":{rule}}}}},
              {{"metadata":{{"name":"open"}},"spec":{{"selector":{{"service":"frontend"}},"rules":{rule}}}}}]}}"#
        ))
    }

    fn installed_names(step: &Step) -> Vec<String> {
        step.install
            .as_ref()
            .map(|i| i.set.policy_names())
            .unwrap_or_default()
    }

    #[test]
    fn a_heartbeat_bound_stops_only_its_policy_on_time_and_resumes_on_an_answer() {
        let mut sync = ConfigSync::new(frontend(), &config());
        let body = guarded_answer(7, 2);
        let applied = sync.on_answer(Some(b"200"), Some(&body), 1_000, 0);
        assert_eq!(installed_names(&applied), ["guarded", "open"]);
        // The long-poll asks for an answer within half the bound.
        assert!(
            sync.request_path().contains("wait=1000ms"),
            "{}",
            sync.request_path()
        );
        assert_eq!(sync.heartbeat_due_ms(), Some(3_000));

        // The control plane dies: failures before the bound keep everything, and their retry
        // is never later than the bound.
        let early = sync.on_failed_call("connection refused", 1_500, u64::MAX);
        assert!(early.install.is_none() && !early.heartbeat_lapsed);
        match early.next {
            Next::RetryAt(t) => assert!(t <= 3_000, "retry at {t}"),
            Next::PollNow => panic!("a failure polls at once"),
        }
        let late = sync.on_failed_call("connection refused", 2_999, u64::MAX);
        assert!(late.install.is_none());
        let late = sync.on_failed_call("connection refused", 3_000, u64::MAX);
        assert!(late.heartbeat_lapsed);
        assert_eq!(late.counter, Some(Counter::PollFailures));
        assert_eq!(installed_names(&late), ["open"]);
        // What other workers compile from the publication (the body and the lapsed names)
        // leaves it out too.
        let published = late.install.as_ref().unwrap();
        assert_eq!(published.lapsed, ["guarded"]);
        let body = published.body.as_deref().unwrap();
        let (_, set) = compile_body(body, &published.lapsed, &frontend(), 3_000, u64::MAX).unwrap();
        assert_eq!(set.policy_names(), ["open"]);
        assert_eq!(sync.lapsed(), ["guarded"]);
        assert!(
            sync.on_failed_call("refused", 9_000, 0).install.is_none(),
            "one lapse"
        );

        // The control plane answers again (304): the whole set is back.
        let back = sync.on_answer(Some(b"304"), None, 10_000, 0);
        assert_eq!(installed_names(&back), ["guarded", "open"]);
        assert!(sync.lapsed().is_empty());
        assert_eq!(sync.heartbeat_due_ms(), Some(12_000));
    }

    #[test]
    fn without_a_heartbeat_bound_the_last_set_stays_forever() {
        let mut sync = ConfigSync::new(frontend(), &config());
        let body = encode(&answer(3, "open"));
        let applied = sync.on_answer(Some(b"200"), Some(&body), 0, 0);
        assert!(applied.install.is_some());
        assert!(sync.request_path().contains("wait=30000ms"));
        assert_eq!(sync.heartbeat_due_ms(), None);
        let step = sync.on_failed_call("refused", 86_400_000, 0);
        assert!(step.install.is_none() && !step.heartbeat_lapsed);
        assert!(sync.check_heartbeat(u64::MAX).is_none());
    }

    #[test]
    fn a_new_set_after_a_heartbeat_lapse_applies_whole_and_restarts_the_bound() {
        let mut sync = ConfigSync::new(frontend(), &config());
        let _ = sync.on_answer(Some(b"200"), Some(&guarded_answer(1, 1)), 0, 0);
        let lapse = sync.check_heartbeat(1_000).unwrap();
        assert_eq!(installed_names(&lapse), ["open"]);
        let fresh = sync.on_answer(Some(b"200"), Some(&guarded_answer(2, 5)), 1_200, 0);
        assert_eq!(installed_names(&fresh), ["guarded", "open"]);
        assert!(
            fresh.install.unwrap().body.is_none(),
            "the received body is published"
        );
        assert_eq!(sync.heartbeat_due_ms(), Some(6_200));
        assert!(sync.check_heartbeat(6_199).is_none());
    }
}
