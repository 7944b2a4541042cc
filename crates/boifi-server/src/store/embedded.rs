//! The embedded store (`--storage embedded`, the default): a redb database file in `--data-dir`.
//!
//! redb commits are durable when `commit` returns (copy-on-write B-trees, checksummed, fsync on
//! commit), so an acknowledged write survives a SIGKILL or power loss. The config version is a
//! generation counter kept in the same transaction as the policy it versions.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use boifi_core::policy::PolicyDocument;
use redb::{Database, ReadableTable, TableDefinition};
use tokio::sync::{watch, Mutex};

use crate::sidecars::SidecarChanges;

use super::{
    now_ms, plan_delete, plan_delete_all, plan_put, DeleteOutcome, LocalShare, PolicyStore,
    PutOutcome, ShareOutcome, SharedSidecar, Snapshot, StoreError, WriteCondition,
};

/// Policy name → the stored policy as JSON (status included).
const POLICIES: TableDefinition<&str, &[u8]> = TableDefinition::new("policies");
/// `version` → the generation counter.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const VERSION_KEY: &str = "version";
/// The database file inside the data directory.
pub const DB_FILE: &str = "boifi.redb";

/// Policies in a redb file; the in-memory view mirrors the file and is published on each commit.
#[derive(Debug)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    path: PathBuf,
    /// Serializes writers so a plan is made against the view it replaces.
    write: Mutex<()>,
    tx: watch::Sender<Arc<Snapshot>>,
    /// Sidecar reports: kept in memory, as one replica needs nothing more.
    sidecars: LocalShare,
}

fn backend(context: &str) -> impl Fn(redb::Error) -> StoreError + '_ {
    move |e| StoreError::Backend(format!("{context}: {e}"))
}

/// One change to persist.
enum Change {
    Put(String, Vec<u8>),
    Delete(String),
    DeleteAll,
}

impl EmbeddedStore {
    /// Opens (creating if needed) `data_dir/boifi.redb` and loads every policy.
    pub async fn open(data_dir: &Path) -> Result<EmbeddedStore, StoreError> {
        let data_dir = data_dir.to_owned();
        tokio::task::spawn_blocking(move || EmbeddedStore::open_blocking(&data_dir))
            .await
            .map_err(|e| StoreError::Backend(format!("opening the database: {e}")))?
    }

