//! `decide` as stored policies grow (10 of them apply to the sidecar), and compiling 10 000
//! policies. criterion prints the figures; the goals they are held to are in
//! docs/PERFORMANCE.md.

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "benchmark setup: a failure here is a broken benchmark, not a user error"
)]
use std::hint::black_box;

use boifi_core::compiled::{decide, CompiledPolicySet, SimpleRequest};
use boifi_core::identity::Identity;
use boifi_core::policy::{parse_policy_json, PolicyDocument};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

/// `total` policies, 10 of which select `frontend`; each has one rule matching
/// `POST /api/checkout` with header `x-user: test`, firing at `percentage`.
fn policies(total: usize, percentage: &str) -> Vec<PolicyDocument> {
    (0..total)
        .map(|i| {
            let service = if i % (total / 10).max(1) == 0 && i / (total / 10).max(1) < 10 {
                "frontend".to_string()
            } else {
                format!("svc-{i}")
            };
            parse_policy_json(&format!(
                r#"{{"metadata": {{"name": "policy-{i:05}"}},
                    "spec": {{"selector": {{"service": "{service}", "namespace": "demo"}},
                    "rules": [{{"match": {{"method": {{"exact": "POST"}}, "path": {{"prefix": "/api/"}},
                                           "headers": [{{"name": "x-user", "exact": "test"}}]}},
                               "fault": {{"percentage": {percentage}, "abort": {{"httpStatus": 503}}}}}}]}}}}"#
            ))
            .unwrap()
        })
        .collect()
}

fn bench_decide(c: &mut Criterion) {
    let identity = Identity::for_service("frontend", "demo");
    let matching = SimpleRequest::new("POST", "/api/checkout")
        .with_header("x-request-id", "abc")
        .with_header("x-user", "test");
    let other = SimpleRequest::new("GET", "/static/app.js");
    let mut group = c.benchmark_group("decide");
    for total in [10usize, 100, 1000, 10_000] {
        let set = CompiledPolicySet::from_documents(&policies(total, "0"), &identity, 0).unwrap();
        assert_eq!(set.rule_count(), 10);
        group.bench_with_input(
            BenchmarkId::new("10_applicable_all_match_none_fire", total),
            &set,
            |b, set| {
                let mut draw = 0u64;
                b.iter(|| {
                    draw = draw.wrapping_add(0x9E37_79B9);
                    black_box(decide(set, black_box(&matching), 0, draw))
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("10_applicable_no_match", total),
            &set,
            |b, set| b.iter(|| black_box(decide(set, black_box(&other), 0, 7))),
        );
    }
    let one = CompiledPolicySet::from_documents(&policies(10, "30")[..1], &identity, 0).unwrap();
    group.bench_function("1_policy_30pct", |b| {
        let mut draw = 0u64;
        b.iter(|| {
            draw = draw.wrapping_add(0x9E37_79B9);
            black_box(decide(&one, black_box(&matching), 0, draw))
        })
    });
    let empty = CompiledPolicySet::default();
    group.bench_function("no_policies", |b| {
        b.iter(|| black_box(decide(&empty, black_box(&matching), 0, 1)))
    });
    group.finish();
}

fn bench_compile(c: &mut Criterion) {
    let identity = Identity::for_service("frontend", "demo");
    let all = policies(10_000, "10");
    let mut group = c.benchmark_group("compile");
    group.sample_size(20);
    group.bench_function("10000_policies_10_apply", |b| {
        b.iter(|| {
            black_box(CompiledPolicySet::from_documents(black_box(&all), &identity, 0).unwrap())
        })
    });
    let wildcard = Identity::default();
    let mut everything = all.clone();
    for p in &mut everything {
        p.spec.selector.service = None;
        p.spec.selector.namespace = None;
    }
    group.bench_function("10000_policies_all_apply", |b| {
        b.iter(|| {
            black_box(
                CompiledPolicySet::from_documents(black_box(&everything), &wildcard, 0).unwrap(),
            )
        })
    });
    group.finish();
}

/// Worst cases for backtracking engines: a path of `/` + n × `a` + `!` never matches. The
/// engine is linear, so time grows with n alone (docs/RELIABILITY.md, ReDoS).
fn bench_redos(c: &mut Criterion) {
    let identity = Identity::default();
    let mut group = c.benchmark_group("redos");
    group.sample_size(10);
    for pattern in ["^/(a+)+$", "^/(a|aa)+$", "(a+)+$", "^/api/"] {
        let policy = parse_policy_json(&format!(
            r#"{{"metadata": {{"name": "redos"}}, "spec": {{"rules": [{{"match": {{"path": {{"regex": "{pattern}"}}}},
                "fault": {{"percentage": 100, "abort": {{"httpStatus": 503}}}}}}]}}}}"#
        ))
        .unwrap();
        let set = CompiledPolicySet::from_documents(&[policy], &identity, 0).unwrap();
        for n in [1_000usize, 10_000, 100_000, 1_000_000] {
            let path = format!("/{}!", "a".repeat(n));
            let request = SimpleRequest::new("GET", &path);
            group.bench_with_input(BenchmarkId::new(pattern, n), &request, |b, r| {
                b.iter(|| black_box(decide(&set, black_box(r), 0, 1)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_decide, bench_compile, bench_redos);
criterion_main!(benches);
