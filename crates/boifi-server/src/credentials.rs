//! The credentials file: named bearer tokens, what each may do, and which namespaces each may
//! target.
//!
//! ```yaml
//! tokens:
//!   - name: ci                       # written in audit lines and refusals
//!     token: "3c1e…"                 # the bearer secret, at least 16 characters
//!     may: [read, write]             # read, write, halt (the kill switch)
//!     namespaces: [demo, shop]       # what its writes may select; `["*"]`: every namespace
//!   - name: sidecars
//!     token: "9f0a…"
//!     may: [read]                    # a read-only credential: no `namespaces`
//! ```
//!
//! `--credentials` names one such file or a directory of them (every file not starting with
//! `.`, as Kubernetes mounts the keys of Secrets), so each token can live in its own Secret.
//! Only the SHA-256 digest of a token is kept; it is never written anywhere.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Shortest accepted token, in bytes.
pub const MIN_TOKEN_LEN: usize = 16;
/// Longest token name, in bytes.
pub const MAX_NAME_LEN: usize = 63;

/// Something a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Read policies, status and, when reads need a token, `/v1/config`.
    Read,
    /// Create, replace and delete policies in its namespaces.
    Write,
    /// The kill switch: delete every policy, whatever it selects.
    Halt,
}

impl Permission {
    /// The word used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Halt => "halt",
        }
    }
}

/// Which namespaces a token's writes may select.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceScope {
    /// Every namespace, `*` included.
    Every,
    /// Only these.
    Only(BTreeSet<String>),
}

impl NamespaceScope {
    /// Whether a policy selecting `namespace` (`None`: every namespace) is within the scope.
    pub fn allows(&self, namespace: Option<&str>) -> bool {
        match (self, namespace) {
            (NamespaceScope::Every, _) => true,
            (NamespaceScope::Only(_), None) => false,
            (NamespaceScope::Only(set), Some(ns)) => set.contains(ns),
        }
    }
}

impl fmt::Display for NamespaceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamespaceScope::Every => f.write_str("every namespace"),
            NamespaceScope::Only(set) => {
                let names: Vec<String> = set.iter().map(|n| format!("`{n}`")).collect();
                f.write_str(&names.join(", "))
            }
        }
    }
}

/// What a token may do and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Its permissions.
    pub may: BTreeSet<Permission>,
    /// The namespaces its writes may select.
    pub namespaces: NamespaceScope,
}

impl Grant {
    /// Everything, everywhere: the legacy single token and an open server.
    pub fn everything() -> Grant {
        Grant {
            may: [Permission::Read, Permission::Write, Permission::Halt].into(),
            namespaces: NamespaceScope::Every,
        }
    }

    /// Whether it includes `permission`.
    pub fn may(&self, permission: Permission) -> bool {
        self.may.contains(&permission)
    }

    /// Its permissions as written in the file, e.g. `read, write`.
    pub fn permissions(&self) -> String {
        let words: Vec<&str> = self.may.iter().map(|p| p.as_str()).collect();
        words.join(", ")
    }
}

/// One named token, kept as the digest of its secret.
#[derive(Clone)]
pub struct Credential {
    /// The token's name.
    pub name: String,
    /// What it may do.
    pub grant: Grant,
    digest: [u8; 32],
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("name", &self.name)
            .field("grant", &self.grant)
            .finish_non_exhaustive()
    }
}

/// The SHA-256 digest tokens are kept and compared as.
pub fn token_digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl Credential {
    /// A credential with no checks on `name` or `token` (the legacy token file's).
    pub fn unchecked(name: String, token: &str, grant: Grant) -> Credential {
        Credential {
            name,
            grant,
            digest: token_digest(token.as_bytes()),
        }
    }

    /// The digest of its token.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }
}

/// Why the credentials could not be loaded. No message ever contains a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// A file or directory could not be read.
    #[error("credentials `{path}`: {source}")]
    Read {
        /// The file or directory.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not YAML of the expected shape.
    #[error("credentials `{path}`: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's message (field names and positions, never values).
        message: String,
    },
    /// An entry breaks a rule.
    #[error("credentials `{path}`: tokens[{index}]{name}: {problem}")]
    Invalid {
        /// The file.
        path: String,
        /// The entry's position in `tokens`.
        index: usize,
        /// ` (`name`)` when the name is readable, else empty.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// Two entries share a name.
    #[error("token name `{name}` is given twice: names must be unique")]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// Two entries share a secret, so a request could not tell who sent it.
    #[error("tokens `{first}` and `{second}` have the same secret: give each its own")]
    DuplicateToken {
        /// The first entry's name.
        first: String,
        /// The second entry's name.
        second: String,
    },
    /// No token at all.
    #[error("credentials `{path}`: no token is defined (add entries under `tokens:`)")]
    Empty {
        /// The file or directory.
        path: String,
    },
}

/// A token's secret as read from the file: never printed, and a non-string value is refused
/// without echoing it.
struct Secret(String);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        struct SecretVisitor;
        const NOT_TEXT: &str =
            "`token` must be a string: quote it (a value such as `0123` or `true` reads as another type)";
        impl Visitor<'_> for SecretVisitor {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Secret, E> {
                Err(E::custom(NOT_TEXT))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Secret, E> {
                Err(E::custom(NOT_TEXT))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(E::custom(NOT_TEXT))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
                Err(E::custom(NOT_TEXT))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Secret, E> {
                Err(E::custom("`token` is empty"))
            }
        }
        deserializer.deserialize_any(SecretVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    tokens: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    token: Secret,
    may: Vec<Permission>,
    #[serde(default)]
    namespaces: Option<Vec<String>>,
}

