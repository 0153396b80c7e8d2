//! Property tests: the parser + evaluator against a plain reference model that walks the raw
//! JSON filter (in the manner of Chroma's `test_filtering.py`), and robustness on arbitrary JSON.

use std::cmp::Ordering;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{json, Map, Number as JsonNumber, Value};

use super::{parse, parse_where, parse_where_document};
use crate::types::{Metadata, MetadataValue};

// ---------------------------------------------------------------------------------------------
// Reference model. Deliberately naive and written without the module's types or helpers.
// ---------------------------------------------------------------------------------------------

/// A number in the reference model: integers exactly (i128), floats as f64.
#[derive(Clone, Copy, Debug)]
enum RefNum {
    I(i128),
    F(f64),
}

/// JSON number typing from the spec: `1` int, `1.0` float, integers beyond i64 are floats.
fn ref_json_num(n: &JsonNumber) -> RefNum {
    if let Some(i) = n.as_i64() {
        RefNum::I(i as i128)
    } else if let Some(u) = n.as_u64() {
        RefNum::F(u as f64)
    } else {
        RefNum::F(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// Exact comparison, by flooring the float into i128 (a different route from the module's).
fn ref_cmp(a: RefNum, b: RefNum) -> Option<Ordering> {
    match (a, b) {
        (RefNum::I(x), RefNum::I(y)) => Some(x.cmp(&y)),
        (RefNum::F(x), RefNum::F(y)) => x.partial_cmp(&y),
        (RefNum::F(_), RefNum::I(_)) => ref_cmp(b, a).map(Ordering::reverse),
        (RefNum::I(i), RefNum::F(f)) => {
            if f.is_nan() {
                None
            } else if f.abs() >= 1e30 {
                Some(if f > 0.0 {
                    Ordering::Less
                } else {
                    Ordering::Greater
                })
            } else {
                let floor = f.floor();
                let fi = floor as i128; // exact: |floor| < 1e30 < 2^127 and integral
                match i.cmp(&fi) {
                    Ordering::Equal if f == floor => Some(Ordering::Equal),
                    Ordering::Equal => Some(Ordering::Less),
                    other => Some(other),
                }
            }
        }
    }
}

fn ref_md_num(v: &MetadataValue) -> Option<RefNum> {
    match v {
        MetadataValue::Int(i) => Some(RefNum::I(*i as i128)),
        MetadataValue::Float(f) => Some(RefNum::F(*f)),
        _ => None,
    }
}

/// Scalar equality between a stored scalar and a JSON operand.
fn ref_eq(v: &MetadataValue, j: &Value) -> bool {
    match (v, j) {
        (MetadataValue::Str(a), Value::String(b)) => a == b,
        (MetadataValue::Bool(a), Value::Bool(b)) => a == b,
        (MetadataValue::Int(_) | MetadataValue::Float(_), Value::Number(n)) => {
            ref_cmp(
                ref_md_num(v).unwrap_or(RefNum::F(f64::NAN)),
                ref_json_num(n),
            ) == Some(Ordering::Equal)
        }
        _ => false,
    }
}

/// The elements of an array value, as scalars.
fn ref_elements(v: &MetadataValue) -> Option<Vec<MetadataValue>> {
    match v {
        MetadataValue::StrArray(xs) => Some(xs.iter().cloned().map(MetadataValue::Str).collect()),
        MetadataValue::IntArray(xs) => Some(xs.iter().copied().map(MetadataValue::Int).collect()),
        MetadataValue::FloatArray(xs) => {
            Some(xs.iter().copied().map(MetadataValue::Float).collect())
        }
        MetadataValue::BoolArray(xs) => Some(xs.iter().copied().map(MetadataValue::Bool).collect()),
        _ => None,
    }
}

fn only_entry(v: &Value) -> (&str, &Value) {
    let obj = v.as_object().expect("generated clauses are objects");
    assert_eq!(obj.len(), 1, "generated clauses have one key");
    let (k, v) = obj.iter().next().expect("one key");
    (k.as_str(), v)
}

fn ref_document(op: &str, operand: &Value, doc: Option<&str>) -> bool {
    let text = operand.as_str().expect("document operands are strings");
    let hit = |d: &str| match op {
        "$contains" | "$not_contains" => d.contains(text),
        _ => regex::Regex::new(text)
            .expect("pool patterns are valid")
            .is_match(d),
    };
    let positive = doc.is_some_and(hit);
    match op {
        "$contains" | "$regex" => positive,
        _ => !positive,
    }
}

fn ref_where(clause: &Value, md: Option<&Metadata>, doc: Option<&str>) -> bool {
    let (key, expr) = only_entry(clause);
    match key {
        "$and" => {
            return expr
                .as_array()
                .expect("array")
                .iter()
                .all(|c| ref_where(c, md, doc))
        }
        "$or" => {
            return expr
                .as_array()
                .expect("array")
                .iter()
                .any(|c| ref_where(c, md, doc))
        }
        _ => {}
    }
    let (op, operand) = if expr.is_object() {
        only_entry(expr)
    } else {
        ("$eq", expr)
    };
    if key == "#document" && ["$contains", "$not_contains", "$regex", "$not_regex"].contains(&op) {
        return ref_document(op, operand, doc);
    }
    let value = md.and_then(|m| m.get(key));
    let range = |want: &[Ordering]| {
        let v = value.and_then(ref_md_num);
        let o = operand.as_number().map(ref_json_num);
        match (v, o) {
            (Some(v), Some(o)) => ref_cmp(v, o).is_some_and(|c| want.contains(&c)),
            _ => false,
        }
    };
    let in_set = || {
        let set = operand.as_array().expect("array operand");
        value.is_some_and(|v| set.iter().any(|j| ref_eq(v, j)))
    };
    let contains = || {
        value
            .and_then(ref_elements)
            .is_some_and(|xs| xs.iter().any(|x| ref_eq(x, operand)))
    };
    match op {
        "$eq" => value.is_some_and(|v| ref_eq(v, operand)),
        "$ne" => !value.is_some_and(|v| ref_eq(v, operand)),
        "$gt" => range(&[Ordering::Greater]),
        "$gte" => range(&[Ordering::Greater, Ordering::Equal]),
        "$lt" => range(&[Ordering::Less]),
        "$lte" => range(&[Ordering::Less, Ordering::Equal]),
        "$in" => in_set(),
        "$nin" => !in_set(),
        "$contains" => contains(),
        "$not_contains" => !contains(),
        other => panic!("generator produced unknown operator {other}"),
    }
}

fn ref_where_document(clause: &Value, doc: Option<&str>) -> bool {
    let (key, expr) = only_entry(clause);
    match key {
        "$and" => expr
            .as_array()
            .expect("array")
            .iter()
            .all(|c| ref_where_document(c, doc)),
        "$or" => expr
            .as_array()
            .expect("array")
            .iter()
            .any(|c| ref_where_document(c, doc)),
        op => ref_document(op, expr, doc),
    }
}

// ---------------------------------------------------------------------------------------------
// Reference validator, for arbitrary JSON.
// ---------------------------------------------------------------------------------------------

fn is_scalar(v: &Value) -> bool {
    matches!(v, Value::String(_) | Value::Bool(_) | Value::Number(_))
}

/// Float per the spec's typing: a float literal, or an integer outside i64.
fn is_float_typed(v: &Value) -> bool {
    v.as_number()
        .is_some_and(|n| n.is_f64() || (n.is_u64() && !n.is_i64()))
}

fn valid_set(v: &Value) -> bool {
    let Some(items) = v.as_array() else {
        return false;
    };
    let Some(first) = items.first() else {
        return false;
    };
    if first.is_string() {
        items.iter().all(Value::is_string)
    } else if first.is_boolean() {
        items.iter().all(Value::is_boolean)
    } else if is_float_typed(first) {
        items.iter().all(Value::is_number)
    } else if first.is_i64() {
        items.iter().all(Value::is_i64)
    } else {
        false
    }
}

/// Validity of the strings in [`STRINGS`] as patterns (hand-checked against Chroma's rules).
fn valid_regex(p: &str) -> bool {
    !matches!(p, "(" | "(?-u:\\w)" | "[z-a]")
}

fn single(v: &Value) -> Option<(&str, &Value)> {
    let o = v.as_object()?;
    (o.len() == 1).then(|| o.iter().next().map(|(k, v)| (k.as_str(), v)))?
}

fn valid_where(v: &Value) -> bool {
    let Some((key, expr)) = single(v) else {
        return false;
    };
    if key == "$and" || key == "$or" {
        return expr.as_array().is_some_and(|cs| cs.iter().all(valid_where));
    }
    if key.starts_with('$') {
        return false;
    }
    if is_scalar(expr) {
        return true;
    }
    let Some((op, arg)) = single(expr) else {
        return false;
    };
    let doc = key == "#document";
    match op {
        "$eq" | "$ne" => is_scalar(arg),
        "$gt" | "$gte" | "$lt" | "$lte" => arg.is_number(),
        "$in" | "$nin" => valid_set(arg),
        "$contains" | "$not_contains" => {
            if doc {
                arg.is_string()
            } else {
                is_scalar(arg)
            }
        }
        "$regex" | "$not_regex" => doc && arg.as_str().is_some_and(valid_regex),
        _ => false,
    }
}

fn valid_where_document(v: &Value) -> bool {
    let Some((key, expr)) = single(v) else {
        return false;
    };
    match key {
        "$and" | "$or" => expr
            .as_array()
            .is_some_and(|cs| cs.iter().all(valid_where_document)),
        "$contains" | "$not_contains" => expr.is_string(),
        "$regex" | "$not_regex" => expr.as_str().is_some_and(valid_regex),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Generators.
// ---------------------------------------------------------------------------------------------

const KEYS: &[&str] = &["a", "b", "c"];
const STRS: &[&str] = &["x", "y", ""];
/// Edge-heavy: pairs like (2^53 + 1, 2^53 as float) and (i64::MAX, 2^63 as float) are where a
/// lossy int → float cast would go wrong.
const INTS: &[i64] = &[-1, 0, 1, 2, 9_007_199_254_740_993, i64::MAX, i64::MIN];
const FLOATS: &[f64] = &[
    -1.5,
    -0.0,
    1.0,
    1.5,
    2.0,
    9_007_199_254_740_992.0,
    9_223_372_036_854_775_808.0,
    -9_223_372_036_854_775_808.0,
];
const DOCS: &[&str] = &[
    "hello world",
    "Hello World",
    "foo bar baz",
    "",
    "xyz\nhello",
];
const NEEDLES: &[&str] = &["hello", "Hello", "o w", "", "z", "bar", "baz\n"];
const PATTERNS: &[&str] = &[
    "^h",
    "(?i)hello",
    "o\\s+w",
    "z$",
    "ba[rz]",
    ".*",
    "^$",
    "(?m)^hello$",
];

fn pick<T: Clone + std::fmt::Debug + 'static>(
    xs: &'static [T],
) -> impl Strategy<Value = T> + Clone {
    prop::sample::select(xs)
}

fn md_value() -> impl Strategy<Value = MetadataValue> {
    prop_oneof![
        any::<bool>().prop_map(MetadataValue::Bool),
        pick(INTS).prop_map(MetadataValue::Int),
        pick(FLOATS).prop_map(MetadataValue::Float),
        pick(STRS).prop_map(|s| MetadataValue::Str(s.into())),
        vec(any::<bool>(), 1..4).prop_map(MetadataValue::BoolArray),
        vec(pick(INTS), 1..4).prop_map(MetadataValue::IntArray),
        vec(pick(FLOATS), 1..4).prop_map(MetadataValue::FloatArray),
        vec(pick(STRS).prop_map(String::from), 1..4).prop_map(MetadataValue::StrArray),
    ]
}

#[derive(Debug, Clone)]
pub(crate) struct Rec {
    pub(crate) metadata: Option<Metadata>,
    pub(crate) document: Option<String>,
}

pub(crate) fn record() -> impl Strategy<Value = Rec> {
    (
        prop::option::weighted(
            0.85,
            btree_map(pick(KEYS).prop_map(String::from), md_value(), 0..4),
        ),
        prop::option::weighted(0.8, pick(DOCS).prop_map(String::from)),
    )
        .prop_map(|(metadata, document)| Rec { metadata, document })
}

fn json_f64(f: f64) -> Value {
    JsonNumber::from_f64(f).map_or(Value::Null, Value::Number)
}

/// A number operand: ints, floats, and an integer literal beyond i64 (a float by typing).
fn num_operand() -> impl Strategy<Value = Value> + Clone {
    prop_oneof![
        pick(INTS).prop_map(|i| json!(i)),
        pick(FLOATS).prop_map(json_f64),
        Just(json!(9_223_372_036_854_775_808_u64)),
    ]
}

fn scalar_operand() -> impl Strategy<Value = Value> + Clone {
    prop_oneof![
        pick(STRS).prop_map(|s| json!(s)),
        any::<bool>().prop_map(|b| json!(b)),
        num_operand()
    ]
}

/// A valid `$in` operand: homogeneous, or float-first followed by any numbers.
fn set_operand() -> impl Strategy<Value = Value> {
    prop_oneof![
        vec(pick(STRS).prop_map(|s| json!(s)), 1..4).prop_map(Value::Array),
        vec(any::<bool>().prop_map(|b| json!(b)), 1..4).prop_map(Value::Array),
        vec(pick(INTS).prop_map(|i| json!(i)), 1..4).prop_map(Value::Array),
        (pick(FLOATS), vec(num_operand(), 0..3)).prop_map(|(f, rest)| {
            let mut items = vec![json_f64(f)];
            items.extend(rest);
            Value::Array(items)
        }),
    ]
}

fn obj(k: &str, v: Value) -> Value {
    let mut m = Map::new();
    m.insert(k.to_owned(), v);
    Value::Object(m)
}

pub(crate) fn doc_leaf(key_prefix: Option<&'static str>) -> impl Strategy<Value = Value> {
    let contains = (pick(&["$contains", "$not_contains"]), pick(NEEDLES));
    let regex = (pick(&["$regex", "$not_regex"]), pick(PATTERNS));
    prop_oneof![contains, regex].prop_map(move |(op, arg)| {
        let leaf = obj(op, json!(arg));
        match key_prefix {
            Some(k) => obj(k, leaf),
            None => leaf,
        }
    })
}

pub(crate) fn where_leaf() -> BoxedStrategy<Value> {
    let key = pick(KEYS);
    prop_oneof![
        2 => (key.clone(), scalar_operand()).prop_map(|(k, v)| obj(k, v)),
        3 => (key.clone(), pick(&["$eq", "$ne", "$contains", "$not_contains"]), scalar_operand())
            .prop_map(|(k, op, v)| obj(k, obj(op, v))),
        2 => (key.clone(), pick(&["$gt", "$gte", "$lt", "$lte"]), num_operand()).prop_map(|(k, op, v)| obj(k, obj(op, v))),
        2 => (key, pick(&["$in", "$nin"]), set_operand()).prop_map(|(k, op, v)| obj(k, obj(op, v))),
        1 => doc_leaf(Some("#document")),
    ]
    .boxed()
}

pub(crate) fn composite(leaf: BoxedStrategy<Value>) -> impl Strategy<Value = Value> {
    leaf.prop_recursive(4, 24, 4, |inner| {
        (pick(&["$and", "$or"]), vec(inner, 0..4)).prop_map(|(op, cs)| obj(op, Value::Array(cs)))
    })
}

/// Strings that make arbitrary JSON hit the grammar's corners (operators, `#document`,
/// valid and invalid patterns).
const STRINGS: &[&str] = &[
    "$and",
    "$or",
    "$eq",
    "$ne",
    "$gt",
    "$gte",
    "$lt",
    "$lte",
    "$in",
    "$nin",
    "$contains",
    "$not_contains",
    "$regex",
    "$not_regex",
    "$foo",
    "#document",
    "a",
    "",
    "(",
    "(?-u:\\w)",
    "[z-a]",
    ".*",
];

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<u64>().prop_map(|u| json!(u)),
        any::<f64>().prop_map(json_f64),
        pick(STRINGS).prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(6, 48, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec((pick(STRINGS), inner), 0..3).prop_map(|kvs| Value::Object(
                kvs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    })
}

/// String operands: valid and invalid patterns (see [`valid_regex`]) and plain text.
const OPERAND_STRINGS: &[&str] = &["a", "", "(", "(?-u:\\w)", "[z-a]", ".*", "$and"];

/// Keys and operators for near-valid clauses: real ones, plus near misses.
const FIELD_KEYS: &[&str] = &["a", "#document", "", "$foo", "$contains", "$and"];
const OPS: &[&str] = &[
    "$eq",
    "$ne",
    "$gt",
    "$gte",
    "$lt",
    "$lte",
    "$in",
    "$nin",
    "$contains",
    "$not_contains",
    "$regex",
    "$not_regex",
    "$foo",
    "eq",
    "$and",
];

/// Scalars (and null) that make operands right or subtly wrong.
fn operand_leaf() -> impl Strategy<Value = Value> + Clone {
    prop_oneof![
        pick(OPERAND_STRINGS).prop_map(|s| json!(s)),
        any::<bool>().prop_map(Value::Bool),
        pick(INTS).prop_map(|i| json!(i)),
        pick(FLOATS).prop_map(json_f64),
        Just(json!(9_223_372_036_854_775_808_u64)),
        Just(Value::Null),
    ]
}

/// An operand: a scalar, an array of scalars (set-like), or an empty object.
fn operand() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => operand_leaf(),
        3 => vec(operand_leaf(), 0..4).prop_map(Value::Array),
        1 => Just(json!({})),
    ]
}

/// One clause without nesting: `{"key": {"$op": operand}}` or `{"$op": operand}`. Validity then
/// hinges on this one choice, so rare corners (a byte-class `$regex`, `[1, 1.5]` in `$in`) are
/// not masked by an invalid sibling.
fn single_clause() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => (pick(FIELD_KEYS), pick(OPS), operand()).prop_map(|(k, op, v)| obj(k, obj(op, v))),
        1 => (pick(OPS), operand()).prop_map(|(k, v)| obj(k, v)),
    ]
}

