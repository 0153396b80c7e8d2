//! Server-side embeddings end to end: vectord with its real async-openai client talking HTTP
//! to the fake OpenAI-compatible server in `fake_openai.rs`; requests in n8n style (raw JSON
//! with `documents` and no `embeddings`, `query_texts`).

use std::time::Duration;

use serde_json::{json, Value};

use super::fake_openai::{vector, FakeOpenAi, Fault};
use crate::support::in_process::{start_with, Opts, Server, DB};
use vectord::embed::{ApiKey, EmbedSettings};

const KEY: &str = "sk-test-secret-key";

fn settings(fake: &FakeOpenAi) -> EmbedSettings {
    EmbedSettings {
        base_url: Some(fake.base_url.clone()),
        api_key: ApiKey::new(KEY),
        model: "fake-small".into(),
        dimensions: None,
        max_retries: 2,
        max_retry_wait: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

async fn server(fake: &FakeOpenAi, tweak: impl FnOnce(&mut EmbedSettings)) -> Server {
    let mut embed = settings(fake);
    tweak(&mut embed);
    start_with(Opts {
        embed,
        ..Default::default()
    })
    .await
}

/// Creates a collection with `configuration` (n8n-style raw JSON) and returns its id.
async fn create(s: &Server, name: &str, configuration: Value) -> String {
    let r = s
        .post(
            &format!("{DB}/collections"),
            json!({"name": name, "configuration": configuration}),
        )
        .await;
    r.ok(200)["id"].as_str().unwrap().to_string()
}

/// The JSON the Chroma Python client 1.5.9 stores for `OpenAIEmbeddingFunction`, with an
/// `api_base` and headers that must never be used.
fn python_openai_ef(model: &str, dims: Option<u32>, api_base: &str) -> Value {
    json!({"type": "known", "name": "openai", "config": {
        "api_key_env_var": "CHROMA_OPENAI_API_KEY", "model_name": model, "organization_id": null,
        "api_base": api_base, "api_type": null, "api_version": null, "deployment_id": null,
        "default_headers": {"X-Steal": "1"}, "dimensions": dims}})
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

async fn count(s: &Server, id: &str) -> u64 {
    s.get(&s.coll(id, "count")).await.ok(200).as_u64().unwrap()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn documents_only_writes_and_query_texts_over_raw_http() {
    let fake = FakeOpenAi::start().await;
    let s = server(&fake, |_| {}).await;
    let id = create(&s, "n8n", json!({"hnsw": {"space": "cosine"}})).await;
    let docs = [
        "Aetna requires six weeks of conservative therapy before a lumbar MRI.",
        "CPAP must be used 4 hours per night on 70% of nights.",
        "Wegovy needs a BMI of 30 or more.",
    ];
    s.post(
        &s.coll(&id, "add"),
        json!({"ids": ["a", "b", "c"], "documents": docs,
               "metadatas": [{"payer_id": "aetna"}, {"payer_id": "uhc"}, {"payer_id": "cigna"}]}),
    )
    .await
    .ok(201);
    let seen = fake.seen();
    assert_eq!(seen.len(), 1, "one batch");
    assert_eq!(seen[0].model, "fake-small");
    assert_eq!(seen[0].inputs, docs);
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(format!("Bearer {KEY}").as_str())
    );

    let got = s
        .post(
            &s.coll(&id, "get"),
            json!({"ids": ["b"], "include": ["embeddings", "documents"]}),
        )
        .await;
    let got = got.ok(200);
    assert_eq!(floats(&got["embeddings"][0]), vector(docs[1], 8));
    assert_eq!(got["documents"][0], docs[1]);

    // query_texts: the text of "b" finds "b" at distance ~0; filters apply as usual.
    let q = s
        .post(
            &s.coll(&id, "query"),
            json!({"query_texts": [docs[1], docs[2]], "n_results": 2}),
        )
        .await;
    let q = q.ok(200);
    assert_eq!(q["ids"][0][0], "b");
    assert_eq!(q["ids"][1][0], "c");
    assert!(q["distances"][0][0].as_f64().unwrap().abs() < 1e-5, "{q}");
    let q = s
        .post(
            &s.coll(&id, "query"),
            json!({"query_texts": [docs[1]], "n_results": 3, "where": {"payer_id": "aetna"}}),
        )
        .await;
    assert_eq!(q.ok(200)["ids"], json!([["a"]]));

    // upsert with documents only: a new record and a changed one, both re-embedded.
    s.post(
        &s.coll(&id, "upsert"),
        json!({"ids": ["a", "d"], "documents": ["changed text", "new text"]}),
    )
    .await
    .ok(200);
    // update with documents only re-embeds those rows (the Chroma clients do the same).
    s.post(
        &s.coll(&id, "update"),
        json!({"ids": ["c"], "documents": ["updated c"], "metadatas": [{"v": 2}]}),
    )
    .await
    .ok(200);
    let got = s
        .post(
            &s.coll(&id, "get"),
            json!({"ids": ["a", "c", "d"], "include": ["embeddings", "documents", "metadatas"]}),
        )
        .await;
    let got = got.ok(200);
    assert_eq!(got["ids"], json!(["a", "c", "d"]));
    assert_eq!(floats(&got["embeddings"][0]), vector("changed text", 8));
    assert_eq!(floats(&got["embeddings"][1]), vector("updated c", 8));
    assert_eq!(floats(&got["embeddings"][2]), vector("new text", 8));
    assert_eq!(got["metadatas"][0], json!({"payer_id": "aetna"}));

    // Explicit vectors still win and are never sent to the provider.
    let before = fake.seen().len();
    s.post(
        &s.coll(&id, "add"),
        json!({"ids": ["e"], "embeddings": [[1, 0, 0, 0, 0, 0, 0, 0]], "documents": ["not embedded"]}),
    )
    .await
    .ok(201);
    assert_eq!(fake.seen().len(), before);
    assert_eq!(count(&s, &id).await, 5);

    // The collection echoes its configuration exactly as stored.
    let c = s.get(&format!("{DB}/collections/n8n")).await;
    assert_eq!(
        c.ok(200)["configuration_json"]["embedding_function"],
        Value::Null
    );
}

#[tokio::test]
async fn collection_function_picks_model_and_dimensions_never_its_endpoint() {
    let fake = FakeOpenAi::start().await;
    let attacker = FakeOpenAi::start().await;
    let s = server(&fake, |_| {}).await;
    let ef = python_openai_ef("text-embedding-3-large", Some(16), &attacker.base_url);
    let id = create(
        &s,
        "py_openai",
        json!({"hnsw": {"space": "cosine"}, "embedding_function": ef}),
    )
    .await;
    s.post(
        &s.coll(&id, "add"),
        json!({"ids": ["x"], "documents": ["hello"]}),
    )
    .await
    .ok(201);
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].model, "text-embedding-3-large");
    assert_eq!(seen[0].dimensions, Some(16));
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert!(
        attacker.seen().is_empty(),
        "the collection's api_base must never be called"
    );
    let c = s.get(&format!("{DB}/collections/py_openai")).await;
    assert_eq!(
        c.ok(200)["configuration_json"]["embedding_function"],
        ef,
        "echoed as stored"
    );
    assert_eq!(c.json["dimension"], 16);

    // A model outside the allow-list: 400, nothing sent, nothing stored.
    let ef = python_openai_ef("gpt-4o", None, &attacker.base_url);
    let bad = create(&s, "py_bad_model", json!({"embedding_function": ef})).await;
    let r = s
        .post(
            &s.coll(&bad, "add"),
            json!({"ids": ["x"], "documents": ["hello"]}),
        )
        .await;
    let msg = r.err(400, "InvalidArgumentError");
    assert!(
        msg.contains("\"gpt-4o\" is not allowed") && msg.contains("text-embedding-3-small"),
        "{msg}"
    );
    let r = s
        .post(&s.coll(&bad, "query"), json!({"query_texts": ["hello"]}))
        .await;
    r.err(400, "InvalidArgumentError");
    assert_eq!(count(&s, &bad).await, 0);
    assert_eq!(fake.seen().len(), 1);
    assert!(attacker.seen().is_empty());

    // A function the client computes (Chroma's default MiniLM): the server does not substitute.
    let def = s.create("py_default").await;
    let r = s
        .post(
            &s.coll(&def, "add"),
            json!({"ids": ["x"], "documents": ["hello"]}),
        )
        .await;
    assert!(r
        .err(400, "InvalidArgumentError")
        .contains("computed by the client"));
    // …but a documents-only update there still just changes the document, as before.
    s.post(
        &s.coll(&def, "add"),
        json!({"ids": ["x"], "embeddings": [[1.0, 2.0]], "documents": ["d"]}),
    )
    .await
    .ok(201);
    s.post(
        &s.coll(&def, "update"),
        json!({"ids": ["x"], "documents": ["d2"]}),
    )
    .await
    .ok(200);
    assert_eq!(fake.seen().len(), 1);

    // Switching the collection to the OpenAI function (PUT, as Python's modify does) enables
    // server-side embedding for it, with the model and size it names.
    let ef = python_openai_ef("text-embedding-3-small", Some(2), &attacker.base_url);
    s.put(
        &format!("{DB}/collections/{def}"),
        json!({"new_configuration": {"embedding_function": ef}}),
    )
    .await
    .ok(200);
    s.post(
        &s.coll(&def, "add"),
        json!({"ids": ["y"], "documents": ["hello"]}),
    )
    .await
    .ok(201);
    let seen = fake.seen();
    assert_eq!((seen.len(), seen[1].dimensions), (2, Some(2)));
    assert!(attacker.seen().is_empty());
}

#[tokio::test]
async fn dimension_checks_happen_before_paying_for_embeddings() {
    let fake = FakeOpenAi::start().await;
    let s = server(&fake, |_| {}).await;
    let ef = python_openai_ef(
        "text-embedding-3-small",
        Some(16),
        "https://ignored.example/v1",
    );
    let id = create(&s, "dims", json!({"embedding_function": ef})).await;
    s.post(
        &s.coll(&id, "add"),
        json!({"ids": ["v"], "embeddings": [[1.0, 2.0, 3.0, 4.0]]}),
    )
    .await
    .ok(201);
    for (op, body) in [
        ("add", json!({"ids": ["w"], "documents": ["text"]})),
        ("upsert", json!({"ids": ["w"], "documents": ["text"]})),
        ("query", json!({"query_texts": ["text"]})),
    ] {
        let r = s.post(&s.coll(&id, op), body).await;
        assert_eq!(
            r.err(400, "InvalidArgumentError"),
            "Collection expecting embedding with dimension of 4, got 16",
            "{op}"
        );
    }
    assert!(fake.seen().is_empty());
    // A provider that returns the wrong size is caught too (the default model has no fixed size).
    let plain = create(&s, "plain", json!(null)).await;
    s.post(
        &s.coll(&plain, "add"),
        json!({"ids": ["v"], "embeddings": [[1.0, 2.0]]}),
    )
    .await
    .ok(201);
    let r = s
        .post(
            &s.coll(&plain, "add"),
            json!({"ids": ["w"], "documents": ["text"]}),
        )
        .await;
    assert!(r
        .err(400, "InvalidArgumentError")
        .contains("dimension of 2, got 8"));
    assert_eq!(count(&s, &plain).await, 1);
}

#[tokio::test]
async fn bad_requests_are_rejected_before_any_api_call() {
    let fake = FakeOpenAi::start().await;
    let s = server(&fake, |_| {}).await;
    let id = create(&s, "bad", json!(null)).await;
    let cases = [
        (
            "add",
            json!({"ids": ["a", "b"], "documents": ["x", null]}),
            400,
            "neither an embedding nor a document",
        ),
        (
            "add",
            json!({"ids": ["a"], "documents": [""]}),
            400,
            "document at index 0 is empty",
        ),
        (
            "add",
            json!({"ids": ["a", "b"], "documents": ["x"]}),
            400,
            "Inconsistent number",
        ),
        (
            "add",
            json!({"ids": [""], "documents": ["x"]}),
            400,
            "Empty ID",
        ),
        (
            "add",
            json!({"ids": ["a"], "documents": ["x"], "metadatas": [{"$bad": 1}]}),
            400,
            "Invalid metadata",
        ),
        (
            "add",
            json!({"ids": ["a"]}),
            422,
            "missing field `embeddings`",
        ),
        (
            "upsert",
            json!({"ids": ["a"], "metadatas": [{"k": 1}]}),
            422,
            "missing field `embeddings`",
        ),
        (
            "query",
            json!({"n_results": 1}),
            422,
            "missing field `query_embeddings`",
        ),
        (
            "query",
            json!({"query_texts": ["x"], "query_embeddings": [[1.0]]}),
            400,
            "not both",
        ),
        (
            "query",
            json!({"query_texts": ["x"], "where": {"$bogus": 1}}),
            400,
            "where",
        ),
        (
            "query",
            json!({"query_texts": [""]}),
            400,
            "query text at index 0 is empty",
        ),
    ];
    for (op, body, status, needle) in cases {
        let r = s.post(&s.coll(&id, op), body.clone()).await;
        let name = if status == 422 {
            "ChromaError"
        } else {
            "InvalidArgumentError"
        };
        let msg = r.err(status, name);
        assert!(msg.contains(needle), "{op} {body}: {msg}");
    }
    assert!(fake.seen().is_empty());
    assert_eq!(count(&s, &id).await, 0);
    // Empty inputs need no call either.
    s.post(&s.coll(&id, "add"), json!({"ids": [], "documents": []}))
        .await
        .ok(201);
    let q = s
        .post(&s.coll(&id, "query"), json!({"query_texts": []}))
        .await;
    assert_eq!(q.ok(200)["ids"], json!([]));
    assert!(fake.seen().is_empty());
}

#[tokio::test]
async fn without_an_embedder_documents_only_writes_say_how_to_fix_it() {
    let s = start_with(Opts::default()).await;
    let id = create(&s, "none", json!(null)).await;
    let r = s
        .post(
            &s.coll(&id, "add"),
            json!({"ids": ["a"], "documents": ["x"]}),
        )
        .await;
    assert!(r
        .err(400, "InvalidArgumentError")
        .contains("not configured"));
    let r = s
        .post(&s.coll(&id, "query"), json!({"query_texts": ["x"]}))
        .await;
    assert!(r
        .err(400, "InvalidArgumentError")
        .contains("--embed-base-url"));
    // Documents-only updates keep working without re-embedding.
    s.post(
        &s.coll(&id, "add"),
        json!({"ids": ["a"], "embeddings": [[1.0]], "documents": ["x"]}),
    )
    .await
    .ok(201);
    s.post(
        &s.coll(&id, "update"),
        json!({"ids": ["a"], "documents": ["y"]}),
    )
    .await
    .ok(200);
    let g = s
        .post(
            &s.coll(&id, "get"),
            json!({"include": ["documents", "embeddings"]}),
        )
        .await;
    assert_eq!(g.ok(200)["documents"], json!(["y"]));
    assert_eq!(g.json["embeddings"], json!([[1.0]]));
}

#[tokio::test]
async fn retries_honour_retry_after_and_back_off_on_5xx() {
    let fake = FakeOpenAi::start().await;
    let s = server(&fake, |e| e.max_retries = 3).await;
    let id = create(&s, "retry", json!(null)).await;
    fake.push([
        Fault::RateLimited(vec![("retry-after", "1".into())]),
        Fault::RateLimited(vec![("retry-after-ms", "300".into())]),
        Fault::ServerError,
    ]);
    s.post(
        &s.coll(&id, "add"),
        json!({"ids": ["a"], "documents": ["x"]}),
    )
    .await
    .ok(201);
    let seen = fake.seen();
    assert_eq!(seen.len(), 4, "three failures, then success");
    let gap = |i: usize| seen[i + 1].at - seen[i].at;
    assert!(
        gap(0) >= Duration::from_millis(950),
        "Retry-After: 1 honoured: {:?}",
        gap(0)
    );
    assert!(
        gap(1) >= Duration::from_millis(280),
        "retry-after-ms honoured: {:?}",
        gap(1)
    );
    assert!(
        gap(2) >= Duration::from_millis(90),
        "backoff after a 500: {:?}",
        gap(2)
    );
    assert_eq!(count(&s, &id).await, 1);
    let m = s.get("/metrics").await.text;
    assert_eq!(
        metric(&m, "vectord_embed_api_retries_total{outcome=\"429\"}"),
        2.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "vectord_embed_api_retries_total{outcome=\"500\"}"),
        1.0
    );
    assert_eq!(
        metric(&m, "vectord_embed_api_attempts_total{outcome=\"200\"}"),
        1.0
    );
}

