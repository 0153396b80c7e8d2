//! JSON → [`Filter`], following Chroma 1.5.9's `where_parsing.rs` rule for rule, so that every
//! filter Chroma accepts parses here and every one it rejects fails with the same message.

use regex::{Regex, RegexBuilder};
use regex_syntax::hir::{Class, Hir, HirKind};
use serde_json::{Map, Value};

use super::ast::{DocumentOp, Filter, MetadataOp, Number, Scalar, ScalarSet};
use super::FilterError;

/// Deepest `$and`/`$or` nesting accepted (the top-level clause is depth 1). The JSON body parser's
/// own recursion limit (128) keeps wire filters below this anyway; it protects callers that
/// build `Value`s in code.
pub const MAX_DEPTH: usize = 64;

/// Compiled-program size limit for one `$regex` pattern. It equals the `regex` crate's default,
/// which is what Chroma compiles with, so no pattern Chroma accepts is refused; it is pinned
/// here so a crate upgrade cannot silently raise it.
pub const REGEX_SIZE_LIMIT: usize = 10 * (1 << 20);

/// Cache limit for the lazy DFA of one pattern (per searching thread), the crate's default.
const REGEX_DFA_SIZE_LIMIT: usize = 2 * (1 << 20);

/// Most `$regex`/`$not_regex` patterns in one clause: with [`REGEX_SIZE_LIMIT`] per pattern this
/// bounds a filter's compiled regexes to 320 MiB; without it a 40 MiB body of patterns that each
/// compile near the limit could exhaust memory. Chroma has no such limit.
pub const MAX_REGEXES: usize = 32;

/// Which grammar is being parsed; selects the error message.
#[derive(Clone, Copy)]
enum Clause {
    Where,
    WhereDocument,
}

impl Clause {
    fn invalid(self) -> FilterError {
        match self {
            Clause::Where => FilterError::InvalidWhere,
            Clause::WhereDocument => FilterError::InvalidWhereDocument,
        }
    }

    fn too_deep(self) -> FilterError {
        let clause = match self {
            Clause::Where => "where",
            Clause::WhereDocument => "where document",
        };
        FilterError::TooDeep {
            clause,
            max: MAX_DEPTH,
        }
    }
}

/// Parse state: the grammar, and how many regexes have been compiled so far.
struct Parser {
    clause: Clause,
    regexes: usize,
}

/// Parses a `where` clause (metadata filter, with optional `#document` tests).
pub fn parse_where(v: &Value) -> Result<Filter, FilterError> {
    Parser {
        clause: Clause::Where,
        regexes: 0,
    }
    .where_clause(v, 1)
}

/// Parses a `where_document` clause.
pub fn parse_where_document(v: &Value) -> Result<Filter, FilterError> {
    Parser {
        clause: Clause::WhereDocument,
        regexes: 0,
    }
    .document_clause(v, 1)
}

/// The single `(key, value)` entry of an object, or `None` unless it has exactly one.
fn single_entry(obj: &Map<String, Value>) -> Option<(&str, &Value)> {
    let mut entries = obj.iter();
    match (entries.next(), entries.next()) {
        (Some((k, v)), None) => Some((k.as_str(), v)),
        _ => None,
    }
}

/// A JSON number: `1` is an int, `1.0` a float, and an integer outside `i64` a float.
fn number(v: &Value) -> Option<Number> {
    let n = v.as_number()?;
    match n.as_i64() {
        Some(i) => Some(Number::Int(i)),
        None => n.as_f64().map(Number::Float),
    }
}

/// A str / int / float / bool operand.
fn scalar(v: &Value) -> Option<Scalar> {
    match v {
        Value::String(s) => Some(Scalar::Str(s.clone())),
        Value::Bool(b) => Some(Scalar::Bool(*b)),
        Value::Number(_) => number(v).map(Scalar::Num),
        _ => None,
    }
}