/// Near-valid `where` / `where_document` JSON: mostly the grammar's shapes with random parts.
fn grammar_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        // {"key": {"$op": operand}}
        4 => (pick(FIELD_KEYS), pick(OPS), operand()).prop_map(|(k, op, v)| obj(k, obj(op, v))),
        // {"key": operand} (shorthand, or a where_document leaf when key is an operator)
        2 => (pick(FIELD_KEYS), operand()).prop_map(|(k, v)| obj(k, v)),
        2 => (pick(OPS), operand()).prop_map(|(k, v)| obj(k, v)),
        // Two keys, or none.
        1 => (pick(FIELD_KEYS), operand(), pick(OPS), operand()).prop_map(|(k1, v1, k2, v2)| {
            let mut m = Map::new();
            m.insert(k1.to_owned(), v1);
            m.insert(k2.to_owned(), v2);
            Value::Object(m)
        }),
        1 => Just(json!({})),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            3 => (pick(&["$and", "$or"]), vec(inner.clone(), 0..3)).prop_map(|(k, cs)| obj(k, Value::Array(cs))),
            1 => (pick(&["$and", "$or"]), inner).prop_map(|(k, c)| obj(k, c)),
        ]
    })
}

/// Integers and floats close to each other, where exactness matters.
fn int_float_pair() -> impl Strategy<Value = (i64, f64)> {
    let int = prop_oneof![pick(INTS), any::<i64>(), (-5i64..5)];
    (int, 0..6usize, any::<f64>(), pick(FLOATS)).prop_map(|(i, how, any_f, pool_f)| {
        let near = i as f64;
        let f = match how {
            0 => near,
            1 => near + 0.5,
            2 => near - 0.25,
            3 => f64::from_bits(near.to_bits().wrapping_add(1)),
            4 => pool_f,
            _ => any_f,
        };
        (i, f)
    })
}

