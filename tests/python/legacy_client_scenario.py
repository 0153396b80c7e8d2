"""Drives a running vectord with an old Chroma Python client (chromadb-client 0.5.x).

Usage: python legacy_client_scenario.py HOST PORT   (the server must run with --allow-reset)
0.5.15 speaks /api/v1 with tenant and database as query parameters; 0.5.16-0.6.3 speak /api/v2
paths with the old payload formats. Embeddings are always passed explicitly and every
collection is opened with embedding_function=None: the default embedder downloads a model.
"""

import os
import sys

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import chromadb  # noqa: E402
from chromadb.config import Settings  # noqa: E402
from scenario import check, done  # noqa: E402  (tests/python/scenario.py)

host, port = sys.argv[1], int(sys.argv[2])
print(f"chromadb-client {chromadb.__version__}")
client = chromadb.HttpClient(host=host, port=port, settings=Settings(allow_reset=True, anonymized_telemetry=False))


def names():
    return sorted(c if isinstance(c, str) else c.name for c in client.list_collections())


check("heartbeat", client.heartbeat() > 0)
check("reset", client.reset() is True)
check("empty", names() == [])

col = client.create_collection("legacy_coll", metadata={"hnsw:space": "cosine", "team": "a"}, embedding_function=None)
check("create", col.name == "legacy_coll" and col.metadata == {"hnsw:space": "cosine", "team": "a"}, col.metadata)
col.add(
    ids=["a", "b", "c"],
    embeddings=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]],
    metadatas=[{"k": 1}, {"k": 2, "f": 2.5}, {"s": "x"}],
    documents=["doc a", "doc b", "doc c"],
)
check("count", col.count() == 3)
res = col.query(query_embeddings=[[1.0, 0.0, 0.0]], n_results=2)
check("query ids", res["ids"] == [["a", "c"]], res)
check("cosine distance from hnsw:space", abs(res["distances"][0][0]) < 1e-6 and abs(res["distances"][0][1] - (1 - 2**-0.5)) < 1e-5, res["distances"])
res = col.query(query_embeddings=[[0.0, 1.0, 0.0]], n_results=3, where={"k": {"$gte": 1}})
check("query with where", res["ids"] == [["b", "a"]], res)
got = col.get(ids=["b"])
check("get metadata int/float", got["metadatas"] == [{"k": 2, "f": 2.5}], got)
got = col.get(where={"s": "x"}, include=["documents"])
check("get where", got["ids"] == ["c"] and got["documents"] == ["doc c"], got)
peek = col.peek(2)
check("peek", peek["ids"] == ["a", "b"] and list(peek["embeddings"][0]) == [1.0, 0.0, 0.0], peek)
col.update(ids=["a"], embeddings=[[1.0, 0.0, 0.0]], documents=["doc a2"], metadatas=[{"k": 10}])
check("update", col.get(ids=["a"])["documents"] == ["doc a2"])
col.upsert(ids=["a", "d"], embeddings=[[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], metadatas=[{"new": True}, {"k": 4}])
got = col.get(ids=["a"], include=["metadatas", "embeddings"])
check("upsert merges metadata", got["metadatas"] == [{"k": 10, "new": True}], got)
col.delete(ids=["b"])
check("delete by id", col.count() == 3)
col.delete(where={"k": 4})
check("delete by where", col.count() == 2 and col.get()["ids"] == ["a", "c"])

again = client.get_collection("legacy_coll", embedding_function=None)
check("get_collection", again.id == col.id)
col.modify(name="legacy_renamed", metadata={"team": "b"})
check("modify", names() == ["legacy_renamed"])
check("get_or_create existing", client.get_or_create_collection("legacy_renamed", embedding_function=None).id == col.id)
check("count_collections", client.count_collections() == 1)

try:
    client.get_collection("does_not_exist", embedding_function=None)
    check("missing collection raises", False)
except Exception as e:  # noqa: BLE001
    check("missing collection raises", "does not exist" in str(e), f"{type(e).__name__}: {e}")
try:
    client.create_collection("legacy_renamed", embedding_function=None)
    check("duplicate raises", False)
except Exception as e:  # noqa: BLE001
    check("duplicate raises", "already exists" in str(e), f"{type(e).__name__}: {e}")
try:
    again.add(ids=["z"], embeddings=[[1.0, 2.0]])
    check("dimension mismatch raises", False)
except Exception as e:  # noqa: BLE001
    check("dimension mismatch raises", "dimension" in str(e), f"{type(e).__name__}: {e}")

admin = chromadb.AdminClient(Settings(chroma_api_impl="chromadb.api.fastapi.FastAPI", chroma_server_host=host, chroma_server_http_port=port, anonymized_telemetry=False))
admin.create_tenant("legacy_tenant")
admin.create_database("legacy_db", tenant="legacy_tenant")
check("get_database", admin.get_database("legacy_db", tenant="legacy_tenant")["name"] == "legacy_db")
other = chromadb.HttpClient(host=host, port=port, tenant="legacy_tenant", database="legacy_db", settings=Settings(anonymized_telemetry=False))
oc = other.create_collection("in_other", embedding_function=None)
oc.add(ids=["x"], embeddings=[[1.0, 2.0]])
check("tenant/database isolation", [c if isinstance(c, str) else c.name for c in other.list_collections()] == ["in_other"] and oc.count() == 1)
client.delete_collection("legacy_renamed")
check("delete_collection", names() == [])

done()
