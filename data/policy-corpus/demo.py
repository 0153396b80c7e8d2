"""Loads the sample policy corpus into a running vectord over HTTP and runs semantic queries.

Standard library only. Two modes:
  default               precomputed all-MiniLM-L6-v2 vectors (passages.minilm.jsonl,
                        queries.minilm.jsonl): no API key anywhere, 384-d, cosine.
  --server-embeddings   documents and query texts only; the server embeds them with its
                        OpenAI-compatible embedder (start vectord with OPENAI_API_KEY set; the
                        collection names text-embedding-3-small unless --model says otherwise).

Usage: python3 data/policy-corpus/demo.py [--url http://127.0.0.1:8000] [--server-embeddings]
                                          [--model NAME] [--dimensions N] [--check]
--check exits non-zero unless every query's best hit is about the expected procedure.
"""

import argparse
import base64
import json
import os
import struct
import sys
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
DB = "/api/v2/tenants/default_tenant/databases/default_database"


def load(name):
    with open(os.path.join(HERE, name)) as f:
        return [json.loads(line) for line in f if line.strip()]


def call(url, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            raw = r.read()
            return json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        detail = e.read().decode(errors="replace")
        if method == "DELETE" and e.code == 404:
            return None
        sys.exit(f"{method} {path} -> {e.code}: {detail}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--server-embeddings", action="store_true")
    ap.add_argument("--model", default="text-embedding-3-small")
    ap.add_argument("--dimensions", type=int)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    url = args.url.rstrip("/")

    passages = load("passages.jsonl")
    queries = load("queries.jsonl")
    if args.server_embeddings:
        name = "policy_demo_server"
        # The JSON the Chroma Python client stores for OpenAIEmbeddingFunction; vectord honours
        # only model_name and dimensions from it, and uses its own configured endpoint and key.
        ef = {"type": "known", "name": "openai", "config": {"api_key_env_var": "OPENAI_API_KEY", "model_name": args.model, "dimensions": args.dimensions}}
    else:
        name = "policy_demo_minilm"
        # Chroma's default embedding function is this same model (all-MiniLM-L6-v2).
        ef = {"type": "known", "name": "default", "config": {}}
        vectors = {r["id"]: r["embedding"] for r in load("passages.minilm.jsonl")}
        qvectors = {r["id"]: r["embedding"] for r in load("queries.minilm.jsonl")}

    call(url, "DELETE", f"{DB}/collections/{name}")
    coll = call(url, "POST", f"{DB}/collections", {"name": name, "metadata": {"corpus": "payer prior-authorization policies (synthetic)"}, "configuration": {"hnsw": {"space": "cosine"}, "embedding_function": ef}, "get_or_create": False})
    cid = coll["id"]
    body = {
        "ids": [p["id"] for p in passages],
        "documents": [p["document"] for p in passages],
        "metadatas": [p["metadata"] for p in passages],
    }
    if not args.server_embeddings:
        body["embeddings"] = [vectors[p["id"]] for p in passages]  # base64 little-endian f32
    call(url, "POST", f"{DB}/collections/{cid}/upsert", body)
    count = call(url, "GET", f"{DB}/collections/{cid}/count")
    print(f"loaded {count} passages into {name} ({'server-side embeddings' if args.server_embeddings else 'precomputed all-MiniLM-L6-v2 vectors'})\n")

    failures = 0
    for q in queries:
        body = {"n_results": 3, "include": ["documents", "metadatas", "distances"]}
        if q.get("where"):
            body["where"] = q["where"]
        if args.server_embeddings:
            body["query_texts"] = [q["text"]]
        else:
            raw = base64.b64decode(qvectors[q["id"]])
            body["query_embeddings"] = [list(struct.unpack(f"<{len(raw) // 4}f", raw))]
        res = call(url, "POST", f"{DB}/collections/{cid}/query", body)
        where = f"  where {json.dumps(q['where'])}" if q.get("where") else ""
        print(f"Q: {q['text']}{where}")
        for doc, meta, dist in zip(res["documents"][0], res["metadatas"][0], res["distances"][0]):
            print(f"   {dist:.3f}  [{meta['payer_id']}/{meta['procedure']}/{meta['effective_year']}] {doc[:110]}…")
        top = res["metadatas"][0][0] if res["metadatas"][0] else {}
        ok = top.get("procedure") == q["expect_procedure"] and all(top.get(k) == v for k, v in q.get("where", {}).items())
        failures += not ok
        print()
    if args.check:
        print(f"{len(queries) - failures} passed, {failures} failed")
        sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
