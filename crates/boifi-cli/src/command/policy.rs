//! `policy apply|get|list|describe|delete`.

use std::collections::BTreeMap;
use std::io::Write;

use boifi_core::policy::guard::GuardCondition;
use boifi_core::policy::{PolicyDocument, PolicyState, Sampling};
use boifi_core::wire::PolicyList;
use serde_json::Value;

use super::policy_path;
use crate::cli::{
    ApplyArgs, DeleteArgs, DescribeArgs, GetArgs, GlobalArgs, OutputFormat, PolicyCommand,
    RearmArgs,
};
use crate::client::{Answer, Client};
use crate::error::CliError;
use crate::load;
use crate::output::{self, Table};

/// Runs one `policy` verb.
pub fn run(
    global: &GlobalArgs,
    command: PolicyCommand,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    match command {
        PolicyCommand::Apply(args) => apply(global, &args, out),
        PolicyCommand::Get(args) => get(global, &args, out),
        PolicyCommand::List(args) => get(
            global,
            &GetArgs {
                name: None,
                selector: args.selector,
                guard_state: args.guard_state,
            },
            out,
        ),
        PolicyCommand::Rearm(args) => rearm(global, &args, out),
        PolicyCommand::Describe(args) => describe(global, &args, out),
        PolicyCommand::Delete(args) => delete(global, &args, out),
    }
}

/// What applying a document does to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Created,
    Configured,
    Unchanged,
}

impl Change {
    fn as_str(self) -> &'static str {
        match self {
            Change::Created => "created",
            Change::Configured => "configured",
            Change::Unchanged => "unchanged",
        }
    }
}

fn apply(global: &GlobalArgs, args: &ApplyArgs, out: &mut dyn Write) -> Result<(), CliError> {
    // Everything is validated before anything is sent: a bad document changes nothing.
    let mut loaded =
        load::load(&args.files.files, args.files.recursive).map_err(CliError::Invalid)?;
    for item in &mut loaded {
        for rule in &mut item.policy.spec.rules {
            if let Some(seconds) = args.duration_seconds {
                rule.fault.duration_seconds = seconds;
            }
            if let Some(ms) = args.start_delay_ms {
                rule.fault.start_delay_ms = ms;
            }
        }
    }
    let client = Client::from_args(global)?;
    let now = output::now_ms();
    let mut failed = 0;
    for item in &loaded {
        let policy = &item.policy;
        // What the server holds decides created/configured/unchanged. When that cannot be
        // read (e.g. the name is one of the API's own paths), the server judges the write.
        let current = match fetch(&client, policy.name()) {
            Ok(current) => Some(current),
            Err(e @ CliError::BadResponse { .. }) | Err(e @ CliError::Api { .. })
                if !args.dry_run || !e.is_server_side() =>
            {
                if args.dry_run {
                    eprintln!(
                        "error: {}: document {}: faultinjectionpolicy \"{}\": cannot tell what would change: {e}",
                        item.source,
                        item.document,
                        policy.name()
                    );
                    failed += 1;
                    continue;
                }
                None
            }
            Err(e) => return Err(e),
        };
        let planned = match &current {
            None => Change::Configured,
            Some(None) => Change::Created,
            // An expired policy is written again so its duration counts anew.
            Some(Some(c)) if same(c, policy) && c.state_at(now) != PolicyState::Expired => {
                Change::Unchanged
            }
            Some(Some(_)) => Change::Configured,
        };
        if args.dry_run {
            writeln!(
                out,
                "faultinjectionpolicy \"{}\" {} (dry run)",
                policy.name(),
                planned.as_str()
            )?;
            if let Some(Some(current)) = &current {
                for line in changes(current, policy) {
                    writeln!(out, "  {line}")?;
                }
            }
            continue;
        }
        if planned == Change::Unchanged {
            writeln!(out, "faultinjectionpolicy \"{}\" unchanged", policy.name())?;
            continue;
        }
        let answer = client.post_json("/v1/policies", policy)?;
        if answer.is_success() {
            let done = if answer.status == 201 {
                Change::Created
            } else {
                Change::Configured
            };
            writeln!(
                out,
                "faultinjectionpolicy \"{}\" {}",
                policy.name(),
                done.as_str()
            )?;
        } else {
            let error = answer.into_error();
            if error.is_server_side() {
                return Err(error);
            }
            eprintln!(
                "error: {}: document {}: faultinjectionpolicy \"{}\": {error}",
                item.source,
                item.document,
                policy.name()
            );
            failed += 1;
        }
    }
    if failed > 0 {
        return Err(CliError::Partial {
            failed,
            total: loaded.len(),
            what: "applied",
        });
    }
    Ok(())
}

