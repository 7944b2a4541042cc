//! Reading Envoy's Prometheus text (`/stats/prometheus`).

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