// ---------------------------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------------------------

// Cases are cheap (well under a millisecond each), and the corners these properties exist for
// (exactness at 2^53 and 2^63, byte-class patterns, mixed `$in` arrays) are rare per case.
proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    /// `parse(...)?.matches(...)` agrees with the reference model on valid filters.
    #[test]
    fn matches_reference_model(
        records in vec(record(), 1..16),
        where_ in prop::option::weighted(0.8, composite(where_leaf())),
        where_document in prop::option::weighted(0.5, composite(doc_leaf(None).boxed())),
    ) {
        let filter = parse(where_.as_ref(), where_document.as_ref());
        prop_assert!(filter.is_ok(), "valid filter rejected: {:?}", filter);
        let filter = filter.unwrap();
        for r in &records {
            let md = r.metadata.as_ref();
            let doc = r.document.as_deref();
            let expected = where_.as_ref().is_none_or(|w| ref_where(w, md, doc))
                && where_document.as_ref().is_none_or(|wd| ref_where_document(wd, doc));
            let actual = filter.as_ref().is_none_or(|f| f.matches(md, doc));
            prop_assert_eq!(actual, expected, "record {:?}", r);
        }
    }

    /// Exact int/float order agrees with the reference's independent computation.
    #[test]
    fn number_order_matches_reference((i, f) in int_float_pair()) {
        use super::Number;
        let expected = ref_cmp(RefNum::I(i as i128), RefNum::F(f));
        prop_assert_eq!(Number::Int(i).compare(Number::Float(f)), expected);
        prop_assert_eq!(Number::Float(f).compare(Number::Int(i)), expected.map(Ordering::reverse));
    }

    /// Never panics on arbitrary JSON, and accepts exactly what the reference validator accepts.
    #[test]
    fn parse_arbitrary_json(v in prop_oneof![1 => arbitrary_json(), 2 => single_clause(), 2 => grammar_json()]) {
        let w = parse_where(&v);
        let wd = parse_where_document(&v);
        prop_assert_eq!(w.is_ok(), valid_where(&v), "where {} gave {:?}", v, w);
        prop_assert_eq!(wd.is_ok(), valid_where_document(&v), "where_document {} gave {:?}", v, wd);
        // Whatever parses can be evaluated without panicking.
        if let Ok(f) = w {
            let _ = f.matches(None, None);
            let _ = f.matches(Some(&Metadata::new()), Some(""));
        }
    }
}
