//! A collection's engine-owned settings: distance space and HNSW parameters. They live in the
//! collection's MANIFEST, not in the catalog.

use serde::{Deserialize, Serialize};

use crate::index::BuildParams;
use crate::types::{InputError, Space};

/// Largest `max_neighbors`: the graph builder's bound ([`crate::index::builder::MAX_NEIGHBORS`]),
/// checked here first so a bad setting is the caller's error, reported before anything is built.
pub const MAX_NEIGHBORS_LIMIT: u32 = crate::index::builder::MAX_NEIGHBORS as u32;

/// HNSW build and search parameters, with Chroma's names and defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HnswParams {
    /// Candidate list size while building (default 100). Higher: better graph, slower build.
    pub ef_construction: u32,
    /// Candidate list size while searching (default 100). Higher: better recall, slower query.
    pub ef_search: u32,
    /// Links per node, Chroma's `max_neighbors` / `hnsw:M` (default 16, 2..=256).
    pub max_neighbors: u32,
    /// Accepted for Chroma compatibility (index growth factor; default 1.2).
    pub resize_factor: f64,
    /// Accepted for Chroma compatibility (default 1000).
    pub sync_threshold: u32,
    /// Accepted for Chroma compatibility (default 100).
    pub batch_size: u32,
    /// Build threads, 0 = all cores (accepted, not echoed, as in Chroma).
    pub num_threads: u32,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            ef_construction: 100,
            ef_search: 100,
            max_neighbors: 16,
            resize_factor: 1.2,
            sync_threshold: 1000,
            batch_size: 100,
            num_threads: 0,
        }
    }
}

impl HnswParams {
    /// The graph builder's parameters for these settings, sized for `capacity_hint` points.
    pub(crate) fn build_params(&self, capacity_hint: usize) -> BuildParams {
        BuildParams {
            max_neighbors: self.max_neighbors as usize,
            ef_construction: self.ef_construction as usize,
            capacity_hint,
        }
    }

    /// Checks ranges before anything reaches the graph builder.
    pub fn validate(&self) -> Result<(), InputError> {
        if !(2..=MAX_NEIGHBORS_LIMIT).contains(&self.max_neighbors) {
            return Err(InputError::InvalidConfig(format!(
                "max_neighbors must be between 2 and {MAX_NEIGHBORS_LIMIT}, got {}",
                self.max_neighbors
            )));
        }
        if self.ef_construction == 0 || self.ef_construction > 65_536 {
            return Err(InputError::InvalidConfig(format!(
                "ef_construction must be between 1 and 65536, got {}",
                self.ef_construction
            )));
        }
        if self.ef_search == 0 || self.ef_search > 65_536 {
            return Err(InputError::InvalidConfig(format!(
                "ef_search must be between 1 and 65536, got {}",
                self.ef_search
            )));
        }
        if !(self.resize_factor.is_finite() && self.resize_factor >= 1.0) {
            return Err(InputError::InvalidConfig(format!(
                "resize_factor must be a finite number >= 1, got {}",
                self.resize_factor
            )));
        }
        if self.batch_size < 2 || self.sync_threshold < 2 {
            return Err(InputError::InvalidConfig(
                "batch_size and sync_threshold must be at least 2".to_string(),
            ));
        }
        Ok(())
    }
}

/// Everything the engine needs to know about a collection besides its data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct CollectionConfig {
    /// Distance space, fixed at creation.
    pub space: Space,
    /// HNSW parameters; `ef_search` and the compatibility fields may change later.
    pub hnsw: HnswParams,
}

impl CollectionConfig {
    /// Validates the parameters.
    pub fn validate(&self) -> Result<(), InputError> {
        self.hnsw.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_neighbors_is_bounded() {
        let mut p = HnswParams::default();
        assert!(p.validate().is_ok());
        p.max_neighbors = 257;
        assert!(p.validate().is_err());
        p.max_neighbors = 1;
        assert!(p.validate().is_err());
        p.max_neighbors = 256;
        assert!(p.validate().is_ok());
    }
}
