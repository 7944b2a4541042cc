//! Which namespaces a write may reach: the server's opt-in list (`--target-namespaces`) for
//! everyone, and each token's own `namespaces`.
//!
//! A policy reaches the namespace of `spec.selector.namespace`; without one (or with `*`) it
//! reaches every namespace. `metadata.namespace` is informational and plays no part.

use std::collections::BTreeSet;

use boifi_core::policy::PolicyDocument;

use crate::auth::Caller;
use crate::error::ApiFailure;

/// The namespaces that opted in to fault injection; `None`: every namespace may be targeted
/// (the default, so legacy policies without a selector namespace keep loading).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetNamespaces(Option<BTreeSet<String>>);

impl TargetNamespaces {
    /// Every namespace may be targeted.
    pub fn any() -> TargetNamespaces {
        TargetNamespaces(None)
    }

    /// Only `namespaces` may be targeted (an empty list: none).
    pub fn only<I: IntoIterator<Item = String>>(namespaces: I) -> TargetNamespaces {
        TargetNamespaces(Some(namespaces.into_iter().collect()))
    }

    /// Whether a list is in force.
    pub fn restricted(&self) -> bool {
        self.0.is_some()
    }
}

fn listed(set: &BTreeSet<String>) -> String {
    if set.is_empty() {
        return "none".to_owned();
    }
    let names: Vec<String> = set.iter().map(|n| format!("`{n}`")).collect();
    names.join(", ")
}

/// The namespace a policy selects; `None`: every namespace.
pub fn selected_namespace(policy: &PolicyDocument) -> Option<&str> {
    policy.spec.selector.namespace.as_deref()
}

/// Whether `caller` may store `policy` on a server whose opt-in list is `targets`: 403 naming
/// the token or the list, and the namespace, otherwise.
pub fn check_target(
    caller: &Caller,
    targets: &TargetNamespaces,
    policy: &PolicyDocument,
) -> Result<(), ApiFailure> {
    let namespace = selected_namespace(policy);
    let name = policy.name();
    if !caller.may_target(namespace) {
        return Err(ApiFailure::Forbidden(match namespace {
            None => format!(
                "policy `{name}`: token `{}` may not target every namespace (`*`, or no `spec.selector.namespace`): it may target {}",
                caller.name, caller.grant.namespaces
            ),
            Some(ns) => format!(
                "policy `{name}`: token `{}` may not target namespace `{ns}`: it may target {}",
                caller.name, caller.grant.namespaces
            ),
        }));
    }
    if let TargetNamespaces(Some(allowed)) = targets {
        match namespace {
            None => {
                return Err(ApiFailure::Forbidden(format!(
                    "policy `{name}`: without `spec.selector.namespace` (or with `*`) it targets every namespace, but only namespaces that opted in may be targeted here ({}): add `spec.selector.namespace`",
                    listed(allowed)
                )))
            }
            Some(ns) if !allowed.contains(ns) => {
                return Err(ApiFailure::Forbidden(format!(
                    "policy `{name}`: namespace `{ns}` has not opted in to fault injection (opted in: {})",
                    listed(allowed)
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Whether `caller` may `action` (replace, delete) the stored `policy`: a scoped token may not
/// change or remove a policy reaching a namespace outside its own.
pub fn check_stored(
    caller: &Caller,
    action: &str,
    policy: &PolicyDocument,
) -> Result<(), ApiFailure> {
    let namespace = selected_namespace(policy);
    if caller.may_target(namespace) {
        return Ok(());
    }
    let reach = match namespace {
        None => "every namespace (`*`)".to_owned(),
        Some(ns) => format!("namespace `{ns}`"),
    };
    Err(ApiFailure::Forbidden(format!(
        "policy `{}`: token `{}` may not {action} it: the stored policy targets {reach}, and the token may target {}",
        policy.name(),
        caller.name,
        caller.grant.namespaces
    )))
}
