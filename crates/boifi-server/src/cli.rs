//! The command line of `boifi-server` (every flag also from an environment variable).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgGroup, Parser, ValueEnum};

use crate::app::{start, ServerConfig, ServerError};
use crate::auth::{legacy_credential, Auth};
use crate::credentials::load_credentials;
use crate::guards::prometheus::PrometheusConfig;
use crate::scope::TargetNamespaces;
use crate::state::DEFAULT_BODY_LIMIT;
use crate::store::local::LocalStore;
use crate::store::{PolicyStore, ETCD_PREFIX, ETCD_SIDECAR_PREFIX};

/// The boifi control plane: stores fault injection policies and serves them to sidecars.
#[derive(Debug, Clone, Parser)]
#[command(name = "boifi-server", version, about, long_about = None)]
#[command(group(ArgGroup::new("tokens").args(["auth_token_file", "credentials"]).multiple(true)))]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Where policies are kept: `embedded` (a crash-safe file in --data-dir), `etcd` (shared by
    /// replicas; --etcd-endpoints) or `memory` (lost on exit).
    #[arg(long, env = "STORAGE_BACKEND", value_enum, default_value_t = Storage::Embedded)]
    pub storage: Storage,
    /// etcd endpoints, comma-separated (e.g. `http://etcd-0:2379,http://etcd-1:2379`).
    #[arg(long, env = "ETCD_ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// Key prefix of policies in etcd.
    #[arg(long, env = "ETCD_PREFIX", default_value = ETCD_PREFIX)]
    pub etcd_prefix: String,
    /// Directory of the embedded store.
    #[arg(long, env = "DATA_DIR", default_value = "./boifi-data")]
    pub data_dir: PathBuf,
    /// File holding the bearer token; when set, every mutating request needs
    /// `Authorization: Bearer <token>`. This token may do everything (beside --credentials).
    #[arg(long, env = "AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// Named tokens, each with what it may do (read, write, halt) and which namespaces its
    /// policies may select: a YAML file, or a directory of them (e.g. mounted Secrets).
    #[arg(long, env = "CREDENTIALS")]
    pub credentials: Option<PathBuf>,
    /// Require a token with `read` on reads too, `/v1/config` included: every sidecar must then
    /// present one on its long-poll (the Wasm filter: `control_plane_token` in its plugin
    /// configuration; the native module: a file named by `control_plane_token_file`, e.g. a
    /// mounted Secret); a sidecar without it is answered 401 and keeps the policies it holds
    /// (docs/deploy-k8s.md).
    #[arg(long, env = "AUTH_READS", requires = "tokens")]
    pub auth_reads: bool,
    /// The only namespaces policies may target, comma-separated (`demo,shop`); a policy
    /// selecting another namespace, or every namespace, is refused whoever sends it. Unset:
    /// any namespace.
    #[arg(long, env = "TARGET_NAMESPACES", value_delimiter = ',', value_parser = parse_namespace)]
    pub target_namespaces: Option<Vec<String>>,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// How long after expiry a policy is deleted (e.g. `1h`, `30m`, `90s`).
    #[arg(long, env = "SWEEP_GRACE", default_value = "1h", value_parser = parse_duration)]
    pub sweep_grace: Duration,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = DEFAULT_BODY_LIMIT)]
    pub max_body_bytes: usize,
    /// This replica's name in shared sidecar reports (default: `$HOSTNAME:port`, the pod name
    /// in Kubernetes; else one made from the process id). Must differ between replicas.
    #[arg(long, env = "REPLICA_ID")]
    pub replica_id: Option<String>,
    /// etcd key prefix of the shared sidecar reports.
    #[arg(long, env = "ETCD_SIDECAR_PREFIX", default_value = ETCD_SIDECAR_PREFIX)]
    pub etcd_sidecar_prefix: String,
    /// TTL of a replica's lease in the etcd guard election (whole seconds, e.g. `10s`): when
    /// the replica evaluating guards dies, another takes them over within this TTL plus about a
    /// second. etcd raises a TTL below its minimum (2 s by default).
    #[arg(long, env = "GUARD_ELECTION_TTL", default_value = "10s", value_parser = parse_duration)]
    pub guard_election_ttl: Duration,
    /// The Prometheus that `spec.guards` queries (e.g. `http://prometheus.monitoring:9090`);
    /// without it, guarded policies are refused.
    #[arg(long, env = "PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
    /// File holding a bearer token sent to Prometheus.
    #[arg(
        long,
        env = "PROMETHEUS_BEARER_TOKEN_FILE",
        requires = "prometheus_url"
    )]
    pub prometheus_bearer_token_file: Option<PathBuf>,
    /// PEM file of CA certificates trusted for an https Prometheus (beside the system's roots).
    #[arg(long, env = "PROMETHEUS_CA_FILE", requires = "prometheus_url")]
    pub prometheus_ca_file: Option<PathBuf>,
    /// Accept any certificate from Prometheus (self-signed test setups only).
    #[arg(
        long,
        env = "PROMETHEUS_INSECURE_SKIP_VERIFY",
        requires = "prometheus_url"
    )]
    pub prometheus_insecure_skip_verify: bool,
    /// Timeout of one guard query (e.g. `5s`, `500ms`).
    #[arg(long, env = "PROMETHEUS_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub prometheus_timeout: Duration,
}

