//! Model-based test: `CompiledPolicySet` + `decide` against a naive reference evaluator that
//! reads the documents directly, over random policies, identities, requests, times and draws.
//! The reference calls nothing of the implementation's decision: its draws ([`draws`]) are
//! written here from the definitions in boifi-core's doc comments, so a bug in
//! `rule_seed`, `rule_draw`, `fires` or `jittered_delay` makes the two disagree.

use std::collections::BTreeMap;

use boifi_core::compiled::{decide, CompiledPolicySet, RequestView, SimpleRequest};
use boifi_core::identity::Identity;
use boifi_core::policy::*;
use proptest::prelude::*;

const SERVICES: &[&str] = &["frontend", "cartservice", "checkoutservice"];
const NAMESPACES: &[&str] = &["demo", "prod"];
const PATHS: &[&str] = &["/", "/api", "/api/cart", "/api/cart?id=1", "/health"];
const BASE: u64 = 1_800_000_000_000;

fn pick(items: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(items).prop_map(String::from)
}

fn string_match() -> impl Strategy<Value = StringMatch> {
    prop_oneof![
        pick(&["/", "/api", "/api/cart", "GET", "POST", "a"]).prop_map(StringMatch::Exact),
        pick(&["/", "/api", "/h", "G", "", "b"]).prop_map(StringMatch::Prefix),
        pick(&["^/api/.*$", "cart", "^(GET|POST)$", "^a$", "."]).prop_map(StringMatch::Regex),
    ]
}

fn source_match() -> impl Strategy<Value = SourceMatch> {
    (
        prop::option::of(pick(SERVICES)),
        prop::option::of(pick(NAMESPACES)),
        prop::option::of(pick(&["frontend", "checkoutservice", "default"])),
    )
        .prop_map(|(service, namespace, service_account)| {
            let mut m = SourceMatch {
                service,
                namespace,
                service_account,
            };
            if m == SourceMatch::default() {
                m.namespace = Some("demo".into());
            }
            m
        })
}

fn request_match() -> impl Strategy<Value = RequestMatch> {
    (
        prop::option::of(string_match()),
        prop::option::of(string_match()),
        prop::collection::vec(
            (pick(&["x-user", "x-chaos"]), string_match())
                .prop_map(|(name, value)| HeaderMatch { name, value }),
            0..2,
        ),
        prop::option::of(source_match()),
    )
        .prop_map(|(method, path, headers, source)| {
            let mut m = RequestMatch {
                method,
                path,
                headers,
                source,
            };
            if m.method.is_none() && m.path.is_none() && m.headers.is_empty() && m.source.is_none()
            {
                m.path = Some(StringMatch::Prefix("/".into()));
            }
            m
        })
}

fn percentage() -> impl Strategy<Value = Percentage> {
    prop_oneof![
        Just(0u32),
        Just(1),
        Just(500_000),
        Just(999_999),
        Just(1_000_000),
        0u32..=1_000_000,
    ]
    .prop_map(|ppm| Percentage::from_ppm(ppm).unwrap())
}

fn fault() -> impl Strategy<Value = Fault> {
    (
        percentage(),
        prop_oneof![Just(0u64), 0u64..100],
        prop_oneof![Just(0u64), 1u64..5],
        prop::option::of((0u64..1000, 0u64..1000).prop_map(|(a, b)| Delay {
            fixed_delay_ms: a.max(b),
            jitter_ms: a.min(b),
        })),
        prop::option::of(
            (200u16..600, prop::option::of(0u8..=16)).prop_map(|(s, g)| Abort {
                http_status: s,
                grpc_status: g,
                body: None,
                headers: BTreeMap::new(),
            }),
        ),
        (prop::bool::ANY, prop::bool::weighted(0.2)),
    )
        .prop_map(
            |(percentage, start_delay_ms, duration_seconds, delay, abort, (response, reset))| {
                // A reset never goes with an abort; a fault needs an action.
                let reset = reset && abort.is_none();
                let abort = if delay.is_none() && abort.is_none() && !reset {
                    Some(Abort {
                        http_status: 503,
                        grpc_status: None,
                        body: None,
                        headers: BTreeMap::new(),
                    })
                } else {
                    abort
                };
                Fault {
                    percentage,
                    start_delay_ms,
                    duration_seconds,
                    target: if response {
                        FaultTarget::Response
                    } else {
                        FaultTarget::Request
                    },
                    delay,
                    abort,
                    reset,
                }
            },
        )
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(pick(&["version", "track"]), pick(&["v1", "v2"]), 0..2)
}

