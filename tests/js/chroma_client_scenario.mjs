// Drives a running vectord with the real Chroma JS client (npm chromadb 3.x).
// Usage: node chroma_client_scenario.mjs HOST PORT   (server started with --allow-reset)
import { ChromaClient } from "chromadb";

const [host, port] = [process.argv[2], Number(process.argv[3])];
const client = new ChromaClient({ host, port, ssl: false });
let passed = 0;
function check(name, cond, detail = "") {
  if (!cond) {
    console.log(`FAIL ${name}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
    process.exit(1);
  }
  passed += 1;
  console.log(`ok   ${name}`);
}

await client.reset();
check("heartbeat", (await client.heartbeat()) > 0);
const col = await client.getOrCreateCollection({ name: "js_coll", embeddingFunction: null });
check("create", col.name === "js_coll");
await col.add({
  ids: ["a", "b", "c"],
  embeddings: [[1, 0, 0], [0, 1, 0], [1, 0.1, 0]],
  metadatas: [{ k: 1 }, { k: 2, f: 2.5 }, { s: "x" }],
  documents: ["doc a", "doc b", "doc c"],
});
check("count", (await col.count()) === 3);
const q = await col.query({ queryEmbeddings: [[1, 0.1, 0]], nResults: 2 });
check("query ids", JSON.stringify(q.ids) === JSON.stringify([["c", "a"]]), q.ids);
check("query distances", Math.abs(q.distances[0][1] - 0.01) < 1e-6, q.distances);
const g = await col.get({ ids: ["b"], include: ["metadatas", "documents", "embeddings"] });
check("get", g.documents[0] === "doc b" && g.metadatas[0].f === 2.5, g);
check("get embeddings", JSON.stringify(g.embeddings[0]) === "[0,1,0]", g.embeddings);
await col.upsert({ ids: ["a"], embeddings: [[0.5, 0.5, 0]], metadatas: [{ extra: true }] });
await col.update({ ids: ["b"], embeddings: [[0, 1, 0]], documents: ["doc b2"] });
const g2 = await col.get({ ids: ["a", "b"] });
check("upsert+update", g2.metadatas[0].extra === true && g2.metadatas[0].k === 1 && g2.documents[1] === "doc b2", g2);
await col.delete({ ids: ["c"] });
check("delete", (await col.count()) === 2);
try {
  await col.add({ ids: ["z"], embeddings: [[1, 2]] });
  check("dimension mismatch raises", false);
} catch (e) {
  check("dimension mismatch raises", String(e.message).includes("dimension of 3, got 2"), e.message);
}
try {
  await client.createCollection({ name: "js_coll", embeddingFunction: null });
  check("duplicate raises", false);
} catch (e) {
  check("duplicate raises", String(e.message).includes("already exists") || e.name === "ChromaUniqueError", `${e.name}: ${e.message}`);
}
const cos = await client.createCollection({ name: "js_cos", configuration: { hnsw: { space: "cosine" } }, embeddingFunction: null });
check("configuration space", cos.configuration.hnsw.space === "cosine", cos.configuration);
await cos.modify({ name: "js_cos2", metadata: { owner: "js" } });
const list = await client.listCollections();
check("list", list.map((c) => c.name).sort().join(",") === "js_coll,js_cos2", list.map((c) => c.name));
check("countCollections", (await client.countCollections()) === 2);
await client.deleteCollection({ name: "js_cos2" });
check("deleteCollection", (await client.countCollections()) === 1);
console.log(`${passed} passed, 0 failed`);