/// The policy on the server, or `None` when it does not exist.
fn fetch(client: &Client, name: &str) -> Result<Option<PolicyDocument>, CliError> {
    let answer = client.get(&policy_path(name)?)?;
    if answer.status == 404 {
        return Ok(None);
    }
    read_policy(client, name, answer).map(Some)
}

/// The policy on the server; the server's 404 when it does not exist.
fn fetch_required(client: &Client, name: &str) -> Result<PolicyDocument, CliError> {
    let answer = client.get(&policy_path(name)?)?;
    read_policy(client, name, answer)
}

fn read_policy(client: &Client, name: &str, answer: Answer) -> Result<PolicyDocument, CliError> {
    let value: Value = answer.json()?;
    // A bare document, or one wrapped as `{"policy": ...}`.
    let document = match value.get("policy") {
        Some(inner) if value.get("metadata").is_none() => inner,
        _ => &value,
    };
    let path = policy_path(name)?;
    PolicyDocument::from_value(document).map_err(|e| CliError::BadResponse {
        url: format!("{}{path}", client.base()),
        status: 200,
        reason: e.to_string(),
    })
}

fn same(a: &PolicyDocument, b: &PolicyDocument) -> bool {
    a.metadata == b.metadata && a.spec == b.spec
}

/// The fields that differ between the stored policy and the new one, `path: old -> new`.
fn changes(current: &PolicyDocument, new: &PolicyDocument) -> Vec<String> {
    let view = |p: &PolicyDocument| {
        let mut p = p.clone();
        p.status = None;
        serde_json::to_value(&p).unwrap_or(Value::Null)
    };
    let mut lines = Vec::new();
    diff("", &view(current), &view(new), &mut lines);
    lines
}

fn diff(path: &str, old: &Value, new: &Value, lines: &mut Vec<String>) {
    let child = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                match (a.get(key.as_str()), b.get(key.as_str())) {
                    (Some(x), Some(y)) => diff(&child(key), x, y, lines),
                    (Some(x), None) => lines.push(format!("{}: {x} -> (removed)", child(key))),
                    (None, Some(y)) => lines.push(format!("{}: (added) -> {y}", child(key))),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for i in 0..a.len().max(b.len()) {
                let at = format!("{path}[{i}]");
                match (a.get(i), b.get(i)) {
                    (Some(x), Some(y)) => diff(&at, x, y, lines),
                    (Some(x), None) => lines.push(format!("{at}: {x} -> (removed)")),
                    (None, Some(y)) => lines.push(format!("{at}: (added) -> {y}")),
                    (None, None) => {}
                }
            }
        }
        (a, b) if a != b => lines.push(format!("{path}: {a} -> {b}")),
        _ => {}
    }
}

fn get(global: &GlobalArgs, args: &GetArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let client = Client::from_args(global)?;
    let policies = match &args.name {
        Some(name) => vec![fetch_required(&client, name)?],
        None => {
            let wanted: BTreeMap<String, String> = args.selector.iter().cloned().collect();
            let mut policies = client.get("/v1/policies")?.json::<PolicyList>()?.policies;
            policies.retain(|p| p.has_labels(&wanted));
            if let Some(wanted) = args.guard_state {
                policies.retain(|p| {
                    p.guard_state()
                        .is_some_and(|g| g.as_str() == wanted.as_str())
                });
            }
            policies
        }
    };
    match (global.output, &args.name) {
        (OutputFormat::Json, Some(_)) => match policies.first() {
            Some(policy) => output::json(out, policy),
            None => Ok(()),
        },
        (OutputFormat::Json, None) => output::json(out, &PolicyList { policies }),
        (OutputFormat::Yaml, _) => output::yaml_documents(out, &policies),
        (OutputFormat::Table, _) => {
            if policies.is_empty() {
                writeln!(out, "no policies")?;
                return Ok(());
            }
            table(&policies, output::now_ms()).write(out)?;
            Ok(())
        }
    }
    .map(|_| ())
}

