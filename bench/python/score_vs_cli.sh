#!/usr/bin/env bash
# Python `model.score(base, as_of=...)` against the CLI's `churnguard score` on the same base,
# back to back under farm-bench (A = Python, B = CLI, ratio A/B pair by pair), whole
# processes: the Python side loads the base (CustomerBase.from_dir), the model, scores and
# writes the frame as Parquet (bench/python/score_api.py); the CLI loads, scores, writes its
# file, summary, history partition and alert state. Issue 12's target: within 10%.
#
#   bash bench/python/score_vs_cli.sh [DATA] [RUNS]     (defaults: /tmp/cg1m, 3)
#
# DATA: a base from bench/generate.sh (`churnguard generate --customers 1000000 --seed 7`).
# Each run's own report (stage times of the Python side) lands in $W/py.log and $W/cli.log.
set -euo pipefail
DATA="$(realpath "${1:-/tmp/cg1m}")"
RUNS="${2:-3}"
# shellcheck source=wheel_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/wheel_env.sh"

step "farm-bench: A = python score_api.py, B = churnguard score ($DATA, $RUNS runs)"
rm -f "$W/py.log" "$W/cli.log"
farm-bench -n "$RUNS" --timeout 3600 \
    --vs "sh -c 'rm -rf $W/cli && mkdir $W/cli && exec $BIN score --data $DATA --models $MODELS --as-of $AS_OF --out $W/cli/scores.parquet --outbox $W/cli/alerts.db >> $W/cli.log 2>&1'" \
    -- sh -c "exec $VENV/bin/python $ROOT/bench/python/score_api.py --data $DATA --models $MODELS --as-of $AS_OF --out $W/py-scores.parquet >> $W/py.log 2>&1"
echo
echo "python stages (every run, the warm-up first):"
grep -E 'from_dir|Model.load|score |write_parquet|scored' "$W/py.log" | sed 's/^/  /'
