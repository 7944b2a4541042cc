//! The audit trail: one structured log line per write, delete, halt and expiry, naming who did
//! it, and the latest entries of this replica for `GET /v1/audit`.

use std::collections::VecDeque;
use std::sync::Mutex;

pub use boifi_core::wire::{AuditEntry, AuditList};

use crate::auth::Caller;
use crate::store::now_ms;

/// How many entries `GET /v1/audit` keeps (this replica's latest; the log keeps them all).
pub const AUDIT_CAPACITY: usize = 1000;

/// This replica's audit trail.
#[derive(Debug, Default)]
pub struct AuditLog {
    entries: Mutex<VecDeque<AuditEntry>>,
}

impl AuditLog {
    /// Logs one change (target `boifi_server::audit`) and keeps it for `GET /v1/audit`.
    pub fn record(&self, caller: &Caller, action: &str, policy: &str, before: u64, after: u64) {
        tracing::info!(
            target: "boifi_server::audit",
            who = %caller.name,
            action,
            policy,
            version_before = before,
            version_after = after,
            "audit"
        );
        let entry = AuditEntry {
            at_ms: now_ms(),
            who: caller.name.clone(),
            action: action.to_owned(),
            policy: policy.to_owned(),
            version_before: before,
            version_after: after,
        };
        // A panic elsewhere while holding the lock leaves the deque whole: keep using it.
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= AUDIT_CAPACITY {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    /// The kept entries, oldest first.
    pub fn recent(&self) -> Vec<AuditEntry> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.iter().cloned().collect()
    }
}