fn policy() -> impl Strategy<Value = PolicyDocument> {
    (
        "[a-z][a-z0-9-]{1,8}[a-z0-9]",
        prop::option::of(pick(SERVICES)),
        prop::option::of(pick(NAMESPACES)),
        labels(),
        prop::collection::vec(
            (request_match(), fault()).prop_map(|(matches, fault)| Rule { matches, fault }),
            1..4,
        ),
        prop::bool::ANY,
        prop::option::of((0u64..20_000, 1u64..20_000)),
        prop::option::of(0u64..10_000),
        (-2i32..3, prop::bool::weighted(0.8)),
        (prop::option::of(pick(NAMESPACES)), labels(), labels()),
    )
        .prop_map(
            |(
                name,
                service,
                namespace,
                labels,
                rules,
                by_request,
                window,
                stored,
                (priority, enabled),
                (meta_ns, meta_labels, notes),
            )| {
                PolicyDocument {
                    metadata: Metadata {
                        name,
                        version: None,
                        namespace: meta_ns,
                        labels: meta_labels,
                        annotations: notes,
                    },
                    spec: PolicySpec {
                        selector: Selector {
                            service,
                            namespace,
                            labels,
                        },
                        rules,
                        sampling: if by_request {
                            Sampling::Request
                        } else {
                            Sampling::Random
                        },
                        window: window.map(|(start, len)| Window {
                            start_ms: BASE + start,
                            end_ms: BASE + start + len,
                        }),
                        priority,
                        enabled,
                        heartbeat_seconds: stored.map(|at| at % 86_400 + 1),
                        guards: Vec::new(),
                    },
                    status: None,
                }
                .stored_opt(stored)
            },
        )
}

trait StoredOpt {
    fn stored_opt(self, at: Option<u64>) -> Self;
}
impl StoredOpt for PolicyDocument {
    fn stored_opt(self, at: Option<u64>) -> Self {
        match at {
            Some(at) => self.stored(BASE + at, 1),
            None => self,
        }
    }
}

fn identity() -> impl Strategy<Value = Identity> {
    (
        prop::option::of(pick(SERVICES)),
        prop::option::of(pick(NAMESPACES)),
        labels(),
    )
        .prop_map(|(service, namespace, labels)| Identity {
            service,
            namespace,
            pod: None,
            labels,
            ..Identity::default()
        })
}

fn request() -> impl Strategy<Value = SimpleRequest> {
    (
        pick(&["GET", "POST", "a"]),
        pick(PATHS),
        prop::option::of(pick(&["a", "b", "ab"])),
        prop::option::of(pick(&["id-1", "id-2"])),
        prop::option::of(pick(&[
            "spiffe://cluster.local/ns/demo/sa/frontend",
            "spiffe://cluster.local/ns/demo/sa/checkoutservice",
            "spiffe://cluster.local/ns/prod/sa/frontend",
            "spiffe://cluster.local/ns/demo/sa/cartservice",
            "spiffe://cluster.local/ns/prod/sa/default",
            "spiffe://other.domain/ns/demo/sa/frontend",
            "spiffe://cluster.local/ns/demo/sa/frontend/extra",
            "https://cluster.local/ns/demo/sa/frontend",
            "",
        ])),
    )
        .prop_map(|(method, path, user, id, san)| {
            let mut r = SimpleRequest::new(&method, &path);
            if let Some(san) = san {
                r = r.with_peer_uri_san(&san);
            }
            if let Some(u) = user {
                r = r.with_header("x-user", &u);
            }
            if let Some(id) = id {
                r = r.with_header("x-request-id", &id);
            }
            r
        })
}

/// The draws as boifi-core's doc comments define them, written independently of it.
mod draws {
    use boifi_core::policy::Sampling;

