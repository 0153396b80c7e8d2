//! Payload indexes: per metadata key, the rows holding each scalar value, so a `where` tree is
//! answered with bitmap algebra instead of decoding every row's metadata.
//!
//! One [`PayloadIndex`] per segment, written at flush/compaction as `payload.bin` (a
//! [`BlockedFile`]: per-block CRCs, footer; decoded and fully verified on the first filtered
//! query, not at open, so opening stays O(1)), and one per memtable, extended on every append.
//!
//! Per key: string value → sorted rows, bool → sorted rows, and numbers (int and float together,
//! in exact numeric order, so `1` and `1.0` share an entry as they compare equal) → sorted rows
//! in a `BTreeMap` for ranges. Arrays and sparse vectors are not indexed: `$contains` /
//! `$not_contains` and `where_document` give a *superset* ("check these rows per row"), never a
//! wrong answer. Semantics are those of [`Filter::matches`]; a property test checks that the
//! evaluated set equals per-row evaluation.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::blocked::{BlockedFile, BlockedWriter};
use crate::engine::EngineError;
use crate::filter::{Filter, MetadataOp, Number, Scalar, ScalarSet};
use crate::types::{Metadata, MetadataValue};

/// Kind tag of `payload.bin` in the blocked-file footer.
pub(crate) const KIND_PAYLOAD: u32 = 5;
/// Format of the encoded index (bump on any change to [`PayloadIndex::encode`]).
const PAYLOAD_VERSION: u32 = 1;
/// File name inside a segment folder.
pub(crate) const FILE_NAME: &str = "payload.bin";

/// A dense set of row numbers `0..len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowSet {
    words: Vec<u64>,
    len: u32,
}

impl RowSet {
    /// No rows of `0..len`.
    pub(crate) fn empty(len: u32) -> RowSet {
        RowSet {
            words: vec![0; (len as usize).div_ceil(64)],
            len,
        }
    }

    /// Every row of `0..len`.
    pub(crate) fn full(len: u32) -> RowSet {
        let mut s = RowSet {
            words: vec![u64::MAX; (len as usize).div_ceil(64)],
            len,
        };
        s.trim();
        s
    }

    /// Clears the bits past `len` in the last word (complements set them).
    fn trim(&mut self) {
        let tail = self.len % 64;
        if tail != 0 {
            if let Some(last) = self.words.last_mut() {
                *last &= (1u64 << tail) - 1;
            }
        }
    }

    /// Whether row `r` is in the set.
    #[inline]
    pub fn contains(&self, r: u32) -> bool {
        self.words
            .get(r as usize / 64)
            .is_some_and(|w| w & (1 << (r % 64)) != 0)
    }

    /// Adds a value's rows: word by word from its bitset when it has one, otherwise from the
    /// list, one word's bits gathered before each write.
    fn add(&mut self, posting: &Posting) {
        if let Some(bits) = &posting.bits {
            for (a, b) in self.words.iter_mut().zip(bits.iter()) {
                *a |= b;
            }
            self.trim();
            return;
        }
        let mut word = usize::MAX;
        let mut acc = 0u64;
        for &r in &posting.rows {
            if r >= self.len {
                continue;
            }
            let w = r as usize / 64;
            if w != word {
                if let Some(slot) = self.words.get_mut(word) {
                    *slot |= acc;
                }
                word = w;
                acc = 0;
            }
            acc |= 1 << (r % 64);
        }
        if let Some(slot) = self.words.get_mut(word) {
            *slot |= acc;
        }
    }

    /// Keeps rows also in `other`.
    pub(crate) fn and(&mut self, other: &RowSet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= b;
        }
        let n = other.words.len().min(self.words.len());
        self.words[n..].fill(0);
    }

    /// Adds the rows of `other`.
    pub(crate) fn or(&mut self, other: &RowSet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    /// Removes rows whose bit is set in `words` (a tombstone bitset's words).
    pub(crate) fn and_not_words(&mut self, words: &[u64]) {
        for (a, b) in self.words.iter_mut().zip(words) {
            *a &= !b;
        }
    }

    /// Rows of `0..len` not in the set.
    fn complement(mut self) -> RowSet {
        for w in &mut self.words {
            *w = !*w;
        }
        self.trim();
        self
    }

    /// Number of rows in the set.
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The rows in increasing order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros();
                w &= w - 1;
                Some(i as u32 * 64 + b)
            })
        })
    }
}

