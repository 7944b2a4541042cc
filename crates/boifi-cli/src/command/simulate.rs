//! `simulate`: what a sidecar would do with a request, computed with the very
//! [`decide`](boifi_core::compiled::decide) the filter runs.
//!
//! It prints the policies that apply to the identity, the rules that match the request in
//! evaluation order, and the outcome distribution over N requests, each with one
//! `XorShift64Star` draw (the core's [`sample`]) (the same seed gives the same output), beside the distribution the
//! rules' percentages promise.

use std::collections::BTreeMap;
use std::io::Write;

use boifi_core::compiled::{CompiledPolicySet, SimpleRequest};
use boifi_core::identity::{spiffe_id, Identity, DEFAULT_TRUST_DOMAIN};
use boifi_core::policy::PolicyDocument;
use boifi_core::simulate::{expected_outcomes, expected_shares, sample, Outcome, Share};
use boifi_core::wire::{ConfigQuery, ConfigResponse};
use serde::Serialize;

use crate::cli::{GlobalArgs, OutputFormat, SimulateArgs};
use crate::client::Client;
use crate::error::CliError;
use crate::load;
use crate::output::{self, Table};

/// Runs `simulate`.
pub fn run(global: &GlobalArgs, args: &SimulateArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let identity = identity(args);
    let policies = if args.from_server {
        let client = Client::from_args(global)?;
        let query = ConfigQuery {
            identity: identity.clone(),
            version: None,
            wait_ms: None,
            encoding: boifi_core::wire::ConfigEncoding::Json,
            refused: None,
            ..ConfigQuery::default()
        };
        client
            .get(&format!("/v1/config?{}", query.to_query_string()))?
            .json::<ConfigResponse>()?
            .policies
    } else {
        load::load(&args.files, args.recursive)
            .map_err(CliError::Invalid)?
            .into_iter()
            .map(|l| l.policy)
            .collect()
    };
    let now = args.at.unwrap_or_else(output::now_ms);
    let seed = args.seed.unwrap_or_else(random_seed);
    let report = simulate(
        &policies,
        &identity,
        &request(args)?,
        now,
        args.requests,
        seed,
    )?;
    match global.output {
        OutputFormat::Json => output::json(out, &report),
        OutputFormat::Yaml => output::yaml(out, &report),
        OutputFormat::Table => {
            report.write_text(out)?;
            Ok(())
        }
    }
}

fn identity(args: &SimulateArgs) -> Identity {
    let text = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    Identity {
        service: text(&args.service),
        namespace: text(&args.namespace),
        pod: text(&args.pod),
        labels: args.labels.iter().cloned().collect(),
        ..Identity::default()
    }
}

fn request(args: &SimulateArgs) -> Result<SimpleRequest, CliError> {
    let mut request = SimpleRequest::new(&args.method, &args.path);
    for (name, value) in &args.headers {
        request = request.with_header(name, value);
    }
    if let Some(id) = &args.request_id {
        request = request.with_header(boifi_core::compiled::REQUEST_ID_HEADER, id);
    }
    // The caller as the sidecar would know it: the SPIFFE ID of its verified certificate.
    // Without the flags the request comes from an unknown caller, as over plaintext.
    let caller = &args.caller;
    let account = caller
        .source_service_account
        .as_deref()
        .or(caller.source_service.as_deref());
    match (&caller.source_namespace, account) {
        (None, _) => {}
        (Some(namespace), Some(account)) => {
            request = request.with_peer_uri_san(&spiffe_id(
                DEFAULT_TRUST_DOMAIN,
                namespace,
                account,
            ));
        }
        (Some(_), None) => {
            return Err(CliError::Usage(
                "`--source-namespace` needs `--source-service` or `--source-service-account`: a caller's certificate names both".into(),
            ))
        }
    }
    Ok(request)
}

fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    boifi_core::rng::splitmix64((nanos as u64) ^ u64::from(std::process::id()))
}

