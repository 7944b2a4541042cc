//! The local reply an abort fault sends instead of forwarding the request.

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;
use boifi_core::compiled::AbortAction;

/// The response header naming the policy that injected a fault.
pub const FAULT_HEADER: &str = "x-boifi-fault";
/// Body of an abort whose policy gives none (Envoy's fault filter says the same).
pub const DEFAULT_BODY: &str = "fault filter abort";

/// A response for `send_http_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// HTTP status (200 for gRPC, where the status travels in `grpc-status`).
    pub status: u32,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: Vec<u8>,
}

/// True for a gRPC request (`content-type: application/grpc`, `application/grpc+proto`, ...).
pub fn is_grpc(content_type: Option<&[u8]>) -> bool {
    content_type.is_some_and(|ct| {
        let ct = ct.trim_ascii();
        ct.get(..16)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"application/grpc"))
            && matches!(ct.get(16), None | Some(b'+' | b';'))
    })
}

/// `grpc-message` as gRPC's HTTP/2 protocol specifies it: UTF-8, with every byte outside
/// printable ASCII (0x20-0x7E) and `%` itself percent-encoded, so a body with CR/LF or any
/// other byte can never break the header.
pub fn grpc_message(message: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push('%');
            for nibble in [b >> 4, b & 0x0f] {
                out.push(HEX.get(usize::from(nibble)).map_or('0', |h| char::from(*h)));
            }
        }
    }
    out
}

/// `code` in decimal, as `to_string` writes it, without linking `core::fmt` into the request
/// path of the Wasm filter.
fn decimal(code: u8) -> String {
    let mut out = String::with_capacity(3);
    if code >= 100 {
        out.push(char::from(b'0' + code / 100));
    }
    if code >= 10 {
        out.push(char::from(b'0' + code / 10 % 10));
    }
    out.push(char::from(b'0' + code % 10));
    out
}

/// A header a local reply may carry: a lower-case token name, and a value without CR, LF or
/// NUL. Parsed policies are validated already; policies built in code are not, and a header
/// that could split the response must never reach the proxy.
fn header_is_safe(name: &str, value: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        && !value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

/// The reply for an abort by `policy`. gRPC requests get a trailers-only gRPC answer: HTTP 200
/// with `grpc-status` (the policy's, else gRPC's mapping of the HTTP status) and
/// `grpc-message`, so gRPC clients see a proper status instead of a protocol error.
pub fn abort_reply(policy: &str, abort: &AbortAction, grpc: bool) -> LocalReply {
    let mut headers: Vec<(String, String)> = Vec::with_capacity(abort.headers.len() + 3);
    if header_is_safe(FAULT_HEADER, policy) {
        headers.push((FAULT_HEADER.to_owned(), policy.to_owned()));
    }
    let user_sets = |name: &str| {
        abort
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name))
    };
    if grpc {
        let message = if abort.body.is_empty() {
            DEFAULT_BODY
        } else {
            abort.body.as_str()
        };
        headers.push(("content-type".to_owned(), "application/grpc".to_owned()));
        headers.push((
            "grpc-status".to_owned(),
            decimal(abort.grpc_status_for_grpc_request()),
        ));
        headers.push(("grpc-message".to_owned(), grpc_message(message)));
        headers.extend(
            abort
                .headers
                .iter()
                .filter(|(k, v)| !k.eq_ignore_ascii_case("content-type") && header_is_safe(k, v))
                .cloned(),
        );
        return LocalReply {
            status: 200,
            headers,
            body: Vec::new(),
        };
    }
    if !user_sets("content-type") {
        headers.push(("content-type".to_owned(), "text/plain".to_owned()));
    }
    headers.extend(
        abort
            .headers
            .iter()
            .filter(|(k, v)| header_is_safe(k, v))
            .cloned(),
    );
    let body = if abort.body.is_empty() {
        DEFAULT_BODY.as_bytes().to_vec()
    } else {
        abort.body.as_bytes().to_vec()
    };
    LocalReply {
        status: u32::from(abort.http_status),
        headers,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn abort(status: u16, grpc: Option<u8>) -> AbortAction {
        AbortAction {
            http_status: status,
            grpc_status: grpc,
            body: String::new(),
            headers: vec![("retry-after".into(), "1".into())],
        }
    }

    #[test]
    fn grpc_status_codes_are_written_in_decimal() {
        for code in 0..=u8::MAX {
            assert_eq!(decimal(code), code.to_string());
        }
    }

    #[test]
    fn http_abort_carries_status_policy_and_headers() {
        let r = abort_reply("cart-503", &abort(503, None), false);
        assert_eq!(r.status, 503);
        assert_eq!(r.body, DEFAULT_BODY.as_bytes());
        assert!(r
            .headers
            .contains(&(FAULT_HEADER.into(), "cart-503".into())));
        assert!(r.headers.contains(&("retry-after".into(), "1".into())));
        assert!(r
            .headers
            .contains(&("content-type".into(), "text/plain".into())));
    }

    #[test]
    fn grpc_abort_is_a_grpc_status() {
        let r = abort_reply("p", &abort(503, None), true);
        assert_eq!(r.status, 200);
        assert!(r.headers.contains(&("grpc-status".into(), "14".into())));
        let r = abort_reply("p", &abort(500, Some(8)), true);
        assert!(r.headers.contains(&("grpc-status".into(), "8".into())));
        assert!(r.body.is_empty());
    }

    #[test]
    fn grpc_detection() {
        assert!(is_grpc(Some(b"application/grpc")));
        assert!(is_grpc(Some(b"application/grpc+proto")));
        assert!(is_grpc(Some(b"Application/GRPC; charset=x")));
        assert!(!is_grpc(Some(b"application/grpc-web")));
        assert!(!is_grpc(Some(b"application/json")));
        assert!(!is_grpc(Some(b"\xff\xfe")));
        assert!(!is_grpc(None));
    }

    #[test]
    fn grpc_message_is_percent_encoded_as_grpc_specifies() {
        assert_eq!(grpc_message("plain text"), "plain text");
        assert_eq!(grpc_message("100%\r\nx: y"), "100%25%0D%0Ax: y");
        assert_eq!(grpc_message("caf\u{e9}"), "caf%C3%A9");
        let mut a = abort(503, None);
        a.body = "line one\r\nset-cookie: evil".into();
        let r = abort_reply("p", &a, true);
        let message = r.headers.iter().find(|(k, _)| k == "grpc-message").unwrap();
        assert_eq!(message.1, "line one%0D%0Aset-cookie: evil");
    }

    #[test]
    fn headers_that_could_break_the_reply_are_dropped() {
        let mut a = abort(503, None);
        a.headers = vec![
            ("x-ok".into(), "fine".into()),
            ("x-split".into(), "a\r\nx-evil: 1".into()),
            ("bad name".into(), "v".into()),
            ("x-nul".into(), "a\0b".into()),
        ];
        for grpc in [false, true] {
            let r = abort_reply("p", &a, grpc);
            let names: Vec<&str> = r.headers.iter().map(|(k, _)| k.as_str()).collect();
            assert!(names.contains(&"x-ok"), "{names:?}");
            assert!(!names
                .iter()
                .any(|n| ["x-split", "bad name", "x-nul"].contains(n)));
            assert!(r.headers.iter().all(|(k, v)| header_is_safe(k, v)), "{r:?}");
        }
        assert!(abort_reply("bad\npolicy", &a, false)
            .headers
            .iter()
            .all(|(k, _)| k != FAULT_HEADER));
    }
}
