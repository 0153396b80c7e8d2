#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs and starts what the tests need, then runs
# every test. `.ci/run` calls exactly this. Safe to re-run; set VECTORD_TEST_SKIP_INSTALL=1 to
# reuse what an earlier run installed.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

log "toolchain"
cargo --version
rustc --version

log "format"
cargo fmt --all -- --check

CACHE=${VECTORD_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vectord-tests}
mkdir -p "$CACHE"
# Everything the tests install goes to a cache folder so reruns are fast; a fresh machine
# installs it all from PyPI and npm. venv-full's real Chroma 1.5.9 server also serves the
# migration test (VECTORD_TEST_CHROMA_BIN); the thin and full clients need separate venvs (both
# install the `chromadb` module).
if [ "${VECTORD_TEST_SKIP_INSTALL:-0}" != 1 ] || [ ! -x "$CACHE/venv/bin/python" ] \
  || [ ! -x "$CACHE/venv-full/bin/chroma" ]; then
  log "python client (chromadb-client 1.5.9) in $CACHE/venv"
  [ -x "$CACHE/venv/bin/python" ] || python3 -m venv "$CACHE/venv"
  "$CACHE/venv/bin/pip" install -q --disable-pip-version-check chromadb-client==1.5.9
  log "js client (npm chromadb 3.5.0) in $CACHE/js"
  mkdir -p "$CACHE/js"
  (cd "$CACHE/js" && { [ -f package.json ] || echo '{"private":true,"type":"module"}' > package.json; } \
    && npm install --silent --no-audit --no-fund chromadb@3.5.0 >/dev/null)
  log "langchain-chroma 1.1.0 and Chroma's own tests (chromadb 1.5.9 wheel) in $CACHE/venv-full"
  [ -x "$CACHE/venv-full/bin/python" ] || python3 -m venv "$CACHE/venv-full"
  "$CACHE/venv-full/bin/python" -m pip install -q --disable-pip-version-check chromadb==1.5.9 langchain-chroma==1.1.0 \
    "hypothesis[numpy]==6.112.2" "pytest<8.4" "pytest-asyncio<1.0" psutil pandas "fastapi>=0.115.9" \
    "opentelemetry-instrumentation-fastapi>=0.41b0"
  log "old python clients (chromadb-client 0.5.23: v2 paths, old formats; 0.5.15: /api/v1)"
  for v in 0.5.23 0.5.15; do
    [ -x "$CACHE/venv-legacy-$v/bin/python" ] || python3 -m venv "$CACHE/venv-legacy-$v"
    "$CACHE/venv-legacy-$v/bin/python" -m pip install -q --disable-pip-version-check chromadb-client==$v
  done
fi

export VECTORD_TEST_CHROMA_BIN="$CACHE/venv-full/bin/chroma"

# moto's S3-compatible server for the snapshot upload test (tests/it/backup/s3.rs starts it).
if [ "${VECTORD_TEST_SKIP_INSTALL:-0}" != 1 ] || [ ! -x "$CACHE/moto-venv/bin/moto_server" ]; then
  log "S3-compatible server (moto[server] 5.2.5) in $CACHE/moto-venv"
  [ -x "$CACHE/moto-venv/bin/python" ] || python3 -m venv "$CACHE/moto-venv"
  "$CACHE/moto-venv/bin/pip" install -q --disable-pip-version-check "moto[server]==5.2.5"
fi
export VECTORD_TEST_MOTO_BIN="$CACHE/moto-venv/bin/moto_server"

# schemathesis for the API fuzz run against the running server below (tests/schemathesis.sh
# pins the version and would install it itself; done here so installs happen in one place).
if [ "${VECTORD_TEST_SKIP_INSTALL:-0}" != 1 ] || [ ! -x "$CACHE/schemathesis-venv/bin/schemathesis" ]; then
  log "API fuzzer (schemathesis 4.32.5) in $CACHE/schemathesis-venv"
  [ -x "$CACHE/schemathesis-venv/bin/python" ] || python3 -m venv "$CACHE/schemathesis-venv"
  "$CACHE/schemathesis-venv/bin/pip" install -q --disable-pip-version-check "schemathesis==4.32.5"
