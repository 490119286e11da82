# Sourced by bench/python/score_vs_cli.sh and bench/spark/run.sh: the venv the Python and
# Spark tests use (tests/py/.venv, pinned in tests/py/requirements.txt) with the churnguard
# wheel built from this tree and installed, the release binary, and a model to score with.
#
#   source bench/python/wheel_env.sh     # VENV, BIN, W, MODELS, AS_OF
#
# W (default /tmp/cg-pybench) holds the model: `churnguard train` on a 20,000-customer base
# generated with the same seed as bench/generate.sh's (so it scores that base), made once.
# AS_OF is the last day of that base's data. BENCH_REUSE_WHEEL=1 keeps the churnguard
# already installed in the venv (e.g. while another benchmark runs from it).

# shellcheck source=../../tests/lib/suite.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../tests/lib/suite.sh"
# shellcheck source=../../tests/lib/venv.sh
source "$ROOT/tests/lib/venv.sh"
# shellcheck source=../../tests/lib/wheel.sh
source "$ROOT/tests/lib/wheel.sh"
W="${W:-/tmp/cg-pybench}"
VENV="$ROOT/tests/py/.venv"
mkdir -p "$W"
step "venv and wheel"
cg_venv "$VENV" "$ROOT/tests/py/requirements.txt"
cg_bin
if [ "${BENCH_REUSE_WHEEL:-0}" = 1 ]; then
    echo "churnguard $("$VENV/bin/python" -c 'import churnguard; print(churnguard.__version__)') as installed (BENCH_REUSE_WHEEL=1)"
else
    cg_wheel "$VENV" "$W/maturin.log"
fi
MODELS="$W/models"
if [ ! -f "$MODELS/churn/aliases.json" ]; then
    step "model (train on a 20k base, seed 7)"
    "$BIN" generate --customers 20000 --seed 7 --out "$W/d20k" > /dev/null
    "$BIN" train --data "$W/d20k" --models "$MODELS" | tail -3
fi
AS_OF="$(cg_end_date "$(ls "$MODELS"/churn/v*/manifest.json | head -1)")"
echo "model: $MODELS (production), as of $AS_OF"
