//! Property test: the engine against a plain in-memory model of Chroma's record semantics
//! (chroma-api.md §5), across random sequences of add / upsert / update / delete / reopen.
//! Reopening replays the WAL, so this also checks that recovery rebuilds exactly what
//! readers saw before.

use std::collections::HashMap;

use proptest::prelude::*;
use vectord::engine::{Collection, CollectionConfig};
use vectord::types::{
    DeleteSelector, GetRequest, Include, Metadata, MetadataPatch, MetadataValue, QueryRequest,
    Record, Space, UpdateRecord, UpsertRecord, WriteBatch,
};

const DIM: usize = 4;

/// A metadata patch as generated: (key index, value or delete).
type GenPatch = Option<Vec<(u8, Option<i8>)>>;
/// One generated row: (id index, vector, metadata patch, document number).
type GenRow = (u8, [i8; DIM], GenPatch, Option<u8>);
/// One generated update row: the vector is optional.
type GenUpdate = (u8, Option<[i8; DIM]>, GenPatch, Option<u8>);

#[derive(Debug, Clone)]
enum Op {
    Add(Vec<GenRow>),
    Upsert(Vec<GenRow>),
    Update(Vec<GenUpdate>),
    Delete(Vec<u8>),
    /// Delete records whose int key `a` is >= the value, at most `limit` of them.
    DeleteWhere(i8, Option<u8>),
    /// Get records whose int key `a` is >= the value, with offset and limit.
    GetWhere(i8, u8, Option<u8>),
    Reopen,
    /// Write the memtable out as a segment.
    Flush,
    /// Merge all segments, dropping dead rows.
    Compact,
    Query([i8; DIM], u8),
}

fn id(i: u8) -> String {
    format!("id{i}")
}

