#!/usr/bin/env bash
# Issue 13 target 4: churnguard's gbdt scoring (probability, calibration, health, tier and
# the top-3 reasons from exact TreeSHAP, both cores) against LightGBM's `predict_proba`
# on the same feature matrix with the same tree count and depth (300 trees, depth 6), and
# churnguard's logistic scoring against scikit-learn's `predict_proba`, in one run.
#
#   bash bench/shap/vs_lightgbm.sh
#
# Env:  CG_BENCH_DIR  work directory [default: /tmp/churnguard-shap-bench, shared with run.sh]
#       CG_BIN        the binary under test [default: cargo build --release --locked]
#       CUSTOMERS     customers of the scored base [default: 100000]
#       RUNS          churnguard `score` runs of each model (the best is reported) [default: 3]
#
# The matrix is what `score` scores: `churnguard features --as-of 2025-01-01 --models M`
# of the scored base (Parquet). The peers are fitted on `features --training-set` of the
# training base (bench/python/score_throughput.py: LightGBM with churnguard's gbdt
# hyper-parameters and --trees 300, depth 6; scikit-learn's pipeline for logistic);
# churnguard's number is the `scoring` stage of each `score` run's summary (the same
# 74,064 rows at the defaults). The Python peers come from bench/python/setup.sh
# (bench/python/requirements.txt, pinned).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$ROOT/bench/shap"
RUNS="${RUNS:-3}"
# shellcheck source=fixture.sh
source "$HERE/fixture.sh"
bash "$ROOT/bench/python/setup.sh" > /dev/null
PY="$ROOT/bench/.venv/bin/python"
if [[ ! -f "$W/models-logistic/churn/v1/manifest.json" ]]; then
    rm -rf "$W/models-logistic"
    # shellcheck disable=SC2086
    "$CG_BIN" train --data "$W/train20k" --models "$W/models-logistic" --algorithms logistic $CAT \
        > "$W/train-logistic.log"
fi
# shellcheck disable=SC2086
[[ -f "$W/training_set.parquet" ]] || "$CG_BIN" features --data "$W/train20k" --training-set $CAT \
    --out "$W/training_set.parquet" > /dev/null
[[ -f "$W/matrix$CUSTOMERS.parquet" ]] || "$CG_BIN" features --data "$W/score$CUSTOMERS" --as-of "$AS_OF" \
    --models "$W/models" --out "$W/matrix$CUSTOMERS.parquet" > /dev/null

# best NAME MODELS: the summary of the run with the shortest scoring stage among RUNS.
best() {
    local name="$1" models="$2" best_s=""
    for i in $(seq 1 "$RUNS"); do
        rm -f "$W/vs_$name.$i.parquet" "$W/vs_$name.$i.parquet.summary.json" "$W/vs_$name.$i.db"
        "$CG_BIN" score --data "$W/score$CUSTOMERS" --models "$models" --as-of "$AS_OF" \
            --out "$W/vs_$name.$i.parquet" --outbox "$W/vs_$name.$i.db" > /dev/null 2>&1
        s=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['seconds']['scoring'])" "$W/vs_$name.$i.parquet.summary.json")
        echo "churnguard $name run $i: scoring stage $s s" >&2
        if [[ -z "$best_s" ]] || python3 -c "import sys; sys.exit(not float(sys.argv[1]) < float(sys.argv[2]))" "$s" "$best_s"; then
            best_s="$s"
            cp "$W/vs_$name.$i.parquet.summary.json" "$W/vs_$name.best.summary.json"
        fi
    done
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
best gbdt "$W/models"
best logistic "$W/models-logistic"
"$PY" "$ROOT/bench/python/score_throughput.py" "$W/matrix$CUSTOMERS.parquet" "$W/training_set.parquet" \
    --trees 300 --repeats "$RUNS" \
    --cg "gbdt=$W/vs_gbdt.best.summary.json" --cg "logistic=$W/vs_logistic.best.summary.json" 2> /dev/null
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
