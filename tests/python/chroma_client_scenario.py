"""Drives a running vectord with the real Chroma Python client (chromadb-client 1.5.9).

Usage: python chroma_client_scenario.py HOST PORT   (the server must run with --allow-reset)
Embeddings are always passed explicitly: the server never embeds text.
"""

import os
import sys

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import chromadb  # noqa: E402
from chromadb.config import Settings  # noqa: E402
from chromadb.errors import InvalidArgumentError, NotFoundError  # noqa: E402
from scenario import check, done  # noqa: E402  (tests/python/scenario.py)

host, port = sys.argv[1], int(sys.argv[2])
client = chromadb.HttpClient(host=host, port=port, settings=Settings(allow_reset=True, anonymized_telemetry=False))


check("heartbeat", client.heartbeat() > 0)
check("version", isinstance(client.get_version(), str))
client.reset()
check("empty after reset", client.list_collections() == [])

col = client.get_or_create_collection("test_coll")
check("collection name", col.name == "test_coll")
col.add(
    ids=["a", "b", "c"],
    embeddings=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.1, 0.0]],
    metadatas=[{"k": 1}, {"k": 2, "f": 2.0}, {"s": "x", "arr": [1, 2]}],
    documents=["doc a", "doc b", "doc c"],
)
check("count", col.count() == 3)
res = col.query(query_embeddings=[[1.0, 0.1, 0.0]], n_results=2)
check("query ids", res["ids"] == [["c", "a"]], res)
check("query distances", abs(res["distances"][0][1] - 0.01) < 1e-6, res["distances"])
check("query documents", res["documents"] == [["doc c", "doc a"]], res)
got = col.get(ids=["b"])
check("get metadata int/float", got["metadatas"] == [{"k": 2, "f": 2.0}] and isinstance(got["metadatas"][0]["f"], float), got)
check("get metadata array", col.get(ids=["c"])["metadatas"][0]["arr"] == [1, 2])
peek = col.peek(2)
check("peek embeddings", len(peek["embeddings"]) == 2 and list(peek["embeddings"][0]) == [1.0, 0.0, 0.0], peek)
col.update(ids=["a"], embeddings=[[1.0, 0.0, 0.0]], documents=["doc a2"], metadatas=[{"k": 10}])
check("update", col.get(ids=["a"])["documents"] == ["doc a2"])
col.upsert(ids=["a", "d"], embeddings=[[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], metadatas=[{"new": True}, {"k": 4}])
got = col.get(ids=["a"], include=["metadatas", "embeddings"])
check("upsert merges metadata", got["metadatas"] == [{"k": 10, "new": True}], got)
check("upsert replaces embedding", list(got["embeddings"][0]) == [0.5, 0.5, 0.0])
col.delete(ids=["b"])
check("delete", col.count() == 3)

try:
    col.add(ids=["z"], embeddings=[[1.0, 2.0]])
    check("dimension mismatch raises", False)
except InvalidArgumentError as e:
    check("dimension mismatch raises InvalidArgumentError", "dimension of 3, got 2" in str(e), str(e))
try:
    client.get_collection("does_not_exist")
    check("missing collection raises", False)
except NotFoundError as e:
    check("missing collection raises NotFoundError", "does not exist" in str(e), str(e))
try:
    client.create_collection("test_coll")
    check("duplicate raises", False)
except Exception as e:  # noqa: BLE001
    check("duplicate collection message", "already exists" in str(e), str(e))

cos = client.create_collection("cos_coll", metadata={"hnsw:space": "cosine"}, embedding_function=None)
check("legacy hnsw:space", cos.configuration.get("hnsw", {}).get("space") == "cosine", cos.configuration)
cos.add(ids=["x"], embeddings=[[1.0, 1.0]])
check("cosine distance", abs(cos.query(query_embeddings=[[1.0, 1.0]], n_results=1)["distances"][0][0]) < 1e-6)
cos.modify(name="cos_renamed", metadata={"owner": "me"})
again = client.get_collection("cos_renamed", embedding_function=None)
check("modify rename+metadata", again.id == cos.id and again.metadata == {"owner": "me"}, again.metadata)
again.modify(configuration={"hnsw": {"ef_search": 42}})
check("modify configuration", client.get_collection("cos_renamed").configuration["hnsw"]["ef_search"] == 42)
check("list", sorted(c.name for c in client.list_collections()) == ["cos_renamed", "test_coll"])
check("count_collections", client.count_collections() == 2)
client.delete_collection("cos_renamed")
check("delete_collection", client.count_collections() == 1)

admin = chromadb.AdminClient(
    Settings(
        chroma_api_impl="chromadb.api.fastapi.FastAPI",
        chroma_server_host=host,
        chroma_server_http_port=port,
        anonymized_telemetry=False,
    )
)
admin.create_database("second_db")
check("get_database", admin.get_database("second_db")["name"] == "second_db")
check("list_databases", sorted(d["name"] for d in admin.list_databases()) == ["default_database", "second_db"])
other = chromadb.HttpClient(host=host, port=port, database="second_db")
other.create_collection("in_second", embedding_function=None)
check("database isolation", [c.name for c in other.list_collections()] == ["in_second"])
admin.delete_database("second_db")
check("delete_database", [d["name"] for d in admin.list_databases()] == ["default_database"])

done()