/// The listing of `policy get`/`policy list`.
pub fn table(policies: &[PolicyDocument], now: u64) -> Table {
    let mut table = Table::new(&[
        "NAME",
        "SERVICE",
        "NAMESPACE",
        "LABELS",
        "RULES",
        "FAULTS",
        "STATE",
        "EXPIRES",
    ]);
    for p in policies {
        let (service, namespace, labels) = output::selector(p);
        table.row(vec![
            p.name().to_owned(),
            service,
            namespace,
            labels,
            p.spec.rules.len().to_string(),
            p.fault_kinds().join(","),
            output::policy_state(
                p.state_at(now).as_str(),
                boifi_core::wire::GuardSummary::of(p).as_ref(),
            ),
            output::time(p.status.and_then(|s| s.expires_at_ms)),
        ]);
    }
    table
}

fn describe(global: &GlobalArgs, args: &DescribeArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let client = Client::from_args(global)?;
    let policy = fetch_required(&client, &args.name)?;
    match global.output {
        OutputFormat::Json => output::json(out, &policy),
        OutputFormat::Yaml => output::yaml(out, &policy),
        OutputFormat::Table => {
            describe_text(&policy, output::now_ms(), out)?;
            Ok(())
        }
    }
}

/// The text of `policy describe`.
pub fn describe_text(p: &PolicyDocument, now: u64, out: &mut dyn Write) -> std::io::Result<()> {
    let (service, namespace, labels) = output::selector(p);
    writeln!(out, "Name:        {}", p.name())?;
    writeln!(
        out,
        "Version:     {}",
        p.metadata.version.as_deref().unwrap_or("-")
    )?;
    if let Some(namespace) = &p.metadata.namespace {
        writeln!(out, "Namespace:   {namespace}")?;
    }
    if !p.metadata.labels.is_empty() {
        writeln!(out, "Labels:      {}", output::pairs(&p.metadata.labels))?;
    }
    if !p.metadata.annotations.is_empty() {
        writeln!(
            out,
            "Annotations: {}",
            output::pairs(&p.metadata.annotations)
        )?;
    }
    writeln!(out, "Priority:    {}", p.spec.priority)?;
    writeln!(out, "Enabled:     {}", p.spec.enabled)?;
    writeln!(out, "Selector:")?;
    writeln!(out, "  Service:   {service}")?;
    writeln!(out, "  Namespace: {namespace}")?;
    writeln!(out, "  Labels:    {labels}")?;
    let sampling = match p.spec.sampling {
        Sampling::Random => "random",
        Sampling::Request => "request (hash of x-request-id)",
    };
    writeln!(out, "Sampling:    {sampling}")?;
    if let Some(w) = p.spec.window {
        writeln!(
            out,
            "Window:      {} to {}",
            output::time(Some(w.start_ms)),
            output::time(Some(w.end_ms))
        )?;
    }
    writeln!(out, "State:       {}", p.state_at(now).as_str())?;
    if let Some(status) = p.status {
        writeln!(
            out,
            "Stored at:   {}",
            output::time(Some(status.stored_at_ms))
        )?;
        writeln!(
            out,
            "Expires at:  {}",
            status
                .expires_at_ms
                .map_or_else(|| "never".to_owned(), |ms| output::time(Some(ms)))
        )?;
        writeln!(out, "Revision:    {}", status.revision)?;
    }
    if let Some(summary) = boifi_core::wire::GuardSummary::of(p) {
        writeln!(out, "Guard state: {}", summary.state)?;
        if let Some(line) = output::guard_stop(&summary) {
            writeln!(out, "  {line}")?;
        }
        writeln!(out, "Guards:")?;
        for g in &p.spec.guards {
            let condition = match &g.condition {
                GuardCondition::Success(c) => format!("pass while {c}"),
                GuardCondition::Failure(c) => format!("fail when {c}"),
            };
            writeln!(out, "  {}: {condition}", g.name)?;
            writeln!(out, "      Query:  {}", g.query.trim())?;
            writeln!(
                out,
                "      Every {}s; stops after {} failure(s) in a row; on error: {}",
                g.interval_seconds,
                g.failure_limit,
                g.on_error.as_str()
            )?;
        }
    }
    writeln!(out, "Rules:")?;
    for (i, rule) in p.spec.rules.iter().enumerate() {
        let m = &rule.matches;
        let mut conditions = Vec::new();
        if let Some(method) = &m.method {
            conditions.push(format!("method {}", output::string_match(method)));
        }
        if let Some(path) = &m.path {
            conditions.push(format!("path {}", output::string_match(path)));
        }
        for h in &m.headers {
            conditions.push(format!(
                "header {} {}",
                h.name,
                output::string_match(&h.value)
            ));
        }
        writeln!(out, "  [{i}] Match:  {}", conditions.join(", "))?;
        writeln!(
            out,
            "      Fault:  {}% {}",
            rule.fault.percentage.number(),
            output::fault_summary(p, i)
        )?;
        if let Some(a) = &rule.fault.abort {
            if let Some(grpc) = a.grpc_status {
                writeln!(out, "      gRPC:   status {grpc}")?;
            }
        }
        if rule.fault.duration_seconds > 0 {
            writeln!(
                out,
                "      For:    {}s after it was stored",
                rule.fault.duration_seconds
            )?;
        }
    }
    Ok(())
}

