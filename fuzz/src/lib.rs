//! boifi's fuzz properties, one function per target. Each takes the fuzzer's bytes and panics
//! only when the property it is named after is broken, so the libFuzzer entry points in
//! `fuzz_targets/` stay one line each.
//!
//! - [`policy_parse_never_panics_and_round_trips`]: policy YAML and JSON parsing never panics,
//!   and every document it accepts serializes (to JSON and to YAML) and parses back equal.
//! - [`decide_never_panics`]: compiling arbitrary policy documents (built in code, so the
//!   validation of the parsers is bypassed) and deciding arbitrary requests at arbitrary times
//!   with arbitrary draws never panics, is deterministic, and only ever fires a rule that is
//!   live, matching and not at 0 %.
//! - [`plugin_config_never_panics`]: the filter's `pluginConfig` parsing never panics and
//!   accepted configurations round-trip.
//! - [`config_response_never_panics`]: `/v1/config` answers as the filter reads them
//!   (`boifi_engine::sync::classify`, `compile_body`) and the shared-data encodings the filter
//!   decodes never panic; accepted responses round-trip.
//! - [`compact_config_never_panics_and_round_trips`]: the compact `/v1/config` answer
//!   (`boifi_core::wire::compact::decode`, version 3, what every proxy reads) never panics on
//!   any bytes, nothing out of range decodes (the bounds the engine relies on, restated in the
//!   target), an accepted answer encodes and decodes back to itself, and it compiles and
//!   decides requests with arbitrary values (its pattern programs run on them).
//! - [`pattern_program_never_panics`]: `pattern::Program::decode` never panics on any bytes,
//!   an accepted program round-trips, and running it on an arbitrary value stays within the
//!   linear bound (a hostile program can neither loop nor read out of bounds).
//! - [`config_query_never_panics`]: `ConfigQuery::from_pairs` never panics and accepted
//!   queries survive `to_query_string` and back.
//! - [`filter_glue_never_panics`]: the proxy-wasm glue (`boifi_wasm::filter::Filter`), driven
//!   through a sequence of host callbacks chosen by the fuzzer, against a fake host that
//!   answers every host call with arbitrary bytes, lengths, statuses and failures, never panics
//!   (and never overflows: the fuzz profile checks arithmetic).

use std::collections::BTreeMap;

use arbitrary::{Arbitrary, Result as ArbResult, Unstructured};
use boifi_core::compiled::{decide, CompiledPolicySet, SimpleRequest};
use boifi_core::identity::{Identity, PeerIdentity};
use boifi_core::policy::{
    parse_policies_json, parse_policies_text, parse_policies_yaml, parse_policy_json, Abort, Delay,
    Fault, FaultTarget, HeaderMatch, Metadata, Percentage, PolicyDocument, PolicySpec,
    RequestMatch, Rule, Sampling, Selector, SourceMatch, StringMatch, Window, PPM_SCALE,
};
use boifi_core::wire::compact::SidecarConfig;
use boifi_core::wire::{ConfigQuery, ConfigResponse, PluginConfig};

// ---------------------------------------------------------------------------------------------
// policy parsing

/// See the crate docs.
pub fn policy_parse_never_panics_and_round_trips(data: &[u8]) {
    // Half of the inputs (first byte odd) are generated documents, mostly valid, so the
    // round-trip half of the property sees more than the few documents mutation finds.
    if let Some((&first, rest)) = data.split_first() {
        if first & 1 == 1 {
            let mut u = Unstructured::new(rest);
            if let Ok(doc) = arbitrary_document(&mut u) {
                let value = document_json(&doc);
                if let Ok(parsed) = PolicyDocument::from_value(&value) {
                    assert_round_trips(&parsed);
                }
                return;
            }
        }
    }
    let text = String::from_utf8_lossy(data);
    for result in [
        parse_policies_yaml(&text),
        parse_policies_json(&text),
        parse_policies_text(&text),
    ] {
        match result {
            Ok(docs) => docs.iter().for_each(assert_round_trips),
            Err(errors) => errors.iter().for_each(|e| drop(e.to_string())),
        }
    }
    match parse_policy_json(&text) {
        Ok(doc) => assert_round_trips(&doc),
        Err(e) => drop(e.to_string()),
    }
}

