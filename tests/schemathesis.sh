#!/usr/bin/env bash
# Schemathesis (a third-party contract tester) drives every operation of the running
# service's own /openapi.json with generated requests, valid and invalid, and checks every
# answer against the document (`--checks all`: no 5xx, only documented statuses, bodies
# that match their schema, valid requests accepted, invalid ones refused, routes that
# need a key refuse a request without one). Any failure fails the suite. The one
# exception, for the /v2 infer operations, is in tests/py/schemathesis/schemathesis.toml;
# tests/py/schemathesis/hooks.py drops generated bodies breaking the one rule of
# `activity` JSON Schema cannot state (a ticket closing before it opened).
#
#   bash tests/schemathesis.sh
#
# Idempotent: the Python environment (tests/py/schemathesis/.venv, git-ignored) is reused
# while tests/py/schemathesis/requirements.txt is unchanged; the work directory is temporary.
# Environment: CHURNGUARD_BIN (a churnguard binary; default: build target/release/churnguard),
# SCHEMATHESIS_WORK (default: a new temporary directory, removed when the run passes),
# SCHEMATHESIS_MAX_EXAMPLES (examples per operation and phase; default 30),
# SCHEMATHESIS_SEED (default 15, so a run is reproducible), PYTHON (default python3).
set -euo pipefail

# shellcheck source=lib/suite.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/suite.sh"
SUITE="$ROOT/tests/py/schemathesis"
VENV="$SUITE/.venv"
cg_work SCHEMATHESIS_WORK schemathesis

step "python environment ($VENV)"
# shellcheck source=lib/venv.sh
source "$ROOT/tests/lib/venv.sh"
cg_venv "$VENV" "$SUITE/requirements.txt"
"$VENV/bin/st" --version

step "churnguard binary"
cg_bin

step "a sample and a model ($WORK)"
DATA="$WORK/data"
MODELS="$WORK/models"
"$BIN" generate --customers 2000 --seed 15 --out "$DATA" > "$WORK/generate.log"
"$BIN" train --data "$DATA" --models "$MODELS" --algorithms logistic > "$WORK/train.log"

step "churnguard serve (API key and admin key set)"
KEY="schemathesis-test-key"
CHURNGUARD_API_KEYS="$KEY" CHURNGUARD_ADMIN_KEY="schemathesis-admin-key" \
    cg_serve "$WORK/serve" --models "$MODELS" --outbox "$WORK/alerts.db"

step "st run $CG_URL/openapi.json --checks all"
# The API key on every request: schemathesis still sends requests without it to the
# operations the document secures (the `ignored_auth` check). The admin route is tested
# with the API key too, so it answers its documented 403.
cd "$WORK"
status=0
SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$SUITE" \
    "$VENV/bin/st" --config-file "$SUITE/schemathesis.toml" run "$CG_URL/openapi.json" \
    -H "Authorization: Bearer $KEY" \
    --checks all \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-30}" \
    --seed "${SCHEMATHESIS_SEED:-15}" \
    --request-timeout 10 \
    --no-color \
    --report junit --report-dir "$WORK/report" 2>&1 | tee "$WORK/st.log" || status=$?
if [ "$status" -ne 0 ]; then
    echo "FAIL: schemathesis found contract failures (exit $status); see the log above" >&2
    exit 1
fi
# st exits non-zero on any failure; its summary line must say so too.
if grep -qE "[0-9]+ failures?" "$WORK/st.log"; then
    echo "FAIL: schemathesis reported failures" >&2
    exit 1
fi
cd "$ROOT"
cg_done
echo "ok: schemathesis found no contract failure"
