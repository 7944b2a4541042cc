//! Bearer-token authentication of API callers: which token (by name) sent a request, and
//! whether it may do what it asks.

use actix_web::http::header;
use actix_web::HttpRequest;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use crate::credentials::{
    check_unique, token_digest, Credential, CredentialsError, Grant, NamespaceScope, Permission,
};
use crate::error::ApiFailure;

/// Who made a request, as written in audit lines and refusals: a token's name (the legacy
/// token file's is `token:<sha256 prefix>`), `anonymous` on an open server, or `sweeper`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The name.
    pub name: String,
    /// What it may do.
    pub grant: Grant,
}

impl Caller {
    /// A caller that may do everything (an open server's `anonymous`, the expiry sweep).
    pub fn trusted(name: &str) -> Caller {
        Caller {
            name: name.to_owned(),
            grant: Grant::everything(),
        }
    }

    /// Whether its writes may select `namespace` (`None`: every namespace).
    pub fn may_target(&self, namespace: Option<&str>) -> bool {
        self.grant.namespaces.allows(namespace)
    }

    /// Whether it may write anywhere at all (`Every`), so its writes need no scope checks.
    pub fn unscoped(&self) -> bool {
        self.grant.namespaces == NamespaceScope::Every
    }
}

/// What an endpoint asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads (sidecars' config, listings, status).
    Read,
    /// Creating, replacing or deleting a policy.
    Write,
    /// The kill switch.
    Halt,
}

impl Access {
    fn permission(self) -> Permission {
        match self {
            Access::Read => Permission::Read,
            Access::Write => Permission::Write,
            Access::Halt => Permission::Halt,
        }
    }
}

/// The configured tokens, kept only as SHA-256 digests.
#[derive(Clone)]
pub struct Auth {
    credentials: Vec<Credential>,
    reads: bool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.credentials.iter().map(|c| c.name.as_str()).collect();
        f.debug_struct("Auth")
            .field("tokens", &names)
            .field("reads", &self.reads)
            .finish()
    }
}

