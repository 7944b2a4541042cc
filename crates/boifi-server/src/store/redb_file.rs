//! The file of the embedded store (`--storage embedded`, the default): a [`LocalStore`] opened
//! with [`LocalStore::open`] mirrors its view in a redb database file in `--data-dir`.
//!
//! redb commits are durable when `commit` returns (copy-on-write B-trees, checksummed, fsync on
//! commit), so an acknowledged write survives a SIGKILL or power loss. The config version is a
//! generation counter kept in the same transaction as the policy it versions.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use boifi_core::policy::PolicyDocument;
use redb::{Database, ReadableTable, TableDefinition};

use super::local::LocalStore;
use super::{Snapshot, StoreError};

/// Policy name → the stored policy as JSON (status included).
const POLICIES: TableDefinition<&str, &[u8]> = TableDefinition::new("policies");
/// `version` → the generation counter.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const VERSION_KEY: &str = "version";
/// The database file inside the data directory.
pub const DB_FILE: &str = "boifi.redb";

/// The redb file of a [`LocalStore`] opened with [`LocalStore::open`]; the store's view mirrors
/// the file and is published on each commit.
#[derive(Debug)]
pub struct Disk {
    db: Arc<Database>,
    path: PathBuf,
}

fn backend(context: &str) -> impl Fn(redb::Error) -> StoreError + '_ {
    move |e| StoreError::Backend(format!("{context}: {e}"))
}

/// One change to persist.
pub(super) enum Change {
    Put(String, Vec<u8>),
    Delete(String),
    DeleteAll,
}

impl LocalStore {
    /// Opens (creating if needed) `data_dir/boifi.redb` and loads every policy.
    pub async fn open(data_dir: &Path) -> Result<LocalStore, StoreError> {
        let data_dir = data_dir.to_owned();
        tokio::task::spawn_blocking(move || open_blocking(&data_dir))
            .await
            .map_err(|e| StoreError::Backend(format!("opening the database: {e}")))?
    }

    /// The database file (`None` for a store made with [`LocalStore::in_memory`]).
    pub fn path(&self) -> Option<&Path> {
        self.disk.as_ref().map(|disk| disk.path.as_path())
    }
}

fn open_blocking(data_dir: &Path) -> Result<LocalStore, StoreError> {
    std::fs::create_dir_all(data_dir).map_err(|e| {
        StoreError::Unavailable(format!(
            "cannot create data directory `{}`: {e}",
            data_dir.display()
        ))
    })?;
    let path = data_dir.join(DB_FILE);
    let db = Database::create(&path)
        .map_err(|e| StoreError::Unavailable(format!("cannot open `{}`: {e}", path.display())))?;
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
    let disk = Disk {
        db: Arc::new(db),
        path,
    };
    Ok(LocalStore::with(Some(disk), snapshot))
}

impl Disk {
    /// Writes `change` at `version`, durably, off the async threads.
    pub(super) async fn commit(&self, version: u64, change: Change) -> Result<(), StoreError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || persist(&db, version, change))
            .await
            .map_err(|e| StoreError::Backend(format!("writing the database: {e}")))?
    }

    /// Whether the file can be read.
    pub(super) async fn ready(&self) -> Result<(), StoreError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            db.begin_read()
                .map(drop)
                .map_err(|e| StoreError::Unavailable(format!("database not readable: {e}")))
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
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
    let err = backend("writing the database");
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
