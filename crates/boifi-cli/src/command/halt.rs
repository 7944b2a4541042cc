//! `halt --yes`: the kill switch.

use std::io::Write;

use serde_json::Value;

use crate::cli::{GlobalArgs, HaltArgs, OutputFormat};
use crate::client::Client;
use crate::error::CliError;
use crate::output;

/// Deletes every policy on the server (`DELETE /v1/policies?confirm=all`).
pub fn run(global: &GlobalArgs, args: &HaltArgs, out: &mut dyn Write) -> Result<(), CliError> {
    if !args.yes {
        return Err(CliError::Usage(format!(
            "halt deletes every policy on `{}`, so every fault stops; run it again with --yes to confirm",
            global.server
        )));
    }
    let client = Client::from_args(global)?;
    let answer = client.delete("/v1/policies?confirm=all")?;
    if !answer.is_success() {
        return Err(answer.into_error());
    }
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    match global.output {
        OutputFormat::Json => output::json(out, &body)?,
        OutputFormat::Yaml => output::yaml(out, &body)?,
        OutputFormat::Table => match body.get("deleted").and_then(Value::as_u64) {
            Some(n) => writeln!(
                out,
                "halted: {n} {} deleted, every fault stops at the next propagation",
                if n == 1 { "policy" } else { "policies" }
            )?,
            None => writeln!(
                out,
                "halted: every policy deleted, every fault stops at the next propagation"
            )?,
        },
    }
    Ok(())
}
