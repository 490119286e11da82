#!/usr/bin/env bash
# Issue 13 target 2: `score` of a base in customer buckets (--memory-budget) against the
# same base scored whole: peak RSS, wall time, and byte-identical outputs.
#
#   bash bench/buckets/run.sh WORK CUSTOMERS [BUDGET...]
#
# WORK: a directory with room for the base (1M customers: about 0.6 GB; 10M: 5.4 GB).
# Generates WORK/base<CUSTOMERS> (seed 42) unless it is there, trains a gbdt model on a
# 20,000-customer base of the same generator (WORK/models), then scores the base once
# per budget (`whole` = 64GiB, i.e. no buckets), each into a fresh directory, with
# /usr/bin/time -v, and compares each bucketed run's score file and history partition
# bytes and summary (timings aside) with the first run's. Runs at nice 19.
# Environment: CHURNGUARD_BIN (default target/release/churnguard), AS_OF (2024-12-20).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${CHURNGUARD_BIN:-$ROOT/target/release/churnguard}"
WORK="$1"; N="$2"; shift 2
if [ $# -gt 0 ]; then BUDGETS=("$@"); else BUDGETS=(whole 2GiB); fi
AS_OF="${AS_OF:-2024-12-20}"
mkdir -p "$WORK"
BASE="$WORK/base$N"
if [ ! -d "$BASE" ]; then
    /usr/bin/time -f "generate $N: %e s wall, peak %M KiB" nice -n 19 "$BIN" generate --customers "$N" --out "$BASE" > /dev/null
fi
if [ ! -d "$WORK/models/churn" ]; then
    nice -n 19 "$BIN" generate --customers 20000 --out "$WORK/train20k" > /dev/null
    nice -n 19 "$BIN" train --data "$WORK/train20k" --models "$WORK/models" > "$WORK/train.log" 2>&1
fi
first=""
for budget in "${BUDGETS[@]}"; do
    run="$WORK/run-$N-$budget"
    rm -rf "$run"; mkdir -p "$run"
    flag="$budget"; [ "$budget" = whole ] && flag=64GiB
    /usr/bin/time -v -o "$run/time" nice -n 19 "$BIN" score --data "$BASE" --models "$WORK/models" \
        --as-of "$AS_OF" --out "$run/scores.parquet" --outbox "$run/alerts.db" \
        --memory-budget "$flag" > "$run/stdout" 2>&1
    wall=$(grep "Elapsed (wall clock)" "$run/time" | awk '{print $NF}')
    peak=$(grep "Maximum resident" "$run/time" | awk '{print $NF}')
    buckets=$(grep -o "in [0-9]* customer buckets" "$run/stdout" | awk '{print $2}' || true)
    stages=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(' '.join(f'{k}={v:.1f}' for k,v in sorted(d['seconds'].items())))" "$run/scores.parquet.summary.json")
    same=""
    if [ -z "$first" ]; then
        first="$run"
    else
        norm() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); d.pop('seconds'); d.pop('output'); print(json.dumps(d, sort_keys=True))" "$1"; }
        if cmp -s "$first/scores.parquet" "$run/scores.parquet" \
            && cmp -s "$first/history/as_of=$AS_OF/part.parquet" "$run/history/as_of=$AS_OF/part.parquet" \
            && [ "$(norm "$first/scores.parquet.summary.json")" = "$(norm "$run/scores.parquet.summary.json")" ]; then
            same="identical to $(basename "$first")"
        else
            same="DIFFERS from $(basename "$first")"
        fi
    fi
    echo "$N customers, budget $budget: buckets ${buckets:-1}, wall $wall, peak $((peak / 1024)) MiB, stages [$stages] $same"
done
