"""Server-side embeddings seen from two sides (run by tests/run.sh against a vectord whose
--embed-base-url points at fake_openai_server.py):

1. an n8n-style caller over raw HTTP: creates a collection with the Python client's
   OpenAIEmbeddingFunction configuration, writes documents without embeddings, queries with
   `query_texts`;
2. the real Chroma Python client (chromadb-client 1.5.9) then lists, gets (with vectors) and
   queries (with vectors) that collection.

Usage: python embedding_scenario.py HOST PORT
"""

import json
import os
import sys
import urllib.request

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import chromadb  # noqa: E402
from chromadb.config import Settings  # noqa: E402
from scenario import check, done  # noqa: E402  (tests/python/scenario.py)

host, port = sys.argv[1], int(sys.argv[2])
BASE = f"http://{host}:{port}/api/v2/tenants/default_tenant/databases/default_database"


def http(method, path, body=None):
    req = urllib.request.Request(BASE + path, method=method, data=None if body is None else json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, json.loads(r.read() or b"null")


ef = {"type": "known", "name": "openai", "config": {"api_key_env_var": "CHROMA_OPENAI_API_KEY", "model_name": "text-embedding-3-small", "organization_id": None, "api_base": None, "api_type": None, "api_version": None, "deployment_id": None, "default_headers": None, "dimensions": 16}}
_, coll = http("POST", "/collections", {"name": "n8n_policies", "configuration": {"hnsw": {"space": "cosine"}, "embedding_function": ef}, "get_or_create": True})
cid = coll["id"]
docs = {
    "aetna-mri": "Aetna approves lumbar MRI after six weeks of conservative therapy.",
    "uhc-cpap": "UnitedHealthcare continues CPAP rental when used 4 hours a night on 70% of nights.",
    "cigna-glp1": "Cigna covers Wegovy for adults with a BMI of 30 or more.",
}
status, _ = http("POST", f"/collections/{cid}/add", {"ids": list(docs), "documents": list(docs.values()), "metadatas": [{"payer_id": k.split("-")[0]} for k in docs]})
check("raw add with documents only", status == 201)
status, _ = http("POST", f"/collections/{cid}/upsert", {"ids": ["humana-sleep"], "documents": ["Humana covers home sleep apnea tests."], "metadatas": [{"payer_id": "humana"}]})
check("raw upsert with documents only", status == 200)
_, res = http("POST", f"/collections/{cid}/query", {"query_texts": [docs["uhc-cpap"]], "n_results": 2})
check("raw query_texts finds the same text first", res["ids"][0][0] == "uhc-cpap", res)
_, res = http("POST", f"/collections/{cid}/query", {"query_texts": ["anything"], "n_results": 4, "where": {"payer_id": "cigna"}})
check("raw query_texts with where", res["ids"] == [["cigna-glp1"]], res)

client = chromadb.HttpClient(host=host, port=port, settings=Settings(anonymized_telemetry=False))
check("python lists the collection", "n8n_policies" in [c.name for c in client.list_collections()])
col = client.get_collection("n8n_policies")
check("python count", col.count() == 4)
check("python sees the stored embedding function", col.configuration_json["embedding_function"] == ef, col.configuration_json)
got = col.get(ids=["uhc-cpap"], include=["embeddings", "documents", "metadatas"])
vec = [float(x) for x in got["embeddings"][0]]
check("python gets server-made vectors", len(vec) == 16 and abs(sum(x * x for x in vec) - 1.0) < 1e-4, vec)
check("python gets documents and metadata", got["documents"] == [docs["uhc-cpap"]] and got["metadatas"] == [{"payer_id": "uhc"}], got)
res = col.query(query_embeddings=[vec], n_results=2, include=["distances", "documents"])
check("python query with vectors", res["ids"][0][0] == "uhc-cpap" and abs(res["distances"][0][0]) < 1e-5, res)
peek = col.peek(4)
check("python peek", len(peek["ids"]) == 4 and all(len(e) == 16 for e in peek["embeddings"]), peek["ids"])

done()
