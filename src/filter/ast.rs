//! The typed filter tree produced by the parser and inspected by the evaluator and the planner.

use std::cmp::Ordering;

use regex::Regex;

/// A parsed filter: `where` and `where_document` clauses in one tree.
///
/// Built by [`parse_where`](super::parse_where), [`parse_where_document`](super::parse_where_document)
/// or [`parse`](super::parse); every value of this type is valid by construction (regexes are
/// compiled, `$in` sets are non-empty and of one type).
#[derive(Debug, Clone)]
pub enum Filter {
    /// All children match (an empty list matches everything).
    And(Vec<Filter>),
    /// Any child matches (an empty list matches nothing).
    Or(Vec<Filter>),
    /// A comparison on one metadata key (`{"key": {"$op": operand}}` or `{"key": scalar}`).
    Metadata {
        /// The metadata key, exactly as written in the filter.
        key: String,
        /// The comparison applied to the key's value (or to its absence).
        op: MetadataOp,
    },
    /// A test on the record's document (`where_document`, or `#document` inside `where`).
    Document(DocumentOp),
}

/// A comparison against one metadata value.
///
/// Positive operators (`Eq`, the ranges, `In`, `Contains`) are false when the key is missing
/// or holds another type; the negative ones (`Ne`, `Nin`, `NotContains`) are exactly their
/// complement, so they are true for such records (see [`MetadataOp::is_negative`]).
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataOp {
    /// `$eq` (and the shorthand `{"key": scalar}`).
    Eq(Scalar),
    /// `$ne`.
    Ne(Scalar),
    /// `$gt` (numbers only; int and float compare exactly across types).
    Gt(Number),
    /// `$gte`.
    Gte(Number),
    /// `$lt`.
    Lt(Number),
    /// `$lte`.
    Lte(Number),
    /// `$in`: the value equals one of the set's elements.
    In(ScalarSet),
    /// `$nin`: complement of `$in`.
    Nin(ScalarSet),
    /// `$contains` on an array-valued key: the array holds an element equal to the operand.
    /// Never true for a scalar value.
    Contains(Scalar),
    /// `$not_contains`: complement of `Contains`.
    NotContains(Scalar),
}

impl MetadataOp {
    /// True for the operators that match records lacking the key (`$ne`, `$nin`, `$not_contains`).
    pub fn is_negative(&self) -> bool {
        matches!(
            self,
            MetadataOp::Ne(_) | MetadataOp::Nin(_) | MetadataOp::NotContains(_)
        )
    }
}

/// A scalar filter operand.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// A JSON boolean; never equal to a number.
    Bool(bool),
    /// A JSON number.
    Num(Number),
    /// A JSON string; never equal to a number.
    Str(String),
}

/// A JSON number as the filter wrote it: `1` is an int, `1.0` a float, and integers outside
/// `i64` are floats. Ints and floats compare numerically with exact math.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// An integer literal that fits `i64`.
    Int(i64),
    /// Any other number (never NaN when it comes from JSON).
    Float(f64),
}

impl Number {
    /// Exact numeric order of `self` and `other` (no lossy `i64 → f64` cast).
    /// `None` only when a NaN is involved.
    pub fn compare(self, other: Number) -> Option<Ordering> {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => Some(a.cmp(&b)),
            (Number::Float(a), Number::Float(b)) => a.partial_cmp(&b),
            (Number::Int(a), Number::Float(b)) => cmp_i64_f64(a, b),
            (Number::Float(a), Number::Int(b)) => cmp_i64_f64(b, a).map(Ordering::reverse),
        }
    }
}

/// Exact order of an `i64` and an `f64`; `None` when `f` is NaN.
fn cmp_i64_f64(i: i64, f: f64) -> Option<Ordering> {
    // 2^63 is exactly representable; every f64 in [-2^63, 2^63) truncates to a valid i64.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if f.is_nan() {
        return None;
    }
    if f >= TWO_63 {
        return Some(Ordering::Less);
    }
    if f < -TWO_63 {
        return Some(Ordering::Greater);
    }
    let whole = f.trunc();
    // In range and integral, so the cast is exact.
    match i.cmp(&(whole as i64)) {
        Ordering::Equal => 0.0f64.partial_cmp(&(f - whole)),
        unequal => Some(unequal),
    }
}

/// The operand of `$in` / `$nin`: non-empty, and of one type as Chroma requires.
#[derive(Debug, Clone, PartialEq)]
pub enum ScalarSet {
    /// All strings.
    Str(Vec<String>),
    /// All booleans.
    Bool(Vec<bool>),
    /// All numbers (a set that starts with a float may also hold ints, as in Chroma).
    Num(Vec<Number>),
}

