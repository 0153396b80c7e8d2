//! A growable bitset: the tombstones of a memtable or segment.

/// Set bits are dead rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Bitset {
    words: Vec<u64>,
    ones: usize,
}

impl Bitset {
    pub(crate) fn from_words(words: Vec<u64>) -> Bitset {
        let ones = words.iter().map(|w| w.count_ones() as usize).sum();
        Bitset { words, ones }
    }

    #[inline]
    pub(crate) fn get(&self, i: u32) -> bool {
        self.words
            .get(i as usize / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Sets bit `i`; returns whether it was clear.
    pub(crate) fn set(&mut self, i: u32) -> bool {
        let w = i as usize / 64;
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        let bit = 1u64 << (i % 64);
        let was_clear = self.words[w] & bit == 0;
        self.words[w] |= bit;
        self.ones += usize::from(was_clear);
        was_clear
    }

    /// Number of set bits.
    pub(crate) fn count(&self) -> usize {
        self.ones
    }

    pub(crate) fn words(&self) -> &[u64] {
        &self.words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_count() {
        let mut b = Bitset::default();
        assert!(!b.get(1000));
        assert!(b.set(1000));
        assert!(!b.set(1000));
        assert!(b.set(3));
        assert!(b.get(1000) && b.get(3) && !b.get(4));
        assert_eq!(b.count(), 2);
        assert_eq!(Bitset::from_words(b.words().to_vec()), b);
    }
}
