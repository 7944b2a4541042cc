//! The scenario corpus format (`examples/scenarios/*.yaml`): policies + identity + request →
//! expected outcome. One corpus runs through the core, `boifi-cli simulate` and the filter in
//! Envoy, so the three cannot disagree.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::string::String;
use std::vec::Vec;

use serde::Deserialize;

use crate::compiled::SimpleRequest;
use crate::identity::{Identity, NodeMetadata};
use crate::policy::{parse_policies_text, PolicyDocument};
use crate::simulate::{Distribution, Outcome};

/// One scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A unique, descriptive name.
    pub name: String,
    /// Policy files, relative to the policy directory (`examples/policies`).
    pub policies: Vec<String>,
    /// The sidecar.
    pub identity: ScenarioIdentity,
    /// The request.
    pub request: ScenarioRequest,
    /// What must happen.
    pub expect: Expectation,
}

/// The sidecar of a scenario.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioIdentity {
    /// Service (becomes the `app` and canonical-name labels in node metadata).
    pub service: Option<String>,
    /// Namespace.
    pub namespace: Option<String>,
    /// Pod name.
    pub pod: Option<String>,
    /// Extra pod labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The request of a scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioRequest {
    /// HTTP method (default GET).
    #[serde(default = "get")]
    pub method: String,
    /// Path.
    pub path: String,
    /// Headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The caller's verified mTLS certificate; `None`: an unknown caller (plaintext).
    pub source: Option<ScenarioSource>,
}

/// The caller of a scenario's request, as its certificate names it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScenarioSource {
    /// The calling service: its service account unless `service_account` is given.
    pub service: Option<String>,
    /// The caller's namespace.
    pub namespace: String,
    /// The caller's service account.
    pub service_account: Option<String>,
}

impl ScenarioSource {
    /// The service account the certificate names.
    pub fn service_account(&self) -> &str {
        self.service_account
            .as_deref()
            .or(self.service.as_deref())
            .unwrap_or_default()
    }

    /// The certificate's URI SAN: the caller's SPIFFE ID in the default trust domain.
    pub fn spiffe_id(&self) -> String {
        crate::identity::spiffe_id(
            crate::identity::DEFAULT_TRUST_DOMAIN,
            &self.namespace,
            self.service_account(),
        )
    }
}

fn get() -> String {
    "GET".into()
}

/// The expected outcome.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// `pass`, `delay`, `abort`, `delay_then_abort`, `response_abort` (the app did the work,
    /// the caller gets the error) or `reset` (no answer): what faulted requests get.
    pub outcome: String,
    /// Percent of requests that get that outcome (ignored for `pass`, where every request
    /// must pass).
    #[serde(default)]
    pub percent: f64,
    /// The abort status.
    pub http_status: Option<u16>,
    /// The gRPC status a gRPC request gets.
    pub grpc_status: Option<u8>,
    /// Bounds of the total wait of a faulted request.
    pub wait_ms_min: Option<u64>,
    /// Bounds of the total wait of a faulted request.
    pub wait_ms_max: Option<u64>,
    /// The policy that fires.
    pub policy: Option<String>,
    /// Percent of requests that get a fault other than `outcome` (earlier rules that fire).
    #[serde(default)]
    pub other_faults_percent: f64,
}

/// Why a scenario file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a valid scenario list.
    #[error("`{path}`: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Reads a YAML list of scenarios.
