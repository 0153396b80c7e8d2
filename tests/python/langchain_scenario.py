"""Drives a running vectord through LangChain's Chroma vector store (langchain-chroma 1.1.0).

Usage: python langchain_scenario.py HOST PORT
The embedding class below is deterministic (hashed bag of words), so nothing is downloaded.
"""

import hashlib
import math
import os
import sys

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import chromadb  # noqa: E402
from chromadb.config import Settings  # noqa: E402
from langchain_chroma import Chroma  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402
from scenario import check, done  # noqa: E402  (tests/python/scenario.py)

host, port = sys.argv[1], int(sys.argv[2])


class HashedWords(Embeddings):
    """32-d bag of words, each word hashed to one dimension, L2-normalised."""

    dim = 32

    def _embed(self, text):
        v = [0.0] * self.dim
        for w in text.lower().split():
            v[int(hashlib.sha256(w.encode()).hexdigest(), 16) % self.dim] += 1.0
        n = math.sqrt(sum(x * x for x in v)) or 1.0
        return [x / n for x in v]

    def embed_documents(self, texts):
        return [self._embed(t) for t in texts]

    def embed_query(self, text):
        return self._embed(text)


client = chromadb.HttpClient(host=host, port=port, settings=Settings(anonymized_telemetry=False))
emb = HashedWords()
texts = [
    "knee arthroscopy requires prior authorization",
    "physical therapy covered up to twenty visits",
    "knee replacement requires prior authorization and imaging",
    "dental cleaning covered twice a year",
]
metas = [
    {"payer": "aetna", "year": 2024},
    {"payer": "aetna", "year": 2023},
    {"payer": "cigna", "year": 2024},
    {"payer": "cigna", "year": 2022},
]
store = Chroma(
    collection_name="lc_policies",
    embedding_function=emb,
    client=client,
    collection_metadata={"hnsw:space": "cosine"},
)
ids = store.add_texts(texts, metadatas=metas)
check("add_texts (upsert) returns ids", len(ids) == 4)
check("count", store._collection.count() == 4)

res = store.similarity_search_with_score(texts[0], k=2)
check("nearest is the same text", res[0][0].page_content == texts[0] and abs(res[0][1]) < 1e-5, res)
check("scores ascend", res[0][1] <= res[1][1], res)
expected = 1.0 - sum(a * b for a, b in zip(emb.embed_query(texts[0]), emb.embed_query(res[1][0].page_content)))
check("cosine distance", abs(res[1][1] - expected) < 1e-5, (res[1][1], expected))

res = store.similarity_search_with_score("knee prior authorization", k=4, filter={"payer": "cigna"})
check("filter by payer", {d.metadata["payer"] for d, _ in res} == {"cigna"} and len(res) == 2, res)
check("filtered nearest", res[0][0].page_content == texts[2], res)
res = store.similarity_search_with_score("covered", k=4, filter={"$and": [{"payer": "aetna"}, {"year": {"$gte": 2024}}]})
check("filter with $and/$gte", [d.page_content for d, _ in res] == [texts[0]], res)
rel = store.similarity_search_with_relevance_scores(texts[1], k=1)
check("relevance score (cosine: 1 - d)", rel[0][0].page_content == texts[1] and abs(rel[0][1] - 1.0) < 1e-5, rel)
docs = store.similarity_search("dental", k=1, where_document={"$contains": "dental"})
check("where_document", [d.page_content for d in docs] == [texts[3]], docs)

got = store.get(where={"payer": "aetna"})
check("get with where", sorted(got["documents"]) == sorted(texts[:2]), got)
store.delete(ids=[ids[0]])
check("delete", store._collection.count() == 3 and ids[0] not in store.get()["ids"])
store.add_texts(["knee arthroscopy requires prior authorization again"], metadatas=[{"payer": "aetna", "year": 2025}], ids=[ids[1]])
check("add_texts with an existing id updates it", store.get(ids=[ids[1]])["metadatas"][0]["year"] == 2025)
store.delete_collection()
check("delete_collection", "lc_policies" not in [c.name for c in client.list_collections()])

done()