#[tokio::test]
async fn provider_failures_map_to_clear_errors_and_store_nothing() {
    let fake = FakeOpenAi::start().await;
    let s = server(&fake, |e| {
        e.max_retries = 1;
        e.timeout = Duration::from_millis(400);
    })
    .await;
    let id = create(&s, "fail", json!(null)).await;
    let add = |text: &str| json!({"ids": ["a", "b"], "documents": [text, "other"]});
    /// (fault for every request, faults queued once, status, error name, message part)
    type Case = (Option<Fault>, Vec<Fault>, u16, &'static str, &'static str);
    let cases: Vec<Case> = vec![
        (
            Some(Fault::ServerError),
            vec![],
            502,
            "InternalError",
            "HTTP 500",
        ),
        (
            Some(Fault::RateLimited(vec![])),
            vec![],
            503,
            "RateLimitError",
            "rate limiting",
        ),
        // Asked to wait longer than --embed-max-retry-wait: fail now, after one attempt.
        (
            None,
            vec![Fault::RateLimited(vec![("retry-after", "3600".into())])],
            503,
            "RateLimitError",
            "rate limiting",
        ),
        (
            Some(Fault::Slow(Duration::from_secs(3))),
            vec![],
            504,
            "InternalError",
            "did not answer",
        ),
        (
            None,
            vec![Fault::Malformed],
            502,
            "InternalError",
            "invalid response",
        ),
        (
            None,
            vec![Fault::WrongCount],
            502,
            "InternalError",
            "1 embeddings for 2 inputs",
        ),
        (
            None,
            vec![Fault::Unauthorized],
            502,
            "InternalError",
            "refused the server's credentials",
        ),
        (
            None,
            vec![Fault::BadRequest(
                "This model's maximum context length is 8192 tokens",
            )],
            400,
            "InvalidArgumentError",
            "maximum context length",
        ),
    ];
    for (i, (always, queued, status, name, needle)) in cases.into_iter().enumerate() {
        fake.always(always);
        fake.push(queued);
        let before = fake.seen().len();
        let text = format!("text {i}");
        let r = s.post(&s.coll(&id, "upsert"), add(&text)).await;
        let msg = r.err(status, name).to_string();
        assert!(msg.contains(needle), "case {i}: {msg}");
        assert!(!msg.contains(KEY), "the key must never be echoed: {msg}");
        assert_eq!(
            count(&s, &id).await,
            0,
            "case {i}: a failed embedding stores nothing"
        );
        let attempts = fake.seen().len() - before;
        let expected = if i == 2 || i >= 4 { 1 } else { 2 };
        assert_eq!(attempts, expected, "case {i}: attempts");
        fake.always(None);
    }
    // The same texts now succeed: failures were not cached.
    s.post(&s.coll(&id, "upsert"), add("text 0")).await.ok(200);
    assert_eq!(count(&s, &id).await, 2);
}

