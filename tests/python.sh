#!/usr/bin/env bash
# The Python package: builds the wheel with maturin (sharing the workspace's one build of
# polars: the run FAILS if maturin compiles any polars crate), installs it into a venv
# and runs pytest over the installed wheel against the CLI on a generated base
# (tests/py/python/test_churnguard.py): features, training set and scores equal the
# CLI's for every row and column, bad input raises with the CLI's message, frames and
# directories give the same result. Prints how long the wheel build and the tests took.
#
#   bash tests/python.sh
#
# Idempotent: the venv (tests/py/.venv, git-ignored, shared with tests/spark.sh) is reused
# while tests/py/requirements.txt is unchanged. Environment: CHURNGUARD_BIN, PY_WORK (default: a fresh
# temporary directory, removed when the run passes), PYTHON (default python3).
set -euo pipefail

# shellcheck source=lib/suite.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/suite.sh"
WORK="${PY_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/churnguard-python.XXXXXX")}"
VENV="$ROOT/tests/py/.venv"

step "python environment (tests/py/.venv)"
# shellcheck source=lib/venv.sh
source "$ROOT/tests/lib/venv.sh"
cg_venv "$VENV" "$ROOT/tests/py/requirements.txt"

step "churnguard binary"
cg_bin

step "wheel (maturin build --release), with the workspace's build of polars"
# shellcheck source=lib/wheel.sh
source "$ROOT/tests/lib/wheel.sh"
cg_wheel "$VENV" "$WORK/maturin.log"
wheel_s=$WHEEL_SECONDS

step "pytest over the installed wheel ($WORK)"
t0=$(date +%s)
# From $WORK, so that `import churnguard` is the installed wheel, never python/churnguard.
(cd "$WORK" && CHURNGUARD_BIN="$BIN" PY_WORK="$WORK/run" \
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$ROOT/tests/py/python")
tests_s=$(( $(date +%s) - t0 ))
echo "wheel build ${wheel_s}s, tests ${tests_s}s"
if [ -z "${PY_WORK:-}" ]; then
    rm -rf "$WORK"
fi
