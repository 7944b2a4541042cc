//! The one rule for policy names, used by the parser, the control plane's URL paths, the CLI
//! and the filter, so nothing accepts a name that another part refuses.
//!
//! A name is a Kubernetes DNS-1123 subdomain (`frontend.v2`, `checkout-abort`) widened with
//! what the legacy BOIFI accepted in practice: upper-case letters and `_`. Every character is
//! RFC 3986 unreserved, so a name is the same text in a URL path as in a document.

use super::error::FieldErrorKind;

/// Longest name, in bytes (the DNS-1123 subdomain limit).
pub const MAX_NAME_LEN: usize = 253;
/// Longest dot-separated part of a name (the DNS-1123 label limit).
pub const MAX_NAME_PART_LEN: usize = 63;
/// Names that would shadow fixed paths under `/v1/policies/`.
pub const RESERVED_NAMES: &[&str] = &["status", "create"];

/// Why `name` is not a valid policy name, if it is not.
pub fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("it must not be empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Some("it must be at most 253 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Some("only letters, digits, `-`, `_` and `.` are allowed");
    }
    if RESERVED_NAMES.contains(&name) {
        return Some("it is reserved by the API (`/v1/policies/status`, `/v1/policies/create`)");
    }
    for part in name.split('.') {
        if part.is_empty() {
            return Some("it must not start or end with `.` or contain `..`");
        }
        if part.len() > MAX_NAME_PART_LEN {
            return Some("each `.`-separated part must be at most 63 characters long");
        }
        if part.starts_with('-') || part.ends_with('-') {
            return Some("no `.`-separated part may start or end with `-`");
        }
    }
    None
}

/// Why `namespace` is not a valid `metadata.namespace` (a DNS-1123 label, upper case and `_`
/// allowed as in names), if it is not.
pub fn namespace_problem(namespace: &str) -> Option<&'static str> {
    let valid = !namespace.is_empty()
        && namespace.len() <= MAX_NAME_PART_LEN
        && namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !namespace.starts_with('-')
        && !namespace.ends_with('-');
    (!valid).then_some(
        "a namespace is 1 to 63 letters, digits, `-` or `_`, not starting or ending with `-`",
    )
}

/// Checks a policy name; the error is the one `metadata.name` reports.
pub fn check_name(name: &str) -> Result<(), FieldErrorKind> {
    match name_problem(name) {
        None => Ok(()),
        Some(reason) => Err(FieldErrorKind::InvalidName {
            value: name.into(),
            reason,
        }),
    }
}

/// An HTTP header name (RFC 9110 token, at most 256 bytes), or a pseudo-header such as
/// `:authority`; either case (the readers lower-case it).
pub(crate) fn is_header_name(name: &str) -> bool {
    let token = name.strip_prefix(':').unwrap_or(name);
    !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header value an abort may send: no CR, LF or NUL, so it can never break the header block.
pub(crate) fn is_header_value(value: &str) -> bool {
    !value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_subdomains_and_legacy_names_are_accepted() {
        for name in [
            "a",
            "frontend.v2",
            "checkout-abort",
            "Legacy_Policy",
            "_x_",
            "a.b.c",
            "1",
        ] {
            assert_eq!(name_problem(name), None, "{name}");
        }
    }

    #[test]
    fn unsafe_or_reserved_names_are_refused() {
        let long_part = "a".repeat(64);
        let long = ["a"; 128].join(".");
        for name in [
            "",
            ".",
            "..",
            ".a",
            "a.",
            "a..b",
            "-a",
            "a-",
            "a.-b",
            "a/b",
            "a b",
            "a%2F",
            "é",
            "status",
            "create",
            long_part.as_str(),
            long.as_str(),
        ] {
            assert!(name_problem(name).is_some(), "{name}");
        }
    }
}
