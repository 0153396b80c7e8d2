//! Evaluation of a [`Filter`] against one record, with Chroma's semantics.

use std::cmp::Ordering;

use super::ast::{DocumentOp, Filter, MetadataOp, Number, Scalar, ScalarSet};
use crate::types::{Metadata, MetadataValue};

impl Filter {
    /// True when a record with this metadata and document passes the filter.
    pub fn matches(&self, metadata: Option<&Metadata>, document: Option<&str>) -> bool {
        match self {
            Filter::And(children) => children.iter().all(|f| f.matches(metadata, document)),
            Filter::Or(children) => children.iter().any(|f| f.matches(metadata, document)),
            Filter::Metadata { key, op } => {
                op.matches_value(metadata.and_then(|m| m.get(key.as_str())))
            }
            Filter::Document(op) => op.matches_document(document),
        }
    }
}

impl MetadataOp {
    /// Applies the comparison to a key's value (`None` when the record lacks the key or has
    /// no metadata).
    pub fn matches_value(&self, value: Option<&MetadataValue>) -> bool {
        match self {
            MetadataOp::Eq(s) => value.is_some_and(|v| scalar_eq(s, v)),
            MetadataOp::Ne(s) => !value.is_some_and(|v| scalar_eq(s, v)),
            MetadataOp::Gt(n) => compares(value, *n, Ordering::is_gt),
            MetadataOp::Gte(n) => compares(value, *n, Ordering::is_ge),
            MetadataOp::Lt(n) => compares(value, *n, Ordering::is_lt),
            MetadataOp::Lte(n) => compares(value, *n, Ordering::is_le),
            MetadataOp::In(set) => value.is_some_and(|v| set_contains(set, v)),
            MetadataOp::Nin(set) => !value.is_some_and(|v| set_contains(set, v)),
            MetadataOp::Contains(s) => value.is_some_and(|v| array_contains(v, s)),
            MetadataOp::NotContains(s) => !value.is_some_and(|v| array_contains(v, s)),
        }
    }
}

impl DocumentOp {
    /// Applies the test to a record's document (`None` when it has none).
    pub fn matches_document(&self, document: Option<&str>) -> bool {
        match self {
            DocumentOp::Contains(needle) => document.is_some_and(|d| d.contains(needle.as_str())),
            DocumentOp::NotContains(needle) => {
                !document.is_some_and(|d| d.contains(needle.as_str()))
            }
            DocumentOp::Regex(re) => document.is_some_and(|d| re.is_match(d)),
            DocumentOp::NotRegex(re) => !document.is_some_and(|d| re.is_match(d)),
        }
    }
}

/// The value as a number, when it is a scalar int or float.
fn as_number(v: &MetadataValue) -> Option<Number> {
    match v {
        MetadataValue::Int(i) => Some(Number::Int(*i)),
        MetadataValue::Float(f) => Some(Number::Float(*f)),
        _ => None,
    }
}

/// `value <op> operand` for the range operators; false for missing or non-numeric values.
fn compares(value: Option<&MetadataValue>, operand: Number, test: fn(Ordering) -> bool) -> bool {
    value
        .and_then(as_number)
        .and_then(|n| n.compare(operand))
        .is_some_and(test)
}

fn num_eq(a: Number, b: Number) -> bool {
    a.compare(b) == Some(Ordering::Equal)
}

/// Scalar equality: same type, except that ints and floats compare numerically.
fn scalar_eq(s: &Scalar, v: &MetadataValue) -> bool {
    match (s, v) {
        (Scalar::Str(a), MetadataValue::Str(b)) => a == b,
        (Scalar::Bool(a), MetadataValue::Bool(b)) => a == b,
        (Scalar::Num(a), MetadataValue::Int(b)) => num_eq(*a, Number::Int(*b)),
        (Scalar::Num(a), MetadataValue::Float(b)) => num_eq(*a, Number::Float(*b)),
        _ => false,
    }
}

fn set_contains(set: &ScalarSet, v: &MetadataValue) -> bool {
    match (set, v) {
        (ScalarSet::Str(xs), MetadataValue::Str(s)) => xs.iter().any(|x| x == s),
        (ScalarSet::Bool(xs), MetadataValue::Bool(b)) => xs.contains(b),
        (ScalarSet::Num(xs), v) => as_number(v).is_some_and(|n| xs.iter().any(|x| num_eq(*x, n))),
        _ => false,
    }
}