/// The rows a filter may match, from the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidates {
    /// Every matching row is in here.
    pub rows: RowSet,
    /// `true`: exactly the matching rows; `false`: a superset, each row must still be checked
    /// with [`Filter::matches`] (document tests, `$contains`).
    pub exact: bool,
}

/// A number in exact numeric order (ints and floats compare by value, never through a lossy
/// cast). NaN is never stored, which makes the order total.
#[derive(Debug, Clone, Copy)]
struct NumKey(Number);

impl PartialEq for NumKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for NumKey {}
impl PartialOrd for NumKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for NumKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.compare(other.0).unwrap_or(Ordering::Equal)
    }
}

fn is_nan(n: Number) -> bool {
    matches!(n, Number::Float(f) if f.is_nan())
}

/// One value's rows, ascending. A decoded (segment) posting holding at least 1/32 of the
/// rows also keeps them as a bitset, which is then no larger than the list: a filter adds it
/// ~1,600 words at a time at 100k rows instead of one row at a time (a 50 % boolean took
/// ~6 % of a filtered query's time that way).
#[derive(Debug, Default, Clone)]
struct Posting {
    rows: Vec<u32>,
    bits: Option<Box<[u64]>>,
}

impl PartialEq for Posting {
    /// The bitset is a cache of the rows.
    fn eq(&self, other: &Self) -> bool {
        self.rows == other.rows
    }
}

impl Posting {
    /// `rows` (ascending, all below `n`), with a bitset of `n` rows if dense.
    fn sealed(rows: Vec<u32>, n: u32) -> Posting {
        let dense = !rows.is_empty() && rows.len().saturating_mul(32) >= n as usize;
        let bits = dense.then(|| {
            let mut set = RowSet::empty(n);
            set.add(&Posting {
                rows: rows.clone(),
                bits: None,
            });
            set.words.into_boxed_slice()
        });
        Posting { rows, bits }
    }

    /// Appends row `r` (a memtable's growing index keeps lists only).
    fn push(&mut self, r: u32) {
        self.rows.push(r);
        self.bits = None;
    }
}

/// One key's postings.
#[derive(Debug, Default, Clone, PartialEq)]
struct KeyIndex {
    strs: HashMap<String, Posting>,
    /// `[false rows, true rows]`.
    bools: [Posting; 2],
    nums: BTreeMap<NumKey, Posting>,
}

/// The payload index of one segment or memtable over rows `0..rows`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PayloadIndex {
    rows: u32,
    keys: HashMap<String, KeyIndex>,
}

impl PayloadIndex {
    /// Appends the next row (`self.rows()`), indexing its scalar values except those under
    /// `skip` keys (the schema disabled their inverted index).
    pub fn push(&mut self, metadata: Option<&Metadata>, skip: &HashSet<String>) {
        let r = self.rows;
        self.rows += 1;
        let Some(m) = metadata else { return };
        for (k, v) in m {
            if skip.contains(k) {
                continue;
            }
            let entry = || -> KeyIndex { KeyIndex::default() };
            match v {
                MetadataValue::Str(s) => self
                    .keys
                    .entry(k.clone())
                    .or_insert_with(entry)
                    .strs
                    .entry(s.clone())
                    .or_default()
                    .push(r),
                MetadataValue::Bool(b) => {
                    self.keys.entry(k.clone()).or_insert_with(entry).bools[usize::from(*b)].push(r)
                }
                MetadataValue::Int(i) => self
                    .keys
                    .entry(k.clone())
                    .or_insert_with(entry)
                    .nums
                    .entry(NumKey(Number::Int(*i)))
                    .or_default()
                    .push(r),
                MetadataValue::Float(f) if !f.is_nan() => self
                    .keys
                    .entry(k.clone())
                    .or_insert_with(entry)
                    .nums
                    .entry(NumKey(Number::Float(*f)))
                    .or_default()
                    .push(r),
                // Arrays, sparse vectors (and NaN, which matches no comparison) are left to
                // per-row evaluation.
                _ => {}
            }
        }
    }

