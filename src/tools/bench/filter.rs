//! A small local evaluator for the `where` filters the benchmark sends, so filtered ground truth
//! and filter violations are computed on the client, independently of the server under test.

use anyhow::{bail, Context};
use serde_json::{Map, Value};

/// A compiled `where` clause.
#[derive(Debug, Clone)]
pub enum Cond {
    /// All must hold.
    And(Vec<Cond>),
    /// Any must hold.
    Or(Vec<Cond>),
    /// `key op value`.
    Field {
        /// Metadata key.
        key: String,
        /// Operator (`$eq`, `$ne`, `$gt`, `$gte`, `$lt`, `$lte`, `$in`, `$nin`).
        op: Op,
        /// Operand (a scalar, or a list for `$in` / `$nin`).
        value: Value,
    },
}

/// Comparison operators of Chroma's metadata filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Gte,
    /// Less than.
    Lt,
    /// Less than or equal.
    Lte,
    /// In a list.
    In,
    /// Not in a list.
    Nin,
}

impl Cond {
    /// Compiles a Chroma `where` object (shorthand equality, operators, `$and` / `$or`).
    pub fn parse(v: &Value) -> anyhow::Result<Cond> {
        let Value::Object(m) = v else {
            bail!("a where clause must be an object, got {v}");
        };
        let mut parts = Vec::new();
        for (k, val) in m {
            match k.as_str() {
                "$and" | "$or" => {
                    let items = val
                        .as_array()
                        .with_context(|| format!("{k} needs a list"))?;
                    let subs = items
                        .iter()
                        .map(Cond::parse)
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    parts.push(if k == "$and" {
                        Cond::And(subs)
                    } else {
                        Cond::Or(subs)
                    });
                }
                key => match val {
                    Value::Object(ops) => {
                        for (op, operand) in ops {
                            let op = match op.as_str() {
                                "$eq" => Op::Eq,
                                "$ne" => Op::Ne,
                                "$gt" => Op::Gt,
                                "$gte" => Op::Gte,
                                "$lt" => Op::Lt,
                                "$lte" => Op::Lte,
                                "$in" => Op::In,
                                "$nin" => Op::Nin,
                                other => bail!("operator {other} is not supported by the bench"),
                            };
                            parts.push(Cond::Field {
                                key: key.to_string(),
                                op,
                                value: operand.clone(),
                            });
                        }
                    }
                    scalar => parts.push(Cond::Field {
                        key: key.to_string(),
                        op: Op::Eq,
                        value: scalar.clone(),
                    }),
                },
            }
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Cond::And(parts)
        })
    }

    /// Whether a record's metadata passes. A missing key fails every operator.
    pub fn matches(&self, meta: &Map<String, Value>) -> bool {
        match self {
            Cond::And(c) => c.iter().all(|c| c.matches(meta)),
            Cond::Or(c) => c.iter().any(|c| c.matches(meta)),
            Cond::Field { key, op, value } => {
                let Some(have) = meta.get(key) else {
                    return false;
                };
                match op {
                    Op::Eq => scalar_eq(have, value),
                    Op::Ne => !scalar_eq(have, value),
                    Op::In => value
                        .as_array()
                        .is_some_and(|l| l.iter().any(|v| scalar_eq(have, v))),
                    Op::Nin => value
                        .as_array()
                        .is_some_and(|l| !l.iter().any(|v| scalar_eq(have, v))),
                    Op::Gt | Op::Gte | Op::Lt | Op::Lte => match (have.as_f64(), value.as_f64()) {
                        (Some(a), Some(b)) => match op {
                            Op::Gt => a > b,
                            Op::Gte => a >= b,
                            Op::Lt => a < b,
                            _ => a <= b,
                        },
                        _ => false,
                    },
                }
            }
        }
    }
}

/// Equality with ints and floats compared by value (`2024` equals `2024.0`).
fn scalar_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn harness_filter_kinds_evaluate_as_chroma_does() {
        let m = meta(json!({"payer_id": "A1", "effective_year": 2025, "active": true}));
        let yes = [
            json!({"payer_id": "A1"}),
            json!({"payer_id": {"$in": ["B", "A1"]}}),
            json!({"$and": [{"effective_year": {"$gte": 2024}}, {"active": true}]}),
            json!({"$or": [{"payer_id": "X"}, {"effective_year": {"$lt": 2026}}]}),
            json!({"payer_id": {"$ne": "X"}}),
        ];
        let no = [
            json!({"payer_id": "A2"}),
            json!({"payer_id": {"$nin": ["A1"]}}),
            json!({"$and": [{"effective_year": {"$gte": 2026}}, {"active": true}]}),
            json!({"missing": 1}),
            json!({"active": false}),
        ];
        for w in &yes {
            assert!(Cond::parse(w).unwrap().matches(&m), "{w}");
        }
        for w in &no {
            assert!(!Cond::parse(w).unwrap().matches(&m), "{w}");
        }
        assert!(Cond::parse(&json!({"a": {"$regex": "x"}})).is_err());
    }
}