/// `$contains` on metadata: the value is an array holding an element equal to `s`.
fn array_contains(v: &MetadataValue, s: &Scalar) -> bool {
    match (v, s) {
        (MetadataValue::StrArray(xs), Scalar::Str(s)) => xs.iter().any(|x| x == s),
        (MetadataValue::BoolArray(xs), Scalar::Bool(b)) => xs.contains(b),
        (MetadataValue::IntArray(xs), Scalar::Num(n)) => {
            xs.iter().any(|x| num_eq(Number::Int(*x), *n))
        }
        (MetadataValue::FloatArray(xs), Scalar::Num(n)) => {
            xs.iter().any(|x| num_eq(Number::Float(*x), *n))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::filter::{parse, parse_where, parse_where_document};
    use crate::types::{Metadata, MetadataValue as V, SparseVector};

    fn md(pairs: &[(&str, V)]) -> Metadata {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    /// Evaluates a `where` JSON against metadata (no document).
    fn w(filter: serde_json::Value, m: &Metadata) -> bool {
        parse_where(&filter).unwrap().matches(Some(m), None)
    }

    /// Evaluates a `where_document` JSON against a document.
    fn wd(filter: serde_json::Value, doc: Option<&str>) -> bool {
        parse_where_document(&filter).unwrap().matches(None, doc)
    }

    #[test]
    fn equality_by_type() {
        let m = md(&[
            ("s", V::Str("a".into())),
            ("i", V::Int(1)),
            ("f", V::Float(1.0)),
            ("h", V::Float(1.5)),
            ("b", V::Bool(true)),
        ]);
        assert!(w(json!({"s": "a"}), &m));
        assert!(!w(json!({"s": "A"}), &m));
        // Int and float compare numerically in both directions.
        assert!(w(json!({"i": 1}), &m));
        assert!(w(json!({"i": 1.0}), &m));
        assert!(w(json!({"f": 1}), &m));
        assert!(w(json!({"h": 1.5}), &m));
        assert!(!w(json!({"h": 1}), &m));
        // Bool never equals a number, a string never equals a number.
        assert!(!w(json!({"b": 1}), &m));
        assert!(!w(json!({"i": true}), &m));
        assert!(!w(json!({"s": 1}), &m));
        assert!(!w(json!({"i": "1"}), &m));
        assert!(w(json!({"b": true}), &m));
        assert!(!w(json!({"b": false}), &m));
        assert!(w(json!({"b": {"$eq": true}}), &m));
        assert!(w(json!({"b": {"$ne": false}}), &m));
        assert!(!w(json!({"b": {"$ne": true}}), &m));
    }

    #[test]
    fn exact_big_int_equality() {
        let m = md(&[
            ("n", V::Int(9_007_199_254_740_993)),
            ("x", V::Float(9_007_199_254_740_992.0)),
        ]);
        assert!(!w(json!({"n": 9_007_199_254_740_992.0}), &m));
        assert!(w(json!({"n": {"$gt": 9_007_199_254_740_992.0}}), &m));
        assert!(!w(json!({"x": 9_007_199_254_740_993_i64}), &m));
        assert!(w(json!({"x": 9_007_199_254_740_992_i64}), &m));
        assert!(w(json!({"x": {"$lt": 9_007_199_254_740_993_i64}}), &m));
        // An integer literal beyond i64 is a float: 2^63 as u64 equals the float 2^63.
        let big = md(&[
            ("u", V::Float(9_223_372_036_854_775_808.0)),
            ("m", V::Int(i64::MAX)),
        ]);
        assert!(w(json!({"u": 9_223_372_036_854_775_808_u64}), &big));
        assert!(w(
            json!({"m": {"$lt": 9_223_372_036_854_775_808_u64}}),
            &big
        ));
    }

    #[test]
    fn ranges() {
        let m = md(&[
            ("i", V::Int(1)),
            ("f", V::Float(2.5)),
            ("s", V::Str("3".into())),
            ("b", V::Bool(true)),
        ]);
        // Exact math, not Chroma-local's truncated float operand.
        assert!(!w(json!({"i": {"$gte": 1.5}}), &m));
        assert!(w(json!({"i": {"$lt": 1.5}}), &m));
        assert!(w(json!({"i": {"$gte": 1}}), &m));
        assert!(!w(json!({"i": {"$gt": 1}}), &m));
        assert!(w(json!({"i": {"$lte": 1.0}}), &m));
        assert!(w(json!({"f": {"$gt": 2}}), &m));
        assert!(!w(json!({"f": {"$gt": 3}}), &m));
        assert!(w(json!({"f": {"$lt": 3}}), &m));
        assert!(w(json!({"f": {"$lte": 2.5}}), &m));
        assert!(!w(json!({"f": {"$lt": 2.5}}), &m));
        // Non-numeric and missing values fail every range operator.
        for op in ["$gt", "$gte", "$lt", "$lte"] {
            assert!(!w(json!({"s": {op: 0}}), &m), "{op} on string");
            assert!(!w(json!({"b": {op: 0}}), &m), "{op} on bool");
            assert!(!w(json!({"missing": {op: 0}}), &m), "{op} on missing");
        }
    }

    #[test]
    fn missing_key_and_type_mismatch() {
        let m = md(&[
            ("s", V::Str("a".into())),
            ("t", V::StrArray(vec!["a".into()])),
        ]);
        // Positive forms are false, negative forms true.
        assert!(!w(json!({"k": "a"}), &m));
        assert!(w(json!({"k": {"$ne": "a"}}), &m));
        assert!(!w(json!({"k": {"$in": ["a"]}}), &m));
        assert!(w(json!({"k": {"$nin": ["a"]}}), &m));
        assert!(!w(json!({"k": {"$contains": "a"}}), &m));
        assert!(w(json!({"k": {"$not_contains": "a"}}), &m));
        // Another type counts as a mismatch.
        assert!(w(json!({"s": {"$ne": 1}}), &m));
        assert!(w(json!({"s": {"$nin": [1, 2]}}), &m));
        // An array field never equals a scalar.
        assert!(!w(json!({"t": "a"}), &m));
        assert!(w(json!({"t": {"$ne": "a"}}), &m));
        assert!(!w(json!({"t": {"$in": ["a"]}}), &m));
        // No metadata at all.
        let f = |j| parse_where(&j).unwrap().matches(None, Some("doc"));
        assert!(!f(json!({"k": "a"})));
        assert!(f(json!({"k": {"$ne": "a"}})));
        assert!(f(json!({"k": {"$nin": ["a"]}})));
        assert!(f(json!({"k": {"$not_contains": "a"}})));
        assert!(!f(json!({"k": {"$gte": 0}})));
    }

    #[test]
    fn in_and_nin() {
        let m = md(&[
            ("s", V::Str("b".into())),
            ("i", V::Int(2)),
            ("f", V::Float(2.0)),
            ("b", V::Bool(false)),
        ]);
        assert!(w(json!({"s": {"$in": ["a", "b"]}}), &m));
        assert!(!w(json!({"s": {"$in": ["a", "c"]}}), &m));
        assert!(!w(json!({"s": {"$nin": ["a", "b"]}}), &m));
        assert!(w(json!({"s": {"$nin": ["a", "c"]}}), &m));
        assert!(w(json!({"i": {"$in": [1, 2]}}), &m));
        assert!(w(json!({"i": {"$in": [2.0]}}), &m));
        assert!(w(json!({"f": {"$in": [1, 2]}}), &m));
        // A float-first set may hold ints (Chroma accepts it).
        assert!(w(json!({"i": {"$in": [0.5, 2]}}), &m));
        assert!(w(json!({"b": {"$in": [false]}}), &m));
        assert!(!w(json!({"b": {"$in": [true]}}), &m));
        assert!(!w(json!({"i": {"$in": ["2"]}}), &m));
        assert!(!w(json!({"b": {"$in": [0]}}), &m));
    }

    #[test]
    fn array_contains() {
        let m = md(&[
            ("tags", V::StrArray(vec!["action".into(), "drama".into()])),
            ("ints", V::IntArray(vec![1, 2, 3])),
            ("floats", V::FloatArray(vec![1.5, 2.0])),
            ("flags", V::BoolArray(vec![true])),
            ("scalar", V::Str("action".into())),
            (
                "sv",
                V::SparseVector(SparseVector {
                    indices: vec![1],
                    values: vec![1.0],
                    tokens: None,
                }),
            ),
        ]);
        assert!(w(json!({"tags": {"$contains": "action"}}), &m));
        assert!(!w(json!({"tags": {"$contains": "act"}}), &m));
        assert!(w(json!({"tags": {"$not_contains": "comedy"}}), &m));
        assert!(!w(json!({"tags": {"$not_contains": "drama"}}), &m));
        assert!(w(json!({"ints": {"$contains": 2}}), &m));
        assert!(w(json!({"ints": {"$contains": 2.0}}), &m));
        assert!(!w(json!({"ints": {"$contains": 2.5}}), &m));
        assert!(w(json!({"floats": {"$contains": 2}}), &m));
        assert!(w(json!({"floats": {"$contains": 1.5}}), &m));
        assert!(w(json!({"flags": {"$contains": true}}), &m));
        assert!(!w(json!({"flags": {"$contains": false}}), &m));
        // Type mismatch between element and operand.
        assert!(!w(json!({"ints": {"$contains": "1"}}), &m));
        assert!(!w(json!({"flags": {"$contains": 1}}), &m));
        assert!(w(json!({"flags": {"$not_contains": 1}}), &m));
        // Never matches a scalar field, even one equal to the operand.
        assert!(!w(json!({"scalar": {"$contains": "action"}}), &m));
        assert!(w(json!({"scalar": {"$not_contains": "action"}}), &m));
        // Sparse vectors match nothing positive.
        assert!(!w(json!({"sv": {"$contains": 1}}), &m));
        assert!(!w(json!({"sv": 1}), &m));
        assert!(w(json!({"sv": {"$ne": 1}}), &m));
    }

    #[test]
    fn composites() {
        let m = md(&[("a", V::Int(1)), ("b", V::Int(2))]);
        assert!(w(json!({"$and": []}), &m));
        assert!(!w(json!({"$or": []}), &m));
        assert!(w(json!({"$and": [{"a": 1}]}), &m));
        assert!(!w(json!({"$and": [{"a": 1}, {"b": 1}]}), &m));
        assert!(w(json!({"$or": [{"a": 2}, {"b": 2}]}), &m));
        assert!(!w(json!({"$or": [{"a": 2}, {"b": 1}]}), &m));
        assert!(w(
            json!({"$and": [{"$or": [{"a": 5}, {"b": 2}]}, {"a": {"$lt": 2}}]}),
            &m
        ));
    }

    #[test]
    fn document_contains() {
        assert!(wd(json!({"$contains": "World"}), Some("Hello World")));
        // Case-sensitive.
        assert!(!wd(json!({"$contains": "world"}), Some("Hello World")));
        assert!(wd(json!({"$not_contains": "world"}), Some("Hello World")));
        // "" matches every record that has a document, even an empty one.
        assert!(wd(json!({"$contains": ""}), Some("x")));
        assert!(wd(json!({"$contains": ""}), Some("")));
        assert!(!wd(json!({"$contains": ""}), None));
        // No document: positive forms fail, negative forms pass.
        assert!(!wd(json!({"$contains": "a"}), None));
        assert!(wd(json!({"$not_contains": "a"}), None));
        assert!(!wd(json!({"$regex": ".*"}), None));
        assert!(wd(json!({"$not_regex": ".*"}), None));
        // SQL LIKE wildcards are literal.
        assert!(!wd(json!({"$contains": "a%c"}), Some("abc")));
        assert!(!wd(json!({"$contains": "a_c"}), Some("abc")));
        assert!(wd(json!({"$contains": "a_c"}), Some("xa_cx")));
    }

    #[test]
    fn document_regex() {
        assert!(wd(json!({"$regex": "^He.*d$"}), Some("Hello World")));
        assert!(!wd(json!({"$regex": "^world"}), Some("Hello World")));
        assert!(wd(json!({"$regex": "(?i)WORLD"}), Some("Hello World")));
        assert!(wd(json!({"$regex": "o W"}), Some("Hello World")));
        assert!(wd(json!({"$not_regex": "[0-9]"}), Some("Hello World")));
        assert!(!wd(json!({"$not_regex": "[a-z]"}), Some("Hello World")));
        assert!(wd(
            json!({"$and": [{"$contains": "Hello"}, {"$regex": "W.r"}]}),
            Some("Hello World")
        ));
        assert!(!wd(
            json!({"$or": [{"$contains": "x"}, {"$regex": "^x"}]}),
            Some("Hello World")
        ));
        assert!(!wd(json!({"$or": []}), Some("a")));
        assert!(wd(json!({"$and": []}), None));
    }

    #[test]
    fn document_key_inside_where() {
        let m = md(&[("a", V::Int(1))]);
        let f =
            parse_where(&json!({"$and": [{"a": 1}, {"#document": {"$contains": "ell"}}]})).unwrap();
        assert!(f.matches(Some(&m), Some("hello")));
        assert!(!f.matches(Some(&m), Some("help")));
        assert!(!f.matches(Some(&m), None));
        let f = parse_where(&json!({"#document": {"$not_regex": "^h"}})).unwrap();
        assert!(!f.matches(None, Some("hello")));
        assert!(f.matches(None, Some("Hello")));
        assert!(f.matches(None, None));
    }

    #[test]
    fn where_and_where_document_are_anded() {
        let m = md(&[("a", V::Int(1))]);
        let f = parse(Some(&json!({"a": 1})), Some(&json!({"$contains": "x"})))
            .unwrap()
            .unwrap();
        assert!(f.matches(Some(&m), Some("xyz")));
        assert!(!f.matches(Some(&m), Some("abc")));
        assert!(!f.matches(None, Some("xyz")));
    }
}
