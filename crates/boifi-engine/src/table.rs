//! A small map from a host's `u64` ids (streams, hashes) to values: the one table every
//! per-stream structure of the engine and the Wasm filter uses.
//!
//! Its tables hold a handful of entries: the engine's are bounded by a cap the operator sets
//! (`max_active_delays` for the streams a response-phase fault waits on), and the Wasm filter's
//! stream-to-root table exists only in a VM several plugins share, holding that VM's streams in
//! flight. At that size a linear scan over a vector costs no more time than a tree, and its code
//! is a fraction of a `BTreeMap`'s (whose insert/remove/rebalance code the Wasm module carried
//! once per key and value type). The keys live in their own vector, so the search is compiled
//! once for every value type.

use alloc::vec::Vec;

/// Values by `u64` key, in no particular order; a key is held at most once.
#[derive(Debug, Clone)]
pub struct Table<V> {
    keys: Vec<u64>,
    /// `values[i]` belongs to `keys[i]`.
    values: Vec<V>,
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        Table::new()
    }
}

/// Where `key` is held (not generic: one copy serves every table).
fn position(keys: &[u64], key: u64) -> Option<usize> {
    keys.iter().position(|k| *k == key)
}

impl<V> Table<V> {
    /// An empty table (allocates nothing).
    pub const fn new() -> Self {
        Table {
            keys: Vec::new(),
            values: Vec::new(),
        }
    }

    /// The value held under `key`.
    pub fn get(&self, key: u64) -> Option<&V> {
        self.values.get(position(&self.keys, key)?)
    }

    /// Whether `key` is held.
    pub fn contains(&self, key: u64) -> bool {
        position(&self.keys, key).is_some()
    }

    /// Holds `value` under `key`, replacing (and returning) the value it had.
    pub fn insert(&mut self, key: u64, value: V) -> Option<V> {
        match position(&self.keys, key).and_then(|i| self.values.get_mut(i)) {
            Some(held) => Some(core::mem::replace(held, value)),
            None => {
                self.keys.push(key);
                self.values.push(value);
                None
            }
        }
    }

    /// Removes and returns the value held under `key` (the last entry takes its place).
    pub fn remove(&mut self, key: u64) -> Option<V> {
        let i = position(&self.keys, key)?;
        if i >= self.values.len() {
            return None;
        }
        self.keys.swap_remove(i);
        Some(self.values.swap_remove(i))
    }

    /// Forgets every entry.
    pub fn clear(&mut self) {
        self.keys.clear();
        self.values.clear();
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// No entry is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::Table;
    use std::collections::BTreeMap;

    /// The table against a `BTreeMap` model, over a sequence of inserts and removes that
    /// revisits keys (so replacing, removing the last entry and removing from the middle all
    /// happen).
    #[test]
    fn behaves_like_a_map() {
        let mut table = Table::new();
        let mut model = BTreeMap::new();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for step in 0..2_000_u64 {
            state = boifi_core::rng::splitmix64(state);
            let key = state % 13;
            if state.is_multiple_of(3) {
                assert_eq!(table.remove(key), model.remove(&key), "step {step}");
            } else {
                assert_eq!(
                    table.insert(key, step),
                    model.insert(key, step),
                    "step {step}"
                );
            }
            assert_eq!(table.len(), model.len());
            assert_eq!(table.is_empty(), model.is_empty());
            for k in 0..13 {
                assert_eq!(table.get(k), model.get(&k), "step {step} key {k}");
                assert_eq!(table.contains(k), model.contains_key(&k));
            }
        }
        table.clear();
        assert!(table.is_empty() && table.get(0).is_none());
    }
}
