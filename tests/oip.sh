#!/usr/bin/env bash
# Drives `churnguard serve`'s Open Inference Protocol routes (/v2) with a third-party client,
# tritonclient (pinned in tests/py/oip/requirements.txt), as a KServe/Triton user would: JSON
# tensors with NaN for undefined values, the client's default binary tensor data extension,
# a version pinned after a newer one is promoted, and the refusals a client must be able to read.
#
#   bash tests/oip.sh
#
# Idempotent: the Python environment (tests/py/oip/.venv, git-ignored) is reused while the
# requirements file is unchanged; the work directory is rebuilt on every run.
# Environment: CHURNGUARD_BIN (a churnguard binary; default: build target/release/churnguard),
# OIP_WORK (default: a fresh temporary directory, removed when the run passes), PYTHON
# (default python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN="${CHURNGUARD_BIN:-}"
WORK="${OIP_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/churnguard-oip.XXXXXX")}"
# The caller's churnguard settings must not change what the binary does here.
for v in $(compgen -v CHURNGUARD_ || true); do unset "$v"; done
export CHURNGUARD_LOG=warn

step() { printf '\n== %s\n' "$*"; }

step "python environment (tests/py/oip/.venv)"
# shellcheck source=lib/venv.sh
source "$ROOT/tests/lib/venv.sh"
cg_venv "$ROOT/tests/py/oip/.venv" "$ROOT/tests/py/oip/requirements.txt"
PY="$ROOT/tests/py/oip/.venv/bin/python"

step "churnguard binary"
if [ -z "$BIN" ]; then
    cargo build --release --locked --quiet --bin churnguard
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/churnguard"
fi
"$BIN" --version

step "sample, two versions, their features and nightly scores ($WORK)"
rm -rf "$WORK"
mkdir -p "$WORK"
DATA="$WORK/data"
MODELS="$WORK/models"
"$BIN" generate --customers 2000 --seed 11 --out "$DATA" > "$WORK/generate.log"
# v1: the base features only. v2: with customer attributes (monthly_fee may be missing),
# promoted, so that a client pinning v1 asks for a version that is no longer production.
"$BIN" train --data "$DATA" --models "$MODELS" --algorithms gbdt,tree > "$WORK/train-v1.log"
END_DATE="$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["training_data"]["time_range"][1][:10])' \
    "$MODELS/churn/v1/manifest.json")"
"$BIN" features --data "$DATA" --models "$MODELS" --as-of "$END_DATE" --out "$WORK/features-v1.csv"
"$BIN" train --data "$DATA" --models "$MODELS" \
    --categorical plan,channel,country --numeric monthly_fee > "$WORK/train-v2.log"
"$BIN" models promote --models "$MODELS" v2 > "$WORK/promote.log"
"$BIN" features --data "$DATA" --models "$MODELS" --as-of "$END_DATE" --out "$WORK/features-v2.csv"
"$BIN" score --data "$DATA" --models "$MODELS" --as-of "$END_DATE" --version v1 \
    --out "$WORK/scores-v1.csv" > "$WORK/score-v1.log"

step "churnguard serve"
KEY="oip-$RANDOM$RANDOM"
SERVER_PID=""
stop_server() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap stop_server EXIT
# Port 0: the kernel picks a free port, and serve prints the address it bound.
CHURNGUARD_API_KEYS="$KEY" "$BIN" serve --models "$MODELS" --bind 127.0.0.1:0 \
    > "$WORK/serve.log" 2> "$WORK/serve.err" &
SERVER_PID=$!
ADDR=""
for _ in $(seq 1 300); do
    ADDR="$(sed -n 's|^churnguard serving .* on http://\(127\.0\.0\.1:[0-9]*\)$|\1|p' "$WORK/serve.log")"
    if [ -n "$ADDR" ] && curl -fsS "http://$ADDR/healthz" > /dev/null 2>&1; then
        break
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        cat "$WORK/serve.log" "$WORK/serve.err" >&2
        echo "churnguard serve exited before it was healthy" >&2
        exit 1
    fi
    ADDR=""
    sleep 0.1
done
if [ -z "$ADDR" ]; then
    cat "$WORK/serve.log" "$WORK/serve.err" >&2
    echo "churnguard serve was not healthy within 30 s" >&2
    exit 1
fi
echo "serving on $ADDR"

step "tritonclient against /v2"
"$PY" "$ROOT/tests/py/oip/test_tritonclient.py" --addr "$ADDR" --key "$KEY" \
    --features-v1 "$WORK/features-v1.csv" --features-v2 "$WORK/features-v2.csv" \
    --scores-v1 "$WORK/scores-v1.csv"
stop_server
# A passing run leaves nothing behind (a failing one keeps $WORK, logs included, to look at).
if [ -z "${OIP_WORK:-}" ]; then
    rm -rf "$WORK"
fi
