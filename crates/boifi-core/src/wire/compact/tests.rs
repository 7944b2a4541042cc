use alloc::vec::Vec;

use super::*;
use crate::policy::parse_policy_json;

fn sample() -> ConfigResponse {
    let policy = parse_policy_json(
        r#"{"metadata": {"name": "cart-abort", "labels": {"team": "sre"}},
            "spec": {"selector": {"service": "cartservice"}, "priority": -3,
                     "rules": [{"match": {"path": {"prefix": "/cart"},
                                          "headers": [{"name": "X-User", "regex": "^b"}]},
                                "fault": {"percentage": 12.5,
                                          "abort": {"httpStatus": 503, "grpcStatus": 14,
                                                    "body": "no", "headers": {"x-a": "1"}}}}]}}"#,
    )
    .unwrap()
    .stored(1_800_000_000_000, 7);
    ConfigResponse {
        version: 42,
        policies: alloc::vec![policy],
    }
}

#[test]
fn round_trips() {
    let response = sample();
    assert_eq!(decode(&encode(&response)).unwrap(), response);
    let empty = ConfigResponse {
        version: 0,
        policies: Vec::new(),
    };
    assert_eq!(encode(&empty), b"BFC\x02\x00\x00");
    assert_eq!(decode(b"BFC\x02\x00\x00").unwrap(), empty);
}

fn response_reset_heartbeat() -> ConfigResponse {
    let policy = parse_policy_json(
        r#"{"metadata": {"name": "lost-answer"},
            "spec": {"selector": {"service": "cartservice"}, "heartbeat_seconds": 30,
                     "rules": [{"match": {"path": {"prefix": "/a"}},
                                "fault": {"percentage": 100, "target": "response",
                                          "abort": {"httpStatus": 503}}},
                               {"match": {"path": {"prefix": "/b"}},
                                "fault": {"percentage": 50, "target": "Response", "reset": true,
                                          "delay": {"fixed_delay_ms": 300}}},
                               {"match": {"path": {"prefix": "/c"}},
                                "fault": {"percentage": 1, "reset": true}}]}}"#,
    )
    .unwrap()
    .stored(1_800_000_000_000, 9);
    ConfigResponse {
        version: 43,
        policies: alloc::vec![policy],
    }
}

#[test]
fn version_2_carries_target_reset_and_heartbeat() {
    let response = response_reset_heartbeat();
    let spec = &response.policies[0].spec;
    assert_eq!(spec.heartbeat_seconds, Some(30));
    let faults: Vec<(FaultTarget, bool)> = spec
        .rules
        .iter()
        .map(|r| (r.fault.target, r.fault.reset))
        .collect();
    assert_eq!(
        faults,
        [
            (FaultTarget::Response, false),
            (FaultTarget::Response, true),
            (FaultTarget::Request, true)
        ]
    );
    let bytes = encode(&response);
    assert_eq!(&bytes[..4], b"BFC\x02");
    assert_eq!(decode(&bytes).unwrap(), response);
    assert_eq!(peek_version(&bytes), Some(43));
}

/// A version 1 answer, as a server older than the filter sends it: no `heartbeat_seconds`
/// before the status, no `target` and `reset` around the fault's actions.
#[test]
fn a_version_1_answer_reads_with_the_new_fields_at_their_defaults() {
    let policy = parse_policy_json(
        r#"{"metadata": {"name": "p"},
            "spec": {"rules": [{"match": {"path": {"exact": "/"}},
                                "fault": {"percentage": 100, "abort": {"httpStatus": 503}}}]}}"#,
    )
    .unwrap();
    let v1: &[u8] =
        b"BFC\x01\x07\x01\x01p\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01\x00\x01/\x00\x00\
        \xc0\x84\x3d\x00\x00\x00\x01\xf7\x03\x00\x00\x00\x00\x00\x00\x01\x00";
    let response = decode(v1).unwrap();
    assert_eq!(response.version, 7);
    assert_eq!(response.policies, [policy.clone()]);
    assert_eq!(peek_version(v1), Some(7));
    // The same policy in version 2 is version 1 plus the three new fields' bytes.
    let v2 = encode(&ConfigResponse {
        version: 7,
        policies: alloc::vec![policy],
    });
    assert_eq!(v2.len(), v1.len() + 3);
}

