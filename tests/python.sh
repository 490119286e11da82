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
# Idempotent: the venv (tests/py/python/.venv, git-ignored) is reused while its
# requirements file is unchanged. Environment: CHURNGUARD_BIN, PY_WORK (default: a fresh
# temporary directory, removed when the run passes), PYTHON (default python3).
set -euo pipefail

# shellcheck source=lib/suite.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/suite.sh"
WORK="${PY_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/churnguard-python.XXXXXX")}"
VENV="$ROOT/tests/py/python/.venv"

step "python environment (tests/py/python/.venv)"
# shellcheck source=lib/venv.sh
source "$ROOT/tests/lib/venv.sh"
cg_venv "$VENV" "$ROOT/tests/py/python/requirements.txt"

step "churnguard binary"
cg_bin

step "wheel (maturin build --release), with the workspace's build of polars"
mkdir -p "$WORK"
rm -f "$ROOT"/target/wheels/churnguard-*.whl
t0=$(date +%s)
# -i: the venv's interpreter (maturin would take the first python3 on PATH).
"$VENV/bin/maturin" build --release --locked -m "$ROOT/python/Cargo.toml" -i "$VENV/bin/python" -v \
    > "$WORK/maturin.log" 2>&1 || { tail -40 "$WORK/maturin.log"; exit 1; }
wheel_s=$(( $(date +%s) - t0 ))
if grep -q 'Compiling polars' "$WORK/maturin.log"; then
    grep 'Compiling polars\|Dirty polars' "$WORK/maturin.log" | head -20
    echo "FAIL: building the wheel recompiled polars: the binding must share the workspace's build (python/Cargo.toml: no polars features of its own)" >&2
    exit 1
fi
grep -E '^ *(Compiling|Finished)' "$WORK/maturin.log" | sed 's/^ */  /'
WHEEL="$(ls "$ROOT"/target/wheels/churnguard-*.whl)"
echo "built $WHEEL ($(du -h "$WHEEL" | cut -f1)) in ${wheel_s}s"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --force-reinstall "$WHEEL"

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
