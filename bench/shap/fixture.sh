# Sourced by bench/shap/run.sh and bench/shap/vs_lightgbm.sh: the shared work directory,
# the binary under test, the two generated bases and the 300-tree depth-6 gbdt model.
#
#   RUNS=5; source "$ROOT/bench/shap/fixture.sh"   # sets W, CUSTOMERS, RUNS, AS_OF, CG_BIN
#
# Env:  CG_BENCH_DIR  work directory [default: /tmp/churnguard-shap-bench]
#       CG_BIN        the binary under test [default: cargo build --release --locked]
#       CUSTOMERS     customers of the scored base [default: 100000]
#
# The model: `train --algorithms gbdt` on a 20k-customer base (seed 7) with the `[gbdt]`
# config section fixing 300 rounds, depth 6 and no early stopping (gbdt300.toml); the
# scored base is CUSTOMERS customers of seed 8. Both are kept across runs.
W="${CG_BENCH_DIR:-/tmp/churnguard-shap-bench}"
CUSTOMERS="${CUSTOMERS:-100000}"
AS_OF=2025-01-01
CAT="--categorical plan,channel,country --numeric monthly_fee"
mkdir -p "$W"

if [[ -z "${CG_BIN:-}" ]]; then
    (cd "$ROOT" && cargo build --release --locked --quiet)
    cp "$ROOT/target/release/churnguard" "$W/churnguard"
    CG_BIN="$W/churnguard"
fi

[[ -d "$W/train20k" ]] || "$CG_BIN" generate --customers 20000 --seed 7 --out "$W/train20k" > /dev/null
[[ -d "$W/score$CUSTOMERS" ]] || "$CG_BIN" generate --customers "$CUSTOMERS" --seed 8 --out "$W/score$CUSTOMERS" > /dev/null
if [[ ! -f "$W/models/churn/v1/manifest.json" ]]; then
    rm -rf "$W/models"
    # shellcheck disable=SC2086
    "$CG_BIN" train --config "$ROOT/bench/shap/gbdt300.toml" --data "$W/train20k" --models "$W/models" \
        --algorithms gbdt $CAT > "$W/train.log"
fi