fn vec_of(v: &[i8; DIM]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

const KEYS: [&str; 3] = ["a", "b", "c"];

fn value(k: u8, v: i8) -> MetadataValue {
    // Alternate types per key so int/float/str all round-trip.
    match k % 3 {
        0 => MetadataValue::Int(v as i64),
        1 => MetadataValue::Float(v as f64 / 2.0),
        _ => MetadataValue::Str(format!("s{v}")),
    }
}

fn patch(p: &[(u8, Option<i8>)]) -> MetadataPatch {
    p.iter()
        .map(|(k, v)| (KEYS[*k as usize % 3].to_string(), v.map(|v| value(*k, v))))
        .collect()
}

fn full(p: &[(u8, Option<i8>)]) -> Option<Metadata> {
    let m: Metadata = p
        .iter()
        .filter_map(|(k, v)| v.map(|v| (KEYS[*k as usize % 3].to_string(), value(*k, v))))
        .collect();
    (!m.is_empty()).then_some(m)
}

fn doc(d: Option<u8>) -> Option<String> {
    d.map(|d| format!("doc {d}"))
}

#[derive(Debug, Clone, PartialEq)]
struct Rec {
    v: Vec<f32>,
    m: Option<Metadata>,
    d: Option<String>,
}

#[derive(Default)]
struct Model {
    order: Vec<String>,
    recs: HashMap<String, Rec>,
}

impl Model {
    fn merge(cur: &mut Rec, p: &GenPatch, d: Option<String>) {
        if let Some(p) = p {
            let mut m = cur.m.take().unwrap_or_default();
            for (k, v) in patch(p) {
                match v {
                    Some(v) => {
                        m.insert(k, v);
                    }
                    None => {
                        m.remove(&k);
                    }
                }
            }
            cur.m = (!m.is_empty()).then_some(m);
        }
        if d.is_some() {
            cur.d = d;
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Add(rows) => {
                for (i, v, m, d) in rows {
                    let k = id(*i);
                    if !self.recs.contains_key(&k) {
                        self.order.push(k.clone());
                        self.recs.insert(
                            k,
                            Rec {
                                v: vec_of(v),
                                m: m.as_deref().and_then(full),
                                d: doc(*d),
                            },
                        );
                    }
                }
            }
            Op::Upsert(rows) => {
                for (i, v, m, d) in rows {
                    let k = id(*i);
                    let cur = self.recs.entry(k.clone()).or_insert_with(|| {
                        self.order.push(k.clone());
                        Rec {
                            v: vec![],
                            m: None,
                            d: None,
                        }
                    });
                    cur.v = vec_of(v);
                    Self::merge(cur, m, doc(*d));
                }
            }
            Op::Update(rows) => {
                for (i, v, m, d) in rows {
                    if let Some(cur) = self.recs.get_mut(&id(*i)) {
                        if let Some(v) = v {
                            cur.v = vec_of(v);
                        }
                        Self::merge(cur, m, doc(*d));
                    }
                }
            }
            Op::Delete(ids) => {
                for i in ids {
                    if self.recs.remove(&id(*i)).is_some() {
                        self.order.retain(|x| *x != id(*i));
                    }
                }
            }
            Op::DeleteWhere(v, limit) => {
                let doomed: Vec<String> = self
                    .matching(*v)
                    .into_iter()
                    .take(limit.map_or(usize::MAX, |l| l as usize))
                    .collect();
                for id in doomed {
                    self.recs.remove(&id);
                    self.order.retain(|x| *x != id);
                }
            }
            Op::Reopen | Op::Flush | Op::Compact | Op::Query(..) | Op::GetWhere(..) => {}
        }
    }

    /// Ids (insertion order) whose metadata holds an int `a` >= v: the reference for
    /// `{"a": {"$gte": v}}`.
    fn matching(&self, v: i8) -> Vec<String> {
        self.order
            .iter()
            .filter(|id| {
                matches!(self.recs[*id].m.as_ref().and_then(|m| m.get("a")), Some(MetadataValue::Int(x)) if *x >= v as i64)
            })
            .cloned()
            .collect()
    }
}

fn gte_filter(v: i8) -> vectord::filter::Filter {
    vectord::filter::parse_where(&serde_json::json!({"a": {"$gte": v}})).unwrap()
}

fn batch(op: &Op) -> Option<WriteBatch> {
    Some(match op {
        Op::Add(rows) => WriteBatch::Add(
            rows.iter()
                .map(|(i, v, m, d)| Record {
                    id: id(*i),
                    embedding: vec_of(v),
                    metadata: m.as_deref().and_then(full),
                    document: doc(*d),
                    uri: None,
                })
                .collect(),
        ),
        Op::Upsert(rows) => WriteBatch::Upsert(
            rows.iter()
                .map(|(i, v, m, d)| UpsertRecord {
                    id: id(*i),
                    embedding: vec_of(v),
                    metadata: m.as_deref().map(patch),
                    document: doc(*d),
                    uri: None,
                })
                .collect(),
        ),
        Op::Update(rows) => WriteBatch::Update(
            rows.iter()
                .map(|(i, v, m, d)| UpdateRecord {
                    id: id(*i),
                    embedding: v.as_ref().map(vec_of),
                    metadata: m.as_deref().map(patch),
                    document: doc(*d),
                    uri: None,
                })
                .collect(),
        ),
        Op::Delete(ids) => WriteBatch::Delete(DeleteSelector {
            ids: Some(ids.iter().map(|i| id(*i)).collect()),
            ..Default::default()
        }),
        Op::DeleteWhere(v, limit) => WriteBatch::Delete(DeleteSelector {
            ids: None,
            filter: Some(gte_filter(*v)),
            limit: limit.map(u32::from),
        }),
        Op::Reopen | Op::Flush | Op::Compact | Op::Query(..) | Op::GetWhere(..) => return None,
    })
}

fn arb_patch() -> impl Strategy<Value = GenPatch> + Clone {
    proptest::option::of(proptest::collection::vec(
        (0u8..3, proptest::option::of(-5i8..5)),
        0..3,
    ))
}

fn arb_op() -> impl Strategy<Value = Op> {
    let idx = 0u8..12;
    let v = || proptest::array::uniform4(-4i8..4);
    let rows = || {
        proptest::collection::vec(
            (0u8..12, v(), arb_patch(), proptest::option::of(0u8..4)),
            0..5,
        )
    };
    let upd = proptest::collection::vec(
        (
            idx.clone(),
            proptest::option::of(v()),
            arb_patch(),
            proptest::option::of(0u8..4),
        ),
        0..5,
    );
    prop_oneof![
        4 => rows().prop_map(Op::Add),
        3 => rows().prop_map(Op::Upsert),
        2 => upd.prop_map(Op::Update),
        2 => proptest::collection::vec(idx, 0..4).prop_map(Op::Delete),
        1 => (-5i8..5, proptest::option::of(0u8..3)).prop_map(|(v, l)| Op::DeleteWhere(v, l)),
        2 => (-5i8..5, 0u8..3, proptest::option::of(0u8..4)).prop_map(|(v, o, l)| Op::GetWhere(v, o, l)),
        1 => Just(Op::Reopen),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        3 => (v(), 0u8..6).prop_map(|(v, k)| Op::Query(v, k)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_model(ops in proptest::collection::vec(arb_op(), 1..40), memtable_rows in 2usize..12) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let mut c = Collection::create(&path, CollectionConfig { space: Space::L2, ..Default::default() }).unwrap();
        // Tiny memtables: most sequences flush several segments, so reads merge segments,
        // a frozen-then-installed memtable, tombstones and the WAL tail.
        c.set_memtable_rows(memtable_rows);
        let mut model = Model::default();
        for op in &ops {
            match op {
                Op::Reopen => {
                    drop(c);
                    c = Collection::open(&path).unwrap();
                    c.set_memtable_rows(memtable_rows);
                }
                Op::Flush => {
                    c.flush().unwrap();
                }
                Op::Compact => {
                    // A background flush may add a segment right after; the model check below is
                    // what matters: compaction changes no answer.
                    c.compact().unwrap();
                }
                Op::GetWhere(v, offset, limit) => {
                    let got = c.get(&GetRequest {
                        filter: Some(gte_filter(*v)),
                        offset: *offset as u32,
                        limit: limit.map(u32::from),
                        ..Default::default()
                    }).unwrap();
                    let want: Vec<String> = model.matching(*v).into_iter().skip(*offset as usize)
                        .take(limit.map_or(usize::MAX, |l| l as usize)).collect();
                    prop_assert_eq!(got.ids, want);
                }
                Op::Query(q, k) => {
                    let got = c.query(&QueryRequest {
                        embeddings: vec![vec_of(q)],
                        n_results: *k as u32,
                        ids: None,
                        filter: None,
                        include: Include::QUERY_DEFAULT,
                    }).unwrap();
                    // Integer coordinates make every distance exact. With a dozen rows the graph
                    // search is exhaustive, so the distances must be exactly the k smallest; which
                    // of several equally distant rows fills the last place is the index's choice
                    // (an exact scan picks the earlier insert, a graph whichever it met first).
                    let q = vec_of(q);
                    let mut want: Vec<(f32, usize, &String)> = model.order.iter().enumerate().map(|(pos, id)| {
                        let v = &model.recs[id].v;
                        (v.iter().zip(&q).map(|(a, b)| (a - b) * (a - b)).sum::<f32>(), pos, id)
                    }).collect();
                    want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    want.truncate(*k as usize);
                    let want_d: Vec<f32> = want.iter().map(|w| w.0).collect();
                    let got_d = got.results[0].distances.as_ref().unwrap();
                    prop_assert_eq!(got_d, &want_d);
                    let ids = &got.results[0].ids;
                    prop_assert_eq!(ids.iter().collect::<std::collections::HashSet<_>>().len(), ids.len(), "duplicate ids");
                    for (id, d) in ids.iter().zip(got_d) {
                        let v = &model.recs.get(id).expect("a returned id is live").v;
                        let exact: f32 = v.iter().zip(&q).map(|(a, b)| (a - b) * (a - b)).sum();
                        prop_assert_eq!(exact, *d, "distance reported for {}", id);
                    }
                }
                _ => {
                    if let Some(b) = batch(op) {
                        c.apply(b, None).unwrap();
                    }
                    model.apply(op);
                }
            }
            let g = c.get(&GetRequest { include: Include::ALL, ..Default::default() }).unwrap();
            prop_assert_eq!(&g.ids, &model.order);
            let want: Vec<Rec> = model.order.iter().map(|id| model.recs[id].clone()).collect();
            let got: Vec<Rec> = (0..g.ids.len()).map(|i| Rec {
                v: g.embeddings.as_ref().unwrap()[i].clone(),
                m: g.metadatas.as_ref().unwrap()[i].clone(),
                d: g.documents.as_ref().unwrap()[i].clone(),
            }).collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(c.count() as usize, model.order.len());
        }
    }
}
