//! A small blocking HTTP client for the control plane's API.

use std::time::Duration;

use boifi_core::wire::ApiError;
use serde::de::DeserializeOwned;

use crate::cli::GlobalArgs;
use crate::error::CliError;

/// Largest answer read from the server: 64 MiB.
const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// A connection to one control plane.
#[derive(Debug)]
pub struct Client {
    base: String,
    authorization: Option<String>,
    agent: ureq::Agent,
}

/// An answer: its status and body.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
    url: String,
}

impl Client {
    /// A client for the global flags' server, token and timeout.
    pub fn from_args(args: &GlobalArgs) -> Result<Client, CliError> {
        let token = match &args.token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|cause| CliError::Read {
                    path: path.display().to_string(),
                    cause,
                })?;
                Some(text.trim().to_owned())
            }
            None => args.token.clone(),
        };
        Client::new(&args.server, token.as_deref(), args.timeout)
    }

    /// A client for `server` (a URL, or `host:port` meaning `http://host:port`).
    pub fn new(server: &str, token: Option<&str>, timeout: Duration) -> Result<Client, CliError> {
        let base = normalize(server)?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .user_agent(concat!("boifi-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Client {
            base,
            authorization: token
                .filter(|t| !t.is_empty())
                .map(|t| format!("Bearer {t}")),
            agent,
        })
    }

    /// The server's base URL, without a trailing `/`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Result<Answer, CliError> {
        let url = self.url(path);
        let request = self.authorized(self.agent.get(&url));
        finish(url, request.call())
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Result<Answer, CliError> {
        let url = self.url(path);
        let request = self.authorized(self.agent.delete(&url));
        finish(url, request.call())
    }

    /// `POST path` with a JSON body.
    pub fn post_json(&self, path: &str, body: &impl serde::Serialize) -> Result<Answer, CliError> {
        let url = self.url(path);
        let bytes = serde_json::to_vec(body).map_err(|e| CliError::Usage(e.to_string()))?;
        let request = self
            .authorized(self.agent.post(&url))
            .header("content-type", "application/json");
        finish(url, request.send(&bytes[..]))
    }

    /// `POST path` without a body (an action such as re-arming a policy).
    pub fn post_empty(&self, path: &str) -> Result<Answer, CliError> {
        let url = self.url(path);
        let request = self.authorized(self.agent.post(&url));
        finish(url, request.send_empty())
    }

    /// The request with the bearer token, if there is one.
    fn authorized<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.authorization {
            Some(a) => request.header("authorization", a),
            None => request,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Answer {
    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as `T`, or the server's error for a non-2xx status.
    pub fn json<T: DeserializeOwned>(self) -> Result<T, CliError> {
        if !self.is_success() {
            return Err(self.into_error());
        }
        serde_json::from_slice(&self.body).map_err(|e| CliError::BadResponse {
            url: self.url.clone(),
            status: self.status,
            reason: e.to_string(),
        })
    }

    /// The error a non-2xx answer stands for: the server's `ApiError` when the body is one.
    pub fn into_error(self) -> CliError {
        let error = serde_json::from_slice::<ApiError>(&self.body).unwrap_or_else(|_| {
            let text = String::from_utf8_lossy(&self.body).trim().to_owned();
            ApiError {
                error: "http_error".to_owned(),
                message: if text.is_empty() {
                    format!("the server answered {} to `{}`", self.status, self.url)
                } else {
                    format!(
                        "the server answered {} to `{}`: {}",
                        self.status,
                        self.url,
                        truncate(&text, 300)
                    )
                },
                details: Vec::new(),
                code: self.status,
            }
        });
        CliError::Api {
            status: self.status,
            error,
        }
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => text.get(..i).unwrap_or(text),
        None => text,
    }
}

fn finish(
    url: String,
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Answer, CliError> {
    let unreachable = |url: &str, e: ureq::Error| CliError::Unreachable {
        url: url.to_owned(),
        cause: cause(e),
    };
    let mut response = result.map_err(|e| unreachable(&url, e))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY_BYTES)
        .read_to_vec()
        .map_err(|e| unreachable(&url, e))?;
    Ok(Answer { status, body, url })
}

/// The transport error in a few words.
fn cause(e: ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

fn normalize(server: &str) -> Result<String, CliError> {
    let bad = |reason: &str| CliError::BadServerUrl {
        url: server.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = server.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        return Err(bad("it is empty"));
    }
    let url = if trimmed.contains("://") {
        trimmed.to_owned()
    } else {
        format!("http://{trimmed}")
    };
    if url.starts_with("https://") && !cfg!(feature = "tls") {
        return Err(bad(
            "this build has no TLS support (rebuild with `--features tls`)",
        ));
    }
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(bad("only `http://` and `https://` are supported"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_normalized() {
        assert_eq!(
            normalize("localhost:8080").unwrap(),
            "http://localhost:8080"
        );
        assert_eq!(
            normalize("http://127.0.0.1:9/").unwrap(),
            "http://127.0.0.1:9"
        );
        assert!(normalize("ftp://x").is_err());
        assert!(normalize(" ").is_err());
    }
}