/// The audit name of the legacy single token: `token:` and the first 6 bytes of its digest.
pub fn legacy_token_name(token: &str) -> String {
    let digest = token_digest(token.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("token:{hex}")
}

impl Auth {
    /// No token: every request is allowed and audited as `anonymous`.
    pub fn open() -> Auth {
        Auth {
            credentials: Vec::new(),
            reads: false,
        }
    }

    /// The legacy single token (`--auth-token-file`), which may do everything: required on
    /// mutations, and on reads too when `reads`.
    pub fn with_token(token: &str, reads: bool) -> Auth {
        Auth {
            credentials: vec![legacy_credential(token)],
            reads,
        }
    }

    /// Named tokens (the credentials file, and the legacy token as one that may do
    /// everything); refuses two with one name or one secret.
    pub fn with_credentials(
        credentials: Vec<Credential>,
        reads: bool,
    ) -> Result<Auth, CredentialsError> {
        check_unique(&credentials)?;
        Ok(Auth { credentials, reads })
    }

    /// Whether any token is configured.
    pub fn enabled(&self) -> bool {
        !self.credentials.is_empty()
    }

    /// Whether reads need a token.
    pub fn reads_required(&self) -> bool {
        self.reads
    }

    /// The credential whose digest equals `presented`'s, comparing with every one in constant
    /// time (which one matched, and whether any did, is not given away by timing).
    fn identify(&self, presented: &str) -> Option<&Credential> {
        let got = token_digest(presented.as_bytes());
        let mut found = Choice::from(0);
        let mut index = 0u64;
        for (i, credential) in self.credentials.iter().enumerate() {
            let hit = got.ct_eq(credential.digest());
            index.conditional_assign(&u64::try_from(i).unwrap_or(u64::MAX), hit);
            found |= hit;
        }
        if bool::from(found) {
            usize::try_from(index)
                .ok()
                .and_then(|i| self.credentials.get(i))
        } else {
            None
        }
    }

    /// Checks the request's `Authorization: Bearer` header for an endpoint of `access`: 401
    /// for a missing (where required) or unknown token, 403 for a token without the
    /// permission.
    pub fn check(&self, req: &HttpRequest, access: Access) -> Result<Caller, ApiFailure> {
        if self.credentials.is_empty() {
            return Ok(Caller::trusted("anonymous"));
        }
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let required = access != Access::Read || self.reads;
        let Some(token) = presented else {
            return if required {
                Err(ApiFailure::Unauthorized(
                    "missing `Authorization: Bearer <token>` header".to_owned(),
                ))
            } else {
                Ok(Caller {
                    name: "anonymous".to_owned(),
                    grant: Grant {
                        may: [Permission::Read].into(),
                        namespaces: NamespaceScope::Only(Default::default()),
                    },
                })
            };
        };
        // A wrong token is refused even on an open read: it is a client's bug.
        let credential = self
            .identify(token)
            .ok_or_else(|| ApiFailure::Unauthorized("the bearer token is not valid".to_owned()))?;
        // Open reads need no permission: any known token may read what anyone may.
        if required && !credential.grant.may(access.permission()) {
            return Err(ApiFailure::Forbidden(format!(
                "token `{}` may not {} (it may: {})",
                credential.name,
                access.permission().as_str(),
                credential.grant.permissions()
            )));
        }
        Ok(Caller {
            name: credential.name.clone(),
            grant: credential.grant.clone(),
        })
    }
}

/// The legacy token (`--auth-token-file`) as a credential that may do everything, named
/// [`legacy_token_name`].
pub fn legacy_credential(token: &str) -> Credential {
    Credential::unchecked(legacy_token_name(token), token, Grant::everything())
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
        assert_eq!(caller.name, "anonymous");
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
        assert!(caller.name.starts_with("token:"));
        assert!(!caller.name.contains("t0ken"));
        assert_eq!(
            auth.check(&with(None), Access::Read).unwrap().name,
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

    fn named() -> Auth {
        let creds = crate::credentials::parse_credentials(
            "tokens:\n  - name: ci\n    token: ci-token-0123456789\n    may: [read, write]\n    namespaces: [demo]\n  - name: ro\n    token: ro-token-0123456789\n    may: [read]\n",
            "test",
        )
        .unwrap();
        let mut all = vec![legacy_credential("t0ken")];
        all.extend(creds);
        Auth::with_credentials(all, true).unwrap()
    }

    #[test]
    fn each_token_is_known_by_its_name_and_held_to_its_permissions() {
        let auth = named();
        let ci = auth
            .check(&with(Some("Bearer ci-token-0123456789")), Access::Write)
            .unwrap();
        assert_eq!(ci.name, "ci");
        assert!(ci.may_target(Some("demo")) && !ci.may_target(Some("payments")));
        assert!(!ci.unscoped());
        let legacy = auth
            .check(&with(Some("Bearer t0ken")), Access::Halt)
            .unwrap();
        assert!(legacy.name.starts_with("token:") && legacy.unscoped());
        assert!(matches!(
            auth.check(&with(Some("Bearer ci-token-0123456789")), Access::Halt),
            Err(ApiFailure::Forbidden(m)) if m == "token `ci` may not halt (it may: read, write)"
        ));
        assert!(matches!(
            auth.check(&with(Some("Bearer ro-token-0123456789")), Access::Write),
            Err(ApiFailure::Forbidden(m)) if m.contains("`ro` may not write")
        ));
        assert_eq!(
            auth.check(&with(Some("Bearer ro-token-0123456789")), Access::Read)
                .unwrap()
                .name,
            "ro"
        );
        assert!(matches!(
            auth.check(&with(None), Access::Read),
            Err(ApiFailure::Unauthorized(_))
        ));
        assert!(matches!(
            auth.check(&with(Some("Bearer ro-token-012345678")), Access::Read),
            Err(ApiFailure::Unauthorized(_))
        ));
        let shown = format!("{auth:?}");
        assert!(
            shown.contains("\"ci\"") && !shown.contains("ci-token"),
            "{shown}"
        );
    }
}
