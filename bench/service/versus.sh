#!/usr/bin/env bash
# Paired throughput, p99 and server CPU per request of two `/v1/score` services on the
# same model and bodies, measured in the same run. Side B is another churnguard binary
# (a "no slower than before" check of a change) or `fastapi`: the FastAPI + uvicorn
# (2 workers) peer of run.sh (issue 13 target 5). Rounds alternate A, B, A, B ... so
# machine drift hits both.
#
#   bash bench/service/versus.sh A_BIN B_BIN|fastapi MODELS_DIR DATA_DIR AS_OF [ROUNDS] [SECONDS] [CONNS]
#
# Env:  LOAD=oha|wrk   the load generator [oha when installed, else wrk]. oha is the
#                      reference (issue 13): it takes a larger share of the 2 cores than
#                      wrk, so the server gets less, as a real client would leave it.
#       CONNS="16 64"  connection counts (the 8th argument is the same) [16]
#       UNIQUE=1       every churnguard request is a customer never sent before (each
#                      writes its first alert state); the peer keeps no state, so its
#                      side runs the usual rotation.
#       WORKERS=N      sets TOKIO_WORKER_THREADS for the churnguard servers (diagnostic)
#       TRAIN_ARGS     `features --training-set` options the peer is fitted with
#                      [--categorical plan,channel,country --numeric monthly_fee]
#
# Needs oha (`cargo install oha --locked`) or wrk (Debian's), python3; for `fastapi` the
# venv of run.sh (bench/.venv-service, created here from requirements.txt when missing).
# Prints one line per run (req/s, p50, p99, non-2xx, server CPU us/request with its
# user/system split from /proc/PID/stat, requests) and the medians and ratios.
set -euo pipefail
A="$(realpath "$1")" B="$2" MODELS="$3" DATA="$4" AS_OF="$5"
ROUNDS="${6:-3}" SECS="${7:-10}" CONNS="${8:-${CONNS:-16}}"
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
W="$(mktemp -d /tmp/cg-versus.XXXX)"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null || true; done' EXIT
export CHURNGUARD_LOG=warn CHURNGUARD_API_KEYS=benchkey
for v in $(compgen -v CHURNGUARD_ || true); do
    case "$v" in CHURNGUARD_LOG|CHURNGUARD_API_KEYS) ;; *) unset "$v" ;; esac
done
LOAD="${LOAD:-$(command -v oha > /dev/null && echo oha || echo wrk)}"
if [[ $LOAD == wrk ]]; then command -v wrk > /dev/null || apt-get install -y -qq wrk > /dev/null; fi
command -v "$LOAD" > /dev/null || { echo "no $LOAD: cargo install oha --locked" >&2; exit 1; }
[[ $B == fastapi ]] || B="$(realpath "$B")"
TCK=$(getconf CLK_TCK)

"$A" features --data "$DATA" --as-of "$AS_OF" --models "$MODELS" --out "$W/features.csv" > /dev/null
# 256 bodies in rotation; with UNIQUE=1 also enough bodies with fresh ids for every run
# (oha cycles through its body lines; wrk builds them in score.lua).
python3 - "$W/features.csv" "$W" "${UNIQUE:-0}" "$SECS" <<'PY'
import csv, json, random, sys
rows = list(csv.DictReader(open(sys.argv[1])))
random.Random(6).shuffle(rows)
bodies = []
for r in rows[:256]:
    cid = r.pop("customer_id")
    r.pop("as_of", None)
    feats = {k: (None if v == "" else float(v)) for k, v in r.items()}
    bodies.append((cid, json.dumps(feats, separators=(",", ":"))))
with open(f"{sys.argv[2]}/bodies.jsonl", "w") as out:
    for cid, f in bodies:
        out.write(f'{{"customer_id":"{cid}","features":{f}}}\n')
if sys.argv[3] == "1":
    # 40k requests/s at most, per second of the run and of its warm-up: never repeats
    n = 40_000 * (int(sys.argv[4]) + 2)
    with open(f"{sys.argv[2]}/unique.jsonl", "w") as out:
        for i in range(n):
            out.write(f'{{"customer_id":"u{i}","features":{bodies[i % len(bodies)][1]}}}\n')
PY

if [[ $B == fastapi ]]; then
    VENV="$ROOT/bench/.venv-service"
    if [[ ! -x "$VENV/bin/uvicorn" ]]; then
        "${PYTHON:-python3}" -m venv "$VENV"
        "$VENV/bin/python" -m pip install --quiet -r "$HERE/requirements.txt"
    fi
    # shellcheck disable=SC2086
    "$A" features --data "$DATA" --training-set --out "$W/train.parquet" \
        ${TRAIN_ARGS:---categorical plan,channel,country --numeric monthly_fee} > /dev/null
    MANIFEST="$(ls -d "$MODELS"/*/v*/manifest.json | tail -1)"
    "$VENV/bin/python" "$HERE/fastapi_app.py" fit --train "$W/train.parquet" --manifest "$MANIFEST" \
        --out "$W/peer.pkl" | tail -n 1
fi

