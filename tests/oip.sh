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

# shellcheck source=lib/suite.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/suite.sh"
cg_work OIP_WORK oip

step "python environment (tests/py/oip/.venv)"
# shellcheck source=lib/venv.sh
source "$ROOT/tests/lib/venv.sh"
cg_venv "$ROOT/tests/py/oip/.venv" "$ROOT/tests/py/oip/requirements.txt"
PY="$ROOT/tests/py/oip/.venv/bin/python"

step "churnguard binary"
cg_bin

step "sample, two versions, their features and nightly scores ($WORK)"
DATA="$WORK/data"
MODELS="$WORK/models"
"$BIN" generate --customers 2000 --seed 11 --out "$DATA" > "$WORK/generate.log"
# v1: the base features only. v2: with customer attributes (monthly_fee may be missing),
# promoted, so that a client pinning v1 asks for a version that is no longer production.
"$BIN" train --data "$DATA" --models "$MODELS" --algorithms gbdt,tree > "$WORK/train-v1.log"
END_DATE="$(cg_end_date "$MODELS/churn/v1/manifest.json")"
"$BIN" features --data "$DATA" --models "$MODELS" --as-of "$END_DATE" --out "$WORK/features-v1.csv"
"$BIN" train --data "$DATA" --models "$MODELS" \
    --categorical plan,channel,country --numeric monthly_fee > "$WORK/train-v2.log"
"$BIN" models promote --models "$MODELS" v2 > "$WORK/promote.log"
"$BIN" features --data "$DATA" --models "$MODELS" --as-of "$END_DATE" --out "$WORK/features-v2.csv"
"$BIN" score --data "$DATA" --models "$MODELS" --as-of "$END_DATE" --version v1 \
    --out "$WORK/scores-v1.csv" > "$WORK/score-v1.log"

step "churnguard serve"
KEY="oip-$RANDOM$RANDOM"
CHURNGUARD_API_KEYS="$KEY" cg_serve "$WORK/serve" --models "$MODELS"
ADDR="${CG_URL#http://}"

step "tritonclient against /v2"
"$PY" "$ROOT/tests/py/oip/test_tritonclient.py" --addr "$ADDR" --key "$KEY" \
    --features-v1 "$WORK/features-v1.csv" --features-v2 "$WORK/features-v2.csv" \
    --scores-v1 "$WORK/scores-v1.csv"
cg_done
