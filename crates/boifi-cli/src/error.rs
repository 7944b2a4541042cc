//! Every way a command can fail, and its exit code.

use std::process::ExitCode;

use boifi_core::policy::error::Joined;
use boifi_core::wire::ApiError;

use crate::load::DocumentError;

/// Why a command failed. The message is for a person; [`CliError::exit_code`] is for scripts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// No answer from the server: connection refused, DNS, timeout.
    #[error("cannot reach the server at `{url}`: {cause}")]
    Unreachable {
        /// The URL requested.
        url: String,
        /// The transport's explanation.
        cause: String,
    },
    /// The server answered with an error (the legacy `{"error","message","details","code"}`).
    #[error("{}", api_message(.status, .error))]
    Api {
        /// The HTTP status.
        status: u16,
        /// The server's explanation.
        error: ApiError,
    },
    /// The server answered something that is not what the API promises.
    #[error("the server at `{url}` answered {status} with an unexpected body: {reason}")]
    BadResponse {
        /// The URL requested.
        url: String,
        /// The HTTP status.
        status: u16,
        /// What was wrong with the body.
        reason: String,
    },
    /// The server URL is unusable.
    #[error("`{url}` is not a usable server URL: {reason}")]
    BadServerUrl {
        /// The URL as given.
        url: String,
        /// Why.
        reason: String,
    },
    /// A file that could not be read.
    #[error("cannot read `{path}`: {cause}")]
    Read {
        /// The path.
        path: String,
        /// The OS's explanation.
        cause: std::io::Error,
    },
    /// Invalid policy documents; every problem on its own line.
    #[error("{}", Joined(.0, "\n"))]
    Invalid(Vec<DocumentError>),
    /// A command line that makes no sense for this verb.
    #[error("{0}")]
    Usage(String),
    /// Some of several operations failed (their errors were already printed).
    #[error("{failed} of {total} policies could not be {what}")]
    Partial {
        /// How many failed.
        failed: usize,
        /// How many were tried.
        total: usize,
        /// What was tried, e.g. `applied`.
        what: &'static str,
    },
    /// `status --watch` gave up.
    #[error("timed out: {0}")]
    WatchTimeout(String),
    /// `status --watch` ended with sidecars that refused the latest version.
    #[error("refused: {0}; their reasons are listed under `Refusals`")]
    RolloutRefused(String),
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// `2` when the server could not be reached or failed; `1` for everything the user can fix.
    pub fn exit_code(&self) -> ExitCode {
        if self.is_server_side() {
            ExitCode::from(2)
        } else {
            ExitCode::from(1)
        }
    }

    /// True when the server could not be reached or failed: no point going on.
    pub fn is_server_side(&self) -> bool {
        match self {
            CliError::Unreachable { .. } | CliError::BadResponse { .. } => true,
            CliError::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// True when stdout was closed early (`boifi-cli ... | head`): not worth a message.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

fn api_message(status: &u16, error: &ApiError) -> String {
    let mut text = if error.message.is_empty() {
        format!("the server answered {status} ({})", error.error)
    } else {
        error.message.clone()
    };
    // Details that the message already says are not repeated.
    let repeated = |d: &&String| error.message.contains(d.as_str());
    for detail in error.details.iter().filter(|d| !repeated(d)) {
        text.push_str("\n  ");
        text.push_str(detail);
    }
    text
}