    /// SplitMix64's output for the state `x`: add the golden gamma, then the finalizer
    /// (Steele, Lea and Flood, 2014).
    pub fn splitmix64(x: u64) -> u64 {
        let z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// FNV-1a 64 with its offset basis xor'ed with `seed`.
    pub fn fnv1a64(bytes: &[u8], seed: u64) -> u64 {
        let mut hash = 0xcbf2_9ce4_8422_2325 ^ seed;
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x100_0000_01b3);
        }
        hash
    }

    /// `splitmix64(fnv1a64(name, 0) ^ rule_index)`.
    pub fn rule_seed(policy: &str, rule_index: usize) -> u64 {
        splitmix64(fnv1a64(policy.as_bytes(), 0) ^ rule_index as u64)
    }

    /// `request` sampling with a request id: `splitmix64(fnv1a64(id, seed))`; otherwise
    /// `splitmix64(draw ^ seed)`.
    pub fn rule_draw(sampling: Sampling, seed: u64, draw: u64, request_id: Option<&[u8]>) -> u64 {
        match (sampling, request_id) {
            (Sampling::Request, Some(id)) => splitmix64(fnv1a64(id, seed)),
            _ => splitmix64(draw ^ seed),
        }
    }

    /// The draw as a fraction of 2^64 is below `ppm` in a million: `draw / 2^64 < ppm / 10^6`.
    pub fn fires(rule_draw: u64, ppm: u32) -> bool {
        u128::from(rule_draw) * 1_000_000 < u128::from(ppm) << 64
    }

    /// The whole parts per million below the draw's fraction of 2^64: the draw fires at any
    /// rate above this, at none up to it.
    pub fn ppm_below(rule_draw: u64) -> u32 {
        u32::try_from((u128::from(rule_draw) * 1_000_000) >> 64).unwrap()
    }

    /// `fixed − jitter + splitmix64(rule_draw) % (2 × jitter + 1)`, floored at 0.
    pub fn jittered_delay(fixed: u64, jitter: u64, rule_draw: u64) -> u64 {
        let offset = splitmix64(rule_draw) % (2 * jitter + 1);
        u64::try_from((i128::from(fixed) - i128::from(jitter) + i128::from(offset)).max(0)).unwrap()
    }
}

#[test]
fn the_model_hashes_match_their_published_vectors() {
    // SplitMix64 from seed 0 (the reference C code's first output); FNV-1a 64 of "" and "a".
    assert_eq!(draws::splitmix64(0), 0xe220_a839_7b1d_cdaf);
    assert_eq!(draws::fnv1a64(b"", 0), 0xcbf2_9ce4_8422_2325);
    assert_eq!(draws::fnv1a64(b"a", 0), 0xaf63_dc4c_8601_ec8c);
    // The rate boundary: the smallest draw of each ppm step fires above it, not at it.
    let step = |ppm: u64| u64::try_from((u128::from(ppm) << 64).div_ceil(1_000_000)).unwrap();
    assert!(!draws::fires(step(1), 1) && draws::fires(step(1), 2));
    assert!(draws::fires(step(1) - 1, 1) && !draws::fires(0, 0));
    assert_eq!(draws::jittered_delay(10, 0, 5), 10);
}

/// The draw rule `i` of policy `p` makes for `request`, in the model.
fn model_rule_draw(p: &PolicyDocument, i: usize, request: &SimpleRequest, draw: u64) -> u64 {
    let id = (p.spec.sampling == Sampling::Request)
        .then(|| request.header("x-request-id"))
        .flatten();
    draws::rule_draw(
        p.spec.sampling,
        draws::rule_seed(&p.metadata.name, i),
        draw,
        id,
    )
}

