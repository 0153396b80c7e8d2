#!/usr/bin/env bash
# Property-based API fuzzing from the server's own OpenAPI document (schemathesis, PyPI): every
# generated request to every documented operation must answer without a 5xx, except the
# documented 501s (Chroma Cloud-only routes). See RELIABILITY.md, section 4.
#
#   bash tests/schemathesis.sh                 # 100 examples per operation (the long run)
#   bash tests/schemathesis.sh 10              # examples per operation (tests/run.sh uses a short run)
#   VECTORD_URL=http://127.0.0.1:PORT bash tests/schemathesis.sh 10   # against a running server
#
# Without VECTORD_URL it builds vectord, starts it on a free port with a temporary data folder and
# stops it afterwards. Exits non-zero on any 5xx other than 501 (and on any schemathesis error).
set -euo pipefail
cd "$(dirname "$0")/.."

EXAMPLES=${1:-100}
CACHE=${VECTORD_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vectord-tests}
VENV="$CACHE/schemathesis-venv"
ST_VERSION=4.32.5
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$ST_VERSION"; then
  echo "== schemathesis $ST_VERSION in $VENV"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$ST_VERSION"
fi

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

URL=${VECTORD_URL:-}
if [ -z "$URL" ]; then
  cargo build -q --bin vectord
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  URL="http://127.0.0.1:$PORT"
  ./target/debug/vectord run --path "$WORK/data" --host 127.0.0.1 --port "$PORT" \
    > "$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 300); do
    python3 -c "import urllib.request; urllib.request.urlopen('$URL/api/v2/heartbeat', timeout=1)" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log"; echo "vectord exited" >&2; exit 1; }
    sleep 0.1
  done
fi

# Only `not_a_server_error` runs: the document describes bodies as free-form JSON objects
# (chroma-api.md is the field-level contract), so the conformance checks would only report that.
# tests/schemathesis.toml allows 501.
echo "== schemathesis against $URL/openapi.json ($EXAMPLES examples per operation)"
set +e
"$VENV/bin/schemathesis" --config-file tests/schemathesis.toml run "$URL/openapi.json" \
  --checks not_a_server_error \
  --phases examples,coverage,fuzzing \
  --max-examples "$EXAMPLES" \
  --seed 20261125 \
  --workers 2 \
  --no-color \
  --generation-database none \
  --report ndjson --report-ndjson-path "$WORK/events.ndjson" \
  > "$WORK/schemathesis.out" 2>&1
RC=$?
set -e
tail -n 40 "$WORK/schemathesis.out"
grep -q "Test cases:" "$WORK/schemathesis.out" || RC=1
if [ "$RC" != 0 ]; then
  [ -f "$WORK/server.log" ] && tail -n 50 "$WORK/server.log"
  echo "schemathesis failed (exit $RC)" >&2
  exit 1
fi
