#!/usr/bin/env bash
# Paired throughput of two churnguard binaries' /v1/score on the same model and bodies,
# for "no slower than before" checks of a refactoring (the peer comparison against FastAPI
# is run.sh). Rounds alternate A, B, A, B ... so machine drift hits both.
#
#   bash bench/service/versus.sh A_BIN B_BIN MODELS_DIR DATA_DIR AS_OF [ROUNDS] [SECONDS] [CONNS]
#
# Needs wrk (Debian's) and python3 (stdlib only). Prints one line per run and the medians.
set -euo pipefail
A="$(realpath "$1")" B="$(realpath "$2")" MODELS="$3" DATA="$4" AS_OF="$5"
ROUNDS="${6:-3}" SECS="${7:-10}" CONNS="${8:-16}"
HERE="$(cd "$(dirname "$0")" && pwd)"
W="$(mktemp -d /tmp/cg-versus.XXXX)"
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
export CHURNGUARD_LOG=warn CHURNGUARD_API_KEYS=benchkey
for v in $(compgen -v CHURNGUARD_ || true); do
    case "$v" in CHURNGUARD_LOG|CHURNGUARD_API_KEYS) ;; *) unset "$v" ;; esac
done
command -v wrk > /dev/null || apt-get install -y -qq wrk > /dev/null
"$B" features --data "$DATA" --as-of "$AS_OF" --models "$MODELS" --out "$W/features.csv" > /dev/null
python3 - "$W/features.csv" "$W/bodies.jsonl" <<'PY'
import csv, json, random, sys
rows = list(csv.DictReader(open(sys.argv[1])))
random.Random(6).shuffle(rows)
with open(sys.argv[2], "w") as out:
    for r in rows[:256]:
        cid = r.pop("customer_id")
        feats = {k: (None if v == "" else float(v)) for k, v in r.items()}
        out.write(json.dumps({"customer_id": cid, "features": feats}) + "\n")
PY
port=18190
run() { # run LABEL BIN
    local m="$W/models-$1"; rm -rf "$m"; cp -a "$MODELS" "$m"; rm -f "$m"/*/alerts.db*
    "$2" serve --models "$m" --bind 127.0.0.1:$port > "$W/$1.log" 2>&1 & local pid=$!
    for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/readyz > /dev/null && break; sleep 0.1; done
    BODIES="$W/bodies.jsonl" API_KEY=benchkey wrk -t2 -c"$CONNS" -d2s -s "$HERE/score.lua" http://127.0.0.1:$port/v1/score > /dev/null
    local t0; t0=$(awk '{print $14+$15}' /proc/$pid/stat)
    BODIES="$W/bodies.jsonl" API_KEY=benchkey wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -s "$HERE/score.lua" \
        http://127.0.0.1:$port/v1/score > "$W/wrk-$1.txt"
    local t1; t1=$(awk '{print $14+$15}' /proc/$pid/stat)
    kill $pid; wait $pid 2>/dev/null || true
    local rps p99 n non2xx
    rps=$(awk '/Requests\/sec/{print $2}' "$W/wrk-$1.txt")
    p99=$(awk '$1=="99%"{print $2}' "$W/wrk-$1.txt")
    n=$(awk '/requests in/{print $1}' "$W/wrk-$1.txt")
    non2xx=$(awk '/Non-2xx/{print $5}' "$W/wrk-$1.txt"); non2xx=${non2xx:-0}
    printf "%s\t%s\t%s\t%s\t%.1f\n" "$1" "$rps" "$p99" "$non2xx" "$(echo "($t1-$t0)*10000/$n" | bc -l)" | tee -a "$W/results.tsv"
}
printf "run\treq/s\tp99\tnon2xx\tserver_cpu_us_per_req\n"
for r in $(seq "$ROUNDS"); do run "A$r" "$A"; run "B$r" "$B"; done
python3 - "$W/results.tsv" <<'PY'
import sys, statistics as st
rows = [l.split("\t") for l in open(sys.argv[1])]
for side in "AB":
    rs = [float(r[1]) for r in rows if r[0].startswith(side)]
    cpu = [float(r[4]) for r in rows if r[0].startswith(side)]
    print(f"{side}: median {st.median(rs):.0f} req/s, server CPU {st.median(cpu):.1f} us/req")
a = [float(r[1]) for r in rows if r[0].startswith("A")]; b = [float(r[1]) for r in rows if r[0].startswith("B")]
print("A/B req/s per round:", " ".join(f"{x/y:.3f}" for x, y in zip(a, b)), f"median {st.median([x/y for x,y in zip(a,b)]):.3f}")
PY
