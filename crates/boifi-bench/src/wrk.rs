//! The load generator: Debian's `wrk`, bounded runs on the loopback, and its report parsed.

use std::process::Command;
use std::time::Duration;

use crate::error::BenchError;

/// One wrk run.
#[derive(Debug, Clone, PartialEq)]
pub struct WrkRun {
    /// Requests completed.
    pub requests: u64,
    /// Requests per second.
    pub rps: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Answers that were not 2xx or 3xx.
    pub non_2xx: u64,
    /// Connect, read, write errors and timeouts.
    pub socket_errors: u64,
}

/// How to load a URL.
#[derive(Debug, Clone)]
pub struct Load {
    /// Threads (`-t`).
    pub threads: u32,
    /// Connections (`-c`).
    pub connections: u32,
    /// Run time (`-d`).
    pub duration: Duration,
}

/// Finds `wrk` on the PATH.
pub fn binary() -> Result<std::path::PathBuf, BenchError> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("wrk"))
        .find(|p| p.is_file())
        .ok_or_else(|| BenchError::Missing {
            what: "`wrk`".to_owned(),
            hint: "run `make deps` (Debian package `wrk`)".to_owned(),
        })
}

/// Runs wrk against `url` for `load.duration` (a run cannot outlive its `-d` by much: wrk
/// stops by itself; its `--timeout` bounds each request).
pub fn run(url: &str, load: &Load) -> Result<WrkRun, BenchError> {
    let wrk = binary()?;
    let secs = load.duration.as_secs().max(1);
    let out = Command::new(wrk)
        .args(["-t", &load.threads.to_string()])
        .args(["-c", &load.connections.to_string()])
        .args(["-d", &format!("{secs}s")])
        .args(["--timeout", "5s", "--latency"])
        .arg(url)
        .output()
        .map_err(|e| BenchError::io("running wrk", e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(BenchError::Wrk(format!(
            "exited with {}: {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    parse(&text)
}

/// A wrk duration: `152.00us`, `1.03ms`, `2.50s`, `1.00m`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    // Seconds per unit; `us` and `ms` are tried before `s`, which they end with.
    const UNITS: [(&str, f64); 5] = [
        ("us", 1e-6),
        ("ms", 1e-3),
        ("s", 1.0),
        ("m", 60.0),
        ("h", 3600.0),
    ];
    let t = text.trim();
    let (number, scale) = UNITS
        .iter()
        .find_map(|&(unit, scale)| t.strip_suffix(unit).map(|n| (n, scale)))?;
    let v: f64 = number.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then(|| Duration::from_secs_f64(v * scale))
}

/// Parses wrk's report (with `--latency`).
pub fn parse(text: &str) -> Result<WrkRun, BenchError> {
    let mut requests = None;
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut non_2xx = 0;
    let mut socket_errors = 0;
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or_default();
        if line.contains(" requests in ") {
            requests = first.parse::<u64>().ok();
        } else if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if first == "50%" {
            p50 = words.next().and_then(parse_duration);
        } else if first == "99%" {
            p99 = words.next().and_then(parse_duration);
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            socket_errors = v
                .split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
        }
    }
    let missing = |what: &str| BenchError::Wrk(format!("no {what} in `{}`", text.trim()));
    Ok(WrkRun {
        requests: requests.ok_or_else(|| missing("request count"))?,
        rps: rps.ok_or_else(|| missing("Requests/sec"))?,
        p50: p50.ok_or_else(|| missing("50% latency"))?,
        p99: p99.ok_or_else(|| missing("99% latency"))?,
        non_2xx,
        socket_errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Running 5s test @ http://127.0.0.1:40000/
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.35us  201.11us   9.87ms   91.20%
    Req/Sec    19.71k   602.31    20.50k    84.00%
  Latency Distribution
     50%  780.00us
     75%  850.00us
     90%  0.95ms
     99%    1.63ms
  98123 requests in 5.00s, 9.08MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 9811
Requests/sec:  19624.60
Transfer/sec:      1.82MB
";

    #[test]
    fn parses_a_report() {
        let run = parse(SAMPLE).unwrap();
        assert_eq!(run.requests, 98_123);
        assert!((run.rps - 19_624.6).abs() < 1e-6);
        assert_eq!(run.p50, Duration::from_micros(780));
        assert_eq!(run.p99, Duration::from_micros(1630));
        assert_eq!(run.non_2xx, 9811);
        assert_eq!(run.socket_errors, 3);
    }

    #[test]
    fn a_truncated_report_is_an_error_naming_what_is_missing() {
        let err = parse("Running 5s test\n").unwrap_err().to_string();
        assert!(err.contains("no request count"), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2.50s"), Some(Duration::from_millis(2500)));
        assert_eq!(parse_duration("1.00m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("12us"), Some(Duration::from_micros(12)));
        assert_eq!(parse_duration("fast"), None);
    }
}
