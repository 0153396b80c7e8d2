//! Bounded top-k selection by distance.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A candidate: distance and the caller's row number. Ordered by distance, then row, so
/// results are deterministic when distances tie.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// Distance to the query (smaller is nearer).
    pub distance: f32,
    /// The caller's row number.
    pub row: u32,
}

impl Eq for Scored {}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance
            .total_cmp(&other.distance)
            .then(self.row.cmp(&other.row))
    }
}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Keeps the `k` nearest candidates pushed into it.
#[derive(Debug, Clone)]
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Scored>,
}

impl TopK {
    /// An empty selection of at most `k` candidates.
    pub fn new(k: usize) -> TopK {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k.min(4096) + 1),
        }
    }

    /// The distance a candidate must beat to enter, once the selection is full.
    #[inline]
    pub fn threshold(&self) -> Option<f32> {
        if self.heap.len() < self.k {
            None
        } else {
            self.heap.peek().map(|s| s.distance)
        }
    }

    /// Offers a candidate.
    #[inline]
    pub fn push(&mut self, s: Scored) {
        if self.k == 0 {
            return;
        }
        if self.heap.len() < self.k {
            self.heap.push(s);
        } else if let Some(mut top) = self.heap.peek_mut() {
            if s < *top {
                *top = s;
            }
        }
    }

    /// Merges another selection into this one.
    pub fn merge(&mut self, other: TopK) {
        for s in other.heap {
            self.push(s);
        }
    }

    /// The selection, nearest first.
    pub fn into_sorted(self) -> Vec<Scored> {
        self.heap.into_sorted_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn keeps_the_k_smallest(ds in proptest::collection::vec(-1.0e3f32..1.0e3, 0..200), k in 0usize..20) {
            let mut t = TopK::new(k);
            for (i, d) in ds.iter().enumerate() {
                t.push(Scored { distance: *d, row: i as u32 });
            }
            let got: Vec<Scored> = t.into_sorted();
            let mut all: Vec<Scored> = ds.iter().enumerate().map(|(i, d)| Scored { distance: *d, row: i as u32 }).collect();
            all.sort();
            all.truncate(k);
            prop_assert_eq!(got, all);
        }
    }
}