fn name_problem(name: &str) -> Option<&'static str> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    (!valid).then_some("`name` must be 1 to 63 letters, digits, `-`, `_` or `.`")
}

fn token_problem(token: &str) -> Option<String> {
    if token.len() < MIN_TOKEN_LEN {
        return Some(format!(
            "`token` must be at least {MIN_TOKEN_LEN} characters (e.g. `openssl rand -hex 32`)"
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Some(
            "`token` may hold only printable ASCII without spaces (it is sent in an HTTP header)"
                .to_owned(),
        );
    }
    None
}

fn grant_of(may: Vec<Permission>, namespaces: Option<Vec<String>>) -> Result<Grant, String> {
    if may.is_empty() {
        return Err("`may` is empty: give one or more of `read`, `write`, `halt`".to_owned());
    }
    let may: BTreeSet<Permission> = may.into_iter().collect();
    let writes = may.contains(&Permission::Write);
    let namespaces = match (writes, namespaces) {
        (true, None) => {
            return Err(
                "`namespaces` is missing: a token that may `write` names the namespaces its policies may select (`[\"*\"]` for every one)"
                    .to_owned(),
            )
        }
        (false, Some(_)) => {
            return Err(
                "`namespaces` only limits writes: remove it, or add `write` to `may`".to_owned(),
            )
        }
        (false, None) => NamespaceScope::Only(BTreeSet::new()),
        (true, Some(list)) if list.iter().any(|n| n == "*") => {
            if list.len() > 1 {
                return Err("`namespaces`: `*` (every namespace) stands alone".to_owned());
            }
            NamespaceScope::Every
        }
        (true, Some(list)) => {
            if list.is_empty() {
                return Err("`namespaces` is empty: name at least one namespace".to_owned());
            }
            for (i, ns) in list.iter().enumerate() {
                if let Some(problem) = boifi_core::policy::namespace_problem(ns) {
                    return Err(format!("namespaces[{i}]: `{ns}`: {problem}"));
                }
            }
            NamespaceScope::Only(list.into_iter().collect())
        }
    };
    Ok(Grant { may, namespaces })
}

/// Reads the credentials in `text`; `origin` names it in errors.
pub fn parse_credentials(text: &str, origin: &str) -> Result<Vec<Credential>, CredentialsError> {
    let file: CredentialsFile =
        serde_norway::from_str(text).map_err(|e| CredentialsError::Syntax {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
    let mut credentials = Vec::with_capacity(file.tokens.len());
    for (index, entry) in file.tokens.into_iter().enumerate() {
        let invalid = |name: &str, problem: String| CredentialsError::Invalid {
            path: origin.to_owned(),
            index,
            name: if name_problem(name).is_none() {
                format!(" (`{name}`)")
            } else {
                String::new()
            },
            problem,
        };
        if let Some(problem) = name_problem(&entry.name) {
            return Err(invalid(&entry.name, problem.to_owned()));
        }
        let token = entry.token.0.trim();
        if let Some(problem) = token_problem(token) {
            return Err(invalid(&entry.name, problem));
        }
        let grant = grant_of(entry.may, entry.namespaces).map_err(|p| invalid(&entry.name, p))?;
        credentials.push(Credential::unchecked(entry.name, token, grant));
    }
    Ok(credentials)
}

/// Loads `path`: one credentials file, or a directory whose files (those not starting with
/// `.`, in name order) are each one. At least one token must be defined.
pub fn load_credentials(path: &Path) -> Result<Vec<Credential>, CredentialsError> {
    let read_error = |p: &Path| {
        let path = p.display().to_string();
        move |source| CredentialsError::Read { path, source }
    };
    let files = if std::fs::metadata(path).map_err(read_error(path))?.is_dir() {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(path).map_err(read_error(path))? {
            let entry = entry.map_err(read_error(path))?;
            let file = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            // Kubernetes' Secret volumes hold `..data` links beside the keys; keys are links
            // to files, so follow them.
            if !hidden
                && std::fs::metadata(&file)
                    .map_err(read_error(&file))?
                    .is_file()
            {
                files.push(file);
            }
        }
        files.sort();
        files
    } else {
        vec![path.to_owned()]
    };
    let mut credentials = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(read_error(&file))?;
        credentials.extend(parse_credentials(&text, &file.display().to_string())?);
    }
    if credentials.is_empty() {
        return Err(CredentialsError::Empty {
            path: path.display().to_string(),
        });
    }
    Ok(credentials)
}

/// Refuses two credentials with one name or one secret (the legacy token included).
pub fn check_unique(credentials: &[Credential]) -> Result<(), CredentialsError> {
    for (i, a) in credentials.iter().enumerate() {
        for b in credentials.iter().skip(i + 1) {
            if a.name == b.name {
                return Err(CredentialsError::DuplicateName {
                    name: a.name.clone(),
                });
            }
            if a.digest == b.digest {
                return Err(CredentialsError::DuplicateToken {
                    first: a.name.clone(),
                    second: b.name.clone(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
