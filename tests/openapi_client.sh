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
# OPENAPI_WORK (default: a new temporary directory, removed when the run passes), PYTHON (default python3).
set -euo pipefail

# shellcheck source=lib/suite.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/suite.sh"
SUITE="$ROOT/tests/py/openapi"
VENV="$SUITE/.venv"
cg_work OPENAPI_WORK openapi

step "python environment ($VENV)"
# shellcheck source=lib/venv.sh
source "$ROOT/tests/lib/venv.sh"
cg_venv "$VENV" "$SUITE/requirements.txt"
PY="$VENV/bin/python"
# The generator runs its post-hooks (ruff) from PATH.
export PATH="$VENV/bin:$PATH"

step "churnguard binary"
cg_bin

step "a sample and a model ($WORK)"
DATA="$WORK/data"
MODELS="$WORK/models"
"$BIN" generate --customers 2000 --seed 11 --out "$DATA" > "$WORK/generate.log"
"$BIN" train --data "$DATA" --models "$MODELS" --algorithms logistic > "$WORK/train.log"
END_DATE="$(cg_end_date "$MODELS/churn/v1/manifest.json")"
# Real customers' features, as the production model computes them.
"$BIN" features --data "$DATA" --models "$MODELS" --as-of "$END_DATE" --out "$WORK/features.csv"

step "churnguard serve"
KEY="openapi-client-test-key"
CHURNGUARD_API_KEYS="$KEY" cg_serve "$WORK/serve" --models "$MODELS" --outbox "$WORK/alerts.db"
URL="$CG_URL"

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
cg_pip "$VENV" --no-deps --no-build-isolation --reinstall "$WORK/client"

step "driving the service through the generated client"
CG_URL="$URL" CG_KEY="$KEY" CG_FEATURES="$WORK/features.csv" CG_MODEL=churn \
    "$PY" "$SUITE/test_generated_client.py"
cg_done
