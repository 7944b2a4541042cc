//! What the filter asks of its proxy-wasm host, as a safe trait: every value the host hands
//! over is bytes, every failure is a value (`None`, `false`, `Err`), nothing panics. The real
//! host is [`crate::abi`] (the proxy-wasm ABI imports); tests and the fuzz target answer with
//! anything they like.

use alloc::vec::Vec;

/// Log levels of the proxy-wasm ABI (`proxy_log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Trace.
    Trace = 0,
    /// Debug.
    Debug = 1,
    /// Info.
    Info = 2,
    /// Warn.
    Warn = 3,
    /// Error.
    Error = 4,
}

impl Level {
    /// The level named in `PluginConfig::log_level` (unknown names: info).
    pub fn from_name(name: &str) -> Level {
        match name {
            "error" => Level::Error,
            "warn" => Level::Warn,
            "debug" => Level::Debug,
            "trace" => Level::Trace,
            _ => Level::Info,
        }
    }
}

/// Metric kinds of the proxy-wasm ABI (`proxy_define_metric`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonic counter.
    Counter = 0,
    /// Gauge.
    Gauge = 1,
}

/// An HTTP call without a body (the poller's `GET /v1/config`).
#[derive(Debug, Clone, Copy)]
pub struct HttpCall<'a> {
    /// The Envoy cluster to call.
    pub cluster: &'a str,
    /// Request headers, pseudo-headers included.
    pub headers: &'a [(&'a [u8], &'a [u8])],
    /// How long Envoy waits for the answer.
    pub timeout_ms: u32,
}

/// The host calls the filter makes.
pub trait Host {
    /// The host's clock, nanoseconds since the Unix epoch (0 when it fails).
    fn now_nanos(&self) -> u64;
    /// Writes a log line.
    fn log(&self, level: Level, message: &str);
    /// Sets the current root context's tick period (0: off); false when refused.
    fn set_tick_period_ms(&self, ms: u32) -> bool;
    /// The plugin configuration.
    fn plugin_configuration(&self) -> Option<Vec<u8>>;
    /// A property (path segments as the ABI joins them).
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// Shared data under `key` and its CAS token.
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes shared data if the token still is `cas` (`None`: unconditionally).
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
    /// The current request's headers, serialized as a pair map (see [`crate::props::Pairs`]).
    fn request_headers(&self) -> Option<Vec<u8>>;
    /// Sets request header `name` of the current request to `value`, replacing any value it had;
    /// false when refused.
    fn replace_request_header(&self, name: &str, value: &[u8]) -> bool;
    /// A header of the HTTP call answer being delivered.
    fn call_response_header(&self, name: &str) -> Option<Vec<u8>>;
    /// Up to `size` bytes of the HTTP call answer's body.
    fn call_response_body(&self, size: usize) -> Option<Vec<u8>>;
    /// Dispatches an HTTP call; the token, or the host's status code.
    fn http_call(&self, call: &HttpCall<'_>) -> Result<u32, u32>;
    /// Answers the current request locally.
    fn send_local_reply(&self, status: u32, headers: &[(&[u8], &[u8])], body: &[u8]) -> bool;
    /// Resumes the current (paused) request.
    fn resume_request(&self) -> bool;
    /// Resumes the current (paused) response.
    fn resume_response(&self) -> bool;
    /// Resets the current stream (proxy-wasm `close_stream`, which Envoy implements as a stream
    /// reset: the caller gets no HTTP answer, only an upstream reset); `response`: from the
    /// response path (the app answered), else from the request path.
    fn reset_stream(&self, response: bool) -> bool;
    /// Makes `context_id` the current context; false when it is gone.
    fn set_effective_context(&self, context_id: u32) -> bool;
    /// Defines a metric; its id.
    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32>;
    /// Adds to a counter.
    fn increment_metric(&self, id: u32, by: i64);
    /// Sets a gauge.
    fn record_metric(&self, id: u32, value: u64);
}
