#!/usr/bin/env bash
# The service side of issue 14's target: p99 latency of `POST /v1/score` (default top-3
# reasons) at 16 connections with the 300-tree depth-6 gbdt of bench/shap/run.sh, the
# binary under test against a baseline binary, in turn (new, base, new, base ...), each
# served fresh for each wrk run.
#
#   bash bench/shap/service.sh BASELINE_BINARY
#
# Env:  CG_BENCH_DIR  the work directory of bench/shap/run.sh (run it first: the model
#                     and the bases are taken from there) [default: /tmp/churnguard-shap-bench]
#       CG_BIN        the binary under test [default: $CG_BENCH_DIR/churnguard]
#       ROUNDS        wrk runs of each binary [default: 3]
#       DURATION      seconds per wrk run, after a discarded 2 s warm-up [default: 10]
# Needs wrk (Debian's) and python3; the load generator shares the machine's 2 cores.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
W="${CG_BENCH_DIR:-/tmp/churnguard-shap-bench}"
CG_BIN="${CG_BIN:-$W/churnguard}"
BASE_BIN="${1:?usage: service.sh BASELINE_BINARY}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
PORT=18093
[[ -f "$W/models/churn/v1/manifest.json" ]] || { echo "run bench/shap/run.sh first" >&2; exit 2; }

if [[ ! -f "$W/bodies.jsonl" ]]; then
    "$CG_BIN" features --data "$W/train20k" --as-of 2025-01-01 --models "$W/models" --out "$W/features.csv" > /dev/null
    python3 "$HERE/bodies.py" "$W/features.csv" "$W/models/churn/v1/manifest.json" "$W/bodies.jsonl" 256
fi

SERVER=""
trap '[[ -n "$SERVER" ]] && kill "$SERVER" 2> /dev/null || true' EXIT
one() { # one NAME BIN -> "p50_ms p99_ms requests_per_s non2xx"
    local name="$1" bin="$2"
    rm -rf "$W/serve-$name" && cp -r "$W/models" "$W/serve-$name"
    CHURNGUARD_API_KEYS=benchkey "$bin" serve --models "$W/serve-$name" --bind "127.0.0.1:$PORT" > "$W/serve-$name.log" 2>&1 &
    SERVER=$!
    for _ in $(seq 1 100); do
        curl -fs "http://127.0.0.1:$PORT/readyz" > /dev/null 2>&1 && break
        sleep 0.2
    done
    BODIES="$W/bodies.jsonl" API_KEY=benchkey wrk -t2 -c16 -d2s -s "$HERE/../service/score.lua" "http://127.0.0.1:$PORT" > /dev/null 2>&1
    BODIES="$W/bodies.jsonl" API_KEY=benchkey wrk -t2 -c16 -d"${DURATION}s" --latency -s "$HERE/../service/score.lua" \
        "http://127.0.0.1:$PORT" > "$W/wrk-$name.txt" 2>&1
    kill "$SERVER"; wait "$SERVER" 2> /dev/null || true; SERVER=""
    python3 - "$W/wrk-$name.txt" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def ms(v):
    n, u = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[u]
p50 = ms(re.search(r"^\s*50%\s+(\S+)", t, re.M).group(1))
p99 = ms(re.search(r"^\s*99%\s+(\S+)", t, re.M).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
print(p50, p99, rps, bad.group(1) if bad else 0)
PY
}

echo "POST /v1/score, 16 connections, ${DURATION} s a run; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-5s %3s %9s %9s %10s %7s\n" binary run p50_ms p99_ms "requests/s" non2xx
: > "$W/service.tsv"
for i in $(seq 1 "$ROUNDS"); do
    for who in new base; do
        bin="$CG_BIN"; [[ $who == base ]] && bin="$BASE_BIN"
        read -r p50 p99 rps bad < <(one "$who" "$bin")
        printf "%s\t%s\t%s\t%s\t%s\n" "$who" "$p50" "$p99" "$rps" "$bad" >> "$W/service.tsv"
        printf "%-5s %3s %9.2f %9.2f %10.0f %7s\n" "$who" "$i" "$p50" "$p99" "$rps" "$bad"
    done
done
python3 - "$W/service.tsv" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
by = {}
for who, p50, p99, rps, bad in rows:
    by.setdefault(who, []).append((float(p50), float(p99), float(rps)))
for who, rs in by.items():
    print(f"median {who}: p50 {statistics.median(r[0] for r in rs):.2f} ms, "
          f"p99 {statistics.median(r[1] for r in rs):.2f} ms, {statistics.median(r[2] for r in rs):,.0f} requests/s")
r = [b[1] / a[1] for a, b in zip(by["new"], by["base"])]
print(f"p99 base/new pair by pair: median {statistics.median(r):.2f}x (min {min(r):.2f}, max {max(r):.2f})")
PY
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
