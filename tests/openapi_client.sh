#!/usr/bin/env bash
# Generates a Python client from the running service's /openapi.json with
# openapi-python-client and drives POST /v1/score and POST /v2/models/{name}/infer through
# the client's typed functions, which validate every answer against the document (a
# document that types tensor data as objects, say, fails here).
#
#   bash tests/openapi_client.sh
#
# Idempotent: the Python environment (tests/py/openapi/.venv, git-ignored) is reused while
# tests/py/openapi/requirements.txt is unchanged; the work directory is temporary.
# Environment: CHURNGUARD_BIN (a churnguard binary; default: build target/release/churnguard),
# OPENAPI_WORK (default: a new temporary directory, removed at exit), PYTHON (default python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN="${CHURNGUARD_BIN:-}"
SUITE="$ROOT/tests/py/openapi"
VENV="$SUITE/.venv"
# The caller's churnguard settings must not change what the binary does here.
for v in $(compgen -v CHURNGUARD_ || true); do unset "$v"; done
export CHURNGUARD_LOG=warn
if [ -n "${OPENAPI_WORK:-}" ]; then
    WORK="$OPENAPI_WORK"
    rm -rf "$WORK"
    mkdir -p "$WORK"
else
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/churnguard-openapi.XXXXXX")"
fi
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    [ -n "${OPENAPI_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

step "python environment ($VENV)"
# shellcheck source=lib/venv.sh
source "$ROOT/tests/lib/venv.sh"
cg_venv "$VENV" "$SUITE/requirements.txt"
PY="$VENV/bin/python"
# The generator runs its post-hooks (ruff) from PATH.
export PATH="$VENV/bin:$PATH"

step "churnguard binary"
if [ -z "$BIN" ]; then
    cargo build --release --locked --quiet --bin churnguard
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/churnguard"
fi
"$BIN" --version

step "a sample and a model ($WORK)"
DATA="$WORK/data"
MODELS="$WORK/models"
"$BIN" generate --customers 2000 --seed 11 --out "$DATA" > "$WORK/generate.log"
"$BIN" train --data "$DATA" --models "$MODELS" --algorithms logistic > "$WORK/train.log"
END_DATE="$("$PY" - "$MODELS/churn/v1/manifest.json" <<'PY'
import json, sys
print(json.load(open(sys.argv[1]))["training_data"]["time_range"][1][:10])
PY
)"
# Real customers' features, as the production model computes them.
"$BIN" features --data "$DATA" --models "$MODELS" --as-of "$END_DATE" --out "$WORK/features.csv"

step "churnguard serve"
PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
KEY="openapi-client-test-key"
CHURNGUARD_API_KEYS="$KEY" "$BIN" serve --models "$MODELS" --bind "127.0.0.1:$PORT" \
    --outbox "$WORK/alerts.db" > "$WORK/serve.log" 2>&1 &
SERVER_PID=$!
URL="http://127.0.0.1:$PORT"
"$PY" - "$URL" "$SERVER_PID" <<'PY'
import os, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 60
while True:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
            if r.status == 200:
                break
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("churnguard serve exited (see serve.log)")
    if time.monotonic() > deadline:
        sys.exit("churnguard serve did not become ready in 60 s")
    time.sleep(0.1)
print("ready:", url)
PY

step "generated client"
"$PY" - "$URL/openapi.json" "$WORK/openapi.json" <<'PY'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    open(sys.argv[2], "wb").write(r.read())
PY
"$VENV/bin/openapi-python-client" generate --path "$WORK/openapi.json" \
    --output-path "$WORK/client" --fail-on-warning > "$WORK/generate-client.log" 2>&1 || {
    cat "$WORK/generate-client.log"
    exit 1
}
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
    --force-reinstall "$WORK/client"

step "driving the service through the generated client"
CG_URL="$URL" CG_KEY="$KEY" CG_FEATURES="$WORK/features.csv" CG_MODEL=churn \
    "$PY" "$SUITE/test_generated_client.py"
