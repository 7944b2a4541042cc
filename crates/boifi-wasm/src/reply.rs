//! The local reply an abort fault sends instead of forwarding the request.

use alloc::borrow::ToOwned;
use alloc::string::{String, ToString};
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
pub fn is_grpc(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        let ct = ct.trim();
        ct.get(..16)
            .is_some_and(|p| p.eq_ignore_ascii_case("application/grpc"))
            && matches!(ct.as_bytes().get(16), None | Some(b'+' | b';'))
    })
}

/// The reply for an abort by `policy`. gRPC requests get a trailers-only gRPC answer: HTTP 200
/// with `grpc-status` (the policy's, else gRPC's mapping of the HTTP status) and
/// `grpc-message`, so gRPC clients see a proper status instead of a protocol error.
pub fn abort_reply(policy: &str, abort: &AbortAction, grpc: bool) -> LocalReply {
    let mut headers: Vec<(String, String)> = Vec::with_capacity(abort.headers.len() + 3);
    headers.push((FAULT_HEADER.to_owned(), policy.to_owned()));
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
            abort.grpc_status_for_grpc_request().to_string(),
        ));
        headers.push(("grpc-message".to_owned(), message.to_owned()));
        headers.extend(
            abort
                .headers
                .iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case("content-type"))
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
    headers.extend(abort.headers.iter().cloned());
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
        assert!(is_grpc(Some("application/grpc")));
        assert!(is_grpc(Some("application/grpc+proto")));
        assert!(is_grpc(Some("Application/GRPC; charset=x")));
        assert!(!is_grpc(Some("application/grpc-web")));
        assert!(!is_grpc(Some("application/json")));
        assert!(!is_grpc(None));
    }
}
