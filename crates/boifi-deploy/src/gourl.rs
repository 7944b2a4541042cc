//! Go's `net/url.ParseRequestURI`, as far as the Kubernetes CEL functions `isURL(s)` and
//! `url(s).getScheme()` depend on it. Istio's `WasmPlugin.spec.url` rule is written with them,
//! so the checker must accept and refuse exactly the strings the apiserver does.

/// Go's `url.ParseRequestURI(s)`: `Some(scheme)` (lowercased, possibly empty) when `s` parses,
/// `None` when it does not (CEL `isURL(s)` is false).
pub(crate) fn parse_request_uri_scheme(s: &str) -> Option<String> {
    if s.bytes().any(|b| b < 0x20 || b == 0x7f) || s.is_empty() {
        return None;
    }
    if s == "*" {
        return Some(String::new());
    }
    let (scheme, rest) = split_scheme(s)?;
    let scheme = scheme.to_ascii_lowercase();
    // The query is cut before the path is looked at; the fragment is not cut in request mode.
    let rest = if rest.ends_with('?') && rest.matches('?').count() == 1 {
        rest.get(..rest.len() - 1).unwrap_or(rest)
    } else {
        rest.split_once('?').map_or(rest, |(before, _)| before)
    };
    if !rest.starts_with('/') {
        // `scheme:opaque` parses; anything else without a leading `/` is not a request URI.
        return (!scheme.is_empty()).then_some(scheme);
    }
    let mut path = rest;
    if !scheme.is_empty() {
        if let Some(after) = rest.strip_prefix("//") {
            let (authority, tail) = after.find('/').map_or((after, ""), |i| after.split_at(i));
            parse_authority(authority)?;
            path = tail;
        }
    }
    unescape_ok(path, Mode::Path).then_some(scheme)
}

/// Go's `getScheme`: `None` is its error (a leading `:`).
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    for (i, c) in s.char_indices() {
        match c {
            'a'..='z' | 'A'..='Z' => {}
            '0'..='9' | '+' | '-' | '.' if i > 0 => {}
            ':' if i == 0 => return None,
            ':' => return Some((s.get(..i)?, s.get(i + 1..)?)),
            _ => return Some(("", s)),
        }
    }
    Some(("", s))
}

fn parse_authority(authority: &str) -> Option<()> {
    match authority.rfind('@') {
        None => parse_host(authority),
        Some(at) => {
            parse_host(authority.get(at + 1..)?)?;
            let userinfo = authority.get(..at)?;
            valid_userinfo(userinfo).then_some(())?;
            unescape_ok(userinfo, Mode::UserPassword).then_some(())
        }
    }
}

fn parse_host(host: &str) -> Option<()> {
    if let Some(after_bracket) = host.strip_prefix('[') {
        let close = after_bracket.rfind(']')?;
        let colon_port = after_bracket.get(close + 1..)?;
        return valid_optional_port(colon_port).then_some(());
    }
    if let Some(colon) = host.rfind(':') {
        valid_optional_port(host.get(colon..)?).then_some(())?;
    }
    unescape_ok(host, Mode::Host).then_some(())
}

fn valid_optional_port(port: &str) -> bool {
    port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_digit()))
}

fn valid_userinfo(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._:~!$&'()*+,;=%@".contains(c))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Path,
    Host,
    UserPassword,
}

/// Go's `unescape` succeeding: every `%` followed by two hex digits, and in hosts no character
/// that would need escaping.
fn unescape_ok(s: &str, mode: Mode) -> bool {
    let bytes = s.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let (Some(&h), Some(&l)) = (bytes.get(i + 1), bytes.get(i + 2)) else {
                return false;
            };
            if !h.is_ascii_hexdigit() || !l.is_ascii_hexdigit() {
                return false;
            }
            if mode == Mode::Host && hex_value(h) < 8 && !(h == b'2' && l == b'5') {
                return false;
            }
            i += 3;
        } else {
            if mode == Mode::Host && b < 0x80 && !host_char_ok(b) {
                return false;
            }
            i += 1;
        }
    }
    true
}

fn hex_value(b: u8) -> u8 {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
        .unwrap_or(0)
}

fn host_char_ok(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!$&'()*+,;=:[]<>\"-_.~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_uris() {
        let ok = |s: &str| parse_request_uri_scheme(s);
        assert_eq!(ok("http://test").as_deref(), Some("http"));
        assert_eq!(
            ok("HTTPS://Example.com:443/a?b#c").as_deref(),
            Some("https")
        );
        assert_eq!(
            ok("file:///opt/filters/openid.wasm").as_deref(),
            Some("file")
        );
        assert_eq!(
            ok("oci://ghcr.io/boifi/boifi-wasm:0.1.0").as_deref(),
            Some("oci")
        );
        assert_eq!(ok("fake://example.com").as_deref(), Some("fake"));
        assert_eq!(ok("/just/a/path").as_deref(), Some(""));
        assert_eq!(ok("mailto:someone").as_deref(), Some("mailto"));
        assert_eq!(ok("test"), None, "relative references are not request URIs");
        assert_eq!(ok("#%blah$#@"), None);
        assert_eq!(
            ok("http://#%blah$#@"),
            None,
            "`#` is not allowed in userinfo"
        );
        assert_eq!(ok("http://host:port"), None);
        assert_eq!(ok("http://a b"), None);
        assert_eq!(ok("http://x/%zz"), None);
        assert_eq!(ok(":nothing"), None);
        assert_eq!(ok(""), None);
        assert_eq!(ok("http://[::1]:8080/x").as_deref(), Some("http"));
    }
}