/// The operand of `$in`/`$nin`: a non-empty array whose elements all have the first one's type.
/// As in Chroma, a float-first array accepts any number, but an int-first array refuses floats.
fn scalar_set(v: &Value) -> Option<ScalarSet> {
    let items = v.as_array()?;
    let first = items.first()?;
    match first {
        Value::String(_) => items
            .iter()
            .map(|x| x.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(ScalarSet::Str),
        Value::Bool(_) => items
            .iter()
            .map(Value::as_bool)
            .collect::<Option<Vec<_>>>()
            .map(ScalarSet::Bool),
        Value::Number(_) => match number(first)? {
            Number::Float(_) => items
                .iter()
                .map(number)
                .collect::<Option<Vec<_>>>()
                .map(ScalarSet::Num),
            Number::Int(_) => items
                .iter()
                .map(|x| x.as_i64().map(Number::Int))
                .collect::<Option<Vec<_>>>()
                .map(ScalarSet::Num),
        },
        _ => None,
    }
}

impl Parser {
    fn invalid(&self) -> FilterError {
        self.clause.invalid()
    }

    /// `$and` / `$or`: the value must be an array of clauses.
    fn composite(
        &mut self,
        is_and: bool,
        value: &Value,
        depth: usize,
        child: fn(&mut Parser, &Value, usize) -> Result<Filter, FilterError>,
    ) -> Result<Filter, FilterError> {
        let items = value.as_array().ok_or_else(|| self.invalid())?;
        let children = items
            .iter()
            .map(|c| child(self, c, depth + 1))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(if is_and {
            Filter::And(children)
        } else {
            Filter::Or(children)
        })
    }

    /// A clause of either grammar: a one-key object, `$and` / `$or` of further clauses parsed by
    /// `child` (this grammar's clause), any other key by `leaf`.
    fn parse_clause(
        &mut self,
        v: &Value,
        depth: usize,
        child: fn(&mut Parser, &Value, usize) -> Result<Filter, FilterError>,
        leaf: fn(&mut Parser, &str, &Value) -> Result<Filter, FilterError>,
    ) -> Result<Filter, FilterError> {
        if depth > MAX_DEPTH {
            return Err(self.clause.too_deep());
        }
        let obj = v.as_object().ok_or_else(|| self.invalid())?;
        let (key, value) = single_entry(obj).ok_or_else(|| self.invalid())?;
        match key {
            "$and" => self.composite(true, value, depth, child),
            "$or" => self.composite(false, value, depth, child),
            _ => leaf(self, key, value),
        }
    }

    fn where_clause(&mut self, v: &Value, depth: usize) -> Result<Filter, FilterError> {
        self.parse_clause(v, depth, Parser::where_clause, |p, key, value| {
            // Operators are only valid inside a field expression.
            if key.starts_with('$') {
                Err(p.invalid())
            } else {
                p.field_expression(key, value)
            }
        })
    }

    /// `{"key": scalar}` or `{"key": {"$op": operand}}`.
    fn field_expression(&mut self, key: &str, value: &Value) -> Result<Filter, FilterError> {
        let meta = |op| {
            Ok(Filter::Metadata {
                key: key.to_owned(),
                op,
            })
        };
        if let Some(s) = scalar(value) {
            return meta(MetadataOp::Eq(s));
        }
        let ops = value.as_object().ok_or_else(|| self.invalid())?;
        let (op, operand) = single_entry(ops).ok_or_else(|| self.invalid())?;
        let is_document = key == "#document";
        match op {
            "$eq" | "$ne" => {
                let s = scalar(operand).ok_or_else(|| self.invalid())?;
                meta(if op == "$eq" {
                    MetadataOp::Eq(s)
                } else {
                    MetadataOp::Ne(s)
                })
            }
            "$gt" | "$gte" | "$lt" | "$lte" => {
                let n = number(operand).ok_or_else(|| self.invalid())?;
                meta(match op {
                    "$gt" => MetadataOp::Gt(n),
                    "$gte" => MetadataOp::Gte(n),
                    "$lt" => MetadataOp::Lt(n),
                    _ => MetadataOp::Lte(n),
                })
            }
            "$in" | "$nin" => {
                let set = scalar_set(operand).ok_or_else(|| self.invalid())?;
                meta(if op == "$in" {
                    MetadataOp::In(set)
                } else {
                    MetadataOp::Nin(set)
                })
            }
            "$contains" | "$not_contains" if is_document => {
                let text = operand.as_str().ok_or_else(|| self.invalid())?;
                Ok(Filter::Document(document_contains(op == "$contains", text)))
            }
            "$contains" | "$not_contains" => {
                let s = scalar(operand).ok_or_else(|| self.invalid())?;
                meta(if op == "$contains" {
                    MetadataOp::Contains(s)
                } else {
                    MetadataOp::NotContains(s)
                })
            }
            // Regex operators are only valid on the document.
            "$regex" | "$not_regex" if is_document => {
                let pattern = operand.as_str().ok_or_else(|| self.invalid())?;
                let re = self.regex(pattern)?;
                Ok(Filter::Document(if op == "$regex" {
                    DocumentOp::Regex(re)
                } else {
                    DocumentOp::NotRegex(re)
                }))
            }
            _ => Err(self.invalid()),
        }
    }

    fn document_clause(&mut self, v: &Value, depth: usize) -> Result<Filter, FilterError> {
        self.parse_clause(v, depth, Parser::document_clause, Parser::document_operator)
    }

    /// `{"$contains": text}` and the other document operators.
    fn document_operator(&mut self, key: &str, value: &Value) -> Result<Filter, FilterError> {
        let text = value.as_str().ok_or_else(|| self.invalid())?;
        let op = match key {
            "$contains" => document_contains(true, text),
            "$not_contains" => document_contains(false, text),
            "$regex" => DocumentOp::Regex(self.regex(text)?),
            "$not_regex" => DocumentOp::NotRegex(self.regex(text)?),
            _ => return Err(self.invalid()),
        };
        Ok(Filter::Document(op))
    }

    /// Validates a pattern as Chroma does (regex-syntax parse, no byte classes) and compiles it
    /// with bounded size.
    fn regex(&mut self, pattern: &str) -> Result<Regex, FilterError> {
        let hir =
            regex_syntax::parse(pattern).map_err(|e| FilterError::RegexSyntax(e.to_string()))?;
        if has_byte_pattern(&hir) {
            return Err(FilterError::BytePattern);
        }
        if self.regexes >= MAX_REGEXES {
            return Err(FilterError::TooManyRegexes { max: MAX_REGEXES });
        }
        self.regexes += 1;
        RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
            .build()
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(limit) => FilterError::RegexTooBig { limit },
                regex::Error::Syntax(msg) => FilterError::RegexSyntax(msg),
                other => FilterError::RegexSyntax(other.to_string()),
            })
    }
}

