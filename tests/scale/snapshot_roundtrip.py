"""Snapshot + restore round trip under load, at scale (manual; not part of CI).

Two writers upsert new 1536-d rows into the snapshotted collection while a whole-folder snapshot
is taken over HTTP (POST /api/v2/admin/snapshots); the server is stopped, the snapshot restored
with `vectord restore` into a new folder and served. The restored folder must hold every original
row bit-identical (embedding and metadata against the dataset files) and, of the live rows,
exactly a whole-batch prefix per writer that includes every batch acknowledged before the snapshot
request and none issued after its answer.

    python tests/scale/snapshot_roundtrip.py BIN SRC RESTORED DATASET
    # BIN: a vectord binary; SRC: a copy of a data folder holding the real100k collection
    # `bench_real100k` as the shared harness loads it (ids "0".."99999", its metadatas);
    # RESTORED: a new folder, or SRC itself to restore in place with --force (as on Fly, where
    # the data folder is the volume's mount point); DATASET: the real100k folder (base.npy,
    # metadatas.jsonl)
"""
import json, sys, time, threading, urllib.request, subprocess, shutil
import numpy as np
BIN, SRC, RST, DATA = sys.argv[1:5]; PORT = 28890
def req(port, m, p, b=None, timeout=600):
    r = urllib.request.Request(f"http://127.0.0.1:{port}{p}", method=m,
        data=json.dumps(b).encode() if b is not None else None, headers={"content-type": "application/json"})
    return json.loads(urllib.request.urlopen(r, timeout=timeout).read() or b"null")
def start(path, port):
    p = subprocess.Popen([BIN, "run", "--path", path, "--port", str(port)], stdout=open(f"{RST}.server-{port}.log", "w"), stderr=subprocess.STDOUT)
    for _ in range(200):
        try: req(port, "GET", "/api/v2/heartbeat"); return p
        except Exception: time.sleep(0.05)
    raise SystemExit("server did not start")
C = "/api/v2/tenants/default_tenant/databases/default_database/collections"
srv = start(SRC, PORT)
cid = [c["id"] for c in req(PORT, "GET", C) if c["name"] == "bench_real100k"][0]
rng = np.random.default_rng(5)
acked = {w: [] for w in range(2)}; issued = {w: 0 for w in range(2)}; stop = False
def writer(w):
    b = 0
    while not stop:
        ids = [f"live-{w}-{b}-{i}" for i in range(50)]
        emb = rng.standard_normal((50, 1536), dtype=np.float32)
        issued[w] = b + 1
        req(PORT, "POST", f"{C}/{cid}/upsert", {"ids": ids, "embeddings": emb.tolist(), "metadatas": [{"w": w, "b": b}] * 50})
        acked[w].append(b); b += 1
ts = [threading.Thread(target=writer, args=(w,)) for w in range(2)]
for t in ts: t.start()
time.sleep(3)
before = {w: len(acked[w]) for w in acked}
t0 = time.time(); snap = req(PORT, "POST", "/api/v2/admin/snapshots", {}); t_snap = time.time() - t0
after = {w: issued[w] for w in issued}
time.sleep(2); stop = True
for t in ts: t.join()
print("snapshot", json.dumps(snap)[:300], f"took {t_snap:.2f} s; batches acked before {before}, issued by its answer {after}")
srv.terminate(); srv.wait()
in_place = RST == SRC
if not in_place: shutil.rmtree(RST, ignore_errors=True)
path = f"{SRC}/snapshots/{snap['name']}"
t0 = time.time(); r = subprocess.run([BIN, "restore", "--from", path, "--path", RST] + (["--force"] if in_place else []), capture_output=True, text=True); t_rst = time.time() - t0
print("restore rc", r.returncode, f"{t_rst:.2f} s", r.stdout[-300:], r.stderr[-300:])
# Compare every record: original rows against base.npy + metadatas.jsonl; live rows per writer.
base = np.load(f"{DATA}/base.npy"); metas = [json.loads(l) for l in open(f"{DATA}/metadatas.jsonl")]
rs = start(RST, PORT + 1)
rid = [c["id"] for c in req(PORT + 1, "GET", C) if c["name"] == "bench_real100k"][0]
count = req(PORT + 1, "GET", f"{C}/{rid}/count")
seen = {}; bad = 0; off = 0; orig = 0
while True:
    g = req(PORT + 1, "POST", f"{C}/{rid}/get", {"limit": 2000, "offset": off, "include": ["embeddings", "metadatas"]})
    if not g["ids"]: break
    for i, e, m in zip(g["ids"], g["embeddings"], g["metadatas"]):
        if i.startswith("live-"):
            _, w, b, _ = i.split("-"); seen.setdefault(int(w), set()).add(int(b))
        else:
            k = int(i); orig += 1
            if not (np.array_equal(np.asarray(e, dtype=np.float32), base[k]) and m == metas[k]): bad += 1
    off += len(g["ids"])
ok = True
for w in range(2):
    got = sorted(seen.get(w, set()))
    prefix = got == list(range(len(got)))
    within = before[w] <= len(got) <= after[w]
    ok &= prefix and within
    print(f"writer {w}: restored batches 0..{len(got)} prefix={prefix} acked-before={before[w]} issued-by-answer={after[w]} ok={within}")
print(f"restored count {count}; original rows {orig} (want 100000), mismatched {bad}; verdict {'PASS' if ok and bad == 0 and orig == 100000 else 'FAIL'}")
rs.terminate(); rs.wait()
