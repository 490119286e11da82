#!/usr/bin/env bash
# The Spark job (churnguard.spark) on a real local[2] session, loopback only, with the
# machine's Java: score_base with 4 buckets, and `python -m churnguard.spark score`,
# equal `churnguard score` on the same base for every customer and column
# (tests/py/spark/test_spark.py). Builds and installs the wheel like tests/python.sh
# (and fails the same way if that compiles polars).
#
#   bash tests/spark.sh
#
# Environment: CHURNGUARD_BIN, SPARK_WORK (default: a fresh temporary directory, removed
# when the run passes), PYTHON (default python3). Needs `java` (17) on PATH.
set -euo pipefail

# shellcheck source=lib/suite.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/suite.sh"
WORK="${SPARK_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/churnguard-spark.XXXXXX")}"
VENV="$ROOT/tests/py/.venv"

step "java"
if ! command -v java > /dev/null; then
    if [ "$(id -u)" != 0 ]; then
        echo "java is missing: apt-get install openjdk-17-jre-headless (as root)" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless > /dev/null
fi
java -version 2>&1 | head -1

step "python environment (tests/py/.venv, shared with tests/python.sh)"
# shellcheck source=lib/venv.sh
source "$ROOT/tests/lib/venv.sh"
cg_venv "$VENV" "$ROOT/tests/py/requirements.txt"

step "churnguard binary"
cg_bin

step "wheel"
# shellcheck source=lib/wheel.sh
source "$ROOT/tests/lib/wheel.sh"
cg_wheel "$VENV" "$WORK/maturin.log"

step "pytest with a local[2] Spark session ($WORK)"
# Loopback only (else the driver listens on the host's address); the workers' Python.
export SPARK_LOCAL_IP=127.0.0.1
export PYSPARK_PYTHON="$VENV/bin/python" PYSPARK_DRIVER_PYTHON="$VENV/bin/python"
t0=$(date +%s)
(cd "$WORK" && CHURNGUARD_BIN="$BIN" SPARK_WORK="$WORK/run" \
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$ROOT/tests/py/spark")
echo "spark tests $(( $(date +%s) - t0 ))s"
if [ -z "${SPARK_WORK:-}" ]; then
    rm -rf "$WORK"
fi
