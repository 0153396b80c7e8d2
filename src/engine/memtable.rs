//! The memtable: the newest rows, appended in write order, in RAM. Rows are never changed in
//! place — an update appends a new version and tombstones the old one — so a frozen memtable can
//! be written out as a segment (row numbers preserved) while readers keep using it.

use std::collections::HashMap;

use super::segment::records::Fields;
use crate::index::distance::inverse_norm;

#[derive(Debug)]
pub(crate) struct MemRow {
    pub id: String,
    pub first_seq: u64,
    pub fields: Fields,
}

/// Append-only rows with their vectors in one contiguous array (exact scans stream it).
#[derive(Debug, Default)]
pub(crate) struct Memtable {
    dim: usize,
    rows: Vec<MemRow>,
    vectors: Vec<f32>,
    inv_norms: Vec<f32>,
    /// Newest row per id (it may be tombstoned; callers check).
    newest: HashMap<String, u32>,
}

impl Memtable {
    pub(crate) fn new(dim: usize) -> Memtable {
        Memtable {
            dim,
            ..Default::default()
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub(crate) fn dim(&self) -> usize {
        self.dim
    }

    /// Appends a row; the caller has checked the vector's length.
    pub(crate) fn push(
        &mut self,
        id: String,
        first_seq: u64,
        vector: &[f32],
        fields: Fields,
    ) -> u32 {
        debug_assert_eq!(vector.len(), self.dim);
        let r = self.rows.len() as u32;
        self.vectors.extend_from_slice(vector);
        self.inv_norms.push(inverse_norm(vector));
        self.newest.insert(id.clone(), r);
        self.rows.push(MemRow {
            id,
            first_seq,
            fields,
        });
        r
    }

    /// The newest row holding `id`, live or not.
    pub(crate) fn newest(&self, id: &str) -> Option<u32> {
        self.newest.get(id).copied()
    }

    pub(crate) fn row(&self, r: u32) -> &MemRow {
        &self.rows[r as usize]
    }

    pub(crate) fn vector(&self, r: u32) -> &[f32] {
        let start = r as usize * self.dim;
        &self.vectors[start..start + self.dim]
    }

    pub(crate) fn inv_norm(&self, r: u32) -> f32 {
        self.inv_norms[r as usize]
    }

    /// Heap bytes held (vectors dominate), for flush decisions and metrics.
    pub(crate) fn bytes(&self) -> usize {
        self.vectors.len() * 4 + self.rows.len() * 96
    }
}
