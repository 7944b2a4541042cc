//! The Prometheus HTTP API client the guards query (`GET /api/v1/query`), over `reqwest`.

use std::path::PathBuf;
use std::time::Duration;

use serde::de::IgnoredAny;
use serde::Deserialize;

/// Default timeout of one query.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where Prometheus is and how to reach it (`--prometheus-*` flags).
#[derive(Debug, Clone)]
pub struct PrometheusConfig {
    /// The base address, e.g. `http://prometheus.monitoring:9090` (a path prefix is kept).
    pub url: String,
    /// A bearer token sent with every query.
    pub bearer_token: Option<String>,
    /// A PEM file of CA certificates trusted for an `https` address, beside the system's.
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate (tests, self-signed setups); never the default.
    pub insecure_skip_verify: bool,
    /// Timeout of one query.
    pub timeout: Duration,
}

impl PrometheusConfig {
    /// Defaults for `url`: no token, the system's CAs, a 5 s timeout.
    pub fn new(url: &str) -> PrometheusConfig {
        PrometheusConfig {
            url: url.to_owned(),
            bearer_token: None,
            ca_file: None,
            insecure_skip_verify: false,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrometheusSetupError {
    /// The address is not an http(s) URL.
    #[error("--prometheus-url `{0}` is not an http:// or https:// address")]
    BadUrl(String),
    /// The CA file could not be read or holds no certificate.
    #[error("--prometheus-ca-file `{path}`: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("prometheus client: {0}")]
    Client(String),
}

/// Why an evaluation got no value. The message names what an operator can check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// Prometheus could not be reached or did not answer in time.
    #[error("prometheus unreachable: {0}")]
    Unreachable(String),
    /// Prometheus answered with an error.
    #[error("prometheus refused the query (HTTP {status}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Prometheus' `error`.
        message: String,
    },
    /// The answer is not the Prometheus API's JSON.
    #[error("prometheus answer unreadable: {0}")]
    Unreadable(String),
    /// The query returned no sample (no data over its range).
    #[error("the query returned no sample")]
    NoSample,
    /// The query returned several series: a guard needs one number.
    #[error("the query returned {0} series; aggregate it to one (e.g. with `sum`)")]
    SeveralSeries(usize),
    /// The query returned strings or a range.
    #[error("the query returned a {0}, not a number")]
    NotANumber(String),
}

/// A client of one Prometheus.
#[derive(Debug, Clone)]
pub struct PrometheusClient {
    http: reqwest::Client,
    query_url: String,
    bearer_token: Option<String>,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Scalar(Sample),
    Vector(Vec<Series>),
    Matrix(IgnoredAny),
    String(IgnoredAny),
}

#[derive(Deserialize)]
struct Series {
    value: Sample,
}

/// `[<unix seconds>, "<value>"]`.
#[derive(Deserialize)]
struct Sample(IgnoredAny, String);

impl PrometheusClient {
    /// A client for `config`.
    pub fn new(config: &PrometheusConfig) -> Result<PrometheusClient, PrometheusSetupError> {
        let base = config.url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(PrometheusSetupError::BadUrl(config.url.clone()));
        }
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .danger_accept_invalid_certs(config.insecure_skip_verify);
        if let Some(path) = &config.ca_file {
            let ca_error = |reason: String| PrometheusSetupError::CaFile {
                path: path.display().to_string(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
            let certificates =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_error(e.to_string()))?;
            if certificates.is_empty() {
                return Err(ca_error("no PEM certificate in the file".to_owned()));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .build()
            .map_err(|e| PrometheusSetupError::Client(e.to_string()))?;
        Ok(PrometheusClient {
            http,
            query_url: format!("{base}/api/v1/query"),
            bearer_token: config.bearer_token.clone(),
        })
    }

    /// Runs `query` as an instant query; its one number (a scalar, or a vector of one sample).
    pub async fn instant(&self, query: &str) -> Result<f64, QueryError> {
        let mut request = self.http.get(&self.query_url).query(&[("query", query)]);
        if let Some(token) = &self.bearer_token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| QueryError::Unreachable(error_chain(&e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| QueryError::Unreachable(error_chain(&e)))?;
        let answer: Answer = match serde_json::from_slice(&body) {
            Ok(a) => a,
            Err(_) if !status.is_success() => {
                return Err(QueryError::Refused {
                    status: status.as_u16(),
                    message: String::from_utf8_lossy(&body).chars().take(200).collect(),
                })
            }
            Err(e) => return Err(QueryError::Unreadable(e.to_string())),
        };
        if answer.status != "success" || !status.is_success() {
            return Err(QueryError::Refused {
                status: status.as_u16(),
                message: answer.error.unwrap_or_else(|| answer.status.clone()),
            });
        }
        let sample = match answer.data {
            Some(Data::Scalar(sample)) => sample,
            Some(Data::Vector(series)) => {
                let count = series.len();
                let mut series = series.into_iter();
                match (series.next(), count) {
                    (None, _) => return Err(QueryError::NoSample),
                    (Some(one), 1) => one.value,
                    (Some(_), n) => return Err(QueryError::SeveralSeries(n)),
                }
            }
            Some(Data::Matrix(_)) => return Err(QueryError::NotANumber("range".to_owned())),
            Some(Data::String(_)) => return Err(QueryError::NotANumber("string".to_owned())),
            None => return Err(QueryError::Unreadable("no `data`".to_owned())),
        };
        parse_sample_value(&sample.1)
    }
}

/// A sample's value as Prometheus writes it (`"0.5"`, `"NaN"`, `"+Inf"`).
fn parse_sample_value(text: &str) -> Result<f64, QueryError> {
    text.parse::<f64>()
        .map_err(|_| QueryError::Unreadable(format!("sample value `{text}` is not a number")))
}

/// An error and its sources on one line (reqwest's own message hides the cause).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_values_read_as_prometheus_writes_them() {
        assert_eq!(parse_sample_value("0.5"), Ok(0.5));
        assert!(parse_sample_value("NaN").unwrap().is_nan());
        assert_eq!(parse_sample_value("+Inf"), Ok(f64::INFINITY));
        assert!(parse_sample_value("high").is_err());
    }

    #[test]
    fn only_http_addresses_are_taken() {
        assert!(matches!(
            PrometheusClient::new(&PrometheusConfig::new("prometheus:9090")),
            Err(PrometheusSetupError::BadUrl(_))
        ));
        let client = PrometheusClient::new(&PrometheusConfig::new("http://p:9090/prom/")).unwrap();
        assert_eq!(client.query_url, "http://p:9090/prom/api/v1/query");
    }
}