#[test]
fn version_2_refuses_what_the_json_reader_refuses_of_the_new_fields() {
    let bytes = encode(&response_reset_heartbeat());
    let replace = |from: &[u8], to: &[u8]| {
        let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
        let mut out = bytes.clone();
        out.splice(at..at + from.len(), to.iter().copied());
        decode(&out).unwrap_err().to_string()
    };
    // heartbeat 30 (`\x01\x1e`) then the status flag; stored_at starts with 0x80.
    assert_eq!(
        replace(b"\x01\x1e\x01\x80", b"\x01\x00\x01\x80"),
        "compact config, policy `lost-answer` at byte 6: spec.heartbeat_seconds: `0` is outside 1..=86400"
    );
    // The first rule: target response, no delay, an abort of 503, no reset; make it reset.
    assert_eq!(
        replace(b"\x01\x00\x01\xf7\x03\x00\x00\x00\x00", b"\x01\x00\x01\xf7\x03\x00\x00\x00\x01"),
        "compact config, policy `lost-answer` at byte 6: spec.rules[0].fault.reset: `reset: true` cannot be combined with `abort`: a reset sends no answer at all; keep one of them"
    );
    assert_eq!(
        replace(b"\x01\x00\x01\xf7\x03", b"\x02\x00\x01\xf7\x03"),
        "compact config at byte 51: fault.target: neither request nor response"
    );
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = encode(&sample());
    for end in 0..bytes.len() {
        let err = decode(&bytes[..end]).unwrap_err();
        assert!(err.offset() <= end, "{err:?} at {end}");
    }
}

#[test]
fn refuses_what_the_json_reader_refuses() {
    let bytes = encode(&sample());
    let replace = |from: &[u8], to: &[u8]| {
        let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
        let mut out = bytes.clone();
        out.splice(at..at + from.len(), to.iter().copied());
        decode(&out).unwrap_err().to_string()
    };
    let cases: [(&[u8], &[u8], &str); 4] = [
        (
            b"\x0acart-abort",
            b"\x0aCart abort",
            "compact config, policy `Cart abort` at byte 6: metadata.name: `Cart abort` is not a valid name: only letters, digits, `-`, `_` and `.` are allowed",
        ),
        (
            b"\x06x-user",
            b"\x06X-User",
            "compact config, policy `cart-abort` at byte 6: spec.rules[0].match.headers[0].name: `X-User` is not a valid header name",
        ),
        (
            b"\x03x-a\x011",
            b"\x03x-a\x01\n",
            "compact config, policy `cart-abort` at byte 6: spec.rules[0].fault.abort.headers.x-a: header value contains a control character (CR, LF or NUL)",
        ),
        // 503 = 0xf7 0x03; 99 is below 200.
        (
            b"\xf7\x03",
            b"\x63",
            "compact config, policy `cart-abort` at byte 6: spec.rules[0].fault.abort.httpStatus: `99` is outside 200..=599",
        ),
    ];
    for (from, to, what) in cases {
        assert_eq!(replace(from, to), what, "{from:?} -> {to:?}");
    }
    assert!(decode(b"{\"version\":1}").is_err());
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(
        decode(&trailing).unwrap_err().to_string(),
        "compact config at byte 106: bytes after the last policy"
    );
}

#[test]
fn huge_counts_and_lengths_fail_without_allocating() {
    // 2^63 policies, then a string of 2^63 bytes.
    assert!(decode(b"BFC\x02\x00\xff\xff\xff\xff\xff\xff\xff\xff\x7f").is_err());
    assert!(decode(b"BFC\x02\x00\x01\xff\xff\xff\xff\xff\xff\xff\xff\x7f").is_err());
    // An 11-byte varint.
    assert!(decode(b"BFC\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01").is_err());
}

#[test]
fn the_version_is_read_from_the_header_of_an_answer_that_does_not_decode() {
    let bytes = encode(&sample());
    assert_eq!(peek_version(&bytes), Some(42));
    // Cut after the version: the rest does not decode, the version is still known.
    assert!(decode(&bytes[..5]).is_err());
    assert_eq!(peek_version(&bytes[..5]), Some(42));
    assert_eq!(peek_version(b"BFC\x01\xac\x02 garbage"), Some(300));
    assert_eq!(peek_version(b"BFC\x02\xac\x02 garbage"), Some(300));
    for unreadable in [
        &b""[..],
        b"BFC",
        b"BFC\x02",
        b"BFC\x03\x05",
        b"{\"version\":1}",
    ] {
        assert_eq!(peek_version(unreadable), None, "{unreadable:?}");
    }
    // A version longer than 64 bits is no version.
    assert_eq!(
        peek_version(b"BFC\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f"),
        None
    );
}
