//! Property test: hostile batches and queries never panic the engine, and a rejected batch
//! leaves the collection exactly as it was (nothing half-applied, nothing logged).

use proptest::prelude::*;
use vectord::engine::{Collection, CollectionConfig, EngineError};
use vectord::types::{
    Columns, GetRequest, Include, Metadata, MetadataPatch, MetadataValue, QueryRequest, WriteBatch,
};

fn arb_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => -2.0f32..2.0,
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => Just(f32::MAX),
    ]
}

fn arb_vec() -> impl Strategy<Value = Vec<f32>> {
    prop_oneof![
        6 => proptest::collection::vec(-2.0f32..2.0, 3..=3),
        2 => proptest::collection::vec(arb_f32(), 0..6),
    ]
}

fn arb_value() -> impl Strategy<Value = MetadataValue> {
    prop_oneof![
        any::<i64>().prop_map(MetadataValue::Int),
        any::<f64>().prop_map(MetadataValue::Float),
        any::<bool>().prop_map(MetadataValue::Bool),
        ".{0,8}".prop_map(MetadataValue::Str),
        proptest::collection::vec(any::<i64>(), 0..3).prop_map(MetadataValue::IntArray),
        proptest::collection::vec(any::<f64>(), 0..3).prop_map(MetadataValue::FloatArray),
    ]
}

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("k".to_string()),
        Just(String::new()),
        Just("#x".to_string()),
        Just("$y".to_string()),
        "[a-z]{1,3}"
    ]
}

fn arb_meta() -> impl Strategy<Value = Option<Metadata>> {
    proptest::option::of(proptest::collection::btree_map(
        arb_key(),
        arb_value(),
        0..3,
    ))
}

fn arb_patch() -> impl Strategy<Value = Option<MetadataPatch>> {
    proptest::option::of(proptest::collection::btree_map(
        arb_key(),
        proptest::option::of(arb_value()),
        0..3,
    ))
}

fn arb_ids() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(prop_oneof![8 => "[a-d]", 1 => Just(String::new())], 0..5)
}

/// Batches built through the public constructors (which may reject them) or by hand.
fn arb_batch() -> impl Strategy<Value = Result<WriteBatch, String>> {
    let docs = proptest::option::of(proptest::collection::vec(
        proptest::option::of(".{0,4}"),
        0..5,
    ));
    prop_oneof![
        (
            arb_ids(),
            proptest::option::of(proptest::collection::vec(arb_vec(), 0..5)),
            proptest::option::of(proptest::collection::vec(arb_meta(), 0..5)),
            docs.clone()
        )
            .prop_map(|(ids, embeddings, metadatas, documents)| {
                WriteBatch::add(Columns {
                    ids,
                    embeddings,
                    metadatas,
                    documents,
                    uris: None,
                })
                .map_err(|e| e.to_string())
            }),
        (
            arb_ids(),
            proptest::option::of(proptest::collection::vec(arb_vec(), 0..5)),
            proptest::option::of(proptest::collection::vec(arb_patch(), 0..5)),
            docs.clone()
        )
            .prop_map(|(ids, embeddings, metadatas, documents)| {
                WriteBatch::upsert(Columns {
                    ids,
                    embeddings,
                    metadatas,
                    documents,
                    uris: None,
                })
                .map_err(|e| e.to_string())
            }),
        (
            arb_ids(),
            proptest::option::of(proptest::collection::vec(
                proptest::option::of(arb_vec()),
                0..5
            )),
            proptest::option::of(proptest::collection::vec(arb_patch(), 0..5)),
            docs
        )
            .prop_map(|(ids, embeddings, metadatas, documents)| {
                WriteBatch::update(Columns {
                    ids,
                    embeddings,
                    metadatas,
                    documents,
                    uris: None,
                })
                .map_err(|e| e.to_string())
            }),
    ]
}

fn snapshot(c: &Collection) -> vectord::types::GetResult {
    c.get(&GetRequest {
        include: Include::ALL,
        ..Default::default()
    })
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn hostile_input_is_rejected_cleanly(
        batches in proptest::collection::vec(arb_batch(), 1..12),
        queries in proptest::collection::vec((proptest::collection::vec(arb_vec(), 0..3), 0u32..20), 0..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let c = Collection::create(&path, CollectionConfig::default()).unwrap();
        for batch in batches {
            let Ok(batch) = batch else { continue };
            let before = snapshot(&c);
            match c.apply(batch, None) {
                Ok(_) => {}
                Err(EngineError::Input(_)) => prop_assert_eq!(snapshot(&c), before, "a rejected batch changed state"),
                Err(other) => prop_assert!(false, "unexpected error kind: {other}"),
            }
        }
        for (embeddings, n_results) in queries {
            let r = c.query(&QueryRequest { embeddings, n_results, ids: None, filter: None, include: Include::ALL });
            prop_assert!(matches!(r, Ok(_) | Err(EngineError::Input(_))));
        }
        // Whatever was accepted survives a reopen unchanged.
        let before = snapshot(&c);
        drop(c);
        let c = Collection::open(&path).unwrap();
        prop_assert_eq!(snapshot(&c), before);
    }
}
