use alloc::string::ToString;
use alloc::vec::Vec;

use super::*;
use crate::policy::parse_policy_json;

fn documents() -> Vec<PolicyDocument> {
    let abort = parse_policy_json(
        r#"{"metadata": {"name": "cart-abort", "labels": {"team": "sre"}},
            "spec": {"selector": {"service": "cartservice", "labels": {"app": "cart"}},
                     "priority": -3, "sampling": "request",
                     "rules": [{"match": {"method": {"exact": "GET"},
                                          "path": {"regex": "^/cart/[0-9]+$"},
                                          "headers": [{"name": "X-User", "prefix": "b"}],
                                          "source": {"service": "frontend", "namespace": "demo"}},
                                "fault": {"percentage": 12.5, "duration_seconds": 60,
                                          "abort": {"httpStatus": 503, "grpcStatus": 14,
                                                    "body": "no", "headers": {"x-a": "1"}}}}]}}"#,
    )
    .unwrap()
    .stored(1_800_000_000_000, 7);
    let lost = parse_policy_json(
        r#"{"metadata": {"name": "lost-answer"},
            "spec": {"heartbeat_seconds": 30,
                     "window": {"start": "2026-11-26T09:00:00Z", "end": "2026-11-26T10:00:00Z"},
                     "rules": [{"match": {"path": {"prefix": "/b"}},
                                "fault": {"percentage": 50, "target": "response", "reset": true,
                                          "start_delay_ms": 5,
                                          "delay": {"fixed_delay_ms": 300, "jitter_ms": 20}}}]}}"#,
    )
    .unwrap();
    alloc::vec![abort, lost]
}

fn sample() -> SidecarConfig {
    SidecarConfig::from_documents(42, &documents()).unwrap()
}

#[test]
fn round_trips_every_field() {
    let config = sample();
    let rule = &config.policies[0].rules[0];
    assert!(matches!(rule.path, Some(Matcher::Program(_))));
    assert_eq!(config.policies[1].heartbeat_seconds, Some(30));
    assert_eq!(config.policies[1].stored_at_ms, None);
    assert_eq!(decode(&encode(&config)).unwrap(), config);
    let empty = SidecarConfig {
        version: 0,
        policies: Vec::new(),
    };
    assert_eq!(encode(&empty), b"BFC\x03\x00\x00");
    assert_eq!(decode(b"BFC\x03\x00\x00").unwrap(), empty);
}

#[test]
fn a_decoded_answer_decides_like_its_documents() {
    use crate::compiled::{decide, CompiledPolicySet, SimpleRequest};
    use crate::identity::Identity;
    let mut identity = Identity::for_service("cartservice", "demo");
    identity.labels.insert("app".into(), "cart".into());
    let decoded = decode(&encode(&sample())).unwrap();
    let from_wire = CompiledPolicySet::compile(&decoded.policies, &identity, 1_800_000_000_000);
    let from_documents =
        CompiledPolicySet::from_documents(&documents(), &identity, 1_800_000_000_000).unwrap();
    for path in ["/cart/12", "/cart/x", "/b"] {
        let request = SimpleRequest::new("GET", path)
            .with_header("x-user", "bob")
            .with_header("x-request-id", "r1")
            .with_peer_uri_san("spiffe://cluster.local/ns/demo/sa/frontend");
        for draw in [0, u64::MAX / 3, u64::MAX] {
            assert_eq!(
                decide(&from_wire, &request, 1_800_000_000_000, draw),
                decide(&from_documents, &request, 1_800_000_000_000, draw),
                "{path} {draw}"
            );
        }
    }
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = encode(&sample());
    for end in 0..bytes.len() {
        let err = decode(&bytes[..end]).unwrap_err();
        assert!(err.offset() <= end, "{err:?} at {end}");
    }
}

