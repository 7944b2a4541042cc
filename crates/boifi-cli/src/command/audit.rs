//! `audit`: who changed what, from the server's audit trail (`GET /v1/audit`: the latest
//! entries of the replica answering; its log keeps every one).

use std::io::Write;

use boifi_core::wire::{AuditEntry, AuditList};

use crate::cli::{AuditArgs, GlobalArgs, OutputFormat};
use crate::client::Client;
use crate::error::CliError;
use crate::output::{self, Table};

/// Prints the audit trail, oldest first, filtered by `--policy` and `--who`.
pub fn run(global: &GlobalArgs, args: &AuditArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let client = Client::from_args(global)?;
    let list: AuditList = client.get("/v1/audit")?.json()?;
    let entries: Vec<AuditEntry> = list
        .entries
        .into_iter()
        .filter(|e| args.policy.as_ref().is_none_or(|p| *p == e.policy))
        .filter(|e| args.who.as_ref().is_none_or(|w| *w == e.who))
        .collect();
    match global.output {
        OutputFormat::Json => output::json(out, &AuditList { entries }),
        OutputFormat::Yaml => output::yaml(out, &AuditList { entries }),
        OutputFormat::Table => {
            let mut table = Table::new(&["TIME", "WHO", "ACTION", "POLICY", "VERSION"]);
            for e in &entries {
                table.row(vec![
                    output::time(Some(e.at_ms)),
                    e.who.clone(),
                    e.action.clone(),
                    e.policy.clone(),
                    format!("{} -> {}", e.version_before, e.version_after),
                ]);
            }
            table.write(out)?;
            Ok(())
        }
    }
}