    /// The rows `filter` may match (see [`Candidates`]).
    pub fn evaluate(&self, filter: &Filter) -> Candidates {
        match filter {
            Filter::And(children) => {
                let mut acc = Candidates {
                    rows: RowSet::full(self.rows),
                    exact: true,
                };
                for c in children {
                    let e = self.evaluate(c);
                    acc.rows.and(&e.rows);
                    acc.exact &= e.exact;
                }
                acc
            }
            Filter::Or(children) => {
                let mut acc = Candidates {
                    rows: RowSet::empty(self.rows),
                    exact: true,
                };
                for c in children {
                    let e = self.evaluate(c);
                    acc.rows.or(&e.rows);
                    acc.exact &= e.exact;
                }
                acc
            }
            Filter::Metadata { key, op } => match self.metadata_op(key, op) {
                Some(rows) => Candidates { rows, exact: true },
                None => self.unknown(),
            },
            Filter::Document(_) => self.unknown(),
        }
    }

    /// "Any row may match": checked per row.
    fn unknown(&self) -> Candidates {
        Candidates {
            rows: RowSet::full(self.rows),
            exact: false,
        }
    }

    /// Exactly the rows matching `key op`, or `None` when the index cannot tell.
    fn metadata_op(&self, key: &str, op: &MetadataOp) -> Option<RowSet> {
        let ki = self.keys.get(key);
        let mut set = RowSet::empty(self.rows);
        // Negative operators are the complement of their positive form over all rows
        // (records lacking the key, or holding another type, match them).
        let (positive, negate) = match op {
            MetadataOp::Ne(s) => (MetadataOp::Eq(s.clone()), true),
            MetadataOp::Nin(s) => (MetadataOp::In(s.clone()), true),
            MetadataOp::Contains(_) | MetadataOp::NotContains(_) => return None,
            other => (other.clone(), false),
        };
        if let Some(ki) = ki {
            match &positive {
                MetadataOp::Eq(s) => ki.add_eq(s, &mut set),
                MetadataOp::In(ScalarSet::Str(xs)) => {
                    for x in xs {
                        if let Some(rows) = ki.strs.get(x) {
                            set.add(rows);
                        }
                    }
                }
                MetadataOp::In(ScalarSet::Bool(xs)) => {
                    for &b in xs {
                        set.add(&ki.bools[usize::from(b)]);
                    }
                }
                MetadataOp::In(ScalarSet::Num(xs)) => {
                    for &n in xs {
                        ki.add_eq(&Scalar::Num(n), &mut set);
                    }
                }
                MetadataOp::Gt(n) => ki.add_range(*n, Bound::Excluded, false, &mut set),
                MetadataOp::Gte(n) => ki.add_range(*n, Bound::Included, false, &mut set),
                MetadataOp::Lt(n) => ki.add_range(*n, Bound::Excluded, true, &mut set),
                MetadataOp::Lte(n) => ki.add_range(*n, Bound::Included, true, &mut set),
                _ => return None,
            }
        }
        Some(if negate { set.complement() } else { set })
    }

