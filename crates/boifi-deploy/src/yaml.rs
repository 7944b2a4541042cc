//! Multi-document YAML files as JSON values, the form the schemas and checks work on.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use serde_json::Value;

/// One YAML document and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// `file#index` (0-based document index in the file).
    pub source: String,
    /// The document.
    pub value: Value,
}

impl Document {
    /// `apiVersion`, or `""`.
    #[must_use]
    pub fn api_version(&self) -> &str {
        str_at(&self.value, &["apiVersion"])
    }

    /// `kind`, or `""`.
    #[must_use]
    pub fn kind(&self) -> &str {
        str_at(&self.value, &["kind"])
    }

    /// `metadata.name`, or `""`.
    #[must_use]
    pub fn name(&self) -> &str {
        str_at(&self.value, &["metadata", "name"])
    }

    /// `metadata.namespace`, or `""`.
    #[must_use]
    pub fn namespace(&self) -> &str {
        str_at(&self.value, &["metadata", "namespace"])
    }

    /// `Kind namespace/name`, for messages.
    #[must_use]
    pub fn id(&self) -> ResourceId {
        ResourceId {
            kind: self.kind().to_owned(),
            namespace: self.namespace().to_owned(),
            name: self.name().to_owned(),
        }
    }
}

/// Kind, namespace and name of a resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceId {
    /// `kind`.
    pub kind: String,
    /// `metadata.namespace` (empty for cluster-scoped resources).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl std::str::FromStr for ResourceId {
    type Err = String;

    /// `Kind/namespace/name`, or `Kind/name` for cluster-scoped kinds.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [kind, name] => Ok(Self {
                kind: (*kind).to_owned(),
                namespace: String::new(),
                name: (*name).to_owned(),
            }),
            [kind, namespace, name] => Ok(Self {
                kind: (*kind).to_owned(),
                namespace: (*namespace).to_owned(),
                name: (*name).to_owned(),
            }),
            _ => Err(format!("`{s}` is not `Kind/namespace/name` or `Kind/name`")),
        }
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// The string at `path` in `value`, or `""`.
#[must_use]
pub fn str_at<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    value_at(value, path).and_then(Value::as_str).unwrap_or("")
}

/// The value at `path` (object keys) in `value`.
#[must_use]
pub fn value_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(key))
}

/// The items of the array at `path` in `value`; none when there is no array there.
pub fn items_at<'a>(value: &'a Value, path: &[&str]) -> impl Iterator<Item = &'a Value> {
    value_at(value, path)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Errors reading YAML.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum YamlError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The text is not YAML.
    #[error("{origin}: document {index}: {source}")]
    Parse {
        /// The file or label.
        origin: String,
        /// 0-based document index.
        index: usize,
        /// The cause.
        source: serde_norway::Error,
    },
}

/// Parses every document of a multi-document YAML text; empty documents are skipped.
///
/// # Errors
/// [`YamlError::Parse`] naming the document.
pub fn parse_documents(text: &str, origin: &str) -> Result<Vec<Document>, YamlError> {
    let mut docs = Vec::new();
    for (index, de) in serde_norway::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(de).map_err(|source| YamlError::Parse {
            origin: origin.to_owned(),
            index,
            source,
        })?;
        if !value.is_null() {
            docs.push(Document {
                source: format!("{origin}#{index}"),
                value,
            });
        }
    }
    Ok(docs)
}

/// Reads and parses a YAML file.
///
/// # Errors
/// I/O or parse errors naming the file.
pub fn load_file(path: &Path) -> Result<Vec<Document>, YamlError> {
    let text = std::fs::read_to_string(path).map_err(|source| YamlError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_documents(&text, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_with_empty_ones() {
        let docs =
            parse_documents("---\na: 1\n---\n---\nkind: X\nmetadata: {name: n}\n", "t").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].kind(), "X");
        assert_eq!(docs[1].name(), "n");
        assert_eq!(docs[1].source, "t#2");
    }

    #[test]
    fn parse_error_names_the_document() {
        let err = parse_documents("a: 1\n---\nb: [\n", "f.yaml").unwrap_err();
        assert!(err.to_string().starts_with("f.yaml: document 1:"), "{err}");
    }
}