/// Storage backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Storage {
    /// redb file in --data-dir (default; single node; survives restarts).
    Embedded,
    /// etcd v3 (replicas share it).
    Etcd,
    /// In memory (legacy; ephemeral).
    Memory,
}

/// Log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Parses `1h`, `30m`, `90s`, `500ms` or bare seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let ms = if let Some(h) = t.strip_suffix('h') {
        h.parse::<u64>().ok().and_then(|h| h.checked_mul(3_600_000))
    } else {
        boifi_core::wire::parse_duration_ms(t)
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is not a duration such as `1h`, `30m` or `90s`"))
}

/// One namespace of `--target-namespaces`.
fn parse_namespace(text: &str) -> Result<String, String> {
    let namespace = text.trim();
    if namespace == "*" {
        return Err("`*`: leave --target-namespaces unset to allow every namespace".to_owned());
    }
    match boifi_core::policy::namespace_problem(namespace) {
        Some(problem) => Err(format!("`{namespace}`: {problem}")),
        None => Ok(namespace.to_owned()),
    }
}

/// The tokens `args` configure: the legacy token file's (which may do everything) and the
/// credentials'.
pub fn load_auth(args: &Args) -> Result<Auth, ServerError> {
    let mut credentials = Vec::new();
    if let Some(path) = &args.auth_token_file {
        credentials.push(legacy_credential(&read_token(path)?));
    }
    if let Some(path) = &args.credentials {
        credentials.extend(
            load_credentials(path)
                .map_err(|e| ServerError::Config(format!("--credentials: {e}")))?,
        );
    }
    if credentials.is_empty() {
        return Ok(Auth::open());
    }
    Auth::with_credentials(credentials, args.auth_reads)
        .map_err(|e| ServerError::Config(format!("--credentials: {e}")))
}

/// Sets up `tracing` output (level from `RUST_LOG`, default `info`).
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Err(e) = result {
        eprintln!("boifi-server: logging not set up: {e}");
    }
}

/// Opens the chosen store.
pub async fn open_store(args: &Args) -> Result<Arc<dyn PolicyStore>, ServerError> {
    match args.storage {
        Storage::Memory => Ok(Arc::new(LocalStore::in_memory())),
        Storage::Embedded => Ok(Arc::new(LocalStore::open(&args.data_dir).await?)),
        Storage::Etcd => {
            if args.etcd_endpoints.is_empty() {
                return Err(ServerError::Config(
                    "--storage etcd needs --etcd-endpoints (or ETCD_ENDPOINTS)".to_owned(),
                ));
            }
            let options = crate::store::etcd::EtcdOptions {
                sidecar_prefix: args.etcd_sidecar_prefix.clone(),
                election_ttl: args.guard_election_ttl,
                ..crate::store::etcd::EtcdOptions::new(&args.etcd_endpoints, &args.etcd_prefix)
            };
            let store = crate::store::etcd::EtcdStore::connect_with(options).await?;
            Ok(Arc::new(store))
        }
    }
}