    /// Encodes the index (keys and values sorted, so equal indexes encode equally).
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_u32(&mut out, self.rows);
        let mut keys: Vec<_> = self.keys.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        put_u32(&mut out, keys.len() as u32);
        for (k, ki) in keys {
            put_str(&mut out, k);
            let mut strs: Vec<_> = ki.strs.iter().collect();
            strs.sort_by(|a, b| a.0.cmp(b.0));
            put_u32(&mut out, strs.len() as u32);
            for (s, rows) in strs {
                put_str(&mut out, s);
                put_rows(&mut out, &rows.rows);
            }
            put_rows(&mut out, &ki.bools[0].rows);
            put_rows(&mut out, &ki.bools[1].rows);
            put_u32(&mut out, ki.nums.len() as u32);
            for (n, rows) in &ki.nums {
                match n.0 {
                    Number::Int(i) => {
                        out.push(0);
                        out.extend_from_slice(&i.to_le_bytes());
                    }
                    Number::Float(f) => {
                        out.push(1);
                        out.extend_from_slice(&f.to_le_bytes());
                    }
                }
                put_rows(&mut out, &rows.rows);
            }
        }
        out
    }

    /// Decodes [`PayloadIndex::encode`]'s bytes, checking every length, that row lists are
    /// strictly increasing and below the row count, and that numbers are in order.
    fn decode(bytes: &[u8]) -> Result<PayloadIndex, String> {
        let mut c = Reader { bytes, at: 0 };
        let rows = c.u32()?;
        let n_keys = c.u32()?;
        let mut keys = HashMap::new();
        for _ in 0..n_keys {
            let k = c.str()?;
            let mut ki = KeyIndex::default();
            for _ in 0..c.u32()? {
                let s = c.str()?;
                ki.strs.insert(s, Posting::sealed(c.rows(rows)?, rows));
            }
            ki.bools[0] = Posting::sealed(c.rows(rows)?, rows);
            ki.bools[1] = Posting::sealed(c.rows(rows)?, rows);
            let mut last: Option<NumKey> = None;
            for _ in 0..c.u32()? {
                let tag = c.take(1)?[0];
                let raw = c.take(8)?;
                let mut b = [0u8; 8];
                b.copy_from_slice(raw);
                let n = match tag {
                    0 => Number::Int(i64::from_le_bytes(b)),
                    1 => Number::Float(f64::from_le_bytes(b)),
                    t => return Err(format!("unknown number tag {t}")),
                };
                if is_nan(n) {
                    return Err("NaN in the number index".into());
                }
                let key = NumKey(n);
                if last.is_some_and(|l| l >= key) {
                    return Err("numbers out of order".into());
                }
                last = Some(key);
                ki.nums.insert(key, Posting::sealed(c.rows(rows)?, rows));
            }
            if keys.insert(k, ki).is_some() {
                return Err("a key appears twice".into());
            }
        }
        if c.at != bytes.len() {
            return Err(format!("{} trailing bytes", bytes.len() - c.at));
        }
        Ok(PayloadIndex { rows, keys })
    }
}

impl KeyIndex {
    fn add_eq(&self, s: &Scalar, set: &mut RowSet) {
        match s {
            Scalar::Str(v) => {
                if let Some(rows) = self.strs.get(v) {
                    set.add(rows);
                }
            }
            Scalar::Bool(b) => set.add(&self.bools[usize::from(*b)]),
            Scalar::Num(n) if !is_nan(*n) => {
                if let Some(rows) = self.nums.get(&NumKey(*n)) {
                    set.add(rows);
                }
            }
            Scalar::Num(_) => {}
        }
    }