fi

# One real PostgreSQL 16 + pgvector for the sync tests (PyPI pgserver bundles both), on a free
# port, stopped on exit. The tests read VECTORD_TEST_PG_URL (and fail under CI without it).
PGPY="$CACHE/pg-venv/bin/python"
if [ "${VECTORD_TEST_SKIP_INSTALL:-0}" != 1 ] || ! "$PGPY" -c 'import pgserver' 2>/dev/null; then
  log "postgres + pgvector (pgserver 0.1.4) in $CACHE/pg-venv"
  [ -x "$PGPY" ] || python3 -m venv "$CACHE/pg-venv"
  "$CACHE/pg-venv/bin/pip" install -q --disable-pip-version-check pgserver==0.1.4
fi
PG_DIR=$(mktemp -u -d /tmp/vectord-pg.XXXXXX)
stop_pg() { "$PGPY" tests/pg/pg_server.py stop "$PG_DIR" >/dev/null 2>&1 || true; rm -rf "$PG_DIR"; }
trap stop_pg EXIT
VECTORD_TEST_PG_URL=$("$PGPY" tests/pg/pg_server.py start "$PG_DIR" 2>/dev/null | tail -n 1)
export VECTORD_TEST_PG_URL
export VECTORD_TEST_PG_RESTART="'$PGPY' '$PWD/tests/pg/pg_server.py' restart '$PG_DIR'"
log "postgres at $VECTORD_TEST_PG_URL (data $PG_DIR)"

# Failpoints are compiled in for the whole test run (inactive unless a test configures one), so
# the crash test can also tear WAL appends on purpose; `fuzzing` compiles the fuzz targets' entry
# points, whose seeds and crash regressions `fuzz_regressions` replays; hnsw-rs-baseline builds the
# reference graph builder the index tests and graph benches compare ours with. The integration
# tests are two binaries: `it` (every topic) and `solo` (tests that must run alone).
log "cargo test (unit, integration, crash, property tests; benches built and run once)"
cargo test --features failpoints,fuzzing,hnsw-rs-baseline --all-targets --no-fail-fast

cargo build --bin vectord
SERVER_DATA=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# A stand-in OpenAI-compatible embeddings API on loopback, for the server-side embedding scenario.
python3 tests/python/fake_openai_server.py "$SERVER_DATA.embed-port" &
FAKE_PID=$!
for _ in $(seq 1 100); do [ -s "$SERVER_DATA.embed-port" ] && break; sleep 0.1; done
EMBED_PORT=$(cat "$SERVER_DATA.embed-port")
log "vectord on 127.0.0.1:$PORT (data $SERVER_DATA, embeddings from 127.0.0.1:$EMBED_PORT)"
./target/debug/vectord run --path "$SERVER_DATA" --host 127.0.0.1 --port "$PORT" --allow-reset \
  --embed-base-url "http://127.0.0.1:$EMBED_PORT/v1" > "$SERVER_DATA.log" 2>&1 &
SERVER_PID=$!
cleanup() {
  kill "$SERVER_PID" "$FAKE_PID" 2>/dev/null || true
  wait "$SERVER_PID" "$FAKE_PID" 2>/dev/null || true
  rm -rf "$SERVER_DATA" "$SERVER_DATA.embed-port"
  stop_pg
}
trap cleanup EXIT
for _ in $(seq 1 300); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/api/v2/heartbeat', timeout=1)" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$SERVER_DATA.log"; echo "vectord exited" >&2; exit 1; }
  sleep 0.1
done

log "Chroma Python client scenario"
ANONYMIZED_TELEMETRY=False "$CACHE/venv/bin/python" tests/python/chroma_client_scenario.py 127.0.0.1 "$PORT"