/// Reads the token file: its content without surrounding whitespace, which must not be empty.
pub fn read_token(path: &std::path::Path) -> Result<String, ServerError> {
    read_secret(path, "--auth-token-file")
}

/// Reads a secret file given with `flag`: its content without surrounding whitespace, which
/// must not be empty.
fn read_secret(path: &std::path::Path, flag: &str) -> Result<String, ServerError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ServerError::Config(format!("{flag} `{}`: {e}", path.display())))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ServerError::Config(format!(
            "{flag} `{}`: the file is empty",
            path.display()
        )));
    }
    Ok(token.to_owned())
}

/// `$HOSTNAME:port` (the pod name in Kubernetes; the port tells apart replicas sharing one
/// host); `None` (a name made from the process id) without a hostname or on port 0.
fn default_replica(listen: SocketAddr) -> Option<String> {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty())?;
    (listen.port() != 0).then(|| format!("{host}:{}", listen.port()))
}

/// The Prometheus settings of the flags; `None` without `--prometheus-url`.
pub fn prometheus_config(args: &Args) -> Result<Option<PrometheusConfig>, ServerError> {
    let Some(url) = &args.prometheus_url else {
        return Ok(None);
    };
    let bearer_token = match &args.prometheus_bearer_token_file {
        Some(path) => Some(read_secret(path, "--prometheus-bearer-token-file")?),
        None => None,
    };
    Ok(Some(PrometheusConfig {
        bearer_token,
        ca_file: args.prometheus_ca_file.clone(),
        insecure_skip_verify: args.prometheus_insecure_skip_verify,
        timeout: args.prometheus_timeout,
        ..PrometheusConfig::new(url)
    }))
}

/// Runs the server until SIGINT/SIGTERM.
pub async fn run(args: Args) -> Result<(), ServerError> {
    let auth = load_auth(&args)?;
    if !auth.enabled() {
        tracing::warn!(
            "no --auth-token-file or --credentials: the API accepts changes from anyone"
        );
    }
    let targets = match &args.target_namespaces {
        Some(list) => TargetNamespaces::only(list.iter().cloned()),
        None => TargetNamespaces::any(),
    };
    let store = open_store(&args).await?;
    let config = ServerConfig {
        auth,
        targets,
        sweep_grace: args.sweep_grace,
        body_limit: args.max_body_bytes,
        handle_signals: true,
        prometheus: prometheus_config(&args)?,
        replica: args
            .replica_id
            .clone()
            .or_else(|| default_replica(args.listen)),
        ..ServerConfig::new(args.listen)
    };
    tracing::info!(storage = ?args.storage, "starting");
    start(config, store).await?.wait().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert_eq!(
            parse_duration("soon"),
            Err("`soon` is not a duration such as `1h`, `30m` or `90s`".to_owned())
        );
    }

    #[test]
    fn flags_have_the_legacy_defaults() {
        let args = Args::try_parse_from(["boifi-server"]).unwrap();
        assert_eq!(args.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(args.storage, Storage::Embedded);
        assert_eq!(args.sweep_grace, Duration::from_secs(3600));
        let args = Args::try_parse_from([
            "boifi-server",
            "--storage",
            "memory",
            "--etcd-endpoints",
            "http://a:2379,http://b:2379",
        ])
        .unwrap();
        assert_eq!(args.storage, Storage::Memory);
        assert_eq!(args.etcd_endpoints, ["http://a:2379", "http://b:2379"]);
        assert!(Args::try_parse_from(["boifi-server", "--auth-reads"]).is_err());
    }
}