    /// Adds rows whose number is above (`below == false`) or below `n`.
    fn add_range(
        &self,
        n: Number,
        bound: fn(NumKey) -> Bound<NumKey>,
        below: bool,
        set: &mut RowSet,
    ) {
        if is_nan(n) {
            return;
        }
        let b = bound(NumKey(n));
        let range = if below {
            self.nums.range((Bound::Unbounded, b))
        } else {
            self.nums.range((b, Bound::Unbounded))
        };
        for (_, rows) in range {
            set.add(rows);
        }
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}

fn put_rows(out: &mut Vec<u8>, rows: &[u32]) {
    put_u32(out, rows.len() as u32);
    for &r in rows {
        put_u32(out, r);
    }
}

/// A bounds-checked cursor over the encoded index.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| format!("truncated at byte {}", self.at))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn str(&mut self) -> Result<String, String> {
        let n = self.u32()? as usize;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| "a key or value is not UTF-8".to_string())
    }

    fn rows(&mut self, limit: u32) -> Result<Vec<u32>, String> {
        let n = self.u32()? as usize;
        let b = self.take(n.checked_mul(4).ok_or("row count overflows")?)?;
        let rows: Vec<u32> = b
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let ordered = rows.windows(2).all(|w| w[0] < w[1]);
        if !ordered || rows.last().is_some_and(|&r| r >= limit) {
            return Err("a row list is unordered or out of range".into());
        }
        Ok(rows)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct PayloadMeta {
    version: u32,
    rows: u32,
}

/// Writes `index` as `path`, fsynced (the segment writer fsyncs the folder).
pub(crate) fn write(path: &Path, index: &PayloadIndex) -> Result<(), EngineError> {
    let mut w = BlockedWriter::create(path)?;
    w.write(&index.encode())?;
    let meta = serde_json::to_vec(&PayloadMeta {
        version: PAYLOAD_VERSION,
        rows: index.rows,
    })
    .map_err(|e| EngineError::Internal(format!("encoding payload meta: {e}")))?;
    w.finish(KIND_PAYLOAD, &meta)
}

/// A mapped `payload.bin`: footer and section table checked at open, the index decoded (every
/// block verified) on first use.
#[derive(Debug)]
pub(crate) struct SegmentPayload {
    file: BlockedFile,
    rows: u32,
    loaded: std::sync::OnceLock<PayloadIndex>,
}

impl SegmentPayload {
    /// Maps and checks `path` (O(1)).
    pub(crate) fn open(path: &Path) -> Result<SegmentPayload, EngineError> {
        let file = BlockedFile::open(path, KIND_PAYLOAD)?;
        let meta: PayloadMeta =
            serde_json::from_slice(file.meta()).map_err(|e| EngineError::Corrupt {
                file: path.to_path_buf(),
                offset: file.data_len() as u64,
                reason: format!("unreadable section table: {e}"),
            })?;
        if meta.version != PAYLOAD_VERSION {
            return Err(EngineError::Version {
                path: path.to_path_buf(),
                found: meta.version,
                expected: PAYLOAD_VERSION,
            });
        }
        Ok(SegmentPayload {
            file,
            rows: meta.rows,
            loaded: std::sync::OnceLock::new(),
        })
    }

    /// Rows the index covers (per the section table).
    pub(crate) fn rows(&self) -> usize {
        self.rows as usize
    }

    /// The decoded index (decoded once; a damaged file is reported on every call).
    pub(crate) fn index(&self) -> Result<&PayloadIndex, EngineError> {
        if let Some(ix) = self.loaded.get() {
            return Ok(ix);
        }
        let bytes = self.file.bytes(0..self.file.data_len())?;
        let ix = PayloadIndex::decode(bytes).map_err(|reason| EngineError::Corrupt {
            file: self.file.path().to_path_buf(),
            offset: 0,
            reason,
        })?;
        if ix.rows != self.rows {
            return Err(EngineError::Corrupt {
                file: self.file.path().to_path_buf(),
                offset: 0,
                reason: format!("index over {} rows, table says {}", ix.rows, self.rows),
            });
        }
        Ok(self.loaded.get_or_init(|| ix))
    }

    /// Bytes mapped.
    pub(crate) fn mapped_bytes(&self) -> usize {
        self.file.data_len()
    }

    /// Verifies every block (background scrub).
    pub(crate) fn verify_all(&self) -> Result<(), EngineError> {
        self.file.verify_all()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::filter::proptests::{composite, doc_leaf, record, where_leaf};
    use crate::filter::{parse, parse_where, DocumentOp};

    fn md(pairs: &[(&str, MetadataValue)]) -> Metadata {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    /// True when the filter uses only operators the index answers exactly.
    fn indexable(f: &Filter) -> bool {
        match f {
            Filter::And(cs) | Filter::Or(cs) => cs.iter().all(indexable),
            Filter::Metadata { op, .. } => {
                !matches!(op, MetadataOp::Contains(_) | MetadataOp::NotContains(_))
            }
            Filter::Document(_) => false,
        }
    }

    fn rows_of(c: &Candidates) -> Vec<u32> {
        c.rows.iter().collect()
    }

    #[test]
    fn answers_the_bench_filters_and_negations() {
        use MetadataValue::{Bool, Float, Int, Str};
        let recs = [
            md(&[
                ("payer", Str("A".into())),
                ("year", Int(2024)),
                ("on", Bool(true)),
            ]),
            md(&[
                ("payer", Str("B".into())),
                ("year", Int(2019)),
                ("on", Bool(true)),
            ]),
            md(&[("payer", Str("A".into())), ("year", Float(2024.5))]),
            md(&[
                ("payer", Int(7)),
                ("tags", MetadataValue::StrArray(vec!["A".into()])),
            ]),
        ];
        let mut ix = PayloadIndex::default();
        for r in &recs {
            ix.push(Some(r), &HashSet::new());
        }
        ix.push(None, &HashSet::new());
        let eval = |j: serde_json::Value| ix.evaluate(&parse_where(&j).unwrap());
        assert_eq!(rows_of(&eval(json!({"payer": "A"}))), [0, 2]);
        assert_eq!(rows_of(&eval(json!({"payer": {"$in": ["B", "C"]}}))), [1]);
        // Missing key and other types match the negative forms.
        assert_eq!(rows_of(&eval(json!({"payer": {"$ne": "A"}}))), [1, 3, 4]);
        assert_eq!(
            rows_of(&eval(json!({"payer": {"$nin": ["A", "B"]}}))),
            [3, 4]
        );
        assert_eq!(rows_of(&eval(json!({"year": {"$gte": 2024}}))), [0, 2]);
        assert_eq!(rows_of(&eval(json!({"year": {"$gt": 2024}}))), [2]);
        assert_eq!(rows_of(&eval(json!({"year": {"$lt": 2024.5}}))), [0, 1]);
        assert_eq!(rows_of(&eval(json!({"year": 2024.0}))), [0]);
        let both = eval(json!({"$and": [{"year": {"$gte": 2024}}, {"on": true}]}));
        assert!(both.exact);
        assert_eq!(rows_of(&both), [0]);
        assert_eq!(
            rows_of(&eval(json!({"$or": [{"payer": 7}, {"on": true}]}))),
            [0, 1, 3]
        );
        // `$contains` and document tests give a superset to check per row.
        let c = eval(json!({"tags": {"$contains": "A"}}));
        assert!(!c.exact);
        assert_eq!(c.rows.count(), 5);
        let f = Filter::And(vec![
            parse_where(&json!({"payer": "A"})).unwrap(),
            Filter::Document(DocumentOp::Contains("x".into())),
        ]);
        let c = ix.evaluate(&f);
        assert!(!c.exact);
        assert_eq!(rows_of(&c), [0, 2]);
    }

    #[test]
    fn skipped_keys_are_not_indexed() {
        let mut ix = PayloadIndex::default();
        let skip: HashSet<String> = ["secret".to_string()].into();
        ix.push(
            Some(&md(&[("secret", MetadataValue::Str("s".into()))])),
            &skip,
        );
        assert!(ix.keys.is_empty());
        assert_eq!(ix.rows, 1);
    }

    #[test]
    fn file_round_trips_and_detects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = PayloadIndex::default();
        for i in 0..5000i64 {
            let m = md(&[
                ("p", MetadataValue::Str(format!("v{}", i % 7))),
                ("n", MetadataValue::Int(i % 13)),
                ("f", MetadataValue::Float(i as f64 / 3.0)),
                ("b", MetadataValue::Bool(i % 2 == 0)),
            ]);
            ix.push(Some(&m), &HashSet::new());
        }
        let p = dir.path().join(FILE_NAME);
        write(&p, &ix).unwrap();
        let opened = SegmentPayload::open(&p).unwrap();
        assert_eq!(opened.rows(), 5000);
        assert_eq!(opened.index().unwrap(), &ix);
        // A flipped byte in the data region is reported, not served.
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[100] ^= 0x40;
        std::fs::write(&p, &bytes).unwrap();
        let damaged = SegmentPayload::open(&p).unwrap();
        assert!(matches!(damaged.index(), Err(EngineError::Corrupt { .. })));
        // Decoding checks structure even when the checksums agree.
        let mut enc = ix.encode();
        enc.truncate(enc.len() - 1);
        assert!(PayloadIndex::decode(&enc).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        /// The index's candidate set equals per-row evaluation when it claims exactness, and
        /// contains every matching row otherwise; it survives encode/decode unchanged.
        #[test]
        fn index_agrees_with_per_row_evaluation(
            records in proptest::collection::vec(record(), 1..40),
            where_ in prop::option::weighted(0.9, composite(where_leaf())),
            where_document in prop::option::weighted(0.2, composite(doc_leaf(None).boxed())),
        ) {
            let Some(filter) = parse(where_.as_ref(), where_document.as_ref()).unwrap() else {
                return Ok(());
            };
            let mut ix = PayloadIndex::default();
            for r in &records {
                ix.push(r.metadata.as_ref(), &HashSet::new());
            }
            let c = ix.evaluate(&filter);
            prop_assert_eq!(c.exact, indexable(&filter));
            for (i, r) in records.iter().enumerate() {
                let m = filter.matches(r.metadata.as_ref(), r.document.as_deref());
                let got = c.rows.contains(i as u32);
                if c.exact {
                    prop_assert_eq!(got, m, "row {} {:?}", i, r);
                } else {
                    prop_assert!(got || !m, "matching row {} left out: {:?}", i, r);
                }
            }
            prop_assert!(!c.rows.contains(records.len() as u32));
            let back = PayloadIndex::decode(&ix.encode()).unwrap();
            prop_assert_eq!(back.evaluate(&filter), c);
        }
    }
}
