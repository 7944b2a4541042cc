//! The ephemeral in-memory store (`--storage memory`): everything is lost on exit.

use super::local::LocalStore;
use super::Snapshot;

/// Policies in memory; the version starts at 0 with every process: a [`LocalStore`] without a
/// file.
pub type MemoryStore = LocalStore;

impl Default for LocalStore {
    fn default() -> Self {
        LocalStore::new()
    }
}

impl LocalStore {
    /// An empty store at version 0, in memory only.
    pub fn new() -> LocalStore {
        LocalStore::with(None, Snapshot::default())
    }
}
