//! Reading Envoy's Prometheus text (`/stats/prometheus`), the one latency quantile every
//! report and test of the workspace uses (boifi-bench's included), and what a caller's retries
//! predict for the side effects of a call.

use std::time::Duration;

/// The `q` quantile (0..=1) of `sorted` by the nearest-rank method: the smallest value with at
/// least `q` of the sample at or below it (rank `⌈q·n⌉`, 1-based), so it is always a measured
/// value and the median of an even-length sample is the lower of the two middle ones.
pub fn quantile(sorted: &[Duration], q: f64) -> Option<Duration> {
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "ranks of a few million samples fit f64 and usize"
    )]
    let rank = ((q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize).max(1);
    sorted.get(rank - 1).copied()
}

/// The mean and variance of the duplicate side effects of ONE call (the effects beyond the
/// first) when each try's answer is lost after the callee acted, with probability `lost`
/// independently per try (a response-phase abort of `lost × 100` %), and the caller's Envoy
/// retries a lost answer up to `retries` times.
///
/// Envoy's `retry_policy` semantics: a try whose answer matches `retry_on` is retried while
/// `num_retries` are left, so a call makes at most `retries + 1` tries and stops at the first
/// answer that arrives. Every try reaches the app and acts, so the duplicates are the tries
/// after the first: `D = min(G, retries)` with `G` the number of lost answers before the first
/// delivered one (`P(G = k) = lost^k · (1 − lost)`). Hence `P(D = k) = lost^k · (1 − lost)`
/// for `k < retries` and `P(D = retries) = lost^retries`. (A request-phase abort never reaches
/// the app: its duplicates are 0 whatever the retries.)
pub fn duplicates_per_call(lost: f64, retries: u32) -> (f64, f64) {
    let lost = lost.clamp(0.0, 1.0);
    let (mut mean, mut square) = (0.0, 0.0);
    let mut reach = 1.0; // P(D >= k) = lost^k
    for k in 0..=retries {
        let p = if k == retries {
            reach
        } else {
            reach * (1.0 - lost)
        };
        let k = f64::from(k);
        mean += k * p;
        square += k * k * p;
        reach *= lost;
    }
    (mean, square - mean * mean)
}

/// The sum of every sample of metric `name` (any labels), or `None` if it is absent.
pub fn metric_sum(text: &str, name: &str) -> Option<u64> {
    let mut found = false;
    let mut sum: u64 = 0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // The name must end here: `name{...} v` or `name v`.
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let value = rest.rsplit(' ').next().unwrap_or_default();
        if let Ok(v) = value.parse::<f64>() {
            found = true;
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "counters and gauges here are small non-negative integers"
            )]
            let v = v.max(0.0) as u64;
            sum = sum.saturating_add(v);
        }
    }
    found.then_some(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().copied().map(Duration::from_millis).collect()
    }

    #[test]
    fn quantile_by_nearest_rank() {
        let d = ms(&(1..=100).collect::<Vec<_>>());
        assert_eq!(quantile(&d, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(quantile(&d, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(quantile(&d, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(quantile(&d, 0.0), Some(Duration::from_millis(1)));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn median_of_an_even_sample_is_the_lower_middle_value() {
        // Four values: ⌈0.5·4⌉ = rank 2; a rounded-index definition would give 30 here.
        let d = ms(&[10, 20, 30, 40]);
        assert_eq!(quantile(&d, 0.5), Some(Duration::from_millis(20)));
        assert_eq!(quantile(&d, 0.75), Some(Duration::from_millis(30)));
        assert_eq!(quantile(&d, 0.76), Some(Duration::from_millis(40)));
        assert_eq!(quantile(&ms(&[7]), 0.5), Some(Duration::from_millis(7)));
    }

    #[test]
    fn duplicates_follow_the_capped_geometric_law() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        // No retry, or answers never lost: never a duplicate.
        assert_eq!(duplicates_per_call(0.5, 0), (0.0, 0.0));
        assert_eq!(duplicates_per_call(0.0, 3), (0.0, 0.0));
        // One retry: a Bernoulli(p) duplicate.
        let (m, v) = duplicates_per_call(0.6, 1);
        assert!(close(m, 0.6) && close(v, 0.24), "{m} {v}");
        // Two retries, half lost: D = 0, 1, 2 with ½, ¼, ¼.
        let (m, v) = duplicates_per_call(0.5, 2);
        assert!(close(m, 0.75) && close(v, 1.25 - 0.5625), "{m} {v}");
        // Every answer lost: every retry is used.
        let (m, v) = duplicates_per_call(1.0, 3);
        assert!(close(m, 3.0) && close(v, 0.0), "{m} {v}");
        // The mean is Σ lost^k for k = 1..=retries.
        let (m, _) = duplicates_per_call(0.7, 4);
        assert!(close(m, 0.7 + 0.49 + 0.343 + 0.2401), "{m}");
    }

    #[test]
    fn sums_samples_of_one_metric_only() {
        let text = "# TYPE hfi_faults_aborts_total counter\n\
                    hfi_faults_aborts_total{policy=\"a\"} 3\n\
                    hfi_faults_aborts_total{policy=\"b\"} 4\n\
                    hfi_faults_aborts_total_other 100\n\
                    hfi_faults_delays_total 2\n";
        assert_eq!(metric_sum(text, "hfi_faults_aborts_total"), Some(7));
        assert_eq!(metric_sum(text, "hfi_faults_delays_total"), Some(2));
        assert_eq!(metric_sum(text, "missing"), None);
    }
}
