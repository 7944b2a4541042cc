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

/// Per-policy counter kind: aborts.
pub const POLICY_ABORTS: &str = "aborts_total";
/// Per-policy counter kind: delays.
pub const POLICY_DELAYS: &str = "delays_total";

/// The per-policy counter `hfi.policy.<policy>.<kind>`.
pub fn policy_metric(policy: &str, kind: &str) -> alloc::string::String {
    alloc::format!("hfi.policy.{policy}.{kind}")
}

/// An Envoy `stats_tags` regex that extracts the policy name of the per-policy counters into a
/// `policy` tag, so `/stats/prometheus` shows `hfi_policy_aborts_total{policy="..."}`.
pub const POLICY_TAG_REGEX: &str = r"^wasmcustom\.hfi\.policy\.((.+?)\.)\w+_total$";

#[cfg(test)]
mod tests {
    #[test]
    fn policy_metric_names() {
        assert_eq!(
            super::policy_metric("cart-503", super::POLICY_ABORTS),
            "hfi.policy.cart-503.aborts_total"
        );
    }
}