impl ScalarSet {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            ScalarSet::Str(v) => v.len(),
            ScalarSet::Bool(v) => v.len(),
            ScalarSet::Num(v) => v.len(),
        }
    }

    /// Always false for a parsed filter (Chroma rejects an empty `$in`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A test on the record's document. Records without a document fail `Contains`/`Regex` and
/// pass `NotContains`/`NotRegex`.
#[derive(Debug, Clone)]
pub enum DocumentOp {
    /// Case-sensitive substring match (`""` matches every record that has a document).
    Contains(String),
    /// Complement of `Contains`.
    NotContains(String),
    /// Unanchored Rust-`regex` search, compiled at parse time.
    Regex(Regex),
    /// Complement of `Regex`.
    NotRegex(Regex),
}

impl Filter {
    /// Conjunction of two filters; nested `And`s are flattened into one list.
    pub fn and(self, other: Filter) -> Filter {
        let mut all = match self {
            Filter::And(children) => children,
            f => vec![f],
        };
        match other {
            Filter::And(children) => all.extend(children),
            f => all.push(f),
        }
        Filter::And(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ord(a: Number, b: Number) -> Option<Ordering> {
        a.compare(b)
    }

    #[test]
    fn int_float_comparison_is_exact() {
        use Number::{Float, Int};
        // 2^53 + 1 is not representable as f64; a lossy cast would call these equal.
        assert_eq!(
            ord(Int(9_007_199_254_740_993), Float(9_007_199_254_740_992.0)),
            Some(Ordering::Greater)
        );
        assert_eq!(
            ord(Float(9_007_199_254_740_992.0), Int(9_007_199_254_740_993)),
            Some(Ordering::Less)
        );
        assert_eq!(
            ord(Int(9_007_199_254_740_992), Float(9_007_199_254_740_992.0)),
            Some(Ordering::Equal)
        );
        assert_eq!(ord(Int(1), Float(1.0)), Some(Ordering::Equal));
        assert_eq!(ord(Int(1), Float(1.5)), Some(Ordering::Less));
        assert_eq!(ord(Int(2), Float(1.5)), Some(Ordering::Greater));
        assert_eq!(ord(Int(-1), Float(-1.5)), Some(Ordering::Greater));
        assert_eq!(ord(Int(-2), Float(-1.5)), Some(Ordering::Less));
        assert_eq!(ord(Int(0), Float(-0.0)), Some(Ordering::Equal));
        assert_eq!(ord(Int(0), Float(-0.25)), Some(Ordering::Greater));
        // The i64 extremes against the edges of the f64 range that truncates into i64.
        assert_eq!(
            ord(Int(i64::MAX), Float(9_223_372_036_854_775_808.0)),
            Some(Ordering::Less)
        );
        assert_eq!(
            ord(Int(i64::MIN), Float(-9_223_372_036_854_775_808.0)),
            Some(Ordering::Equal)
        );
        assert_eq!(ord(Int(i64::MIN), Float(-9.3e18)), Some(Ordering::Greater));
        assert_eq!(
            ord(Int(i64::MAX), Float(f64::INFINITY)),
            Some(Ordering::Less)
        );
        assert_eq!(
            ord(Int(i64::MIN), Float(f64::NEG_INFINITY)),
            Some(Ordering::Greater)
        );
        assert_eq!(ord(Int(0), Float(f64::NAN)), None);
        assert_eq!(ord(Float(f64::NAN), Int(0)), None);
    }

    #[test]
    fn and_flattens() {
        let leaf = || Filter::Document(DocumentOp::Contains("x".into()));
        let f = Filter::And(vec![leaf(), leaf()])
            .and(Filter::And(vec![leaf()]))
            .and(leaf());
        match f {
            Filter::And(children) => {
                assert_eq!(children.len(), 4);
                assert!(children.iter().all(|c| matches!(c, Filter::Document(_))));
            }
            other => panic!("expected And, got {other:?}"),
        }
        // Or is not flattened into And.
        match leaf().and(Filter::Or(vec![])) {
            Filter::And(children) => assert!(matches!(children[1], Filter::Or(_))),
            other => panic!("expected And, got {other:?}"),
        }
    }

    #[test]
    fn negative_ops() {
        assert!(MetadataOp::Ne(Scalar::Bool(true)).is_negative());
        assert!(MetadataOp::Nin(ScalarSet::Bool(vec![true])).is_negative());
        assert!(MetadataOp::NotContains(Scalar::Bool(true)).is_negative());
        assert!(!MetadataOp::Eq(Scalar::Bool(true)).is_negative());
        assert!(!MetadataOp::Gt(Number::Int(1)).is_negative());
    }
}
