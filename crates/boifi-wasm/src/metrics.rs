//! Metric names. Envoy keeps Wasm-defined metrics under `wasmcustom.` and prints them in
//! `/stats/prometheus` with dots turned into underscores (`hfi_faults_aborts_total`).

/// Requests answered by an abort fault (counter; the seed plugin's name).
pub const ABORTS_TOTAL: &str = "hfi.faults.aborts_total";
/// Requests held by a delay fault (counter; the seed plugin's name).
pub const DELAYS_TOTAL: &str = "hfi.faults.delays_total";
/// Milliseconds requests were held by delay faults, summed (counter).
pub const DELAY_MS_TOTAL: &str = "hfi.faults.delay_ms_total";
/// Policy sets applied by this Envoy (counter; counted once per Envoy, by the poller).
pub const CONFIG_UPDATES_TOTAL: &str = "hfi.config.updates_total";
/// Config answers that could not be used (counter).
pub const CONFIG_ERRORS_TOTAL: &str = "hfi.config.errors_total";
/// Config requests that failed (control plane unreachable, timeout, bad status) (counter).
pub const CONFIG_POLL_FAILURES_TOTAL: &str = "hfi.config.poll_failures_total";
/// Policies in the set this Envoy holds (gauge).
pub const ACTIVE_POLICIES: &str = "hfi.policies.active";
/// The control plane's config version this Envoy holds (gauge).
pub const CONFIG_VERSION: &str = "hfi.config.version";