/// The sample with one value changed the way only a broken or hostile server would.
fn edited(edit: fn(&mut SidecarPolicy)) -> String {
    let mut config = sample();
    edit(&mut config.policies[0]);
    decode(&encode(&config)).unwrap_err().to_string()
}

/// A change to a policy, and the end of the message its refusal gives.
type Case = (fn(&mut SidecarPolicy), &'static str);

fn rule0(p: &mut SidecarPolicy) -> &mut SidecarRule {
    &mut p.rules[0]
}

#[test]
fn values_outside_what_validation_allows_are_refused_naming_the_field() {
    let cases: [Case; 14] = [
        (
            |p| {
                rule0(p).delay = Some(Delay {
                    fixed_delay_ms: MAX_DELAY_MS + 1,
                    jitter_ms: 0,
                })
            },
            "fault.delay.fixed_delay_ms: above the cap of 300000 ms",
        ),
        (
            |p| {
                rule0(p).delay = Some(Delay {
                    fixed_delay_ms: 0,
                    jitter_ms: MAX_DELAY_MS + 1,
                })
            },
            "fault.delay.jitter_ms: above the cap of 300000 ms",
        ),
        (
            |p| rule0(p).start_delay_ms = MAX_DELAY_MS + 1,
            "fault.start_delay_ms: above the cap of 300000 ms",
        ),
        (
            |p| rule0(p).duration_seconds = MAX_DURATION_SECONDS + 1,
            "fault.duration_seconds: above the limit of 2592000",
        ),
        (
            |p| rule0(p).abort.as_mut().unwrap().http_status = 600,
            "fault.abort.httpStatus: outside 200..=599",
        ),
        (
            |p| rule0(p).abort.as_mut().unwrap().http_status = 199,
            "fault.abort.httpStatus: outside 200..=599",
        ),
        (
            |p| rule0(p).abort.as_mut().unwrap().grpc_status = Some(MAX_GRPC_STATUS + 1),
            "fault.abort.grpcStatus: outside 0..=16",
        ),
        (
            |p| rule0(p).abort.as_mut().unwrap().body = "x".repeat(MAX_BODY_BYTES + 1),
            "fault.abort.body: longer than the limit of 16384 bytes",
        ),
        (
            |p| rule0(p).abort.as_mut().unwrap().headers[0].1 = "1\r\n2".into(),
            "fault.abort.headers: a value with a control character (CR, LF or NUL)",
        ),
        (
            |p| rule0(p).abort.as_mut().unwrap().headers[0].0 = ":status".into(),
            "fault.abort.headers: a pseudo-header",
        ),
        (
            |p| rule0(p).headers[0].0 = "X-User".into(),
            "match.headers: a name that is not a lower-case header name",
        ),
        (
            |p| p.heartbeat_seconds = Some(0),
            "spec.heartbeat_seconds: outside 1..=86400",
        ),
        (
            |p| p.heartbeat_seconds = Some(MAX_HEARTBEAT_SECONDS + 1),
            "spec.heartbeat_seconds: outside 1..=86400",
        ),
        (
            |p| {
                let r = p.rules[0].clone();
                p.rules = alloc::vec![r; MAX_RULES + 1];
            },
            "spec.rules: more than the limit of 64",
        ),
    ];
    for (edit, what) in cases {
        let message = edited(edit);
        assert!(
            message.starts_with("compact config, policy `cart-abort` at byte ")
                && message.ends_with(what),
            "{message}"
        );
    }
    // The bounds the messages name are the validation's.
    assert_eq!(
        (
            MAX_DELAY_MS,
            MAX_DURATION_SECONDS,
            MAX_HEARTBEAT_SECONDS,
            MAX_RULES,
            MAX_HEADERS
        ),
        (300_000, 2_592_000, 86_400, 64, 32)
    );
    assert_eq!(
        (HTTP_STATUSES, MAX_GRPC_STATUS, MAX_BODY_BYTES),
        (200..=599, 16, 16_384)
    );
}

#[test]
fn a_percentage_above_100_and_a_priority_beyond_32_bits_are_refused() {
    let bytes = encode(&sample());
    let replace = |from: &[u8], to: &[u8]| {
        let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
        let mut out = bytes.clone();
        out.splice(at..at + from.len(), to.iter().copied());
        decode(&out).unwrap_err().to_string()
    };
    // 125 000 ppm = 0xc8 0xd0 0x07; 1 000 001 = 0xc1 0x84 0x3d.
    assert!(replace(b"\xc8\xd0\x07", b"\xc1\x84\x3d")
        .ends_with("fault.percentage: above 1000000 ppm (100 %)"));
    // priority -3 (zig-zag 5) then enabled; 2^32 (zig-zag 2^33) does not fit.
    let mut big = Vec::new();
    varint::put(&mut big, 1 << 33);
    big.push(1);
    let before_enabled: &[u8] = b"\x05\x01\x00\x01";
    let mut to = big.clone();
    to.extend_from_slice(&before_enabled[2..]);
    assert!(replace(before_enabled, &to).ends_with("spec.priority: beyond 32 bits"));
}

#[test]
fn a_hostile_program_is_refused_at_its_offset_in_the_answer() {
    let mut config = sample();
    config.policies[0].rules[0].path = Some(Matcher::Exact("/x".into()));
    let mut bytes = encode(&config);
    // Replace the exact path matcher `0 "/x"` by a program `2 len [0 1 6 9]`: jmp 9 of 1.
    let at = bytes.windows(4).position(|w| w == b"\x00\x02/x").unwrap();
    bytes.splice(at..at + 4, [2, 4, 0, 1, 6, 9]);
    assert_eq!(
        decode(&bytes).unwrap_err(),
        CompactError::Malformed {
            offset: at + 5,
            what: "a jump target past the end of the program"
        }
    );
}

#[test]
fn other_versions_are_refused_naming_the_upgrade_order() {
    let v2 = v2::encode(&crate::wire::ConfigResponse {
        version: 7,
        policies: documents(),
    });
    assert_eq!(
        decode(&v2).unwrap_err().to_string(),
        "compact config at byte 0: an answer of compact version 2, from a control plane older than this filter: this filter reads version 3; upgrade the control plane first"
    );
    assert_eq!(peek_version(&v2), None);
    assert_eq!(
        decode(b"{\"version\":1}").unwrap_err().to_string(),
        "compact config at byte 0: not a compact config answer of version 3 (magic `BFC\\x03`)"
    );
    let mut trailing = encode(&sample());
    trailing.push(0);
    let len = trailing.len();
    assert_eq!(
        decode(&trailing).unwrap_err().to_string(),
        alloc::format!(
            "compact config at byte {}: bytes after the last policy",
            len - 1
        )
    );
}

#[test]
fn huge_counts_and_lengths_fail_without_allocating() {
    // 2^63 policies, then a string of 2^63 bytes.
    assert!(decode(b"BFC\x03\x00\xff\xff\xff\xff\xff\xff\xff\xff\x7f").is_err());
    assert!(decode(b"BFC\x03\x00\x01\xff\xff\xff\xff\xff\xff\xff\xff\x7f").is_err());
    // An 11-byte varint.
    assert!(decode(b"BFC\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01").is_err());
}

#[test]
fn the_version_is_read_from_the_header_of_an_answer_that_does_not_decode() {
    let bytes = encode(&sample());
    assert_eq!(peek_version(&bytes), Some(42));
    assert!(decode(&bytes[..5]).is_err());
    assert_eq!(peek_version(&bytes[..5]), Some(42));
    assert_eq!(peek_version(b"BFC\x03\xac\x02 garbage"), Some(300));
    for unreadable in [
        &b""[..],
        b"BFC",
        b"BFC\x03",
        b"BFC\x04\x05",
        b"{\"version\":1}",
    ] {
        assert_eq!(peek_version(unreadable), None, "{unreadable:?}");
    }
}
