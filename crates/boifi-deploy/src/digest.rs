//! SHA-256 digests in the forms OCI (`sha256:<hex>`) and Istio (`<hex>`) use.

use sha2::{Digest as _, Sha256};

/// The algorithm prefix of an OCI digest.
pub const SHA256_PREFIX: &str = "sha256:";

/// Lowercase hex SHA-256 of `bytes`.
#[must_use]
pub fn sha256_hex(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for byte in hash {
        out.push(hex_digit(byte >> 4));
        out.push(hex_digit(byte & 0x0f));
    }
    out
}

/// The OCI digest (`sha256:<hex>`) of `bytes`.
#[must_use]
pub fn oci_digest(bytes: &[u8]) -> String {
    format!("{SHA256_PREFIX}{}", sha256_hex(bytes))
}

/// True when `s` is exactly 64 lowercase hex digits, the form Istio's `sha256` field requires.
#[must_use]
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The hex part of an OCI digest `sha256:<64 lowercase hex>`, or `None` for any other string.
#[must_use]
pub fn parse_oci_digest(digest: &str) -> Option<&str> {
    digest
        .strip_prefix(SHA256_PREFIX)
        .filter(|hex| is_sha256_hex(hex))
}

fn hex_digit(nibble: u8) -> char {
    char::from_digit(u32::from(nibble), 16).unwrap_or('0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            oci_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn digest_forms() {
        let hex = sha256_hex(b"x");
        assert!(is_sha256_hex(&hex));
        assert!(!is_sha256_hex(&hex.to_uppercase()));
        assert!(!is_sha256_hex("foo"));
        assert_eq!(
            parse_oci_digest(&format!("sha256:{hex}")),
            Some(hex.as_str())
        );
        assert_eq!(parse_oci_digest(&format!("sha512:{hex}")), None);
        assert_eq!(parse_oci_digest("sha256:../../etc/passwd"), None);
    }
}
