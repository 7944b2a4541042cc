//! The command line: global flags, verbs and their arguments (clap derive).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Manage boifi fault injection policies, validate them offline, and simulate their effect.
#[derive(Debug, Parser)]
#[command(name = "boifi-cli", version, propagate_version = true)]
#[command(
    after_help = "Exit codes: 0 success, 1 a user mistake (invalid policy, refused request), 2 the server \
                  could not be reached or failed."
)]
pub struct Cli {
    /// Flags every verb takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The verb.
    #[command(subcommand)]
    pub command: Command,
}

/// The help heading of the flags every verb takes.
const GLOBAL: &str = "Global options";

/// Flags every verb takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// The control plane's URL (`host:port` means `http://host:port`)
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        env = "BOIFI_SERVER",
        default_value = "http://localhost:8080",
        alias = "control-plane-addr",
        value_name = "URL"
    )]
    pub server: String,
    /// Bearer token sent with every request
    #[arg(long, global = true, help_heading = GLOBAL, env = "BOIFI_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Read the bearer token from this file (takes precedence over --token)
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Time limit of each request to the server, e.g. `10s`, `500ms`
    #[arg(long, global = true, help_heading = GLOBAL, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Output format where the output is data
    #[arg(short, long, global = true, help_heading = GLOBAL, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// How data is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people
    Table,
    /// JSON, re-appliable for policies
    Json,
    /// YAML (one document per policy), re-appliable for policies
    Yaml,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, read and delete policies on the server
    #[command(subcommand_required = true)]
    Policy {
        /// The policy verb.
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Kill switch: delete every policy, so every fault stops at the next propagation
    Halt(HaltArgs),
    /// Who changed what: the server's latest audited writes, deletes, halts and expiries
    Audit(AuditArgs),
    /// Policies with their state, and which sidecars applied or refused the latest config version
    Status(StatusArgs),
    /// Check policy files offline; every problem with its file, document and field path
    Validate(ValidateArgs),
    /// What a sidecar would do with a request, offline or with the server's policies
    ///
    /// Prints the policies that apply to the identity, the rules that match the request in
    /// evaluation order, and the outcome distribution over many simulated requests (pass,
    /// delay, abort by status) beside the distribution the rules' percentages promise. Each
    /// request is decided by the same boifi-core code the filter runs.
    Simulate(Box<SimulateArgs>),
    /// Print a shell completion script
    Completion(CompletionArgs),
}

/// The `policy` verbs.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Create or update the policies of files, directories or stdin (`-`)
    Apply(ApplyArgs),
    /// Show one policy, or every policy when no name is given
    Get(GetArgs),
    /// List every policy (`-l key=value` keeps those with these labels)
    #[command(alias = "ls")]
    List(ListArgs),
    /// Show one policy in detail
    Describe(DescribeArgs),
    /// Delete policies by name
    #[command(alias = "rm")]
    Delete(DeleteArgs),
    /// Re-arm a guarded policy stopped by a guard: it injects again once its guards pass
    Rearm(RearmArgs),
}

/// `policy rearm`.
#[derive(Debug, Args)]
pub struct RearmArgs {
    /// The policy
    pub name: String,
}

/// A guarded policy's state, for `policy list --guard-state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GuardStateFilter {
    /// Waiting for its guards to pass once; injects nothing
    Verifying,
    /// Its guards passed; injecting
    Running,
    /// Stopped by a guard
    Tripped,
}

impl GuardStateFilter {
    /// As the server names it.
    pub fn as_str(self) -> &'static str {
        match self {
            GuardStateFilter::Verifying => "verifying",
            GuardStateFilter::Running => "running",
            GuardStateFilter::Tripped => "tripped",
        }
    }
}

/// Where policy documents come from.
#[derive(Debug, Clone, Args)]
pub struct FileArgs {
    /// A YAML or JSON file (every document of it), a directory of such files, or `-` for stdin
    #[arg(
        short = 'f',
        long = "filename",
        alias = "file",
        value_name = "FILE|DIR|-",
        required = true,
        num_args = 1..
    )]
    pub files: Vec<PathBuf>,
    /// Also read the subdirectories of directories
    #[arg(short = 'R', long)]
    pub recursive: bool,
}

/// `policy apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The policies.
    #[command(flatten)]
    pub files: FileArgs,
    /// Show what would change without changing anything
    #[arg(long)]
    pub dry_run: bool,
    /// Set `duration_seconds` of every rule: it stops acting this long after it is stored
    /// (legacy hfi-cli flag)
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(0..=boifi_core::policy::MAX_DURATION_SECONDS))]
    pub duration_seconds: Option<u64>,
    /// Set `start_delay_ms` of every rule: a faulted request waits this long first
    /// (legacy hfi-cli flag)
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(0..=boifi_core::policy::MAX_DELAY_MS))]
    pub start_delay_ms: Option<u64>,
}

/// `policy get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The policy; every policy when omitted
    pub name: Option<String>,
    /// Only policies with these `metadata.labels`, `key=value` (repeatable, or comma-separated)
    #[arg(short = 'l', long = "selector", value_name = "KEY=VALUE", value_delimiter = ',', value_parser = parse_pair, conflicts_with = "name")]
    pub selector: Vec<(String, String)>,
    /// Only guarded policies in this state
    #[arg(long, value_enum, conflicts_with = "name")]
    pub guard_state: Option<GuardStateFilter>,
}

/// `policy list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only policies with these `metadata.labels`, `key=value` (repeatable, or comma-separated)
    #[arg(short = 'l', long = "selector", value_name = "KEY=VALUE", value_delimiter = ',', value_parser = parse_pair)]
    pub selector: Vec<(String, String)>,
    /// Only guarded policies in this state (e.g. `--guard-state tripped`)
    #[arg(long, value_enum)]
    pub guard_state: Option<GuardStateFilter>,
}

