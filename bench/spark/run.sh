#!/usr/bin/env bash
# The Spark job (`python -m churnguard.spark score`) on a local[2] session against the CLI's
# `churnguard score` on the same base: wall time and peak RSS of the JVM (driver + executor
# in local mode), the driver's Python and every Python worker (bench/spark/peak_rss.py
# samples /proc), for each bucket count given. More buckets make each Python task's base
# smaller: a worker's peak should follow the bucket (customers / buckets), not the base.
#
#   bash bench/spark/run.sh [DATA] [BUCKETS ...]      (defaults: /tmp/cg1m, 16 64)
#
# Environment: SPARK_DRIVER_MEMORY (default 4g: local mode's executor lives in the driver
# JVM, whose default heap of 1g spills the 1M base's shuffle), W (see wheel_env.sh).
set -euo pipefail
DATA="$(realpath "${1:-/tmp/cg1m}")"
shift || true
BUCKETS=("$@")
[ ${#BUCKETS[@]} -gt 0 ] || BUCKETS=(16 64)
# shellcheck source=../python/wheel_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/../python/wheel_env.sh"

export SPARK_LOCAL_IP=127.0.0.1
export PYSPARK_PYTHON="$VENV/bin/python" PYSPARK_DRIVER_PYTHON="$VENV/bin/python"
export PYSPARK_SUBMIT_ARGS="--driver-memory ${SPARK_DRIVER_MEMORY:-4g} --conf spark.ui.enabled=false --conf spark.ui.showConsoleProgress=false pyspark-shell"
PEAK=("$VENV/bin/python" "$ROOT/bench/spark/peak_rss.py")

step "CLI: churnguard score ($DATA)"
rm -rf "$W/cli-spark" && mkdir -p "$W/cli-spark"
"${PEAK[@]}" --label cli -- "$BIN" score --data "$DATA" --models "$MODELS" --as-of "$AS_OF" \
    --out "$W/cli-spark/scores.parquet" --outbox "$W/cli-spark/alerts.db" > "$W/cli-spark.log"
tail -n 3 "$W/cli-spark.log"

for n in "${BUCKETS[@]}"; do
    step "Spark local[2]: python -m churnguard.spark score --buckets $n"
    rm -rf "$W/spark-$n"
    "${PEAK[@]}" --label "spark $n buckets" -- "$VENV/bin/python" -m churnguard.spark score \
        --data "$DATA" --models "$MODELS" --as-of "$AS_OF" --out "$W/spark-$n" --buckets "$n" \
        2> "$W/spark-$n.err" | tail -n 12
    "$VENV/bin/python" - "$W/cli-spark/scores.parquet" "$W/spark-$n" <<'PY'
import sys
import polars as pl
cli = pl.read_parquet(sys.argv[1]).sort("customer_id")
spark = pl.read_parquet(sys.argv[2] + "/*.parquet").sort("customer_id")
same = cli.height == spark.height and cli["customer_id"].equals(spark["customer_id"])
diff = (cli["churn_probability"] - spark["churn_probability"]).abs().max() if same else None
print(f"  rows: cli {cli.height}, spark {spark.height}; same customers: {same}; max |dp| {diff}")
PY
done
