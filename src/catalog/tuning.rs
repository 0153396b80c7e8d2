//! What the server's flags set for the whole catalog: the collection limit, the memtable budget
//! every collection charges, and the per-collection settings every collection, open or created
//! later, runs with.

use std::sync::Arc;

use super::Catalog;
use crate::engine::{Collection, MemtableBudget, DEFAULT_MEMTABLE_ROWS, DEFAULT_WRITE_STALL};

/// Per-collection settings the server's flags give every collection of the catalog.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tuning {
    memtable_rows: usize,
    write_stall: std::time::Duration,
}

/// The engine's defaults, until the server's flags say otherwise.
impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            memtable_rows: DEFAULT_MEMTABLE_ROWS,
            write_stall: DEFAULT_WRITE_STALL,
        }
    }
}

impl Tuning {
    /// Gives `engine` these settings.
    pub(super) fn apply(&self, engine: &Collection) {
        engine.set_memtable_rows(self.memtable_rows);
        engine.set_write_stall(self.write_stall);
    }
}

impl Catalog {
    /// Sets the most collections creates may bring the catalog to (existing ones stay).
    pub fn set_max_collections(&self, max: usize) {
        self.max_collections
            .store(max, std::sync::atomic::Ordering::Relaxed);
    }

    /// The memtable memory budget shared by every collection (its use and limit are metrics).
    pub fn memtable_budget(&self) -> &Arc<MemtableBudget> {
        &self.budget
    }

    /// Sets the memtable memory budget in bytes (default
    /// [`DEFAULT_MEMTABLE_BUDGET_BYTES`](crate::engine::DEFAULT_MEMTABLE_BUDGET_BYTES)); past
    /// it writes that add rows stall, then get 429.
    pub fn set_memtable_budget(&self, bytes: usize) {
        self.budget.set_limit(bytes);
    }

    /// Sets the memtable rows at which every collection, open or created later, flushes
    /// (default [`DEFAULT_MEMTABLE_ROWS`]).
    pub fn set_memtable_rows(&self, rows: usize) {
        self.tune(|t| t.memtable_rows = rows);
    }

    /// Sets how long a write that adds rows waits for room (a flush) before 429, for every
    /// collection, open or created later (default [`DEFAULT_WRITE_STALL`]).
    pub fn set_write_stall(&self, wait: std::time::Duration) {
        self.tune(|t| t.write_stall = wait);
    }

    fn tune(&self, change: impl FnOnce(&mut Tuning)) {
        // Under the writer lock, so a create running meanwhile gets the new value.
        let _w = self.writer.lock();
        let mut tuning = self.tuning.lock();
        change(&mut tuning);
        for entry in self.snapshot().collections.values() {
            if let Ok(engine) = entry.engine() {
                tuning.apply(engine);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::test_support::new;
    use crate::catalog::{DEFAULT_DATABASE, DEFAULT_TENANT};

    /// Every collection of the catalog charges one memtable budget; deleting a collection
    /// gives its bytes back, and a reopened catalog charges the replayed memtables again.
    #[test]
    fn collections_share_the_memtable_budget_and_deletes_release_it() {
        use crate::types::{Record, WriteBatch};
        let tmp = tempfile::tempdir().unwrap();
        let add = |c: &Catalog, name: &str, n: usize| {
            let (e, _) = c.create_collection(new(name), true).unwrap();
            let rows = (0..n)
                .map(|i| Record {
                    id: format!("id{i}"),
                    embedding: vec![i as f32, 1.0],
                    metadata: None,
                    document: Some("doc".into()),
                    uri: None,
                })
                .collect();
            e.engine()
                .unwrap()
                .apply(WriteBatch::Add(rows), None)
                .unwrap();
        };
        let used = {
            let c = Catalog::open(tmp.path()).unwrap();
            c.set_memtable_budget(1 << 30);
            assert_eq!(c.memtable_budget().limit(), 1 << 30);
            add(&c, "one", 10);
            let one = c.memtable_budget().used();
            assert!(one > 0);
            add(&c, "two", 10);
            assert_eq!(c.memtable_budget().used(), 2 * one);
            c.delete_collection(DEFAULT_TENANT, DEFAULT_DATABASE, "two")
                .unwrap();
            assert_eq!(c.memtable_budget().used(), one);
            one
        };
        // Not flushed (dropping does not flush): the rows replay into a charged memtable.
        let c = Catalog::open(tmp.path()).unwrap();
        assert_eq!(c.memtable_budget().used(), used);
        c.reset().unwrap();
        assert_eq!(c.memtable_budget().used(), 0);
    }
}