/// The reference: straight from the documents, no precompilation, no filtering ahead.
fn reference(
    policies: &[PolicyDocument],
    identity: &Identity,
    request: &SimpleRequest,
    compiled_at: u64,
    now: u64,
    draw: u64,
) -> Option<(String, usize, u64, Option<u16>)> {
    // Disabled policies never act; the higher priority goes first, names break ties.
    let mut sorted: Vec<&PolicyDocument> = policies.iter().filter(|p| p.spec.enabled).collect();
    sorted.sort_by_key(|p| (std::cmp::Reverse(p.spec.priority), p.metadata.name.clone()));
    let named = |want: &Option<String>, have: &Option<String>| {
        want.is_none() || (have.is_some() && want == have)
    };
    // The caller, read the slow way: split the SAN and compare every part.
    let caller: Option<(String, String)> = request.peer_uri_san.as_deref().and_then(|san| {
        let rest = san.strip_prefix("spiffe://cluster.local/")?;
        match rest.split('/').collect::<Vec<_>>().as_slice() {
            ["ns", ns, "sa", sa] if !ns.is_empty() && !sa.is_empty() => {
                Some((ns.to_string(), sa.to_string()))
            }
            _ => None,
        }
    });
    let source_holds = |m: &SourceMatch| {
        caller.as_ref().is_some_and(|(ns, sa)| {
            m.namespace.as_ref().is_none_or(|want| want == ns)
                && m.service_account
                    .as_ref()
                    .or(m.service.as_ref())
                    .is_none_or(|want| want == sa)
        })
    };
    let is_match = |m: &StringMatch, v: &str| match m {
        StringMatch::Exact(s) => v == s,
        StringMatch::Prefix(s) => v.starts_with(s.as_str()),
        StringMatch::Regex(r) => regex::Regex::new(r).unwrap().is_match(v),
    };
    for p in sorted {
        let sel = &p.spec.selector;
        if !(named(&sel.service, &identity.service)
            && named(&sel.namespace, &identity.namespace)
            && sel
                .labels
                .iter()
                .all(|(k, v)| identity.labels.get(k) == Some(v)))
        {
            continue;
        }
        let stored = p.status.map_or(compiled_at, |s| s.stored_at_ms);
        for (i, rule) in p.spec.rules.iter().enumerate() {
            if let Some(w) = p.spec.window {
                if now < w.start_ms || now >= w.end_ms {
                    continue;
                }
            }
            let d = rule.fault.duration_seconds;
            if d > 0 && (now >= stored + d * 1000 || compiled_at >= stored + d * 1000) {
                continue;
            }
            let path = request.path.split('?').next().unwrap();
            let m = &rule.matches;
            if m.method
                .as_ref()
                .is_some_and(|x| !is_match(x, &request.method))
                || m.path.as_ref().is_some_and(|x| !is_match(x, path))
                || !m.headers.iter().all(|h| {
                    request
                        .header(&h.name)
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .is_some_and(|v| is_match(&h.value, v))
                })
                || m.source.as_ref().is_some_and(|x| !source_holds(x))
            {
                continue;
            }
            let rd = model_rule_draw(p, i, request, draw);
            if !draws::fires(rd, rule.fault.percentage.ppm()) {
                continue;
            }
            let wait = rule.fault.start_delay_ms
                + rule.fault.delay.as_ref().map_or(0, |d| {
                    draws::jittered_delay(d.fixed_delay_ms, d.jitter_ms, rd)
                });
            return Some((
                p.metadata.name.clone(),
                i,
                wait,
                rule.fault.abort.as_ref().map(|a| a.http_status),
            ));
        }
    }
    None
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn compiled_decide_agrees_with_reference(
        mut policies in prop::collection::vec(policy(), 0..6),
        identity in identity(),
        request in request(),
        compiled_offset in 0u64..12_000,
        now_offset in 0u64..25_000,
        draw in any::<u64>(),
    ) {
        // Names are unique in a store.
        let mut seen = std::collections::BTreeSet::new();
        policies.retain(|p| seen.insert(p.metadata.name.clone()));
        let compiled_at = BASE + compiled_offset;
        let now = compiled_at + now_offset;
        let set = CompiledPolicySet::from_documents(&policies, &identity, compiled_at).unwrap();
        let got = decide(&set, &request, now, draw)
            .map(|d| (d.policy.to_string(), d.rule_index, d.total_wait_ms(), d.abort.map(|a| a.http_status)));
        let want = reference(&policies, &identity, &request, compiled_at, now, draw);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn no_leakage_across_services(
        policies in prop::collection::vec(policy(), 1..6),
        request in request(),
        draw in any::<u64>(),
    ) {
        // Every policy names frontend; a cartservice sidecar never gets any of them.
        let policies: Vec<PolicyDocument> = policies.into_iter().map(|mut p| {
            p.spec.selector.service = Some("frontend".into());
            p
        }).collect();
        let identity = Identity::for_service("cartservice", "demo");
        let set = CompiledPolicySet::from_documents(&policies, &identity, BASE).unwrap();
        prop_assert!(set.is_empty());
        prop_assert!(decide(&set, &request, BASE, draw).is_none());
        // And a sidecar that does not know its service gets none of them either.
        let partial = Identity { service: None, ..Identity::for_service("x", "demo") };
        prop_assert!(CompiledPolicySet::from_documents(&policies, &partial, BASE).unwrap().is_empty());
    }

    #[test]
    fn zero_never_fires_and_hundred_always_fires(draw in any::<u64>(), seed in any::<u64>(), by_request in any::<bool>(), id in "[a-z0-9-]{0,20}") {
        let doc = |name: &str, ppm: u32| PolicyDocument {
            metadata: Metadata { name: name.into(), version: None, namespace: None, labels: BTreeMap::new(), annotations: BTreeMap::new() },
            spec: PolicySpec {
                selector: Selector::default(),
                rules: vec![Rule {
                    matches: RequestMatch { path: Some(StringMatch::Prefix("/".into())), ..Default::default() },
                    fault: Fault { percentage: Percentage::from_ppm(ppm).unwrap(), start_delay_ms: 0, duration_seconds: 0, target: FaultTarget::Request, delay: None,
                        abort: Some(Abort { http_status: 503, grpc_status: None, body: None, headers: BTreeMap::new() }), reset: false },
                }],
                sampling: if by_request { Sampling::Request } else { Sampling::Random },
                window: None,
                priority: 0,
                enabled: true,
                heartbeat_seconds: None,
                guards: Vec::new(),
            },
            status: None,
        };
        let request = SimpleRequest::new("GET", "/").with_header("x-request-id", &id);
        let never = CompiledPolicySet::from_documents(&[doc("never", 0)], &Identity::default(), 0).unwrap();
        let always = CompiledPolicySet::from_documents(&[doc("always", 1_000_000)], &Identity::default(), 0).unwrap();
        prop_assert!(decide(&never, &request, 0, draw).is_none());
        prop_assert!(decide(&always, &request, 0, draw).is_some());
        prop_assert!(decide(&always, &request, 0, seed).is_some());
    }

    #[test]
    fn serialize_then_parse_round_trips(policy in policy()) {
        let json = serde_json::to_string(&policy).unwrap();
        let back: PolicyDocument = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&back, &policy);
        let yaml = serde_norway::to_string(&policy).unwrap();
        let back = parse_policies_yaml(&yaml).unwrap();
        prop_assert_eq!(&back[0], &policy);
    }

    /// The compact `/v1/config` answer carries exactly the sidecar form of the JSON one's
    /// policies, and every proxy decodes what the server encodes.
    #[test]
    fn compact_config_agrees_with_json(
        policies in prop::collection::vec(policy(), 0..4),
        version in any::<u64>(),
    ) {
        use boifi_core::wire::compact::{self, SidecarConfig};
        use boifi_core::wire::ConfigResponse;
        let response = ConfigResponse { version, policies };
        let from_json: ConfigResponse =
            serde_json::from_str(&serde_json::to_string(&response).unwrap()).unwrap();
        let sent = SidecarConfig::from_documents(version, &response.policies).unwrap();
        let from_compact = compact::decode(&compact::encode(&sent)).unwrap();
        prop_assert_eq!(&from_compact, &sent);
        prop_assert_eq!(
            &from_compact,
            &SidecarConfig::from_documents(version, &from_json.policies).unwrap()
        );
    }

    #[test]
    fn request_sampling_is_stable_per_request_id(
        policy in policy(),
        id in "[a-zA-Z0-9-]{1,36}",
        draw_a in any::<u64>(),
        draw_b in any::<u64>(),
    ) {
        let mut policy = policy;
        policy.spec.sampling = Sampling::Request;
        policy.spec.window = None;
        policy.spec.selector = Selector::default();
        policy.status = None;
        let set = CompiledPolicySet::from_documents(std::slice::from_ref(&policy), &Identity::default(), 0).unwrap();
        for path in PATHS {
            let request = SimpleRequest::new("GET", path).with_header("x-request-id", &id);
            let a = decide(&set, &request, 0, draw_a).map(|d| (d.rule_index, d.total_wait_ms()));
            let b = decide(&set, &request, 0, draw_b).map(|d| (d.rule_index, d.total_wait_ms()));
            prop_assert_eq!(a, b);
        }
    }
}

