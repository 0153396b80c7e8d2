//! A bounded LRU of embeddings keyed by (model, dimensions, SHA-256 of the text), so a text
//! that comes back (the same policy question asked again, a re-sent batch) costs no API call.
//! Keys hold a hash, not the text: the memory bound then depends only on vector sizes.

use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use super::function::ModelSpec;

/// A cache key: which model produced the vector, and which text it embeds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    spec: ModelSpec,
    text_sha256: [u8; 32],
}

impl CacheKey {
    /// The key of `text` embedded by `spec`.
    pub fn new(spec: &ModelSpec, text: &str) -> CacheKey {
        CacheKey {
            spec: spec.clone(),
            text_sha256: Sha256::digest(text.as_bytes()).into(),
        }
    }
}

/// Bytes charged per entry besides the vector: key, model string, list links.
const ENTRY_OVERHEAD: usize = 160;

struct Inner {
    lru: LruCache<CacheKey, Arc<[f32]>>,
    bytes: usize,
}

/// The cache. `get` and `insert` take a short lock; vectors are shared, never copied out.
pub struct EmbedCache {
    inner: Mutex<Inner>,
    budget: usize,
}

fn cost(key: &CacheKey, v: &[f32]) -> usize {
    ENTRY_OVERHEAD + key.spec.model.len() + std::mem::size_of_val(v)
}

impl EmbedCache {
    /// A cache that holds at most `budget` bytes (0 = caches nothing).
    pub fn new(budget: usize) -> EmbedCache {
        EmbedCache {
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded(),
                bytes: 0,
            }),
            budget,
        }
    }

    /// The vector for `key`, marking it recently used.
    pub fn get(&self, key: &CacheKey) -> Option<Arc<[f32]>> {
        self.inner.lock().lru.get(key).cloned()
    }

    /// Stores a vector, evicting the least recently used entries beyond the budget. A vector
    /// larger than the whole budget is not stored.
    pub fn insert(&self, key: CacheKey, v: Arc<[f32]>) {
        let c = cost(&key, &v);
        if c > self.budget {
            return;
        }
        let mut inner = self.inner.lock();
        if let Some(old) = inner.lru.put(key.clone(), v) {
            inner.bytes -= cost(&key, &old);
        }
        inner.bytes += c;
        while inner.bytes > self.budget {
            match inner.lru.pop_lru() {
                Some((k, old)) => inner.bytes -= cost(&k, &old),
                None => break,
            }
        }
    }

    /// (entries, bytes) currently held.
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.inner.lock();
        (inner.lru.len(), inner.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(m: &str) -> ModelSpec {
        ModelSpec {
            model: m.into(),
            dimensions: None,
        }
    }

    #[test]
    fn keys_separate_models_and_texts() {
        let c = EmbedCache::new(1 << 20);
        c.insert(CacheKey::new(&spec("a"), "hello"), Arc::from(vec![1.0f32]));
        assert!(c.get(&CacheKey::new(&spec("a"), "hello")).is_some());
        assert!(c.get(&CacheKey::new(&spec("b"), "hello")).is_none());
        assert!(c.get(&CacheKey::new(&spec("a"), "hello ")).is_none());
        let dims = ModelSpec {
            model: "a".into(),
            dimensions: Some(1),
        };
        assert!(c.get(&CacheKey::new(&dims, "hello")).is_none());
    }

    #[test]
    fn evicts_least_recently_used_within_budget() {
        let one = cost(&CacheKey::new(&spec("m"), "x"), &[0.0; 100]);
        let c = EmbedCache::new(one * 3);
        let key = |i: usize| CacheKey::new(&spec("m"), &i.to_string());
        for i in 0..3 {
            c.insert(key(i), Arc::from(vec![i as f32; 100]));
        }
        assert!(c.get(&key(0)).is_some(), "touch 0 so 1 is the oldest");
        c.insert(key(3), Arc::from(vec![3.0; 100]));
        assert_eq!(c.usage(), (3, one * 3));
        assert!(c.get(&key(1)).is_none());
        assert!(c.get(&key(0)).is_some() && c.get(&key(2)).is_some() && c.get(&key(3)).is_some());
        // Re-inserting a key does not double-count it.
        c.insert(key(3), Arc::from(vec![3.0; 100]));
        assert_eq!(c.usage(), (3, one * 3));
        let none = EmbedCache::new(0);
        none.insert(key(0), Arc::from(vec![0.0; 100]));
        assert_eq!(none.usage(), (0, 0));
    }
}
