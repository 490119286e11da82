#!/usr/bin/env bash
# Checks churnguard's reasons with the Python `shap` package itself: `churnguard models
# export --trees` writes each tree model (tree, forest, gbdt) as the custom-model dictionary
# shap.TreeExplainer takes; shap's path-dependent SHAP values of the table `churnguard
# features --models` writes must equal `churnguard score --contributions` within 1e-6
# (tests/py/shap/check_shap.py).
#
#   bash tests/shap_check.sh
#
# Idempotent: the Python environment (tests/py/shap/.venv, git-ignored) is reused while the
# requirements file is unchanged. Environment: CHURNGUARD_BIN, SHAP_WORK (default: a fresh
# temporary directory, removed when the run passes), PYTHON (default python3).
set -euo pipefail

# shellcheck source=lib/suite.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/suite.sh"
cg_work SHAP_WORK shap

step "python environment (tests/py/shap/.venv)"
# shellcheck source=lib/venv.sh
source "$ROOT/tests/lib/venv.sh"
cg_venv "$ROOT/tests/py/shap/.venv" "$ROOT/tests/py/shap/requirements.txt"
PY="$ROOT/tests/py/shap/.venv/bin/python"

step "churnguard binary"
cg_bin

step "sample, one model per tree algorithm, features, scores with contributions ($WORK)"
DATA="$WORK/data"
MODELS="$WORK/models"
"$BIN" generate --customers 3000 --seed 23 --out "$DATA" > "$WORK/generate.log"
ARGS=()
for algo in tree forest gbdt; do
    # Customer attributes too: one-hot levels and a numeric column that may be undefined.
    "$BIN" train --data "$DATA" --models "$MODELS" --name "$algo" --algorithms "$algo" \
        --categorical plan,channel,country --numeric monthly_fee > "$WORK/train-$algo.log"
    END_DATE="$(cg_end_date "$MODELS/$algo/v1/manifest.json")"
    "$BIN" models export --models "$MODELS" --name "$algo" --trees "$WORK/$algo.json"
    "$BIN" features --data "$DATA" --models "$MODELS" --name "$algo" --as-of "$END_DATE" \
        --out "$WORK/features-$algo.csv"
    "$BIN" score --data "$DATA" --models "$MODELS" --name "$algo" --as-of "$END_DATE" \
        --contributions --out "$WORK/scores-$algo.csv" > "$WORK/score-$algo.log"
    ARGS+=(--export "$WORK/$algo.json" --features "$WORK/features-$algo.csv" --scores "$WORK/scores-$algo.csv")
done

step "shap.TreeExplainer against churnguard"
"$PY" "$ROOT/tests/py/shap/check_shap.py" "${ARGS[@]}"
cg_done
