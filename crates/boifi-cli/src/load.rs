//! Reading policy documents from files, directories and stdin, validated by boifi-core.
//!
//! Every document of every file is read (the legacy `hfi-cli` read only the first), and every
//! problem is kept, with its file, document index and field path, so one run shows them all.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use boifi_core::policy::{parse_policies_text, PolicyDocument, PolicyError};

/// A policy read from a file.
#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    /// The file (or `<stdin>`).
    pub source: String,
    /// 1-based position of the document in its file.
    pub document: usize,
    /// The validated policy.
    pub policy: PolicyDocument,
}

/// One problem with one document (or file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentError {
    /// The file (or `<stdin>`).
    pub source: String,
    /// 1-based position of the document in its file, when the problem is in one document.
    pub document: Option<usize>,
    /// The policy name, when it could be read.
    pub name: Option<String>,
    /// The field path and the reason, e.g. `spec.rules[0].fault.percentage: ...`.
    pub message: String,
}

impl fmt::Display for DocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.source)?;
        if let Some(document) = self.document {
            write!(f, "document {document}")?;
            if let Some(name) = &self.name {
                write!(f, " (`{name}`)")?;
            }
            f.write_str(": ")?;
        }
        f.write_str(&self.message)
    }
}

impl DocumentError {
    fn file(source: &str, message: String) -> DocumentError {
        DocumentError {
            source: source.to_owned(),
            document: None,
            name: None,
            message,
        }
    }
}

/// Extensions of policy files inside directories.
const EXTENSIONS: &[&str] = &["yaml", "yml", "json"];

/// Reads every document of every path (`-` is stdin; directories give their `.yaml`, `.yml`
/// and `.json` files in name order). Returns every policy, or every problem found; the same
/// name defined twice is a problem too.
pub fn load(paths: &[PathBuf], recursive: bool) -> Result<Vec<LoadedPolicy>, Vec<DocumentError>> {
    let mut policies = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        for file in expand(path, recursive, &mut errors) {
            let source = display(&file);
            match read_text(&file) {
                Ok(text) => parse(&source, &text, &mut policies, &mut errors),
                Err(message) => errors.push(DocumentError::file(&source, message)),
            }
        }
    }
    let mut first_seen: BTreeMap<&str, &LoadedPolicy> = BTreeMap::new();
    for loaded in &policies {
        if let Some(first) = first_seen.insert(loaded.policy.name(), loaded) {
            errors.push(DocumentError {
                source: loaded.source.clone(),
                document: Some(loaded.document),
                name: Some(loaded.policy.name().to_owned()),
                message: format!(
                    "metadata.name: `{}` is already defined in {} document {}",
                    loaded.policy.name(),
                    first.source,
                    first.document
                ),
            });
        }
    }
    if errors.is_empty() {
        Ok(policies)
    } else {
        Err(errors)
    }
}

/// Parses the text of one file (JSON or YAML, one or many documents).
pub fn parse(
    source: &str,
    text: &str,
    policies: &mut Vec<LoadedPolicy>,
    errors: &mut Vec<DocumentError>,
) {
    match parse_policies_text(text) {
        Ok(documents) => {
            policies.extend(
                documents
                    .into_iter()
                    .enumerate()
                    .map(|(i, policy)| LoadedPolicy {
                        source: source.to_owned(),
                        document: i + 1,
                        policy,
                    }),
            )
        }
        Err(problems) => {
            for problem in problems {
                push_policy_error(source, problem, errors);
            }
        }
    }
}

fn push_policy_error(source: &str, problem: PolicyError, errors: &mut Vec<DocumentError>) {
    match problem {
        PolicyError::Invalid {
            document,
            name,
            errors: fields,
        } => errors.extend(fields.0.into_iter().map(|field| DocumentError {
            source: source.to_owned(),
            document: Some(document),
            name: name.clone(),
            message: field.to_string(),
        })),
        other => errors.push(DocumentError::file(source, other.to_string())),
    }
}

fn display(path: &Path) -> String {
    if path == Path::new("-") {
        "<stdin>".to_owned()
    } else {
        path.display().to_string()
    }
}

fn read_text(path: &Path) -> Result<String, String> {
    let bytes = if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read: {e}"))?;
        bytes
    } else {
        std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?
    };
    String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_owned())
}

/// The files a path stands for; problems go to `errors`.
fn expand(path: &Path, recursive: bool, errors: &mut Vec<DocumentError>) -> Vec<PathBuf> {
    if path == Path::new("-") || !path.is_dir() {
        return vec![path.to_path_buf()];
    }
    let mut files = Vec::new();
    walk(path, recursive, &mut files, errors);
    if files.is_empty() {
        errors.push(DocumentError::file(
            &display(path),
            "no `.yaml`, `.yml` or `.json` file found in this directory".to_owned(),
        ));
    }
    files
}

fn walk(dir: &Path, recursive: bool, files: &mut Vec<PathBuf>, errors: &mut Vec<DocumentError>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(DocumentError::file(
                &display(dir),
                format!("cannot read: {e}"),
            ));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            if recursive {
                walk(&path, recursive, files, errors);
            }
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        {
            files.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "metadata: {name: one}\nspec:\n  rules:\n  - match: {path: {prefix: /}}\n    fault: {percentage: 10, abort: {httpStatus: 503}}\n";

    #[test]
    fn every_document_and_every_error_is_kept() {
        let text = format!(
            "{GOOD}---\nmetadata: {{name: two}}\nspec: {{rules: []}}\n---\n{}",
            GOOD.replace("one", "create").replace("10", "130")
        );
        let mut policies = Vec::new();
        let mut errors = Vec::new();
        parse("f.yaml", &text, &mut policies, &mut errors);
        assert!(policies.is_empty());
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "f.yaml: document 2 (`two`): spec.rules: must not be empty",
                "f.yaml: document 3 (`create`): metadata.name: `create` is not a valid name: it is reserved by the API (`/v1/policies/status`, `/v1/policies/create`)",
                "f.yaml: document 3 (`create`): spec.rules[0].fault.percentage: `130` is outside 0..=100",
            ]
        );
    }

    #[test]
    fn duplicate_names_are_reported_with_both_places() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), GOOD).unwrap();
        std::fs::write(dir.path().join("b.yml"), GOOD).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a policy").unwrap();
        let errors = load(&[dir.path().to_path_buf()], false).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].message.contains("already defined in"),
            "{errors:?}"
        );
        assert!(errors[0].source.ends_with("b.yml"));
    }
}