/// `policy describe`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// The policy
    pub name: String,
}

/// `policy delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The policies
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Succeed when a policy does not exist
    #[arg(long)]
    pub ignore_not_found: bool,
}

/// `halt`.
#[derive(Debug, Args)]
pub struct HaltArgs {
    /// Confirm that every policy of the server is to be deleted
    #[arg(long)]
    pub yes: bool,
}

/// `audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only the entries of this policy
    #[arg(long, value_name = "NAME")]
    pub policy: Option<String>,
    /// Only the entries of this token (its name in the server's credentials)
    #[arg(long, value_name = "TOKEN_NAME")]
    pub who: Option<String>,
}

/// `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Poll until no sidecar is pending the latest config version, showing progress; exit 1 if
    /// any refused it
    #[arg(short, long)]
    pub watch: bool,
    /// Time between polls with --watch
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Give up --watch after this long (exit 1)
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub watch_timeout: Option<Duration>,
}

/// `validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The policies.
    #[command(flatten)]
    pub files: FileArgs,
}

/// `simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Policy files or directories (`-` for stdin)
    #[arg(
        short = 'f',
        long = "filename",
        alias = "file",
        value_name = "FILE|DIR|-",
        num_args = 1..,
        required_unless_present = "from_server",
        conflicts_with = "from_server"
    )]
    pub files: Vec<PathBuf>,
    /// Also read the subdirectories of directories
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Use the policies the server gives this identity (GET /v1/config)
    #[arg(long)]
    pub from_server: bool,
    /// The sidecar's service
    #[arg(long, help_heading = "Identity")]
    pub service: Option<String>,
    /// The sidecar's namespace
    #[arg(long, help_heading = "Identity")]
    pub namespace: Option<String>,
    /// The sidecar's pod name
    #[arg(long, help_heading = "Identity")]
    pub pod: Option<String>,
    /// A pod label, `key=value` (repeatable, or comma-separated)
    #[arg(long = "label", value_name = "KEY=VALUE", value_delimiter = ',', value_parser = parse_pair, help_heading = "Identity")]
    pub labels: Vec<(String, String)>,
    /// The request method
    #[arg(long, default_value = "GET", help_heading = "Request")]
    pub method: String,
    /// The request path (a query string is allowed)
    #[arg(long, default_value = "/", help_heading = "Request")]
    pub path: String,
    /// A request header, `name=value` or `name:value` (repeatable)
    #[arg(long = "header", short = 'H', value_name = "NAME=VALUE", value_parser = parse_header, help_heading = "Request")]
    pub headers: Vec<(String, String)>,
    /// The `x-request-id` header (decides `request` sampling)
    #[arg(long, help_heading = "Request")]
    pub request_id: Option<String>,
    /// The caller.
    #[command(flatten, next_help_heading = "Caller (its mTLS certificate)")]
    pub caller: CallerArgs,
    /// How many requests to simulate
    #[arg(long, default_value_t = 10_000, help_heading = "Simulation")]
    pub requests: u64,
    /// Seed of the random draws; the same seed gives the same output (random when omitted)
    #[arg(long, help_heading = "Simulation")]
    pub seed: Option<u64>,
    /// The moment simulated, RFC 3339 (default: now); policies without a status count as
    /// stored at that moment
    #[arg(long, value_name = "TIME", value_parser = parse_time, help_heading = "Simulation")]
    pub at: Option<u64>,
}

/// `simulate`'s caller: the identity its mTLS certificate names.
#[derive(Debug, Args)]
#[group(skip)]
pub struct CallerArgs {
    /// The calling service; its certificate names the service account of the same name unless
    /// `--source-service-account` says otherwise (needs `--source-namespace`)
    #[arg(long, value_name = "SERVICE", requires = "source_namespace")]
    pub source_service: Option<String>,
    /// The caller's namespace
    #[arg(long, value_name = "NAMESPACE")]
    pub source_namespace: Option<String>,
    /// The caller's service account (default: `--source-service`)
    #[arg(long, value_name = "ACCOUNT", requires = "source_namespace")]
    pub source_service_account: Option<String>,
}

/// `completion`.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

/// Shells with completion scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    /// Bash
    Bash,
    /// Zsh
    Zsh,
    /// Fish
    Fish,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    boifi_core::wire::parse_duration_ms(text)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is not a duration such as `10s` or `500ms`"))
}

fn parse_time(text: &str) -> Result<u64, String> {
    boifi_core::time::parse_rfc3339(text).ok_or_else(|| {
        format!("`{text}` is not an RFC 3339 timestamp (e.g. `2026-11-26T10:00:00Z`)")
    })
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(format!("`{text}` is not of the form key=value")),
    }
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    let split = match (text.find('='), text.find(':')) {
        (Some(e), Some(c)) => Some(e.min(c)),
        (Some(i), None) | (None, Some(i)) => Some(i),
        (None, None) => None,
    };
    match split.map(|i| text.split_at(i)) {
        Some((name, value)) if !name.trim().is_empty() => Ok((
            name.trim().to_ascii_lowercase(),
            value.get(1..).unwrap_or("").trim().to_owned(),
        )),
        _ => Err(format!("`{text}` is not of the form name=value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn headers_take_equals_or_colon() {
        assert_eq!(
            parse_header("X-User: alice").unwrap(),
            ("x-user".to_owned(), "alice".to_owned())
        );
        assert_eq!(
            parse_header("x-user=a:b").unwrap(),
            ("x-user".to_owned(), "a:b".to_owned())
        );
        assert!(parse_header("novalue").is_err());
        assert!(parse_pair("=v").is_err());
    }
}