#[tokio::test]
async fn batches_follow_the_limits_and_concurrency_is_capped() {
    let fake = FakeOpenAi::start().await;
    fake.delay(Duration::from_millis(150));
    let s = server(&fake, |e| {
        e.batch_size = 3;
        e.concurrency = 2;
    })
    .await;
    let id = create(&s, "batches", json!(null)).await;
    let docs: Vec<String> = (0..13).map(|i| format!("passage number {i}")).collect();
    let ids: Vec<String> = (0..13).map(|i| format!("p{i}")).collect();
    s.post(&s.coll(&id, "add"), json!({"ids": ids, "documents": docs}))
        .await
        .ok(201);
    let mut sizes: Vec<usize> = fake.seen().iter().map(|r| r.inputs.len()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![1, 3, 3, 3, 3]);
    assert_eq!(
        fake.max_in_flight(),
        2,
        "at most --embed-concurrency requests at once"
    );
    // Every record got its own text's vector, whatever the batch order.
    let g = s
        .post(
            &s.coll(&id, "get"),
            json!({"ids": ["p7"], "include": ["embeddings"]}),
        )
        .await;
    assert_eq!(
        floats(&g.ok(200)["embeddings"][0]),
        vector("passage number 7", 8)
    );
}

/// The deployment's goal is a > 90% cache hit rate on repeated policy queries. 12 distinct
/// questions asked 20 times each (240 lookups, as a busy intake desk would) must cost 12 API
/// inputs; the rate is read back from `/metrics`.
#[tokio::test]
async fn cache_hit_rate_on_repeated_policy_queries() {
    let fake = FakeOpenAi::start().await;
    let s = server(&fake, |_| {}).await;
    let id = create(&s, "cache", json!(null)).await;
    s.post(
        &s.coll(&id, "add"),
        json!({"ids": ["a", "b"], "documents": ["lumbar MRI policy", "CPAP policy"]}),
    )
    .await
    .ok(201);
    let questions: Vec<String> = (0..12)
        .map(|i| format!("prior authorization question {i}"))
        .collect();
    for round in 0..20 {
        for q in &questions {
            let r = s
                .post(
                    &s.coll(&id, "query"),
                    json!({"query_texts": [q], "n_results": 1}),
                )
                .await;
            assert_eq!(
                r.ok(200)["ids"][0].as_array().unwrap().len(),
                1,
                "round {round}"
            );
        }
    }
    // Repeated texts inside one request are sent once too.
    s.post(
        &s.coll(&id, "query"),
        json!({"query_texts": ["fresh question", "fresh question", "fresh question"]}),
    )
    .await
    .ok(200);
    let sent: usize = fake.seen().iter().map(|r| r.inputs.len()).sum();
    assert_eq!(sent, 2 + 12 + 1);
    let m = s.get("/metrics").await.text;
    let hits = metric(&m, "vectord_embed_cache_hits_total");
    let misses = metric(&m, "vectord_embed_cache_misses_total");
    let query_hits = hits - 2.0; // the last request: two repeats served from the first
    let rate = query_hits / 240.0;
    println!(
        "embed cache: {hits} hits, {misses} misses overall; repeated-query hit rate {:.1}% (228/240 expected)",
        rate * 100.0
    );
    assert_eq!((hits, misses), (230.0, 15.0));
    assert!(rate > 0.9);
    assert!(metric(&m, "vectord_embed_cache_entries") >= 15.0);
}