/// `policy rearm`: a tripped (or any guarded) policy back to verifying.
fn rearm(global: &GlobalArgs, args: &RearmArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let client = Client::from_args(global)?;
    let path = format!("{}/rearm", policy_path(&args.name)?);
    let answer = client.post_empty(&path)?;
    let policy = read_policy(&client, &args.name, answer)?;
    let state = policy.guard_state().map_or("unguarded", |s| s.as_str());
    writeln!(out, "policy/{} re-armed ({state})", policy.name())?;
    Ok(())
}

fn delete(global: &GlobalArgs, args: &DeleteArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let client = Client::from_args(global)?;
    let mut failed = 0;
    for name in &args.names {
        let answer = client.delete(&policy_path(name)?)?;
        if answer.is_success() {
            writeln!(out, "faultinjectionpolicy \"{name}\" deleted")?;
        } else if answer.status == 404 && args.ignore_not_found {
            continue;
        } else {
            let error = answer.into_error();
            if error.is_server_side() {
                return Err(error);
            }
            eprintln!("error: faultinjectionpolicy \"{name}\": {error}");
            failed += 1;
        }
    }
    if failed > 0 {
        return Err(CliError::Partial {
            failed,
            total: args.names.len(),
            what: "deleted",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_name_every_differing_field() {
        let a = boifi_core::policy::parse_policy_json(
            r#"{"metadata":{"name":"one"},"spec":{"selector":{"service":"frontend"},
               "rules":[{"match":{"path":{"prefix":"/"}},"fault":{"percentage":10,"abort":{"httpStatus":503}}}]}}"#,
        )
        .unwrap();
        let b = boifi_core::policy::parse_policy_json(
            r#"{"metadata":{"name":"one"},"spec":{"selector":{"service":"frontend","labels":{"v":"2"}},
               "rules":[{"match":{"path":{"prefix":"/"}},"fault":{"percentage":50,"abort":{"httpStatus":503}}}]}}"#,
        )
        .unwrap();
        let lines = changes(&a, &b);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("spec.rules[0].fault.percentage: "),
            "{lines:?}"
        );
        assert_eq!(lines[1], "spec.selector.labels: (added) -> {\"v\":\"2\"}");
        assert!(changes(&a, &a).is_empty());
    }
}
