#!/usr/bin/env bash
# TreeSHAP throughput of the nightly batch (issue 14's target: a 300-tree depth-6 gbdt
# explained at 50k customers/s or more on the 2 cores), measured through the real path:
# `churnguard score` (features, margin, exact TreeSHAP, top-3 reasons, score file) on a
# generated base, scored by the binary under test and, in the same run and in turn, by
# a baseline binary (a build of an older commit), then the two score files compared.
#
#   bash bench/shap/run.sh [BASELINE_BINARY]
#
# Env:  CG_BENCH_DIR  work directory [default: /tmp/churnguard-shap-bench]
#       CG_BIN        the binary under test [default: cargo build --release --locked]
#       CUSTOMERS     customers of the scored base [default: 100000]
#       RUNS          timed runs of each binary [default: 5]
#
# The model: `train --algorithms gbdt` on a 20k-customer base with the `[gbdt]` config
# section fixing 300 rounds, depth 6 and no early stopping (bench/shap/gbdt300.toml).
# Each run prints the "scoring" stage seconds of its summary.json (data loading and
# writing excluded: the stage this target is about) and /usr/bin/time's wall and CPU
# seconds of the whole process; medians at the end, and the ratio baseline/new of the
# scoring stage, pair by pair. Requires GNU time at /usr/bin/time and python3.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$ROOT/bench/shap"
BASE_BIN="${1:-}"
RUNS="${RUNS:-5}"
# shellcheck source=fixture.sh
source "$HERE/fixture.sh"
TREES=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['candidates'][0]['params']['trees_kept'])" "$W/models/churn/v1/metrics.json")
echo "model: gbdt, $TREES trees, depth 6; scored base: $CUSTOMERS customers; load before: $(cut -d' ' -f1-3 /proc/loadavg)"

# score NAME BIN [extra flags]: one run; prints "customers scoring_s wall_s cpu_s".
score() {
    local name="$1" bin="$2"; shift 2
    rm -f "$W/$name.csv" "$W/$name.csv.summary.json" "$W/$name.db"
    /usr/bin/time -f "%e %U %S" -o "$W/$name.time" "$bin" score --data "$W/score$CUSTOMERS" \
        --models "$W/models" --as-of "$AS_OF" --out "$W/$name.csv" --outbox "$W/$name.db" "$@" > "$W/$name.log" 2>&1
    python3 - "$W/$name.csv.summary.json" "$W/$name.time" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
wall, user, sys_ = map(float, open(sys.argv[2]).read().split()[-3:])
print(d["customers_scored"], d["seconds"]["scoring"], wall, user + sys_)
PY
}

printf "%-9s %4s %10s %10s %12s %8s %8s\n" binary run customers scoring_s "customers/s" wall_s cpu_s
: > "$W/runs.tsv"
for i in $(seq 1 "$RUNS"); do
    for who in new base; do
        [[ $who == base && -z "$BASE_BIN" ]] && continue
        bin="$CG_BIN"; [[ $who == base ]] && bin="$BASE_BIN"
        read -r n s wall cpu < <(score "$who" "$bin")
        printf "%s\t%s\t%s\t%s\t%s\t%s\n" "$who" "$i" "$n" "$s" "$wall" "$cpu" >> "$W/runs.tsv"
        printf "%-9s %4s %10s %10.3f %12.0f %8.2f %8.2f\n" "$who" "$i" "$n" "$s" "$(python3 -c "print($n/$s)")" "$wall" "$cpu"
    done
done
python3 - "$W/runs.tsv" <<'PY'
import statistics, sys
runs = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
by = {}
for who, i, n, s, wall, cpu in runs:
    by.setdefault(who, []).append((int(n), float(s), float(wall), float(cpu)))
for who, rs in by.items():
    n = rs[0][0]
    s = statistics.median(r[1] for r in rs)
    print(f"median {who}: scoring {s:.3f} s = {n / s:,.0f} customers/s; "
          f"wall {statistics.median(r[2] for r in rs):.2f} s, cpu {statistics.median(r[3] for r in rs):.2f} s")
if "base" in by:
    ratios = [b[1] / a[1] for a, b in zip(by["new"], by["base"])]
    print(f"scoring stage, base/new pair by pair: median {statistics.median(ratios):.2f}x "
          f"(min {min(ratios):.2f}, max {max(ratios):.2f})")
PY
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

if [[ -n "$BASE_BIN" ]]; then
    echo "== same scores? (top-3 reasons; then every contribution with --contributions)"
    python3 "$HERE/compare_scores.py" "$W/new.csv" "$W/base.csv"
    score new_all "$CG_BIN" --contributions > /dev/null
    score base_all "$BASE_BIN" --contributions > /dev/null
    python3 "$HERE/compare_scores.py" "$W/new_all.csv" "$W/base_all.csv"
fi
