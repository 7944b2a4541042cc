//! Printing: aligned tables for people, JSON and YAML for scripts, and small formatters.

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use boifi_core::policy::{PolicyDocument, StringMatch};
use serde::Serialize;

use crate::error::CliError;

/// Columns aligned on the widest cell, separated by three spaces (as kubectl prints).
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            rows: vec![headers.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Writes the table, each line prefixed with `indent`.
    pub fn write_indented(&self, out: &mut dyn Write, indent: &str) -> io::Result<()> {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &self.rows {
            let mut line = String::from(indent);
            for (c, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if c + 1 < row.len() {
                    let width = widths.get(c).copied().unwrap_or(0);
                    let pad = width.saturating_sub(cell.chars().count()) + 3;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }

    /// Writes the table.
    pub fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        self.write_indented(out, "")
    }
}

/// Pretty JSON and a newline.
pub fn json(out: &mut dyn Write, value: &impl Serialize) -> Result<(), CliError> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

/// One YAML document.
pub fn yaml(out: &mut dyn Write, value: &impl Serialize) -> Result<(), CliError> {
    let text = serde_norway::to_string(value)
        .map_err(|e| CliError::Output(io::Error::other(e.to_string())))?;
    out.write_all(text.as_bytes())?;
    Ok(())
}

/// Policies as a YAML stream, one `---`-separated document each (what `policy apply` reads).
pub fn yaml_documents(out: &mut dyn Write, policies: &[PolicyDocument]) -> Result<(), CliError> {
    for (i, policy) in policies.iter().enumerate() {
        if i > 0 {
            writeln!(out, "---")?;
        }
        yaml(out, policy)?;
    }
    Ok(())
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A share in 0..=1 as a percentage with two decimals.
pub fn share(value: f64) -> String {
    format!("{:.2}%", value * 100.0)
}

/// `service=frontend namespace=demo labels=version=v1`, `*` for any.
pub fn selector(policy: &PolicyDocument) -> (String, String, String) {
    let selector = &policy.spec.selector;
    let labels = pairs(&selector.labels);
    (
        selector.service.clone().unwrap_or_else(|| "*".to_owned()),
        selector.namespace.clone().unwrap_or_else(|| "*".to_owned()),
        labels,
    )
}

/// `k=v,k2=v2`, or `-` when empty.
pub fn pairs(map: &std::collections::BTreeMap<String, String>) -> String {
    if map.is_empty() {
        return "-".to_owned();
    }
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A string condition: ``prefix `/api` ``.
pub fn string_match(m: &StringMatch) -> String {
    match m {
        StringMatch::Exact(s) => format!("exact `{s}`"),
        StringMatch::Prefix(s) => format!("prefix `{s}`"),
        StringMatch::Regex(s) => format!("regex `{s}`"),
    }
}

/// The fault of one rule in a few words: `abort 503`, `delay 200ms±50ms`, both.
pub fn fault_summary(policy: &PolicyDocument, rule_index: usize) -> String {
    let Some(rule) = policy.spec.rules.get(rule_index) else {
        return "-".to_owned();
    };
    let fault = &rule.fault;
    let mut parts = Vec::new();
    if fault.start_delay_ms > 0 {
        parts.push(format!("wait {}ms", fault.start_delay_ms));
    }
    if let Some(d) = &fault.delay {
        if d.jitter_ms > 0 {
            parts.push(format!("delay {}ms±{}ms", d.fixed_delay_ms, d.jitter_ms));
        } else {
            parts.push(format!("delay {}ms", d.fixed_delay_ms));
        }
    }
    if let Some(a) = &fault.abort {
        parts.push(format!("abort {}", a.http_status));
    }
    parts.join(", then ")
}

/// A time, or `-`.
pub fn time(ms: Option<u64>) -> String {
    ms.map_or_else(|| "-".to_owned(), boifi_core::time::format_rfc3339)
}

/// A policy's state as listings show it: a guarded active policy shows its guard state
/// (`verifying`, `running`, `tripped`) instead of `active`.
pub fn policy_state(state: &str, guard: Option<&boifi_core::wire::GuardSummary>) -> String {
    match guard {
        Some(g) if state == "active" => g.state.clone(),
        _ => state.to_owned(),
    }
}

/// The line that says which guard stopped a tripped policy, at what value and when; `None`
/// unless tripped.
pub fn guard_stop(guard: &boifi_core::wire::GuardSummary) -> Option<String> {
    (guard.state == "tripped").then(|| {
        format!(
            "stopped by guard `{}` at value {} ({}); re-arm with `boifi-cli policy rearm`",
            guard.guard.as_deref().unwrap_or("?"),
            guard.value.as_deref().unwrap_or("no value"),
            time(guard.at_ms)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let mut t = Table::new(&["NAME", "STATE"]);
        t.row(vec!["frontend-abort".into(), "active".into()]);
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME             STATE\nfrontend-abort   active\n"
        );
    }
}