    fn open_blocking(data_dir: &Path) -> Result<EmbeddedStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot create data directory `{}`: {e}",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join(DB_FILE);
        let db = Database::create(&path).map_err(|e| {
            StoreError::Unavailable(format!("cannot open `{}`: {e}", path.display()))
        })?;
        let init = "creating tables";
        let txn = db.begin_write().map_err(|e| backend(init)(e.into()))?;
        {
            txn.open_table(POLICIES)
                .map_err(|e| backend(init)(e.into()))?;
            txn.open_table(META).map_err(|e| backend(init)(e.into()))?;
        }
        txn.commit().map_err(|e| backend(init)(e.into()))?;
        let snapshot = load(&db)?;
        tracing::info!(
            path = %path.display(),
            version = snapshot.version,
            policies = snapshot.policies.len(),
            "embedded store opened"
        );
        Ok(EmbeddedStore {
            db: Arc::new(db),
            path,
            write: Mutex::new(()),
            tx: watch::Sender::new(Arc::new(snapshot)),
            sidecars: LocalShare::default(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn commit(&self, version: u64, change: Change) -> Result<(), StoreError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || persist(&db, version, change))
            .await
            .map_err(|e| StoreError::Backend(format!("writing the database: {e}")))?
    }
}

fn load(db: &Database) -> Result<Snapshot, StoreError> {
    let ctx = "reading the database";
    let txn = db.begin_read().map_err(|e| backend(ctx)(e.into()))?;
    let meta = txn.open_table(META).map_err(|e| backend(ctx)(e.into()))?;
    let version = meta
        .get(VERSION_KEY)
        .map_err(|e| backend(ctx)(e.into()))?
        .map_or(0, |v| v.value());
    let table = txn
        .open_table(POLICIES)
        .map_err(|e| backend(ctx)(e.into()))?;
    let mut snapshot = Snapshot {
        version,
        ..Snapshot::default()
    };
    for item in table.iter().map_err(|e| backend(ctx)(e.into()))? {
        let (key, value) = item.map_err(|e| backend(ctx)(e.into()))?;
        match serde_json::from_slice::<PolicyDocument>(value.value()) {
            Ok(policy) => {
                snapshot.policies.insert(key.value().to_owned(), policy);
            }
            // Stored by an older or newer server with a different format: leave it in the file
            // (a later version may read it) but do not serve it.
            Err(e) => {
                tracing::error!(policy = key.value(), error = %e, "unreadable stored policy skipped")
            }
        }
    }
    Ok(snapshot)
}

fn persist(db: &Database, version: u64, change: Change) -> Result<(), StoreError> {
    let ctx = "writing the database";
    let err = |e: redb::Error| StoreError::Backend(format!("{ctx}: {e}"));
    let txn = db.begin_write().map_err(|e| err(e.into()))?;
    {
        let mut table = txn.open_table(POLICIES).map_err(|e| err(e.into()))?;
        match &change {
            Change::Put(name, json) => {
                table
                    .insert(name.as_str(), json.as_slice())
                    .map_err(|e| err(e.into()))?;
            }
            Change::Delete(name) => {
                table.remove(name.as_str()).map_err(|e| err(e.into()))?;
            }
            Change::DeleteAll => {
                table.retain(|_, _| false).map_err(|e| err(e.into()))?;
            }
        }
        let mut meta = txn.open_table(META).map_err(|e| err(e.into()))?;
        meta.insert(VERSION_KEY, version)
            .map_err(|e| err(e.into()))?;
    }
    txn.commit().map_err(|e| err(e.into()))
}

#[async_trait::async_trait]
impl PolicyStore for EmbeddedStore {
    async fn snapshot(&self) -> Result<Arc<Snapshot>, StoreError> {
        Ok(self.tx.borrow().clone())
    }

    async fn put(
        &self,
        policy: PolicyDocument,
        condition: WriteCondition,
    ) -> Result<PutOutcome, StoreError> {
        let _guard = self.write.lock().await;
        let current = self.tx.borrow().clone();
        let plan = plan_put(&current, policy, condition, now_ms())?;
        let json = serde_json::to_vec(&plan.outcome.policy)
            .map_err(|e| StoreError::Backend(format!("encoding the policy: {e}")))?;
        let name = plan.outcome.policy.name().to_owned();
        self.commit(plan.next.version, Change::Put(name, json))
            .await?;
        self.tx.send_replace(Arc::new(plan.next));
        Ok(plan.outcome)
    }

    async fn delete(
        &self,
        name: &str,
        condition: WriteCondition,
    ) -> Result<DeleteOutcome, StoreError> {
        let _guard = self.write.lock().await;
        let current = self.tx.borrow().clone();
        let plan = plan_delete(&current, name, condition)?;
        self.commit(plan.next.version, Change::Delete(name.to_owned()))
            .await?;
        self.tx.send_replace(Arc::new(plan.next));
        Ok(plan.outcome)
    }

    async fn delete_all(&self) -> Result<u64, StoreError> {
        let _guard = self.write.lock().await;
        let current = self.tx.borrow().clone();
        let Some(plan) = plan_delete_all(&current)? else {
            return Ok(0);
        };
        self.commit(plan.next.version, Change::DeleteAll).await?;
        self.tx.send_replace(Arc::new(plan.next));
        Ok(plan.outcome)
    }

    fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    async fn ready(&self) -> Result<(), StoreError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            db.begin_read()
                .map(drop)
                .map_err(|e| StoreError::Unavailable(format!("database not readable: {e}")))
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
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
