//! Bearer-token authentication of API callers.

use actix_web::http::header;
use actix_web::HttpRequest;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiFailure;

/// Who made a request, as written in audit lines: `anonymous` or `token:<fingerprint>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

/// Whether an endpoint reads or changes state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads (sidecars' config, listings, status).
    Read,
    /// Mutations.
    Write,
}

/// The configured token, kept only as its SHA-256 digest.
#[derive(Clone)]
pub struct Auth {
    digest: Option<[u8; 32]>,
    reads: bool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("token", &self.digest.map(|_| "<set>"))
            .field("reads", &self.reads)
            .finish()
    }
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

fn fingerprint(digest: &[u8; 32]) -> String {
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

impl Auth {
    /// No token: every request is allowed and audited as `anonymous`.
    pub fn open() -> Auth {
        Auth {
            digest: None,
            reads: false,
        }
    }

    /// Requires `token` on mutations, and on reads too when `reads`.
    pub fn with_token(token: &str, reads: bool) -> Auth {
        Auth {
            digest: Some(digest(token.as_bytes())),
            reads,
        }
    }

    /// Whether a token is configured.
    pub fn enabled(&self) -> bool {
        self.digest.is_some()
    }

    /// Checks the request's `Authorization: Bearer` header for an endpoint of `access`.
    pub fn check(&self, req: &HttpRequest, access: Access) -> Result<Caller, ApiFailure> {
        let Some(expected) = &self.digest else {
            return Ok(Caller("anonymous".to_owned()));
        };
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let required = access == Access::Write || self.reads;
        match presented {
            None if !required => Ok(Caller("anonymous".to_owned())),
            None => Err(ApiFailure::Unauthorized(
                "missing `Authorization: Bearer <token>` header".to_owned(),
            )),
            Some(token) => {
                let got = digest(token.as_bytes());
                // A wrong token is refused even on an open read: it is a client's bug.
                if bool::from(got.ct_eq(expected)) {
                    Ok(Caller(format!("token:{}", fingerprint(&got))))
                } else {
                    Err(ApiFailure::Unauthorized(
                        "the bearer token is not valid".to_owned(),
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn with(header: Option<&str>) -> HttpRequest {
        let mut r = TestRequest::default();
        if let Some(h) = header {
            r = r.insert_header((header::AUTHORIZATION, h));
        }
        r.to_http_request()
    }

    #[test]
    fn open_auth_lets_everyone_in_as_anonymous() {
        let auth = Auth::open();
        let caller = auth.check(&with(None), Access::Write).unwrap();
        assert_eq!(caller.0, "anonymous");
    }

    #[test]
    fn token_is_required_on_writes_and_optional_on_reads() {
        let auth = Auth::with_token("t0ken", false);
        assert!(matches!(
            auth.check(&with(None), Access::Write),
            Err(ApiFailure::Unauthorized(m)) if m.contains("missing")
        ));
        assert!(matches!(
            auth.check(&with(Some("Bearer wrong")), Access::Write),
            Err(ApiFailure::Unauthorized(m)) if m.contains("not valid")
        ));
        assert!(auth
            .check(&with(Some("Basic dDBrZW4=")), Access::Write)
            .is_err());
        let caller = auth
            .check(&with(Some("Bearer t0ken")), Access::Write)
            .unwrap();
        assert!(caller.0.starts_with("token:"));
        assert!(!caller.0.contains("t0ken"));
        assert_eq!(
            auth.check(&with(None), Access::Read).unwrap().0,
            "anonymous"
        );
        assert!(auth
            .check(&with(Some("Bearer wrong")), Access::Read)
            .is_err());
    }

    #[test]
    fn auth_reads_requires_the_token_on_reads() {
        let auth = Auth::with_token("t0ken", true);
        assert!(auth.check(&with(None), Access::Read).is_err());
        assert!(auth
            .check(&with(Some("Bearer t0ken")), Access::Read)
            .is_ok());
    }

    #[test]
    fn debug_output_hides_the_token() {
        let text = format!("{:?}", Auth::with_token("t0ken", false));
        assert!(!text.contains("t0ken"), "{text}");
    }
}
