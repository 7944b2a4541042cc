//! The config long-poll against the control plane (`GET /v1/config`), as a state machine the
//! host glue drives: what to ask, what an answer means, when to retry.

use alloc::format;
use alloc::string::String;
use boifi_core::compiled::{CompileError, CompiledPolicySet};
use boifi_core::identity::Identity;
use boifi_core::wire::{compact, ConfigEncoding, ConfigQuery, ConfigResponse, PluginConfig};

use crate::backoff::Backoff;

/// Why a config answer could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The call did not complete (no `:status`): cluster unknown, timeout, reset.
    #[error("config request failed without a response")]
    NoResponse,
    /// The control plane answered with an unexpected status.
    #[error("config request answered with status `{0}`")]
    Status(u16),
    /// A 200 whose body is not a valid compact `ConfigResponse`.
    #[error("config response is invalid: {0}")]
    Body(compact::CompactError),
    /// Valid policies that could not be compiled for this sidecar.
    #[error("config version `{version}` could not be compiled: {source}")]
    Compile {
        /// The rejected version.
        version: u64,
        /// Why.
        source: CompileError,
    },
}

/// What an answer means for the poller.
#[derive(Debug)]
pub enum PollOutcome {
    /// A new policy set (the version and the raw body, which is shared with the other VMs).
    Updated {
        /// Parsed response.
        response: ConfigResponse,
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

/// Compiles a `/v1/config` body for `identity` at `now_ms`.
pub fn compile_body(
    body: &[u8],
    identity: &Identity,
    now_ms: u64,
) -> Result<(u64, CompiledPolicySet), SyncError> {
    let response = compact::decode(body).map_err(SyncError::Body)?;
    compile_response(&response, identity, now_ms)
}

/// Compiles a parsed response for `identity` at `now_ms`.
pub fn compile_response(
    response: &ConfigResponse,
    identity: &Identity,
    now_ms: u64,
) -> Result<(u64, CompiledPolicySet), SyncError> {
    CompiledPolicySet::compile(&response.policies, identity, now_ms)
        .map(|set| (response.version, set))
        .map_err(|source| SyncError::Compile {
            version: response.version,
            source,
        })
}

/// When the poller acts next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Send the next request now.
    PollNow,
    /// Wait until this host time (ms), then poll.
    RetryAt(u64),
}

/// The poller's state: the version it holds and its backoff.
#[derive(Debug, Clone)]
pub struct ConfigSync {
    identity: Identity,
    wait_ms: u64,
    poll_interval_ms: u64,
    version: Option<u64>,
    backoff: Backoff,
}

impl ConfigSync {
    /// A poller for `identity` with the plugin's settings; it holds no version yet.
    pub fn new(identity: Identity, config: &PluginConfig) -> ConfigSync {
        ConfigSync {
            identity,
            wait_ms: config.long_poll_wait_ms,
            poll_interval_ms: config.backoff_initial_ms,
            version: None,
            backoff: Backoff::new(config.backoff_initial_ms, config.backoff_max_ms),
        }
    }

    /// The version held (reported to the control plane in every request).
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// Adopts a version received another way (published by a previous poller).
    pub fn set_version(&mut self, version: u64) {
        self.version = Some(version);
    }

    /// `:path` of the next request: identity and held version always; `wait` only once a
    /// version is held (the first request must answer at once).
    pub fn request_path(&self) -> String {
        let query = ConfigQuery {
            identity: self.identity.clone(),
            version: self.version,
            wait_ms: self.version.and(Some(self.wait_ms)).filter(|w| *w > 0),
            encoding: ConfigEncoding::Compact,
            refused: None,
        };
        format!("/v1/config?{}", query.to_query_string())
    }

    /// Records a usable answer; returns when to poll again.
    pub fn succeeded(&mut self, version: Option<u64>, now_ms: u64) -> Next {
        if let Some(v) = version {
            self.version = Some(v);
        }
        self.backoff.reset();
        if self.wait_ms == 0 {
            // Without long-poll the server answers at once: poll at the base interval.
            Next::RetryAt(now_ms.saturating_add(self.poll_interval_ms))
        } else {
            Next::PollNow
        }
    }

    /// Records a failure; returns when to retry (backoff with jitter; never gives up).
    pub fn failed(&mut self, now_ms: u64, draw: u64) -> Next {
        Next::RetryAt(now_ms.saturating_add(self.backoff.next_delay_ms(draw)))
    }

    /// Consecutive failures.
    pub fn failures(&self) -> u32 {
        self.backoff.failures()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The compact answer the control plane sends for this JSON one.
    pub(crate) fn compact(json: &str) -> alloc::vec::Vec<u8> {
        let response: ConfigResponse = serde_json::from_str(json).unwrap();
        compact::encode(&response)
    }

    fn config() -> PluginConfig {
        PluginConfig {
            long_poll_wait_ms: 30_000,
            ..PluginConfig::default()
        }
    }

    #[test]
    fn first_request_does_not_wait_then_long_polls_with_the_held_version() {
        let mut identity = Identity::for_service("frontend", "demo");
        identity.pod = Some("frontend-1".into());
        let mut s = ConfigSync::new(identity, &config());
        assert_eq!(
            s.request_path(),
            "/v1/config?service=frontend&namespace=demo&pod=frontend-1&encoding=compact"
        );
        assert_eq!(s.succeeded(Some(4), 0), Next::PollNow);
        assert_eq!(
            s.request_path(),
            "/v1/config?service=frontend&namespace=demo&pod=frontend-1&version=4&wait=30000ms&encoding=compact"
        );
    }

    #[test]
    fn failures_back_off_and_success_resets() {
        let mut s = ConfigSync::new(Identity::default(), &config());
        let Next::RetryAt(t1) = s.failed(1_000, 0) else {
            panic!()
        };
        assert!((1_500..=2_000).contains(&t1), "{t1}");
        for _ in 0..20 {
            s.failed(0, u64::MAX);
        }
        let Next::RetryAt(t) = s.failed(0, u64::MAX) else {
            panic!()
        };
        assert!((15_000..=30_000).contains(&t), "{t}");
        assert_eq!(s.failures(), 22);
        s.succeeded(None, 0);
        assert_eq!(s.failures(), 0);
    }

    #[test]
    fn short_poll_when_wait_is_zero() {
        let c = PluginConfig {
            long_poll_wait_ms: 0,
            ..PluginConfig::default()
        };
        let mut s = ConfigSync::new(Identity::default(), &c);
        assert_eq!(s.succeeded(Some(1), 100), Next::RetryAt(1_100));
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
            "config response is invalid: compact config at byte 0: not a compact config answer of version 1 (magic `BFC\\x01`)"
        );
    }

    #[test]
    fn compiles_only_the_policies_for_this_identity() {
        let body = compact(
            r#"{"version":9,"policies":[
          {"metadata":{"name":"cart-only"},"spec":{"selector":{"service":"cart"},
           "rules":[{"match":{"path":{"prefix":"/"}},"fault":{"percentage":100,"abort":{"httpStatus":503}}}]}},
          {"metadata":{"name":"everyone"},"spec":{"selector":{"service":"*"},
           "rules":[{"match":{"path":{"prefix":"/"}},"fault":{"percentage":100,"abort":{"httpStatus":500}}}]}}
        ]}"#,
        );
        let (v, set) = compile_body(&body, &Identity::for_service("frontend", "demo"), 0).unwrap();
        assert_eq!(v, 9);
        assert_eq!(set.policy_names(), ["everyone".to_string()]);
        assert!(compile_body(b"[]", &Identity::default(), 0).is_err());
    }
}