pub fn load_scenarios(path: &Path) -> Result<Vec<Scenario>, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_norway::from_str(&text).map_err(|e| ScenarioError::Format {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

impl Scenario {
    /// Loads this scenario's policies from `policy_dir`.
    pub fn load_policies(&self, policy_dir: &Path) -> Result<Vec<PolicyDocument>, ScenarioError> {
        let mut all = Vec::new();
        for file in &self.policies {
            let path = policy_dir.join(file);
            let text = std::fs::read_to_string(&path).map_err(|source| ScenarioError::Read {
                path: path.clone(),
                source,
            })?;
            let docs = parse_policies_text(&text).map_err(|errors| ScenarioError::Format {
                path: path.clone(),
                message: errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            })?;
            all.extend(docs);
        }
        Ok(all)
    }

    /// The node metadata an Istio sidecar of this identity would carry.
    pub fn node_metadata(&self) -> serde_json::Value {
        let id = &self.identity;
        let mut labels = id.labels.clone();
        if let Some(service) = &id.service {
            labels.insert("app".into(), service.clone());
        }
        NodeMetadata {
            workload_name: id.service.clone(),
            namespace: id.namespace.clone(),
            name: id.pod.clone(),
            labels,
        }
        .istio_metadata()
    }

    /// The identity the sidecar resolves from [`Scenario::node_metadata`].
    pub fn identity(&self) -> Identity {
        Identity::resolve(&NodeMetadata::from_json(&self.node_metadata()))
    }

    /// The request.
    pub fn request(&self) -> SimpleRequest {
        let request = self.request.headers.iter().fold(
            SimpleRequest::new(&self.request.method, &self.request.path),
            |r, (k, v)| r.with_header(k, v),
        );
        match &self.request.source {
            Some(source) => request.with_peer_uri_san(&source.spiffe_id()),
            None => request,
        }
    }

    /// The outcome faulted requests must get.
    pub fn expected_outcome(&self) -> Result<Outcome, String> {
        let status = || {
            self.expect
                .http_status
                .ok_or_else(|| format!("scenario `{}`: expect.http_status is required", self.name))
        };
        Ok(match self.expect.outcome.as_str() {
            "pass" => Outcome::Pass,
            "delay" => Outcome::Delay,
            "abort" => Outcome::Abort {
                http_status: status()?,
            },
            "delay_then_abort" => Outcome::DelayThenAbort {
                http_status: status()?,
            },
            "response_abort" => Outcome::ResponseAbort {
                http_status: status()?,
            },
            "reset" => Outcome::Reset,
            other => {
                return Err(format!(
                    "scenario `{}`: expect.outcome `{other}` is not one of pass, delay, abort, delay_then_abort, response_abort, reset",
                    self.name
                ))
            }
        })
    }

    /// Checks that `observed` of `total` requests got the expected outcome, within 4σ of the
    /// expected percentage (exactly, for 0 % and 100 %).
    pub fn check_rate(&self, observed: u64, total: u64) -> Result<(), String> {
        let percent = if self.expect.outcome == "pass" {
            100.0
        } else {
            self.expect.percent
        };
        check_binomial(&self.name, observed, total, percent / 100.0)
    }

    /// Checks a whole simulated distribution: the outcome's share and that no other fault
    /// happened.
    pub fn check_distribution(&self, dist: &Distribution) -> Result<(), String> {
        let outcome = self.expected_outcome()?;
        let observed = dist.count(&outcome);
        self.check_rate(observed, dist.total)?;
        if let Some(policy) = &self.expect.policy {
            let fired = dist.by_policy.get(policy).copied().unwrap_or(0);
            if fired != observed {
                return Err(format!(
                    "scenario `{}`: policy `{policy}` fired {fired} times, the outcome came {observed} times",
                    self.name
                ));
            }
        }
        if outcome == Outcome::Pass {
            return Ok(());
        }
        let others = dist.total - observed - dist.count(&Outcome::Pass);
        check_binomial(
            &self.name,
            others,
            dist.total,
            self.expect.other_faults_percent / 100.0,
        )
        .map_err(|e| format!("{e} (other faults: {:?})", dist.counts))
    }
}

/// Whether `observed` successes of `total` trials are within 4σ of probability `p`; at p = 0
/// or 1, exactly.
pub fn check_binomial(name: &str, observed: u64, total: u64, p: f64) -> Result<(), String> {
    let n = total as f64;
    let expected = n * p;
    let sigma = (n * p * (1.0 - p)).sqrt();
    let off = (observed as f64 - expected).abs();
    if off <= 4.0 * sigma + 1e-9 {
        Ok(())
    } else {
        Err(format!(
            "scenario `{name}`: {observed} of {total} requests, expected {expected:.1} ± {:.1} (4σ)",
            4.0 * sigma
        ))
    }
}