/// Everything `simulate` prints (`-o json` prints this).
#[derive(Debug, Serialize)]
pub struct Report {
    /// The sidecar.
    pub identity: Identity,
    /// The request.
    pub request: RequestView,
    /// Policies whose selector matches the identity, in evaluation order (by name).
    pub policies: Vec<AppliedPolicy>,
    /// Rules live now that match the request, in evaluation order.
    pub matching_rules: Vec<MatchingRule>,
    /// The first of them: the rule that decides whenever its draw fires.
    pub matched_rule: Option<RuleRef>,
    /// Requests simulated.
    pub requests: u64,
    /// Seed of the draws.
    pub seed: u64,
    /// Observed and expected share of each outcome.
    pub outcomes: Vec<OutcomeRow>,
    /// How many requests each policy faulted.
    pub by_policy: BTreeMap<String, u64>,
}

/// The simulated request.
#[derive(Debug, Serialize)]
pub struct RequestView {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Headers, lower-case names.
    pub headers: BTreeMap<String, String>,
    /// The caller's SPIFFE ID (its certificate's URI SAN); absent: an unknown caller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// A policy that applies to the identity.
#[derive(Debug, Serialize)]
pub struct AppliedPolicy {
    /// Its name.
    pub name: String,
    /// `active`, `scheduled` or `expired` at the simulated moment.
    pub state: &'static str,
}

/// A rule that matches the request.
#[derive(Debug, Serialize)]
pub struct MatchingRule {
    /// The policy.
    pub policy: String,
    /// The rule's index in the policy.
    pub rule: usize,
    /// Its percentage, e.g. `30` or `0.5`.
    pub percentage: String,
    /// Its fault in a few words.
    pub fault: String,
    /// The outcome it gives.
    pub outcome: &'static str,
    /// The abort status it gives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// The share of all requests it is expected to decide, in percent: its percentage times
    /// the chance that no earlier rule fired.
    #[serde(serialize_with = "percent")]
    pub expected_percent: Share,
}

/// A share as its number of percent: exactly its decimal whenever that has at most 15
/// significant digits (a float prints the shortest text that reads back the same).
fn percent<S: serde::Serializer>(share: &Share, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(share.percent_f64())
}

/// A rule of a policy.
#[derive(Debug, Serialize)]
pub struct RuleRef {
    /// The policy.
    pub policy: String,
    /// The rule's index.
    pub rule: usize,
}

/// One outcome's row of the distribution.
#[derive(Debug, Serialize)]
pub struct OutcomeRow {
    /// `pass`, `delay`, `abort` or `delay_then_abort`.
    pub outcome: &'static str,
    /// The abort status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// Requests that got it.
    pub count: u64,
    /// Their share, in percent.
    pub percent: f64,
    /// The share the rules promise, in percent.
    #[serde(serialize_with = "percent")]
    pub expected_percent: Share,
    /// Smallest, largest and mean total wait of these requests, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<WaitStats>,
}

/// Waits of delayed requests.
#[derive(Debug, Serialize)]
pub struct WaitStats {
    /// Smallest.
    pub min: u64,
    /// Largest.
    pub max: u64,
    /// Mean, rounded down.
    pub mean: u64,
}

/// Simulates `requests` requests; deterministic for a given seed.
pub fn simulate(
    policies: &[PolicyDocument],
    identity: &Identity,
    request: &SimpleRequest,
    now: u64,
    requests: u64,
    seed: u64,
) -> Result<Report, CliError> {
    let set = CompiledPolicySet::from_documents(policies, identity, now)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let by_name: BTreeMap<&str, &PolicyDocument> = policies.iter().map(|p| (p.name(), p)).collect();

    let mut applied: Vec<&PolicyDocument> =
        policies.iter().filter(|p| p.applies_to(identity)).collect();
    applied.sort_by(|a, b| a.name().cmp(b.name()));

    // The promise of the rules and the observation (exactly the filter's decision, one draw
    // per request), both from the core: this only lays them out.
    let shares = expected_shares(&set, request, now);
    let expected = expected_outcomes(&shares);
    let observed = sample(&set, request, now, requests, seed);
    let matching: Vec<MatchingRule> = shares
        .iter()
        .filter_map(|share| {
            let policy = by_name.get(share.policy.as_str())?;
            Some(MatchingRule {
                policy: share.policy.clone(),
                rule: share.rule_index,
                percentage: share.percentage.number(),
                fault: output::fault_summary(policy, share.rule_index),
                outcome: share.outcome.kind(),
                http_status: share.outcome.http_status(),
                expected_percent: share.share.clone(),
            })
        })
        .collect();

    let mut outcomes: Vec<&Outcome> = observed
        .counts
        .keys()
        .chain(
            expected
                .iter()
                .filter(|(_, s)| !s.is_none())
                .map(|(o, _)| o),
        )
        .collect();
    outcomes.sort();
    outcomes.dedup();
    let total = requests.max(1) as f64;
    let rows = outcomes
        .into_iter()
        .map(|outcome| {
            let count = observed.count(outcome);
            OutcomeRow {
                outcome: outcome.kind(),
                http_status: outcome.http_status(),
                count,
                percent: count as f64 * 100.0 / total,
                expected_percent: expected.get(outcome).cloned().unwrap_or_else(Share::none),
                wait_ms: observed
                    .waits
                    .get(outcome)
                    .filter(|w| outcome.waits() && w.count > 0)
                    .map(|w| WaitStats {
                        min: w.min,
                        max: w.max,
                        mean: w.mean(),
                    }),
            }
        })
        .collect();

    Ok(Report {
        identity: identity.clone(),
        request: RequestView {
            method: request.method.clone(),
            path: request.path.clone(),
            headers: request.headers.iter().cloned().collect(),
            source: request.peer_uri_san.clone(),
        },
        policies: applied
            .iter()
            .map(|p| AppliedPolicy {
                name: p.name().to_owned(),
                state: p.state_at(now).as_str(),
            })
            .collect(),
        matched_rule: matching.first().map(|m| RuleRef {
            policy: m.policy.clone(),
            rule: m.rule,
        }),
        matching_rules: matching,
        requests,
        seed,
        outcomes: rows,
        by_policy: observed.by_policy,
    })
}

fn outcome_label(kind: &str, status: Option<u16>) -> String {
    match (kind, status) {
        ("delay_then_abort", Some(s)) => format!("delay+abort {s}"),
        (kind, Some(s)) => format!("{kind} {s}"),
        (kind, None) => kind.to_owned(),
    }
}

impl Report {
    /// The text for people.
    pub fn write_text(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let labels = output::pairs(&self.identity.labels);
        writeln!(out, "Identity:  {} labels={labels}", self.identity)?;
        let headers: Vec<String> = self
            .request
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        if headers.is_empty() {
            writeln!(
                out,
                "Request:   {} {}",
                self.request.method, self.request.path
            )?;
        } else {
            writeln!(
                out,
                "Request:   {} {} ({})",
                self.request.method,
                self.request.path,
                headers.join(", ")
            )?;
        }
        if let Some(source) = &self.request.source {
            writeln!(out, "Caller:    {source}")?;
        }
        writeln!(out)?;
        if self.policies.is_empty() {
            writeln!(out, "No policy applies to this identity.")?;
        } else {
            writeln!(out, "Policies that apply ({}):", self.policies.len())?;
            let mut table = Table::new(&["NAME", "STATE"]);
            for p in &self.policies {
                table.row(vec![p.name.clone(), p.state.to_owned()]);
            }
            table.write_indented(out, "  ")?;
        }
        writeln!(out)?;
        match &self.matched_rule {
            None => writeln!(out, "No rule matches this request: every request passes.")?,
            Some(first) => {
                writeln!(out, "Rules that match, in evaluation order:")?;
                let mut table =
                    Table::new(&["POLICY", "RULE", "PERCENTAGE", "FAULT", "EXPECTED SHARE"]);
                for m in &self.matching_rules {
                    table.row(vec![
                        m.policy.clone(),
                        m.rule.to_string(),
                        format!("{}%", m.percentage),
                        m.fault.clone(),
                        m.expected_percent.to_string(),
                    ]);
                }
                table.write_indented(out, "  ")?;
                writeln!(
                    out,
                    "The rule that matches: {} rule {}",
                    first.policy, first.rule
                )?;
            }
        }
        writeln!(out)?;
        writeln!(
            out,
            "Outcome of {} requests (seed {}):",
            self.requests, self.seed
        )?;
        let mut table = Table::new(&[
            "OUTCOME",
            "COUNT",
            "OBSERVED",
            "EXPECTED",
            "WAIT MS (MIN/MEAN/MAX)",
        ]);
        for row in &self.outcomes {
            table.row(vec![
                outcome_label(row.outcome, row.http_status),
                row.count.to_string(),
                output::share(row.percent / 100.0),
                row.expected_percent.to_string(),
                row.wait_ms.as_ref().map_or_else(
                    || "-".to_owned(),
                    |w| format!("{}/{}/{}", w.min, w.mean, w.max),
                ),
            ]);
        }
        table.write_indented(out, "  ")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> PolicyDocument {
        boifi_core::policy::parse_policy_json(json).unwrap()
    }

    #[test]
    fn expected_shares_follow_rule_order() {
        let a = policy(
            r#"{"metadata":{"name":"aaa"},"spec":{"rules":[{"match":{"path":{"prefix":"/"}},
                "fault":{"percentage":50,"abort":{"httpStatus":503}}}]}}"#,
        );
        let b = policy(
            r#"{"metadata":{"name":"bbb"},"spec":{"rules":[{"match":{"path":{"prefix":"/"}},
                "fault":{"percentage":50,"delay":{"fixed_delay_ms":100}}}]}}"#,
        );
        let report = simulate(
            &[b, a],
            &Identity::default(),
            &SimpleRequest::new("GET", "/"),
            0,
            10_000,
            7,
        )
        .unwrap();
        let expected: Vec<(&str, String)> = report
            .outcomes
            .iter()
            .map(|r| (r.outcome, r.expected_percent.percent()))
            .collect();
        assert_eq!(
            expected,
            [
                ("pass", "25".to_owned()),
                ("delay", "25".to_owned()),
                ("abort", "50".to_owned())
            ]
        );
        assert_eq!(report.matched_rule.unwrap().policy, "aaa");
        let delay = report
            .outcomes
            .iter()
            .find(|r| r.outcome == "delay")
            .unwrap();
        let w = delay.wait_ms.as_ref().unwrap();
        assert_eq!((w.min, w.max), (100, 100));
        assert_eq!(report.outcomes.iter().map(|r| r.count).sum::<u64>(), 10_000);
    }

    #[test]
    fn a_fixed_request_id_makes_request_sampling_certain() {
        let p = policy(
            r#"{"metadata":{"name":"req"},"spec":{"sampling":"request","rules":[{"match":{"path":{"prefix":"/"}},
                "fault":{"percentage":40,"abort":{"httpStatus":503}}}]}}"#,
        );
        let request = SimpleRequest::new("GET", "/").with_header("x-request-id", "abc");
        let report = simulate(&[p], &Identity::default(), &request, 0, 1_000, 1).unwrap();
        let row = &report.outcomes[0];
        assert_eq!(report.outcomes.len(), 1);
        assert_eq!(row.count, 1_000);
        assert_eq!(row.expected_percent.percent(), "100");
    }
}
