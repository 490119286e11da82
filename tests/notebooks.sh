#!/usr/bin/env bash
# Executes every notebook in notebooks/ headless on a small generated customer base, with the
# churnguard wheel (built like tests/python.sh: the workspace's one build of polars) installed
# in their venv, and fails on any cell error (or on a notebook committed with outputs). The
# notebooks call the Python API (features, training set, scores, explanations); the registry
# and two nights of score files + summaries are written by the CLI, as the jobs would.
# Before that, tests/py/outputs/check_outputs.py reads the same outputs with pandas, pyarrow,
# polars and DuckDB (their own venv, tests/py/outputs/requirements.txt) and checks their types.
#
#   bash tests/notebooks.sh
#
# Idempotent: the Python environment (notebooks/.venv, git-ignored) is reused while
# notebooks/requirements.txt is unchanged (the wheel is rebuilt and reinstalled on every run);
# the work directory is rebuilt on every run.
# Environment: CHURNGUARD_BIN (a churnguard binary; default: build target/release/churnguard),
# NOTEBOOKS_VENV, NOTEBOOKS_WORK (default: $TMPDIR/churnguard-notebooks), PYTHON (default python3).
set -euo pipefail

# shellcheck source=lib/suite.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/suite.sh"
VENV="${NOTEBOOKS_VENV:-$ROOT/notebooks/.venv}"
WORK="${NOTEBOOKS_WORK:-${TMPDIR:-/tmp}/churnguard-notebooks}"
PYTHON="${PYTHON:-python3}"

step "notebooks are committed without outputs"
"$PYTHON" - notebooks/*.ipynb <<'PY'
import json, sys
bad = []
for path in sys.argv[1:]:
    nb = json.load(open(path))
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
            bad.append(f"{path}: cell {i} has outputs (clear them before committing)")
if bad:
    sys.exit("\n".join(bad))
print(f"{len(sys.argv) - 1} notebooks, no outputs")
PY

step "python environment ($VENV)"
# shellcheck source=lib/venv.sh
source "$ROOT/tests/lib/venv.sh"
cg_venv "$VENV" "$ROOT/notebooks/requirements.txt"

step "churnguard binary"
cg_bin

step "churnguard wheel, installed into $VENV"
# shellcheck source=lib/wheel.sh
source "$ROOT/tests/lib/wheel.sh"
cg_wheel "$VENV" "$WORK.maturin.log"

step "sample outputs ($WORK)"
rm -rf "$WORK"
mkdir -p "$WORK/scores" "$WORK/executed"
DATA="$WORK/data"
MODELS="$WORK/models"
ATTRS=(--categorical plan,channel,country --numeric monthly_fee)
"$BIN" generate --customers 3000 --seed 7 --out "$DATA" > "$WORK/generate.log"
"$BIN" train --data "$DATA" --models "$MODELS" "${ATTRS[@]}" > "$WORK/train-v1.log"
# A second version (other algorithms, no customer attributes), so that the comparison
# notebook has a different champion and feature schema to compare.
"$BIN" train --data "$DATA" --models "$MODELS" --algorithms gbdt,tree > "$WORK/train-v2.log"
# Two nightly runs (notebook 04 reads their files and summaries): the latest validation
# snapshot and the last day of data.
read -r VAL_DATE END_DATE < <("$VENV/bin/python" - "$MODELS/churn/v1/manifest.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
val = [s["as_of"] for s in m["snapshots"] if s["split"] == "validation"][-1]
print(val[:10], m["training_data"]["time_range"][1][:10])
PY
)
for d in "$VAL_DATE" "$END_DATE"; do
    "$BIN" score --data "$DATA" --models "$MODELS" --as-of "$d" --out "$WORK/scores/$d.parquet" \
        --outbox "$WORK/alerts.db" > "$WORK/score-$d.log"
done
# The exports check_outputs.py reads (the notebooks compute theirs through the Python API).
"$BIN" features --data "$DATA" --models "$MODELS" --as-of "$END_DATE" --out "$WORK/features.parquet"
"$BIN" features --data "$DATA" --training-set "${ATTRS[@]}" --out "$WORK/training_set.parquet"

"$BIN" score --data "$DATA" --models "$MODELS" --as-of "$END_DATE" --out "$WORK/scores-$END_DATE.csv" \
    --outbox "$WORK/alerts-csv.db" > "$WORK/score-csv.log"

step "outputs read as they are by pandas, pyarrow, polars and DuckDB"
OUT_VENV="${OUTPUTS_VENV:-$ROOT/tests/py/outputs/.venv}"
cg_venv "$OUT_VENV" "$ROOT/tests/py/outputs/requirements.txt"
"$OUT_VENV/bin/python" "$ROOT/tests/py/outputs/check_outputs.py" \
    "$WORK/scores/$END_DATE.parquet" "$WORK/scores-$END_DATE.csv" "$WORK/training_set.parquet" \
    "$WORK/features.parquet" "$MODELS/churn/v1/validation_predictions.parquet" \
    "$WORK/scores/$END_DATE.parquet.summary.json"

step "executing notebooks"
export CHURNGUARD_DATA="$DATA" CHURNGUARD_MODELS="$MODELS" CHURNGUARD_NAME=churn
export CHURNGUARD_NB_SCORES_DIR="$WORK/scores"
passed=0
failed=0
for nb in notebooks/*.ipynb; do
    if "$VENV/bin/jupyter" nbconvert --to notebook --execute --log-level=WARN \
        --ExecutePreprocessor.timeout=600 --output-dir "$WORK/executed" "$nb"; then
        echo "ok   $nb"
        passed=$((passed + 1))
    else
        echo "FAIL $nb"
        failed=$((failed + 1))
    fi
done
echo "executed notebooks: $WORK/executed"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