port=18190
wait_ready() {
    for _ in $(seq 300); do
        curl -sf -o /dev/null http://127.0.0.1:$port/readyz && return 0
        kill -0 "$1" 2> /dev/null || { echo "the server died" >&2; exit 1; }
        sleep 0.05
    done
    echo "not ready in 15 s" >&2; exit 1
}
tree_ticks() { # utime stime of a process and its children (uvicorn's workers), in ticks
    local u=0 s=0 p
    for p in "$1" $(ps -o pid= --ppid "$1" 2> /dev/null | tr -d ' '); do
        read -r pu ps < <(awk '{print $14, $15}' "/proc/$p/stat" 2> /dev/null || echo "0 0")
        u=$((u + pu)) s=$((s + ps))
    done
    echo "$u $s"
}
load() { # load SECONDS CONNS BODIES OUT: one load run, JSON (oha) or text (wrk) in OUT
    if [[ $LOAD == oha ]]; then
        oha -z "$1s" -c "$2" --no-tui --output-format json -m POST \
            -H "Authorization: Bearer benchkey" -T application/json -Z "$3" \
            http://127.0.0.1:$port/v1/score > "$4"
    else
        local unique=0
        [[ $3 == */unique.jsonl ]] && unique=1
        BODIES="$W/bodies.jsonl" UNIQUE=$unique RUN_TAG="$(basename "$4")" API_KEY=benchkey \
            wrk -t2 -c"$2" -d"$1s" --latency -s "$HERE/score.lua" http://127.0.0.1:$port/v1/score > "$4"
    fi
}
stats() { # stats OUT -> "rps p50_ms p99_ms non2xx requests"
    if [[ $LOAD == oha ]]; then
        python3 - "$1" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
codes = j.get("statusCodeDistribution", {})
n = sum(codes.values())
# requests in flight when -z ends are "aborted due to deadline": not failures
errors = {k: v for k, v in j.get("errorDistribution", {}).items() if k != "aborted due to deadline"}
bad = n - codes.get("200", 0) + sum(errors.values())
p = j["latencyPercentiles"]
print(f'{j["summary"]["requestsPerSec"]:.0f} {p["p50"] * 1e3:.3f} {p["p99"] * 1e3:.3f} {bad} {n}')
PY
    else
        awk 'function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
            /^ +50%/ {p50 = ms($2)} /^ +99%/ {p99 = ms($2)} / requests in / {n = $1}
            /^Requests\/sec:/ {rps = $2} /Non-2xx/ {bad = $NF}
            END {printf "%.0f %.3f %.3f %d %d\n", rps, p50, p99, bad, n}' "$1"
    fi
}
run() { # run LABEL BIN|fastapi CONNS
    local label="$1" bin="$2" c="$3" pid bodies="$W/bodies.jsonl"
    if [[ $bin == fastapi ]]; then
        (cd "$HERE" && exec env CG_PEER_MODEL="$W/peer.pkl" OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \
            MKL_NUM_THREADS=1 "$ROOT/bench/.venv-service/bin/uvicorn" fastapi_app:app --workers 2 \
            --host 127.0.0.1 --port $port --loop uvloop --http httptools --no-access-log \
            --log-level warning) > "$W/$label.log" 2>&1 &
        pid=$!
    else
        local m="$W/models-$label"; rm -rf "$m"; cp -a "$MODELS" "$m"; rm -f "$m"/*/alerts.db*
        [[ ${UNIQUE:-0} == 1 ]] && bodies="$W/unique.jsonl"
        env ${WORKERS:+TOKIO_WORKER_THREADS=$WORKERS} "$bin" serve --models "$m" \
            --bind 127.0.0.1:$port > "$W/$label.log" 2>&1 &
        pid=$!
    fi
    PIDS+=("$pid")
    wait_ready "$pid"
    load 2 "$c" "$bodies" "$W/$label.warmup"
    local t0 t1
    t0=$(tree_ticks "$pid")
    load "$SECS" "$c" "$bodies" "$W/$label.out"
    t1=$(tree_ticks "$pid")
    kill "$pid"; wait "$pid" 2> /dev/null || true
    read -r rps p50 p99 bad n < <(stats "$W/$label.out")
    read -r u0 s0 <<< "$t0"; read -r u1 s1 <<< "$t1"
    awk -v l="$label" -v c="$c" -v rps="$rps" -v p50="$p50" -v p99="$p99" -v bad="$bad" -v n="$n" \
        -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v hz="$TCK" 'BEGIN {
        us = 1e6 / hz / (n > 0 ? n : 1)
        printf "%s\t%s\t%s\t%s\t%s\t%s\t%.1f\t%.1f\t%.1f\t%s\n", l, c, rps, p50, p99, bad, (u + s) * us, u * us, s * us, n
    }' | tee -a "$W/results.tsv"
}
printf "# %s, load %s, %s s per run, rounds %s, UNIQUE=%s, WORKERS=%s, loadavg %s\n" \
    "$(date -u +%FT%H:%MZ)" "$LOAD" "$SECS" "$ROUNDS" "${UNIQUE:-0}" "${WORKERS:-default}" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf "run\tconns\treq/s\tp50_ms\tp99_ms\tnon2xx\tcpu_us/req\tuser\tsys\trequests\n"
for r in $(seq "$ROUNDS"); do
    for c in $CONNS; do run "A$r-c$c" "$A" "$c"; run "B$r-c$c" "$B" "$c"; done
done
python3 - "$W/results.tsv" <<'PY'
import sys, statistics as st
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
for c in sorted({r[1] for r in rows}, key=int):
    side = {s: [r for r in rows if r[0][0] == s and r[1] == c] for s in "AB"}
    for s, rs in side.items():
        med = lambda k: st.median(float(r[k]) for r in rs)
        print(f"{s} c={c}: median {med(2):.0f} req/s, p99 {med(4):.2f} ms, "
              f"server CPU {med(6):.1f} us/req ({med(7):.1f} user + {med(8):.1f} sys)")
    ratios = [float(a[2]) / float(b[2]) for a, b in zip(side["A"], side["B"])]
    print(f"A/B req/s c={c} per round: " + " ".join(f"{x:.2f}" for x in ratios)
          + f", median {st.median(ratios):.2f}")
PY
echo "work dir: $W"
