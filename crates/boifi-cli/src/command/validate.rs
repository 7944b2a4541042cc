//! `validate -f FILE...`: offline validation with every problem reported.

use std::io::Write;

use crate::cli::{GlobalArgs, OutputFormat, ValidateArgs};
use crate::error::CliError;
use crate::load;
use crate::output;

/// Validates every document of every file; prints one line per valid policy, and fails with
/// every problem (file, document index, field path) when there is any.
pub fn run(global: &GlobalArgs, args: &ValidateArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let result = load::load(&args.files.files, args.files.recursive);
    if global.output != OutputFormat::Table {
        let report = Report::of(&result);
        match global.output {
            OutputFormat::Json => output::json(out, &report)?,
            _ => output::yaml(out, &report)?,
        }
    }
    let policies = result.map_err(CliError::Invalid)?;
    if global.output == OutputFormat::Table {
        for loaded in &policies {
            writeln!(
                out,
                "{}: document {}: faultinjectionpolicy \"{}\" is valid",
                loaded.source,
                loaded.document,
                loaded.policy.name()
            )?;
        }
    }
    Ok(())
}

/// What `validate -o json` prints.
#[derive(Debug, serde::Serialize)]
struct Report {
    valid: bool,
    policies: Vec<ValidPolicy>,
    errors: Vec<ErrorEntry>,
}

#[derive(Debug, serde::Serialize)]
struct ValidPolicy {
    file: String,
    document: usize,
    name: String,
}

#[derive(Debug, serde::Serialize)]
struct ErrorEntry {
    file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    document: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    message: String,
}

impl Report {
    fn of(result: &Result<Vec<load::LoadedPolicy>, Vec<load::DocumentError>>) -> Report {
        match result {
            Ok(policies) => Report {
                valid: true,
                policies: policies
                    .iter()
                    .map(|p| ValidPolicy {
                        file: p.source.clone(),
                        document: p.document,
                        name: p.policy.name().to_owned(),
                    })
                    .collect(),
                errors: Vec::new(),
            },
            Err(errors) => Report {
                valid: false,
                policies: Vec::new(),
                errors: errors
                    .iter()
                    .map(|e| ErrorEntry {
                        file: e.source.clone(),
                        document: e.document,
                        name: e.name.clone(),
                        message: e.message.clone(),
                    })
                    .collect(),
            },
        }
    }
}