fn assert_round_trips(doc: &PolicyDocument) {
    let json = serde_json::to_string(doc).unwrap_or_else(|e| fail("serialize to json", &e, doc));
    let back = parse_policy_json(&json).unwrap_or_else(|e| fail("re-parse json", &e, &json));
    assert_eq!(&back, doc, "json round trip changed the document: {json}");
    let yaml = serde_norway::to_string(doc).unwrap_or_else(|e| fail("serialize to yaml", &e, doc));
    let back = parse_policies_yaml(&yaml).unwrap_or_else(|e| fail("re-parse yaml", &e, &yaml));
    assert_eq!(
        back.as_slice(),
        core::slice::from_ref(doc),
        "yaml round trip: {yaml}"
    );
}

#[track_caller]
fn fail<T>(what: &str, error: &dyn std::fmt::Debug, input: &dyn std::fmt::Debug) -> T {
    panic!("{what} failed: {error:?}\ninput: {input:?}")
}

// ---------------------------------------------------------------------------------------------
// decide

/// See the crate docs.
pub fn decide_never_panics(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let _ = decide_case(&mut u);
}

fn decide_case(u: &mut Unstructured<'_>) -> ArbResult<()> {
    let count = u.int_in_range(0..=4)?;
    let mut docs = Vec::with_capacity(count);
    for _ in 0..count {
        let doc = arbitrary_document(u)?;
        // The store keys policies by name: a set never holds two with one name.
        if docs.iter().all(|d: &PolicyDocument| d.name() != doc.name()) {
            docs.push(doc);
        }
    }
    let identity = arbitrary_identity(u)?;
    let compile_at = arbitrary_time(u)?;
    let set = match CompiledPolicySet::from_documents(&docs, &identity, compile_at) {
        Ok(set) => set,
        Err(e) => {
            drop(e.to_string());
            return Ok(());
        }
    };
    assert!(set.policy_names().len() <= docs.len());
    let requests = u.int_in_range(1..=8)?;
    for _ in 0..requests {
        let request = arbitrary_request(u)?;
        let now = if u.arbitrary()? {
            compile_at.saturating_add(u.int_in_range(0..=3_600_000)?)
        } else {
            arbitrary_time(u)?
        };
        let draw: u64 = u.arbitrary()?;
        let _ = set.active_policy_count(now);
        let matching: Vec<(&str, usize)> = set
            .matching_rules(&request, now)
            .map(|m| (m.policy, m.rule_index))
            .collect();
        let decision = decide(&set, &request, now, draw);
        assert_eq!(
            decision,
            decide(&set, &request, now, draw),
            "decide is not deterministic"
        );
        let Some(decision) = decision else { continue };
        let _ = decision.total_wait_ms();
        if let Some(abort) = decision.abort {
            let _ = abort.grpc_status_for_grpc_request();
        }
        assert!(
            matching
                .iter()
                .any(|&(p, r)| p == decision.policy && r == decision.rule_index),
            "decided rule {}[{}] is not among the matching rules",
            decision.policy,
            decision.rule_index
        );
        let doc = docs
            .iter()
            .find(|d| d.name() == decision.policy)
            .unwrap_or_else(|| fail("find decided policy", &decision, &docs));
        assert!(
            doc.applies_to(&identity),
            "fired a policy not selecting {identity:?}"
        );
        let rule = doc
            .spec
            .rules
            .get(decision.rule_index)
            .unwrap_or_else(|| fail("find decided rule", &decision, doc));
        assert_ne!(rule.fault.percentage.ppm(), 0, "a 0 % rule fired");
        if let Some(source) = &rule.matches.source {
            // Only a caller whose certificate names it, in the mesh's trust domain, matches.
            let caller = request
                .peer_uri_san
                .as_deref()
                .and_then(|san| PeerIdentity::parse(san.as_bytes()))
                .filter(|p| p.trust_domain == set.trust_domain())
                .unwrap_or_else(|| {
                    fail("a source rule fired for an unknown caller", &request, rule)
                });
            assert!(source
                .namespace
                .as_deref()
                .is_none_or(|n| n == caller.namespace));
            assert!(source
                .required_service_account()
                .is_none_or(|a| a == caller.service_account));
        }
        let stored_at = doc.status.map_or(compile_at, |s| s.stored_at_ms);
        if let Some(end) = rule.expires_at_ms(stored_at) {
            assert!(now < end, "rule expired at {end} fired at {now}");
        }
        if let Some(w) = doc.spec.window {
            assert!(
                w.start_ms <= now && now < w.end_ms,
                "fired outside its window"
            );
        }
        assert_eq!(decision.start_delay_ms, rule.fault.start_delay_ms);
        match (&rule.fault.delay, decision.delay_ms) {
            (Some(d), Some(ms)) => {
                assert!(ms >= d.fixed_delay_ms.saturating_sub(d.jitter_ms));
                assert!(ms <= d.fixed_delay_ms.saturating_add(d.jitter_ms));
            }
            (None, None) => {}
            other => panic!("delay of the decision does not match the rule: {other:?}"),
        }
        assert_eq!(decision.abort.is_some(), rule.fault.abort.is_some());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// the filter's configuration and its /v1/config answers

/// See the crate docs.
pub fn plugin_config_never_panics(data: &[u8]) {
    match PluginConfig::from_json(data) {
        Ok(config) => {
            let json =
                serde_json::to_vec(&config).unwrap_or_else(|e| fail("serialize", &e, &config));
            let back = PluginConfig::from_json(&json)
                .unwrap_or_else(|e| fail("re-parse", &e, &String::from_utf8_lossy(&json)));
            assert_eq!(back, config);
            let _ = config.identity.apply(Identity::default());
        }
        Err(e) => drop(e.to_string()),
    }
}

/// See the crate docs.
pub fn config_response_never_panics(data: &[u8]) {
    use boifi_engine::sync;
    use boifi_wasm::{props, shared};

    let identities = [
        Identity::for_service("frontend", "demo"),
        Identity::default(),
    ];
    if let Ok(response) = serde_json::from_slice::<ConfigResponse>(data) {
        let json =
            serde_json::to_vec(&response).unwrap_or_else(|e| fail("serialize", &e, &response));
        let back: ConfigResponse = serde_json::from_slice(&json)
            .unwrap_or_else(|e| fail("re-parse", &e, &String::from_utf8_lossy(&json)));
        assert_eq!(back, response);
        // Policies the server sends were validated when they were written: their sidecar
        // form builds (their regexes compile) and compiles.
        let sidecar = SidecarConfig::from_documents(response.version, &response.policies)
            .unwrap_or_else(|e| fail("build the sidecar form", &e, &response));
        for identity in &identities {
            if let Err(e) = sync::compile_response(sidecar.clone(), identity, 0, u64::MAX) {
                panic!("a parsed config response did not compile: {e}");
            }
        }
    }
    let statuses: [Option<&[u8]>; 6] = [
        Some(b"200"),
        Some(b"304"),
        Some(b"503"),
        Some(b" 200 "),
        Some(data),
        None,
    ];
    for status in statuses {
        match sync::classify(status, Some(data)) {
            Ok(_) => {}
            Err(e) => drop(e.to_string()),
        }
    }
    for identity in &identities {
        if let Err(e) = sync::compile_body(data, &[], identity, u64::MAX, u64::MAX) {
            drop(e.to_string());
        }
    }
    // Bytes the filter reads from Envoy or from shared data written by another VM.
    let _ = props::decode_pairs(data);
    let _ = shared::decode_seq(data);
    let _ = shared::Lease::decode(data);
    if let Some(published) = shared::Published::decode(data) {
        assert_eq!(published.encode(), data);
    }
}

/// See the crate docs.
pub fn compact_config_never_panics_and_round_trips(data: &[u8]) {
    use boifi_core::wire::compact;
    let config = match compact::decode(data) {
        Ok(config) => config,
        Err(e) => {
            assert!(
                e.offset() <= data.len(),
                "{e:?} beyond {} bytes",
                data.len()
            );
            drop(e.to_string());
            return;
        }
    };
    for policy in &config.policies {
        assert_within_bounds(policy);
    }
    let encoded = compact::encode(&config);
    let back = compact::decode(&encoded).unwrap_or_else(|e| fail("re-decode", &e, &encoded));
    assert_eq!(back, config);
    // The values the decoded matchers see: taken from the input, so they vary with it.
    let text = String::from_utf8_lossy(data);
    let values: Vec<&str> = text.split('\0').take(4).collect();
    for identity in [
        Identity::for_service("frontend", "demo"),
        Identity::default(),
    ] {
        let set = CompiledPolicySet::compile(&config.policies, &identity, 0);
        if let Err(e) = boifi_engine::sync::compile_body(data, &[], &identity, 0, u64::MAX) {
            drop(e.to_string());
        }
        for value in &values {
            let request = SimpleRequest::new(value, value)
                .with_header("x-user", value)
                .with_header("x-request-id", value);
            let _ = decide(&set, &request, 0, 0);
            let _ = decide(&set, &request, u64::MAX, u64::MAX);
        }
    }
    for policy in &config.policies {
        for rule in &policy.rules {
            let matchers = rule
                .method
                .iter()
                .chain(&rule.path)
                .chain(rule.headers.iter().map(|(_, m)| m));
            for matcher in matchers {
                if let boifi_core::compiled::Matcher::Program(pattern) = matcher {
                    for value in &values {
                        assert_linear(pattern, value);
                    }
                }
            }
        }
    }
}

/// The bounds the engine relies on, written out independently of the decoder.
fn assert_within_bounds(policy: &boifi_core::compiled::SidecarPolicy) {
    assert!(policy.rules.len() <= 64, "{} rules", policy.rules.len());
    assert!(
        policy
            .heartbeat_seconds
            .is_none_or(|h| (1..=86_400).contains(&h)),
        "heartbeat {:?}",
        policy.heartbeat_seconds
    );
    for rule in &policy.rules {
        assert!(
            rule.headers.len() <= 32,
            "{} header matches",
            rule.headers.len()
        );
        assert!(rule.percentage.ppm() <= PPM_SCALE, "{:?}", rule.percentage);
        assert!(
            rule.start_delay_ms <= 300_000,
            "start_delay_ms {}",
            rule.start_delay_ms
        );
        assert!(
            rule.duration_seconds <= 30 * 24 * 3600,
            "duration {}",
            rule.duration_seconds
        );
        if let Some(d) = &rule.delay {
            assert!(
                d.fixed_delay_ms <= 300_000 && d.jitter_ms <= 300_000,
                "{d:?}"
            );
        }
        for (name, _) in &rule.headers {
            assert!(
                !name.is_empty() && !name.bytes().any(|b| b.is_ascii_uppercase()),
                "{name:?}"
            );
        }
        if let Some(a) = &rule.abort {
            assert!((200..=599).contains(&a.http_status), "{a:?}");
            assert!(a.grpc_status.is_none_or(|g| g <= 16), "{a:?}");
            assert!(a.body.len() <= 16 * 1024, "body");
            assert!(a.headers.len() <= 32, "{} abort headers", a.headers.len());
            for (name, value) in &a.headers {
                assert!(!name.starts_with(':') && !name.is_empty(), "{name:?}");
                assert!(!value.contains(['\r', '\n', '\0']), "{value:?}");
            }
        }
    }
}

/// A search of `value` costs at most (2 × instructions + 1) × (characters + 2) visits.
fn assert_linear(pattern: &boifi_core::pattern::Pattern, value: &str) {
    let cost = pattern.cost(value);
    let bound = (2 * pattern.instructions() as u64 + 1) * (value.chars().count() as u64 + 2);
    assert!(
        cost <= bound,
        "{cost} visits over the bound {bound} on {value:?}"
    );
    assert_eq!(pattern.is_match(value), pattern.is_match(value));
}

/// See the crate docs.
pub fn pattern_program_never_panics(data: &[u8]) {
    use boifi_core::pattern::{Pattern, Program};
    // The first two bytes say where the program ends; the rest is the value it runs on.
    let Some((&[hi, lo], rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let split = usize::from(u16::from_be_bytes([hi, lo])).min(rest.len());
    let (bytes, value) = rest.split_at(split);
    let program = match Program::decode(bytes) {
        Ok(program) => program,
        Err(e) => {
            assert!(
                e.offset() <= bytes.len(),
                "{e} beyond {} bytes",
                bytes.len()
            );
            drop(e.to_string());
            return;
        }
    };
    let mut encoded = Vec::new();
    program.encode(&mut encoded);
    let back = Program::decode(&encoded).unwrap_or_else(|e| fail("re-decode", &e, &encoded));
    assert_eq!(back, program);
    let pattern = Pattern::from_program(program);
    let value = String::from_utf8_lossy(value);
    assert_linear(&pattern, &value);
}

/// See the crate docs.
pub fn config_query_never_panics(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let pairs: Vec<(&str, &str)> = text
        .split('&')
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    let Ok(query) = ConfigQuery::from_pairs(pairs.iter().copied()).map_err(|e| e.to_string())
    else {
        return;
    };
    let encoded = query.to_query_string();
    let decoded: Vec<(String, String)> = encoded
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let back = ConfigQuery::from_pairs(decoded.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .unwrap_or_else(|e| fail("re-parse", &e, &encoded));
    assert_eq!(back, query, "query string: {encoded}");
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// generators: small alphabets so that names, selectors and headers collide often

const WORDS: &[&str] = &[
    "frontend", "cart", "demo", "v1", "v2", "", "*", "x-user", "GET", "/",
];

fn word(u: &mut Unstructured<'_>) -> ArbResult<String> {
    if u.ratio(1, 8)? {
        return String::arbitrary(u);
    }
    Ok((*u.choose(WORDS)?).to_owned())
}

/// A word, or none (one flag first, as a field that may be absent).
fn maybe_word(u: &mut Unstructured<'_>) -> ArbResult<Option<String>> {
    Ok(if u.arbitrary()? { Some(word(u)?) } else { None })
}

fn arbitrary_time(u: &mut Unstructured<'_>) -> ArbResult<u64> {
    Ok(match u.int_in_range(0..=3)? {
        0 => 0,
        1 => u64::MAX - u.int_in_range(0..=2)?,
        2 => 1_700_000_000_000 + u.int_in_range(0..=10_000_000)?,
        _ => u.arbitrary()?,
    })
}

fn arbitrary_ms(u: &mut Unstructured<'_>) -> ArbResult<u64> {
    Ok(match u.int_in_range(0..=3)? {
        0 => 0,
        1 => u.int_in_range(0..=300_000)?,
        2 => u64::MAX,
        _ => u.arbitrary()?,
    })
}

fn string_match(u: &mut Unstructured<'_>) -> ArbResult<StringMatch> {
    let text = if u.ratio(1, 2)? {
        (*u.choose(&["/api", "GET", "v1", "^/a.*b$", "(a+)+$", "[", "\\p{L}+", ""])?).to_owned()
    } else {
        word(u)?
    };
    Ok(match u.int_in_range(0..=2)? {
        0 => StringMatch::Exact(text),
        1 => StringMatch::Prefix(text),
        _ => StringMatch::Regex(text),
    })
}

fn arbitrary_identity(u: &mut Unstructured<'_>) -> ArbResult<Identity> {
    // Fields are evaluated in the order written: the input is read as before.
    let mut identity = Identity {
        service: maybe_word(u)?,
        namespace: maybe_word(u)?,
        pod: maybe_word(u)?,
        ..Identity::default()
    };
    for _ in 0..u.int_in_range(0..=2)? {
        identity.labels.insert(word(u)?, word(u)?);
    }
    Ok(identity)
}

fn arbitrary_request(u: &mut Unstructured<'_>) -> ArbResult<SimpleRequest> {
    let method = if u.ratio(3, 4)? {
        "GET".to_owned()
    } else {
        word(u)?
    };
    let mut path = (*u.choose(&["/", "/api", "/api/x?y=1", "/ab", ""])?).to_owned();
    if u.ratio(1, 4)? {
        path.push_str(&word(u)?);
    }
    let mut request = SimpleRequest::new(&method, &path);
    for _ in 0..u.int_in_range(0..=3)? {
        let name = if u.arbitrary()? {
            "x-request-id".to_owned()
        } else {
            word(u)?
        };
        request = request.with_header(&name, &word(u)?);
    }
    // The caller's certificate: mostly well-formed mesh IDs, sometimes anything at all.
    if u.arbitrary()? {
        let namespace = *u.choose(&["demo", "prod", ""])?;
        let account = *u.choose(&["frontend", "checkoutservice", "default", ""])?;
        let domain = *u.choose(&["cluster.local", "other.domain", "Cluster.Local"])?;
        let san = match u.int_in_range(0..=3)? {
            0 => word(u)?,
            1 => format!("spiffe://{domain}/ns/{namespace}/sa/{account}/{}", word(u)?),
            _ => boifi_core::identity::spiffe_id(domain, namespace, account),
        };
        request = request.with_peer_uri_san(&san);
    }
    Ok(request)
}

/// A policy document built in code: mostly within the validated ranges, sometimes not.
fn arbitrary_document(u: &mut Unstructured<'_>) -> ArbResult<PolicyDocument> {
    let name = (*u.choose(&[
        "abc",
        "frontend-abort",
        "cart-delay",
        "a_b-c",
        "zz9",
        "frontend.v2",
        "Legacy_Name",
    ])?)
    .to_owned();
    let mut selector = Selector {
        service: maybe_word(u)?,
        namespace: maybe_word(u)?,
        ..Selector::default()
    };
    for _ in 0..u.int_in_range(0..=2)? {
        selector.labels.insert(word(u)?, word(u)?);
    }
    let mut rules = Vec::new();
    for _ in 0..u.int_in_range(1..=4)? {
        let mut matches = RequestMatch::default();
        if u.arbitrary()? {
            matches.method = Some(string_match(u)?);
        }
        if u.arbitrary()? {
            matches.path = Some(string_match(u)?);
        }
        if u.ratio(1, 3)? {
            let name = |u: &mut Unstructured<'_>| -> ArbResult<Option<String>> {
                Ok(if u.arbitrary()? {
                    let known = ["frontend", "checkoutservice", "demo", "prod", "default"];
                    Some(if u.arbitrary()? {
                        (*u.choose(&known)?).to_owned()
                    } else {
                        word(u)?
                    })
                } else {
                    None
                })
            };
            matches.source = Some(SourceMatch {
                service: name(u)?,
                namespace: name(u)?,
                service_account: name(u)?,
            });
        }
        for _ in 0..u.int_in_range(0..=10)? {
            let name =
                (*u.choose(&["x-user", "x-request-id", "content-type", "a", "b", "c"])?).to_owned();
            matches.headers.push(HeaderMatch {
                name,
                value: string_match(u)?,
            });
        }
        let percentage = match u.int_in_range(0..=3)? {
            0 => Percentage::NEVER,
            1 => Percentage::ALWAYS,
            _ => Percentage::from_ppm(u.int_in_range(0..=PPM_SCALE)?).unwrap_or_default(),
        };
        let delay = if u.arbitrary()? {
            Some(Delay {
                fixed_delay_ms: arbitrary_ms(u)?,
                jitter_ms: arbitrary_ms(u)?,
            })
        } else {
            None
        };
        let abort = if u.arbitrary()? {
            let mut headers = BTreeMap::new();
            if u.arbitrary()? {
                headers.insert("x-fault".to_owned(), word(u)?);
            }
            Some(Abort {
                http_status: u.int_in_range(200..=599)?,
                grpc_status: if u.arbitrary()? {
                    Some(u.int_in_range(0..=16)?)
                } else {
                    None
                },
                body: maybe_word(u)?,
                headers,
            })
        } else {
            None
        };
        rules.push(Rule {
            matches,
            fault: Fault {
                percentage,
                start_delay_ms: arbitrary_ms(u)?,
                duration_seconds: match u.int_in_range(0..=2)? {
                    0 => 0,
                    1 => u.int_in_range(1..=2_592_000)?,
                    _ => u.arbitrary()?,
                },
                target: if u.arbitrary()? {
                    FaultTarget::Response
                } else {
                    FaultTarget::Request
                },
                delay,
                abort,
                reset: u.ratio(1, 4)?,
            },
        });
    }
    let window = if u.ratio(1, 4)? {
        let start_ms = arbitrary_time(u)?;
        Some(Window {
            start_ms,
            end_ms: start_ms.saturating_add(arbitrary_ms(u)?),
        })
    } else {
        None
    };
    let doc = PolicyDocument {
        metadata: Metadata {
            name,
            version: maybe_word(u)?,
            namespace: if u.arbitrary()? {
                Some((*u.choose(&["demo", "staging", "Team_A"])?).to_owned())
            } else {
                None
            },
            labels: if u.arbitrary()? {
                BTreeMap::from([(
                    "team".to_owned(),
                    (*u.choose(&["a", "b", "v1.2"])?).to_owned(),
                )])
            } else {
                BTreeMap::new()
            },
            annotations: if u.arbitrary()? {
                BTreeMap::from([("note".to_owned(), word(u)?)])
            } else {
                BTreeMap::new()
            },
        },
        spec: PolicySpec {
            selector,
            rules,
            sampling: if u.arbitrary()? {
                Sampling::Request
            } else {
                Sampling::Random
            },
            window,
            priority: u.int_in_range(-3..=3)?,
            enabled: u.ratio(7, 8)?,
            heartbeat_seconds: match u.int_in_range(0..=2)? {
                0 => None,
                1 => Some(u.int_in_range(1..=86_400)?),
                _ => Some(u.arbitrary()?),
            },
            guards: Vec::new(),
        },
        status: None,
    };
    Ok(if u.arbitrary()? {
        let stored_at = arbitrary_time(u)?;
        doc.stored(stored_at, u.arbitrary()?)
    } else {
        doc
    })
}

/// A document as a client would write it (the serializer's output shape is exercised by the
/// round trip itself, this is the input shape).
fn document_json(doc: &PolicyDocument) -> serde_json::Value {
    serde_json::to_value(doc).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// the proxy-wasm glue through a fake host

/// A host whose every answer comes from the fuzzer's bytes: present or absent, any bytes, any
/// length, success or failure. When the bytes run out, every call fails.
struct ArbitraryHost<'a> {
    u: std::cell::RefCell<Unstructured<'a>>,
}

/// Answers the fuzzer picks from: arbitrary bytes, or (for deeper paths) a well-formed one.
const PLUGIN_CONFIGS: [&str; 4] = [
    "",
    "{}",
    r#"{"max_active_delays": 2, "delay_tick_ms": 1, "long_poll_wait_ms": 0}"#,
    r#"{"log_level": "trace", "identity": {"service": "frontend", "namespace": "demo"}}"#,
];

const CONFIG_BODIES: [&str; 2] = [
    r#"{"version":7,"policies":[{"metadata":{"name":"abort-all"},"spec":{"rules":[{"match":{"path":{"prefix":"/"}},"fault":{"percentage":50,"abort":{"httpStatus":503,"body":"x\r\ny"}}}]}},{"metadata":{"name":"delay-hdr"},"spec":{"rules":[{"match":{"headers":[{"name":"x-a","regex":"^a+$"}]},"fault":{"percentage":100,"delay":{"fixed_delay_ms":3},"abort":{"httpStatus":500,"grpcStatus":14}}}]}}]}"#,
    r#"{"version":8,"policies":[]}"#,
];

impl ArbitraryHost<'_> {
    fn bytes(&self) -> Option<Vec<u8>> {
        let mut u = self.u.borrow_mut();
        if !u.arbitrary::<bool>().unwrap_or(false) {
            return None;
        }
        let len = u.arbitrary_len::<u8>().unwrap_or(0);
        u.bytes(len).ok().map(<[u8]>::to_vec)
    }

    fn flag(&self) -> bool {
        self.u.borrow_mut().arbitrary().unwrap_or(false)
    }

    fn number<T: for<'b> Arbitrary<'b> + Default>(&self) -> T {
        self.u.borrow_mut().arbitrary().unwrap_or_default()
    }

    /// One of `choices`, or arbitrary bytes.
    fn pick(&self, choices: &[&str]) -> Option<Vec<u8>> {
        let i: u8 = self.number();
        match choices.get(usize::from(i)) {
            Some(c) => Some(c.as_bytes().to_vec()),
            None => self.bytes(),
        }
    }

    /// A pair map: arbitrary pairs encoded as the ABI does, or arbitrary bytes.
    fn pairs(&self) -> Option<Vec<u8>> {
        if self.flag() {
            return self.bytes();
        }
        let n: u8 = self.number();
        let owned: Vec<(Vec<u8>, Vec<u8>)> = (0..n % 8)
            .map(|_| {
                let key = match self.number::<u8>() % 4 {
                    0 => b":path".to_vec(),
                    1 => b"x-a".to_vec(),
                    2 => b"content-type".to_vec(),
                    _ => self.bytes().unwrap_or_default(),
                };
                (key, self.bytes().unwrap_or_default())
            })
            .collect();
        let pairs: Vec<(&[u8], &[u8])> = owned
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .collect();
        Some(boifi_wasm::props::encode_pairs(&pairs))
    }
}

impl boifi_wasm::host::Host for ArbitraryHost<'_> {
    fn now_nanos(&self) -> u64 {
        self.number()
    }
    fn log(&self, _level: boifi_wasm::host::Level, _message: &str) {}
    fn set_tick_period_ms(&self, _ms: u32) -> bool {
        self.flag()
    }
    fn plugin_configuration(&self) -> Option<Vec<u8>> {
        self.pick(&PLUGIN_CONFIGS)
    }
    fn property(&self, _path: &[&str]) -> Option<Vec<u8>> {
        if self.flag() {
            self.pairs()
        } else {
            self.bytes()
        }
    }
    fn shared_get(&self, _key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        (self.bytes(), self.number())
    }
    fn shared_set(&self, _key: &str, _value: &[u8], _cas: Option<u32>) -> bool {
        self.flag()
    }
    fn request_headers(&self) -> Option<Vec<u8>> {
        self.pairs()
    }
    fn replace_request_header(&self, _name: &str, _value: &[u8]) -> bool {
        self.flag()
    }
    fn call_response_header(&self, _name: &str) -> Option<Vec<u8>> {
        self.pick(&["200", "304", "503"])
    }
    fn call_response_body(&self, _size: usize) -> Option<Vec<u8>> {
        self.pick(&CONFIG_BODIES)
    }
    fn http_call(&self, _call: &boifi_wasm::host::HttpCall<'_>) -> Result<u32, u32> {
        if self.flag() {
            Ok(self.number())
        } else {
            Err(self.number())
        }
    }
    fn send_local_reply(&self, _status: u32, headers: &[(&[u8], &[u8])], _body: &[u8]) -> bool {
        // Whatever the policy said, no reply header may carry CR, LF or NUL.
        for (k, v) in headers {
            assert!(
                !k.iter()
                    .chain(v.iter())
                    .any(|b| matches!(b, b'\r' | b'\n' | 0)),
                "a reply header could split the response: {k:?}: {v:?}"
            );
        }
        self.flag()
    }
    fn resume_request(&self) -> bool {
        self.flag()
    }
    fn resume_response(&self) -> bool {
        self.flag()
    }
    fn reset_stream(&self, _response: bool) -> bool {
        self.flag()
    }
    fn set_effective_context(&self, _context_id: u32) -> bool {
        self.flag()
    }
    fn define_metric(&self, _kind: boifi_wasm::host::MetricKind, _name: &str) -> Option<u32> {
        self.flag().then(|| self.number())
    }
    fn increment_metric(&self, _id: u32, _by: i64) {}
    fn record_metric(&self, _id: u32, _value: u64) {}
}

/// See the crate docs.
pub fn filter_glue_never_panics(data: &[u8]) {
    // The first half of the bytes picks the callbacks, the rest answers the host calls.
    let (script, answers) = data.split_at(data.len() / 2);
    let host = ArbitraryHost {
        u: std::cell::RefCell::new(Unstructured::new(answers)),
    };
    let mut filter = boifi_wasm::filter::Filter::new(host);
    let mut s = Unstructured::new(script);
    // Contexts from a small range, so callbacks hit the roots and streams that exist.
    let id = |s: &mut Unstructured<'_>| u32::from(s.arbitrary::<u8>().unwrap_or(0) % 8);
    while !s.is_empty() {
        let event = s.arbitrary::<u8>().unwrap_or(0) % 9;
        let context = id(&mut s);
        match event {
            0 => filter.on_context_create(context, 0),
            1 => {
                let parent = id(&mut s);
                filter.on_context_create(context, parent);
            }
            2 => {
                let _ = filter.on_configure(context);
            }
            3 => filter.on_tick(context),
            4 => {
                let _ = filter.on_request_headers(context);
            }
            5 => {
                let token = s.arbitrary::<u8>().unwrap_or(0);
                let headers = usize::from(s.arbitrary::<u8>().unwrap_or(0));
                let body = s.arbitrary::<u32>().unwrap_or(0) as usize;
                filter.on_http_call_response(context, u32::from(token), headers, body);
            }
            6 => {
                let _ = filter.on_done(context);
            }
            7 => {
                let _ = filter.on_response_headers(context);
            }
            _ => filter.on_delete(context),
        }
    }
}