proptest! {
    // Every case with `one_more` false catches a `fires` that fires at its edge: few suffice.
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// At the edge of its rate: a rule whose percentage is exactly the whole ppm below its
    /// draw does not fire, one ppm more does, as the model says (random percentages almost
    /// never land on this edge).
    #[test]
    fn a_rule_fires_exactly_above_its_draw(
        policy in policy(),
        request in request(),
        draw in any::<u64>(),
        one_more in any::<bool>(),
    ) {
        let mut policy = policy;
        policy.spec.enabled = true;
        policy.spec.selector = Selector::default();
        policy.spec.window = None;
        policy.status = None;
        policy.spec.rules.truncate(1);
        let rule = &mut policy.spec.rules[0];
        rule.matches = RequestMatch { path: Some(StringMatch::Prefix("/".into())), ..Default::default() };
        rule.fault.duration_seconds = 0;
        let edge = draws::ppm_below(model_rule_draw(&policy, 0, &request, draw));
        let ppm = edge + u32::from(one_more);
        policy.spec.rules[0].fault.percentage = Percentage::from_ppm(ppm).unwrap();
        let policies = [policy];
        let set = CompiledPolicySet::from_documents(&policies, &Identity::default(), BASE).unwrap();
        let got = decide(&set, &request, BASE, draw)
            .map(|d| (d.policy.to_string(), d.rule_index, d.total_wait_ms(), d.abort.map(|a| a.http_status)));
        let want = reference(&policies, &Identity::default(), &request, BASE, BASE, draw);
        prop_assert_eq!(want.is_some(), one_more, "the model fires above the edge only");
        prop_assert_eq!(got, want);
    }
}