log "Server-side embeddings: raw HTTP writes/queries, then the Python client reads them"
ANONYMIZED_TELEMETRY=False "$CACHE/venv/bin/python" tests/python/embedding_scenario.py 127.0.0.1 "$PORT"

log "Policy corpus demo (precomputed all-MiniLM-L6-v2 vectors, checked), then server-side"
python3 data/policy-corpus/demo.py --url "http://127.0.0.1:$PORT" --check
python3 data/policy-corpus/demo.py --url "http://127.0.0.1:$PORT" --server-embeddings > /dev/null

log "Chroma JS client scenario"
cp tests/js/chroma_client_scenario.mjs "$CACHE/js/"
node "$CACHE/js/chroma_client_scenario.mjs" 127.0.0.1 "$PORT"

for v in 0.5.23 0.5.15; do
  log "old Chroma Python client $v scenario (legacy formats / v1)"
  ANONYMIZED_TELEMETRY=False "$CACHE/venv-legacy-$v/bin/python" tests/python/legacy_client_scenario.py 127.0.0.1 "$PORT"
done

log "LangChain (langchain-chroma) scenario"
ANONYMIZED_TELEMETRY=False "$CACHE/venv-full/bin/python" tests/python/langchain_scenario.py 127.0.0.1 "$PORT"

# Last on this server: generated requests may reset it (--allow-reset). Any 5xx other than the
# documented 501s fails the run (tests/schemathesis.toml); RELIABILITY.md section 4.
log "API fuzz: schemathesis from /openapi.json, 10 examples per operation"
VECTORD_URL="http://127.0.0.1:$PORT" bash tests/schemathesis.sh 10

# A second server with auth on: a token file (sha256 of each token) and Chroma's admin token env.
AUTH_DATA=$(mktemp -d)
AUTH_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
cat > "$AUTH_DATA.tokens.json" <<JSON
{"tokens": [
  {"user": "root", "sha256": "$(sha admin-token)", "tenant": "*", "databases": ["*"], "role": "admin"},
  {"user": "writer", "sha256": "$(sha rw-token)", "tenant": "default_tenant", "databases": ["default_database"], "role": "rw"},
  {"user": "reader", "sha256": "$(sha ro-token)", "tenant": "clinic", "databases": ["prod"], "role": "ro"},
  {"user": "alice", "sha256": "$(sha alice:wonderland)", "tenant": "default_tenant", "databases": ["*"], "role": "rw"}
]}
JSON
log "vectord with auth on 127.0.0.1:$AUTH_PORT"
CHROMA_SERVER_AUTHN_CREDENTIALS=env-admin-token ./target/debug/vectord run --path "$AUTH_DATA" \
  --host 127.0.0.1 --port "$AUTH_PORT" --allow-reset --auth-tokens "$AUTH_DATA.tokens.json" \
  > "$AUTH_DATA.log" 2>&1 &
AUTH_PID=$!
cleanup_auth() { kill "$AUTH_PID" 2>/dev/null || true; wait "$AUTH_PID" 2>/dev/null || true; rm -rf "$AUTH_DATA" "$AUTH_DATA.tokens.json" "$AUTH_DATA.log"; }
trap 'cleanup_auth; cleanup' EXIT
for _ in $(seq 1 300); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$AUTH_PORT/api/v2/heartbeat', timeout=1)" 2>/dev/null && break
  kill -0 "$AUTH_PID" 2>/dev/null || { cat "$AUTH_DATA.log"; echo "vectord (auth) exited" >&2; exit 1; }
  sleep 0.1
done
log "Chroma Python client auth scenario"
ANONYMIZED_TELEMETRY=False "$CACHE/venv/bin/python" tests/python/chroma_auth_scenario.py 127.0.0.1 "$AUTH_PORT"

log "Chroma's own test suite, fast subset (HTTP-facing files; its own fresh server)"
VECTORD_TEST_SKIP_INSTALL=1 VECTORD_BIN=./target/debug/vectord bash tests/chroma_suite.sh fast

log "done"
