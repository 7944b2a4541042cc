//! The read credential a filter presents on its config requests (`Authorization: Bearer …`),
//! when the control plane requires one for reads. It is a secret: it never appears in a
//! `Debug` rendering, an error message or a log line; only [`ReadCredential::header_value`]
//! (for the request) and its serialization (for writing a configuration back) show it.

use alloc::string::String;
use core::fmt;

use crate::text::{concat, push_decimal};

use serde::{Serialize, Serializer};

/// The longest credential accepted, in bytes: far above any token a person or a Secret holds,
/// small enough that a wrong file (a certificate bundle, a binary) is refused, not sent.
pub const MAX_CREDENTIAL_BYTES: usize = 4_096;

/// What precedes the credential in the `Authorization` header.
const BEARER: &str = "Bearer ";

/// A bearer token checked to be sendable as an HTTP header value.
#[derive(Clone, PartialEq, Eq)]
pub struct ReadCredential {
    /// `Bearer <token>`, built once: every config request sends it.
    header: String,
}

/// Why a text is not a usable credential. The messages never contain the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialError {
    /// Nothing but whitespace.
    Empty,
    /// Longer than [`MAX_CREDENTIAL_BYTES`].
    TooLong {
        /// Its length.
        len: usize,
    },
    /// A byte an HTTP header value cannot carry in a token (space, control, non-ASCII).
    BadCharacter {
        /// 0-based offset of the first such byte, after leading whitespace.
        position: usize,
    },
}

impl CredentialError {
    /// Appends the message (what `Display` writes) to `out`, without `core::fmt`: the Wasm
    /// filter logs it when it refuses its configuration.
    pub fn push_message(&self, out: &mut String) {
        let (before, number, after) = match *self {
            CredentialError::Empty => ("is empty", None, ""),
            CredentialError::TooLong { len } => {
                ("is ", Some(len), " bytes long, over the limit of ")
            }
            CredentialError::BadCharacter { position } => (
                "has a character other than visible ASCII at byte ",
                Some(position),
                " (its value is not shown)",
            ),
        };
        out.push_str(before);
        if let Some(n) = number {
            push_decimal(out, u64::try_from(n).unwrap_or(u64::MAX));
        }
        out.push_str(after);
        if let CredentialError::TooLong { .. } = self {
            push_decimal(out, MAX_CREDENTIAL_BYTES as u64);
        }
    }
}

impl fmt::Display for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut message = String::new();
        self.push_message(&mut message);
        f.write_str(&message)
    }
}

impl core::error::Error for CredentialError {}

impl ReadCredential {
    /// Reads a token as written in a configuration or a mounted Secret: surrounding whitespace
    /// (a Secret file's final newline) is dropped; what remains must be 1 to
    /// [`MAX_CREDENTIAL_BYTES`] bytes of visible ASCII (`!` to `~`), as a bearer token is.
    pub fn parse(text: &str) -> Result<ReadCredential, CredentialError> {
        let token = text.trim();
        if token.is_empty() {
            return Err(CredentialError::Empty);
        }
        if token.len() > MAX_CREDENTIAL_BYTES {
            return Err(CredentialError::TooLong { len: token.len() });
        }
        if let Some(position) = token.bytes().position(|b| !b.is_ascii_graphic()) {
            return Err(CredentialError::BadCharacter { position });
        }
        Ok(ReadCredential {
            header: concat(&[BEARER, token]),
        })
    }

    /// The `Authorization` header's value: `Bearer <token>`.
    pub fn header_value(&self) -> &str {
        &self.header
    }

    fn token(&self) -> &str {
        self.header.get(BEARER.len()..).unwrap_or_default()
    }
}

impl fmt::Debug for ReadCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReadCredential(<redacted>)")
    }
}

impl Serialize for ReadCredential {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.token())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::ToString;

    #[test]
    fn a_token_is_trimmed_and_sent_as_a_bearer_header() {
        let c = ReadCredential::parse("  s3cr3t-Token_~+/=\n").unwrap();
        assert_eq!(c.header_value(), "Bearer s3cr3t-Token_~+/=");
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"s3cr3t-Token_~+/=\"");
    }

    #[test]
    fn the_token_never_shows_in_debug_or_errors() {
        let c = ReadCredential::parse("s3cr3t").unwrap();
        assert_eq!(format!("{c:?}"), "ReadCredential(<redacted>)");
        for bad in ["s3cr3t with space", "s3cr3t\u{e9}", "s3cr3t\0"] {
            let e = ReadCredential::parse(bad).unwrap_err();
            assert_eq!(e, CredentialError::BadCharacter { position: 6 }, "{bad:?}");
            assert!(!e.to_string().contains("s3cr3t"), "{e}");
        }
    }

    #[test]
    fn empty_and_huge_tokens_are_refused() {
        assert_eq!(ReadCredential::parse(" \n"), Err(CredentialError::Empty));
        let huge = "x".repeat(MAX_CREDENTIAL_BYTES + 1);
        assert_eq!(
            ReadCredential::parse(&huge),
            Err(CredentialError::TooLong {
                len: MAX_CREDENTIAL_BYTES + 1
            })
        );
        assert!(ReadCredential::parse(&huge[1..]).is_ok());
        assert_eq!(
            CredentialError::TooLong { len: 4_097 }.to_string(),
            "is 4097 bytes long, over the limit of 4096"
        );
        assert_eq!(CredentialError::Empty.to_string(), "is empty");
    }
}
