//! The ephemeral in-memory store (`--storage memory`): everything is lost on exit.

use std::sync::{Arc, Mutex};

use boifi_core::policy::PolicyDocument;
use tokio::sync::watch;

use crate::sidecars::SidecarChanges;

use super::{
    now_ms, plan_delete, plan_delete_all, plan_put, DeleteOutcome, LocalShare, PolicyStore,
    PutOutcome, ShareOutcome, SharedSidecar, Snapshot, StoreError, WriteCondition,
};

/// Policies in memory; the version starts at 0 with every process.
#[derive(Debug)]
pub struct MemoryStore {
    /// Serializes writers; the current view lives in the watch channel.
    write: Mutex<()>,
    tx: watch::Sender<Arc<Snapshot>>,
    /// Sidecar reports: kept in memory, as one replica needs nothing more.
    sidecars: LocalShare,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    /// An empty store at version 0.
    pub fn new() -> MemoryStore {
        MemoryStore {
            write: Mutex::new(()),
            tx: watch::Sender::new(Arc::new(Snapshot::default())),
            sidecars: LocalShare::default(),
        }
    }

    fn locked<T>(
        &self,
        f: impl FnOnce(&Snapshot) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // A poisoned lock only means another writer panicked; the view itself is immutable.
        let _guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.tx.borrow().clone();
        f(&current)
    }
}

#[async_trait::async_trait]
impl PolicyStore for MemoryStore {
    async fn snapshot(&self) -> Result<Arc<Snapshot>, StoreError> {
        Ok(self.tx.borrow().clone())
    }

    async fn put(
        &self,
        policy: PolicyDocument,
        condition: WriteCondition,
    ) -> Result<PutOutcome, StoreError> {
        self.locked(|current| {
            let plan = plan_put(current, policy, condition, now_ms())?;
            self.tx.send_replace(Arc::new(plan.next));
            Ok(plan.outcome)
        })
    }

    async fn delete(
        &self,
        name: &str,
        condition: WriteCondition,
    ) -> Result<DeleteOutcome, StoreError> {
        self.locked(|current| {
            let plan = plan_delete(current, name, condition)?;
            self.tx.send_replace(Arc::new(plan.next));
            Ok(plan.outcome)
        })
    }

    async fn delete_all(&self) -> Result<u64, StoreError> {
        self.locked(|current| match plan_delete_all(current)? {
            None => Ok(0),
            Some(plan) => {
                self.tx.send_replace(Arc::new(plan.next));
                Ok(plan.outcome)
            }
        })
    }

    fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    async fn ready(&self) -> Result<(), StoreError> {
        Ok(())
    }
    async fn share_sidecars(
        &self,
        replica: &str,
        changes: &SidecarChanges,
    ) -> Result<ShareOutcome, StoreError> {
        Ok(self.sidecars.share(replica, changes))
    }

    async fn shared_sidecars(&self) -> Result<Vec<SharedSidecar>, StoreError> {
        Ok(self.sidecars.list())
    }
}