fn document_contains(positive: bool, text: &str) -> DocumentOp {
    if positive {
        DocumentOp::Contains(text.to_owned())
    } else {
        DocumentOp::NotContains(text.to_owned())
    }
}

/// True when the pattern holds a byte class or a non-UTF-8 literal, which Chroma refuses
/// ("Byte pattern is not allowed"), e.g. `(?-u:\w)`. Walks iteratively: no recursion on input.
fn has_byte_pattern(hir: &Hir) -> bool {
    let mut stack = vec![hir];
    while let Some(h) = stack.pop() {
        match h.kind() {
            HirKind::Class(Class::Bytes(_)) => return true,
            HirKind::Literal(lit) if std::str::from_utf8(&lit.0).is_err() => return true,
            HirKind::Repetition(r) => stack.push(&r.sub),
            HirKind::Capture(c) => stack.push(&c.sub),
            HirKind::Concat(subs) | HirKind::Alternation(subs) => stack.extend(subs.iter()),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::filter::parse;

    const INVALID_WHERE: &str = "Invalid where clause";
    const INVALID_WD: &str = "Invalid where document clause";

    fn where_err(v: Value) -> String {
        match parse_where(&v) {
            Ok(f) => panic!("{v} parsed as {f:?}, expected an error"),
            Err(e) => e.to_string(),
        }
    }

    fn wd_err(v: Value) -> String {
        match parse_where_document(&v) {
            Ok(f) => panic!("{v} parsed as {f:?}, expected an error"),
            Err(e) => e.to_string(),
        }
    }

    fn meta_op(v: Value) -> (String, MetadataOp) {
        match parse_where(&v) {
            Ok(Filter::Metadata { key, op }) => (key, op),
            other => panic!("{v}: expected a metadata comparison, got {other:?}"),
        }
    }

    #[test]
    fn where_shapes_rejected() {
        for v in [
            json!({}),
            json!(null),
            json!([]),
            json!("a"),
            json!(1),
            json!({"a": 1, "b": 2}),
            json!({"a": null}),
            json!({"a": [1, 2]}),
            json!({"a": {}}),
            json!({"a": {"$eq": 1, "$ne": 2}}),
            json!({"$and": {"a": 1}}),
            json!({"$or": "a"}),
            json!({"$and": [{"a": 1}, {}]}),
            json!({"$or": [{"a": 1}, 5]}),
            // Top-level operators other than $and/$or.
            json!({"$contains": "a"}),
            json!({"$eq": 1}),
            json!({"$not": {"a": 1}}),
            json!({"$regex": "a"}),
            // Unknown or misplaced operators.
            json!({"a": {"$foo": 1}}),
            json!({"a": {"eq": 1}}),
            json!({"a": {"$and": [{"b": 1}]}}),
            json!({"a": {"$not": 1}}),
        ] {
            assert_eq!(where_err(v), INVALID_WHERE);
        }
    }

    #[test]
    fn operand_types_checked() {
        for v in [
            json!({"a": {"$eq": null}}),
            json!({"a": {"$eq": [1]}}),
            json!({"a": {"$eq": {"x": 1}}}),
            json!({"a": {"$ne": [1]}}),
            // Ranges take numbers only (string, bool, null, array all rejected).
            json!({"a": {"$gt": "1"}}),
            json!({"a": {"$gte": true}}),
            json!({"a": {"$lt": null}}),
            json!({"a": {"$lte": [1]}}),
            // $in / $nin: non-empty array of one type.
            json!({"a": {"$in": []}}),
            json!({"a": {"$nin": []}}),
            json!({"a": {"$in": "a"}}),
            json!({"a": {"$in": 1}}),
            json!({"a": {"$in": ["a", 1]}}),
            json!({"a": {"$in": [1, "b"]}}),
            json!({"a": {"$nin": [true, 1]}}),
            json!({"a": {"$in": [1, 1.5]}}),
            json!({"a": {"$in": [1, 9_223_372_036_854_775_808_u64]}}),
            json!({"a": {"$in": [null]}}),
            json!({"a": {"$in": [[1]]}}),
            json!({"a": {"$in": [{"b": 1}]}}),
            // $contains on metadata takes a scalar.
            json!({"a": {"$contains": ["x"]}}),
            json!({"a": {"$contains": null}}),
            json!({"a": {"$not_contains": {"x": 1}}}),
            // $regex only on #document, and only with a string.
            json!({"a": {"$regex": "x"}}),
            json!({"a": {"$not_regex": "x"}}),
            json!({"#document": {"$regex": 1}}),
            json!({"#document": {"$not_regex": null}}),
            // #document contains needs a string.
            json!({"#document": {"$contains": 42}}),
            json!({"#document": {"$contains": 2.5}}),
            json!({"#document": {"$not_contains": false}}),
            json!({"#document": {"$contains": ["a"]}}),
        ] {
            assert_eq!(where_err(v), INVALID_WHERE);
        }
    }

    #[test]
    fn where_accepted_forms() {
        assert_eq!(
            meta_op(json!({"a": "x"})),
            ("a".into(), MetadataOp::Eq(Scalar::Str("x".into())))
        );
        assert_eq!(
            meta_op(json!({"a": true})).1,
            MetadataOp::Eq(Scalar::Bool(true))
        );
        assert_eq!(
            meta_op(json!({"a": 1})).1,
            MetadataOp::Eq(Scalar::Num(Number::Int(1)))
        );
        assert_eq!(
            meta_op(json!({"a": 1.0})).1,
            MetadataOp::Eq(Scalar::Num(Number::Float(1.0)))
        );
        // Integers outside i64 are floats.
        assert_eq!(
            meta_op(json!({"a": u64::MAX})).1,
            MetadataOp::Eq(Scalar::Num(Number::Float(18_446_744_073_709_551_615.0)))
        );
        assert_eq!(
            meta_op(json!({"a": {"$ne": "x"}})).1,
            MetadataOp::Ne(Scalar::Str("x".into()))
        );
        assert_eq!(
            meta_op(json!({"a": {"$gt": 1}})).1,
            MetadataOp::Gt(Number::Int(1))
        );
        assert_eq!(
            meta_op(json!({"a": {"$gte": 1.5}})).1,
            MetadataOp::Gte(Number::Float(1.5))
        );
        assert_eq!(
            meta_op(json!({"a": {"$lt": -3}})).1,
            MetadataOp::Lt(Number::Int(-3))
        );
        assert_eq!(
            meta_op(json!({"a": {"$lte": 0.0}})).1,
            MetadataOp::Lte(Number::Float(0.0))
        );
        assert_eq!(
            meta_op(json!({"a": {"$in": ["x", "y"]}})).1,
            MetadataOp::In(ScalarSet::Str(vec!["x".into(), "y".into()]))
        );
        assert_eq!(
            meta_op(json!({"a": {"$nin": [false]}})).1,
            MetadataOp::Nin(ScalarSet::Bool(vec![false]))
        );
        assert_eq!(
            meta_op(json!({"a": {"$in": [1, 2]}})).1,
            MetadataOp::In(ScalarSet::Num(vec![Number::Int(1), Number::Int(2)]))
        );
        // Float-first sets accept ints and keep them exact.
        assert_eq!(
            meta_op(json!({"a": {"$in": [1.5, 9_007_199_254_740_993_i64]}})).1,
            MetadataOp::In(ScalarSet::Num(vec![
                Number::Float(1.5),
                Number::Int(9_007_199_254_740_993)
            ]))
        );
        assert_eq!(
            meta_op(json!({"a": {"$contains": "x"}})).1,
            MetadataOp::Contains(Scalar::Str("x".into()))
        );
        assert_eq!(
            meta_op(json!({"a": {"$not_contains": 2}})).1,
            MetadataOp::NotContains(Scalar::Num(Number::Int(2)))
        );
        // "#document" with other operators is an ordinary (never present) metadata key, as in Chroma.
        assert_eq!(meta_op(json!({"#document": {"$eq": "x"}})).0, "#document");
        // Keys starting with '#' or empty keys are ordinary keys too.
        assert_eq!(meta_op(json!({"": 1})).0, "");
        assert!(matches!(
            parse_where(&json!({"#document": {"$contains": "x"}})),
            Ok(Filter::Document(DocumentOp::Contains(s))) if s == "x"
        ));
        assert!(matches!(
            parse_where(&json!({"#document": {"$not_regex": "x+"}})),
            Ok(Filter::Document(DocumentOp::NotRegex(r))) if r.as_str() == "x+"
        ));
        // Composites, including empty and single-element lists.
        assert!(matches!(parse_where(&json!({"$and": []})), Ok(Filter::And(c)) if c.is_empty()));
        assert!(matches!(parse_where(&json!({"$or": []})), Ok(Filter::Or(c)) if c.is_empty()));
        assert!(
            matches!(parse_where(&json!({"$or": [{"a": 1}]})), Ok(Filter::Or(c)) if c.len() == 1)
        );
    }

    #[test]
    fn where_document_shapes() {
        for v in [
            json!({}),
            json!(null),
            json!("x"),
            json!({"$contains": "a", "$regex": "b"}),
            json!({"$contains": 1}),
            json!({"$contains": null}),
            json!({"$not_contains": ["a"]}),
            json!({"$regex": true}),
            json!({"$eq": "a"}),
            json!({"contains": "a"}),
            json!({"#document": {"$contains": "a"}}),
            json!({"$and": {"$contains": "a"}}),
            json!({"$or": [{"$contains": "a"}, {"a": 1}]}),
        ] {
            assert_eq!(wd_err(v), INVALID_WD);
        }
        assert!(
            matches!(parse_where_document(&json!({"$contains": ""})), Ok(Filter::Document(DocumentOp::Contains(s))) if s.is_empty())
        );
        assert!(matches!(
            parse_where_document(&json!({"$not_contains": "a"})),
            Ok(Filter::Document(DocumentOp::NotContains(_)))
        ));
        assert!(matches!(
            parse_where_document(&json!({"$regex": "a"})),
            Ok(Filter::Document(DocumentOp::Regex(_)))
        ));
        assert!(matches!(
            parse_where_document(&json!({"$not_regex": "a"})),
            Ok(Filter::Document(DocumentOp::NotRegex(_)))
        ));
        assert!(
            matches!(parse_where_document(&json!({"$and": []})), Ok(Filter::And(c)) if c.is_empty())
        );
        assert!(matches!(
            parse_where_document(&json!({"$or": [{"$contains": "a"}, {"$and": [{"$regex": "b"}]}]})),
            Ok(Filter::Or(c)) if c.len() == 2
        ));
    }

    #[test]
    fn regex_errors() {
        let unclosed =
            "Regex syntax errror: regex parse error:\n    (\n    ^\nerror: unclosed group";
        assert_eq!(wd_err(json!({"$regex": "("})), unclosed);
        assert_eq!(wd_err(json!({"$not_regex": "("})), unclosed);
        assert_eq!(where_err(json!({"#document": {"$regex": "("}})), unclosed);
        assert!(wd_err(json!({"$regex": "(?-u:.)"}))
            .ends_with("error: pattern can match invalid UTF-8"));
        // Valid syntax but a byte class: Chroma refuses these.
        assert_eq!(
            wd_err(json!({"$regex": "(?-u:\\w)"})),
            "Byte pattern is not allowed"
        );
        assert_eq!(
            where_err(json!({"#document": {"$regex": "x(?i-u:a)+"}})),
            "Byte pattern is not allowed"
        );
        // Too big to compile within the limit.
        assert_eq!(
            wd_err(json!({"$regex": "\\w{500}"})),
            "Regex syntax errror: Compiled regex exceeds size limit of 10485760 bytes."
        );
        // Large but within the limit (Chroma accepts it too).
        assert!(parse_where_document(&json!({"$regex": "\\w{100}"})).is_ok());
        // Anchors, word boundaries and ASCII-only literals under (?-u) are fine.
        assert!(parse_where_document(&json!({"$regex": "(?-u:ab)\\b^$"})).is_ok());
        // The first error in document order wins: structure before a later bad regex.
        assert_eq!(
            where_err(json!({"$and": [{"a": []}, {"#document": {"$regex": "("}}]})),
            INVALID_WHERE
        );
        assert_eq!(
            where_err(json!({"$and": [{"#document": {"$regex": "("}}, {"a": []}]})),
            unclosed
        );
    }

    #[test]
    fn regex_count_is_capped() {
        let ok: Vec<Value> = (0..MAX_REGEXES)
            .map(|i| json!({"$regex": format!("a{i}")}))
            .collect();
        assert!(parse_where_document(&json!({ "$or": ok })).is_ok());
        let too_many: Vec<Value> = (0..=MAX_REGEXES)
            .map(|i| json!({"$regex": format!("a{i}")}))
            .collect();
        assert_eq!(
            wd_err(json!({ "$or": too_many })),
            "Too many regex patterns in one filter clause (at most 32)"
        );
        // Plain $contains clauses do not count.
        let contains: Vec<Value> = (0..100)
            .map(|i| json!({"$contains": format!("a{i}")}))
            .collect();
        assert!(parse_where_document(&json!({ "$or": contains })).is_ok());
    }

    /// `levels` nested single-child `$and`s around `leaf`, built without `json!` (which would
    /// re-serialize, i.e. recurse through, the inner value).
    fn nest(levels: usize, leaf: Value) -> Value {
        (1..levels).fold(leaf, |inner, _| {
            let mut m = serde_json::Map::new();
            m.insert("$and".to_owned(), Value::Array(vec![inner]));
            Value::Object(m)
        })
    }

    #[test]
    fn depth_is_capped() {
        assert!(parse_where(&nest(MAX_DEPTH, json!({"a": 1}))).is_ok());
        assert_eq!(
            where_err(nest(MAX_DEPTH + 1, json!({"a": 1}))),
            "Invalid where clause: nested more than 64 levels deep"
        );
        assert!(parse_where_document(&nest(MAX_DEPTH, json!({"$contains": "a"}))).is_ok());
        assert_eq!(
            wd_err(nest(MAX_DEPTH + 1, json!({"$contains": "a"}))),
            "Invalid where document clause: nested more than 64 levels deep"
        );
        // Far deeper than any stack would allow: still an error, not a crash. serde_json's
        // Drop is recursive, so the value is leaked rather than dropped on the test stack.
        let deep = Box::leak(Box::new(nest(100_000, json!({"a": 1}))));
        assert!(matches!(
            parse_where(deep),
            Err(FilterError::TooDeep { .. })
        ));
    }

    #[test]
    fn parse_combines() {
        assert!(parse(None, None).unwrap().is_none());
        assert!(parse(Some(&Value::Null), Some(&Value::Null))
            .unwrap()
            .is_none());
        assert!(matches!(
            parse(Some(&json!({"a": 1})), None),
            Ok(Some(Filter::Metadata { .. }))
        ));
        assert!(matches!(
            parse(None, Some(&json!({"$contains": "a"}))),
            Ok(Some(Filter::Document(_)))
        ));
        assert!(matches!(
            parse(Some(&json!({"a": 1})), Some(&json!({"$contains": "a"}))),
            Ok(Some(Filter::And(c))) if c.len() == 2
        ));
        // Nested Ands are flattened.
        assert!(matches!(
            parse(Some(&json!({"$and": [{"a": 1}, {"b": 2}]})), Some(&json!({"$contains": "a"}))),
            Ok(Some(Filter::And(c))) if c.len() == 3
        ));
        // `where` is checked first, as in Chroma.
        assert_eq!(
            parse(Some(&json!({})), Some(&json!({}))).unwrap_err(),
            FilterError::InvalidWhere
        );
        assert_eq!(
            parse(Some(&json!({"a": 1})), Some(&json!({}))).unwrap_err(),
            FilterError::InvalidWhereDocument
        );
        assert_eq!(
            parse(Some(&json!({})), None).unwrap_err().to_string(),
            INVALID_WHERE
        );
    }
}
