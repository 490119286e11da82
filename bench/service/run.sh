#!/usr/bin/env bash
# Scoring-service benchmark (issue 6): `churnguard serve` against a FastAPI + uvicorn
# (2 workers) service answering the same POST /v1/score with the equivalent
# scikit-learn model, measured side by side in the same run.
#
#   bash bench/service/run.sh                 # 3 rounds x {16,1,64} connections x 3 services, 15 s each (~12 min)
#   bash bench/service/run.sh --rounds 1 --duration 5 --no-append    # a quick look
#
# Options:  --rounds N        rounds of the whole grid; the table shows the median over rounds [3]
#           --duration S      seconds per wrk run (after a 2 s warm-up run that is discarded) [15]
#           --conns "A B C"   connection counts [16 1 64]
#           --customers N     distinct customers the load rotates through [256]
#           --cold-repeats N  cold starts per service [5]
#           --no-variants     skip the extra churnguard rows at 16 connections (below)
#           --no-append       print the section instead of appending it to BENCHMARKS.md
#           --note TEXT       a sentence for the section about what else ran on the machine
# Env:      CG_SERVICE_BENCH_DIR  work directory [/tmp/churnguard-service-bench] (wiped at start)
#           CG_BIN                the churnguard binary [target/release/churnguard]; copied into the
#                                 work directory so that a rebuild cannot change it mid-run
#           BENCHMARKS            the file the section goes to [BENCHMARKS.md at the repo root]
#
# What it does:
#  1. `churnguard generate` (5,000 customers, seed 3), `train` a logistic and a gbdt model,
#     `features --as-of <last day of the data> --models` (request bodies) and
#     `features --training-set` (what the scikit-learn peer is fitted on).
#  2. bench/service/fastapi_app.py fits the peer (signed log1p, median imputation,
#     StandardScaler, LogisticRegression, Platt) once and pickles it; uvicorn serves it with
#     2 workers on 127.0.0.1:18081 (venv: bench/.venv-service, pinned requirements.txt).
#  3. Cold start to the first 200 of POST /v1/score, alternating churnguard logistic, gbdt
#     and FastAPI, --cold-repeats times each (coldstart.py).
#  4. wrk (Debian's) with score.lua, rotating through --customers real request bodies:
#     for every round, every connection count, the three services in an order that rotates
#     from round to round. churnguard (`serve --models <logistic|gbdt> --bind 127.0.0.1:18080`,
#     CHURNGUARD_API_KEYS=benchkey, outbox under the models dir) is started fresh for each of
#     its runs; RSS is read with ps right after the run. Each run records the 1-minute load
#     average before and after, the server's CPU use, and non-2xx answers / socket errors.
#     Variants at 16 connections, in the same rotation (unless --no-variants):
#       churnguard-logistic-unique        every request a customer id never sent before
#                                         (score.lua UNIQUE=1): churnguard writes a new customer
#                                         state to its outbox on every request (an fsynced commit
#                                         for the ~5% that alert), where the 256-customer rotation
#                                         settles after one pass and writes nothing;
#       churnguard-logistic-tmpfs         diagnostic: the same rotation with --outbox on /dev/shm
#                                         (fsync costs nothing there; not a deployable setup);
#       churnguard-logistic-tmpfs-unique  diagnostic: new ids and the outbox on /dev/shm.
#  5. report.py prints the table and writes the "Scoring service (issue 6)" section: appended
#     at the end of BENCHMARKS.md, or, when a section of that name is already there, put in
#     its place (no other section is touched).
#
# The load generator runs on the same 2 cores as the servers: every requests/s figure here
# is what a server gets while wrk takes its own share of the CPU.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
ROUNDS=3 DURATION=15 CONNS="16 1 64" CUSTOMERS=256 COLD=5 APPEND=1 VARIANTS=1 NOTE=""
ARGS=""
for a in "$@"; do
    if [[ $a != *[[:space:]\'\"\$]* ]]; then ARGS+=" $a"
    elif [[ $a != *\'* ]]; then ARGS+=" '$a'"
    else a="${a//\\/\\\\}"; a="${a//\"/\\\"}"; a="${a//\$/\\\$}"; ARGS+=" \"$a\""; fi
done
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift ;;
        --duration) DURATION="$2"; shift ;;
        --conns) CONNS="$2"; shift ;;
        --customers) CUSTOMERS="$2"; shift ;;
        --cold-repeats) COLD="$2"; shift ;;
        --no-append) APPEND=0 ;;
        --no-variants) VARIANTS=0 ;;
        --note) NOTE="$2"; shift ;;
        -h|--help) sed -n '2,51p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

W="${CG_SERVICE_BENCH_DIR:-/tmp/churnguard-service-bench}"
SRC_BIN="${CG_BIN:-$ROOT/target/release/churnguard}"
BENCHMARKS="${BENCHMARKS:-$ROOT/BENCHMARKS.md}"
VENV="$ROOT/bench/.venv-service"
CG_PORT=18080 PY_PORT=18081
KEY=benchkey
export CHURNGUARD_API_KEYS="$KEY"

if [[ ! -x "$SRC_BIN" ]]; then
    echo "no churnguard binary at $SRC_BIN: build it first (cargo build --release) or set CG_BIN" >&2
    exit 1
fi
if ! command -v wrk > /dev/null; then
    if [[ $(id -u) -eq 0 ]]; then
        echo ">> installing wrk (Debian)"
        apt-get install -y -qq wrk > /dev/null || { apt-get update -qq && apt-get install -y -qq wrk > /dev/null; }
    else
        echo "needs wrk: sudo apt-get install -y wrk" >&2
        exit 1
    fi
fi
for port in $CG_PORT $PY_PORT 18082; do
    if (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null; then
        echo "port $port is already in use on 127.0.0.1: stop what listens there first" >&2
        exit 1
    fi
done

# The peer's venv, reused while requirements.txt is unchanged.
REQ="$HERE/requirements.txt"
want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/python" || ! -f "$VENV/.requirements.sha256" || "$(cat "$VENV/.requirements.sha256")" != "$want" ]]; then
    echo ">> creating $VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -r "$REQ"
    echo "$want" > "$VENV/.requirements.sha256"
fi
PY="$VENV/bin/python"

case "$W" in
    "" | / | "$ROOT" | "$HOME") echo "refusing to wipe CG_SERVICE_BENCH_DIR=$W" >&2; exit 2 ;;
esac
rm -rf "$W"
mkdir -p "$W/logs" "$W/outbox-unique"
cp "$SRC_BIN" "$W/churnguard"
BIN="$W/churnguard"
RESULTS="$W/results.tsv"
COLDTSV="$W/coldstart.tsv"
META="$W/meta.tsv"
printf "round\tservice\tconns\tthreads\trps\tp50_ms\tp99_ms\tmax_ms\trequests\tnon2xx\tsocket_errors\tload1_before\tload1_after\tserver_cpu_pct\trss_mib\thwm_mib\tserver_non200\twrk_cpu_pct\n" > "$RESULTS"
printf "service\trepeat\tcold_start_ms\tattempts\tshutdown_ms\tload1\n" > "$COLDTSV"

load1() { cut -d' ' -f1 /proc/loadavg; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
meta() { printf "%s\t%s\n" "$1" "$2" >> "$META"; }
: > "$META"
meta command "bash bench/service/run.sh$ARGS"
meta date "$(date -u +%Y-%m-%dT%H:%MZ)"
meta loadavg_start "$(loadavg)"
meta commit "$(git -C "$ROOT" rev-parse --short HEAD 2> /dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml 2> /dev/null || echo ' (src modified)')"
meta churnguard "$("$BIN" --version) (binary built $(date -u -r "$SRC_BIN" +%Y-%m-%dT%H:%MZ), sha256 $(sha256sum "$BIN" | cut -c1-12))"
meta wrk "$(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
meta python "$("$PY" -c 'import sys, fastapi, uvicorn, sklearn, numpy, polars, pydantic; print(f"Python {sys.version.split()[0]}, fastapi {fastapi.__version__}, uvicorn {uvicorn.__version__}, pydantic {pydantic.__version__}, scikit-learn {sklearn.__version__}, numpy {numpy.__version__}, polars {polars.__version__}")')"
meta machine "$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB"
meta rounds "$ROUNDS"
meta note "$NOTE"
meta duration "$DURATION"
meta customers "$CUSTOMERS"

run() { # run LOGNAME CMD...: quiet unless it fails
    local name="$1"; shift
    echo ">> $*"
    if ! "$@" > "$W/logs/$name.log" 2>&1; then
        echo "!! failed; see $W/logs/$name.log" >&2
        tail -n 20 "$W/logs/$name.log" >&2
        exit 1
    fi
}

# ---------------------------------------------------------------- 1. data and models
run generate "$BIN" generate --customers 5000 --seed 3 --out "$W/data"
CAT=(--categorical plan,channel,country --numeric monthly_fee)
run train-logistic "$BIN" train --data "$W/data" --models "$W/models-logistic" --algorithms logistic "${CAT[@]}"
run train-gbdt "$BIN" train --data "$W/data" --models "$W/models-gbdt" --algorithms gbdt "${CAT[@]}"
MANIFEST="$(ls -d "$W"/models-logistic/churn/v*/manifest.json | tail -1)"
# The last day of the data (the training data's time range in the manifest).
AS_OF="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["training_data"]["time_range"][1][:10])' "$MANIFEST")"
meta as_of "$AS_OF"
run features "$BIN" features --data "$W/data" --as-of "$AS_OF" --models "$W/models-logistic" --out "$W/features.parquet"
run trainset "$BIN" features --data "$W/data" --training-set --out "$W/train.parquet" "${CAT[@]}"
run peer-fit "$PY" "$HERE/fastapi_app.py" fit --train "$W/train.parquet" --manifest "$MANIFEST" --out "$W/peer.pkl"
tail -n 1 "$W/logs/peer-fit.log"
meta peer_fit "$(tail -n 1 "$W/logs/peer-fit.log" | sed 's/ ->.*//')"
grep -h "^logistic \|^gbdt " "$W/logs/train-logistic.log" "$W/logs/train-gbdt.log" || true

# ---------------------------------------------------------------- servers
CG_PID=""
PY_PID=""
SHM=""
if [[ $VARIANTS -eq 1 && -d /dev/shm && -w /dev/shm ]]; then
    SHM="$(mktemp -d /dev/shm/churnguard-service-bench.XXXXXX)"
fi
cleanup() {
    [[ -n "$CG_PID" ]] && kill "$CG_PID" 2> /dev/null && wait "$CG_PID" 2> /dev/null
    [[ -n "$PY_PID" ]] && kill "$PY_PID" 2> /dev/null && wait "$PY_PID" 2> /dev/null
    [[ -n "$SHM" ]] && rm -rf "$SHM"
    true
}
trap cleanup EXIT

wait_ready() { # wait_ready PORT PID
    local i
    for i in $(seq 1 300); do
        curl -sf -o /dev/null "http://127.0.0.1:$1/readyz" && return 0
        kill -0 "$2" 2> /dev/null || { echo "!! the server on port $1 died; see $W/logs" >&2; exit 1; }
        sleep 0.05
    done
    echo "!! the server on port $1 was not ready in 15 s" >&2
    exit 1
}
start_cg() { # start_cg logistic|gbdt LOGNAME [serve options...]
    local m="$1" log="$2"
    shift 2
    "$BIN" serve --models "$W/models-$m" --bind "127.0.0.1:$CG_PORT" "$@" > "$W/logs/$log.serve.log" 2>&1 &
    CG_PID=$!
    wait_ready $CG_PORT $CG_PID
}
stop_cg() {
    kill -TERM "$CG_PID"
    wait "$CG_PID" || true
    CG_PID=""
}
start_py() {
    (cd "$HERE" && exec env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE CG_PEER_MODEL="$W/peer.pkl" \
        OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
        "$VENV/bin/uvicorn" fastapi_app:app --workers 2 --host 127.0.0.1 --port $PY_PORT \
        --loop uvloop --http httptools --no-access-log --log-level warning) > "$W/logs/fastapi.serve.log" 2>&1 &
    PY_PID=$!
    wait_ready $PY_PORT $PY_PID
}
pids_of() { # the process and its children (uvicorn's workers)
    echo "$1"
    ps -o pid= --ppid "$1" 2> /dev/null | tr -d ' ' || true
}
cpu_ticks() { # utime + stime of a process tree, in clock ticks
    local t=0 p v
    for p in $(pids_of "$1"); do
        v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2> /dev/null || echo 0)
        t=$((t + v))
    done
    echo $t
}
rss_mib() { # summed RSS of a process tree, MiB
    local k=0 p v
    for p in $(pids_of "$1"); do
        v=$(ps -o rss= -p "$p" 2> /dev/null | tr -d ' ' || echo 0)
        k=$((k + ${v:-0}))
    done
    awk -v k="$k" 'BEGIN {printf "%.1f", k / 1024}'
}
hwm_mib() { # summed peak RSS (VmHWM) of a process tree, MiB
    local k=0 p v
    for p in $(pids_of "$1"); do
        v=$(awk '/^VmHWM/ {print $2}' "/proc/$p/status" 2> /dev/null || echo 0)
        k=$((k + ${v:-0}))
    done
    awk -v k="$k" 'BEGIN {printf "%.1f", k / 1024}'
}
TCK=$(getconf CLK_TCK)

# Request bodies from each model's own feature schema (GET /v1/models/churn).
for m in logistic gbdt; do
    start_cg $m schema-$m
    curl -sf -H "Authorization: Bearer $KEY" "http://127.0.0.1:$CG_PORT/v1/models/churn" > "$W/schema-$m.json"
    stop_cg
    run bodies-$m "$PY" "$HERE/bodies.py" "$W/features.parquet" "$W/schema-$m.json" "$W/bodies-$m.jsonl" --customers "$CUSTOMERS"
    tail -n 1 "$W/logs/bodies-$m.log"
done
meta bodies "$(tail -n 1 "$W/logs/bodies-logistic.log" | sed 's/ ->.*//')"
head -n 1 "$W/bodies-logistic.jsonl" > "$W/body1-logistic.json"
head -n 1 "$W/bodies-gbdt.jsonl" > "$W/body1-gbdt.json"
# Both services must agree on the answer's shape; show one answer of each.
start_cg logistic sample-answer
curl -sf -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' --data @"$W/body1-logistic.json" \
    "http://127.0.0.1:$CG_PORT/v1/score" > "$W/answer-churnguard.json"
stop_cg
start_py
curl -sf -H 'Content-Type: application/json' --data @"$W/body1-logistic.json" \
    "http://127.0.0.1:$PY_PORT/v1/score" > "$W/answer-fastapi.json"
echo "churnguard: $(cat "$W/answer-churnguard.json")"
echo "fastapi:    $(cat "$W/answer-fastapi.json")"

# ---------------------------------------------------------------- 2. cold start
# The FastAPI service under test stays up; its cold starts use another port.
echo ">> cold start to the first 200 of POST /v1/score, $COLD x each, alternating"
for r in $(seq 1 "$COLD"); do
    python3 "$HERE/coldstart.py" --label churnguard-logistic --port $CG_PORT --body "$W/body1-logistic.json" \
        --repeats 1 --log "$W/logs/coldstart.serve.log" -- \
        "$BIN" serve --models "$W/models-logistic" --bind "127.0.0.1:$CG_PORT" | sed "s/\t1\t/\t$r\t/" >> "$COLDTSV"
    python3 "$HERE/coldstart.py" --label churnguard-gbdt --port $CG_PORT --body "$W/body1-gbdt.json" \
        --repeats 1 --log "$W/logs/coldstart.serve.log" -- \
        "$BIN" serve --models "$W/models-gbdt" --bind "127.0.0.1:$CG_PORT" | sed "s/\t1\t/\t$r\t/" >> "$COLDTSV"
    (cd "$HERE" && env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE CG_PEER_MODEL="$W/peer.pkl" \
        OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
        python3 "$HERE/coldstart.py" --label fastapi --port 18082 --body "$W/body1-logistic.json" \
        --repeats 1 --log "$W/logs/coldstart.fastapi.log" -- \
        "$VENV/bin/uvicorn" fastapi_app:app --workers 2 --host 127.0.0.1 --port 18082 \
        --loop uvloop --http httptools --no-access-log --log-level warning) | sed "s/\t1\t/\t$r\t/" >> "$COLDTSV"
done
column -t -s $'\t' "$COLDTSV"

# ---------------------------------------------------------------- 3. load
to_ms='function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; if (v ~ /m$/) return v * 60000; return v }'
wrk_run() { # wrk_run NAME PORT CONNS BODIES SECONDS [UNIQUE] -> wrk output in logs/NAME.wrk
    local threads=2
    [[ $3 -lt 2 ]] && threads=1
    local timer=()
    [[ -x /usr/bin/time ]] && timer=(/usr/bin/time -f %P -o "$W/logs/$1.wrkcpu")
    RUN_TAG="$1" UNIQUE="${6:-0}" BODIES="$4" API_KEY="$KEY" "${timer[@]}" wrk -t$threads -c"$3" -d"$5"s --latency -s "$HERE/score.lua" \
        "http://127.0.0.1:$2" > "$W/logs/$1.wrk" 2>&1
}
measure() { # measure ROUND SERVICE CONNS
    local round=$1 svc=$2 c=$3 port=$CG_PORT pid bodies="$W/bodies-logistic.jsonl" name unique=0
    name="r$round-$svc-c$c"
    case $svc in
        churnguard-logistic) start_cg logistic "$name" ;;
        churnguard-gbdt) start_cg gbdt "$name"; bodies="$W/bodies-gbdt.jsonl" ;;
        churnguard-logistic-unique) start_cg logistic "$name" --outbox "$W/outbox-unique/alerts.db"; unique=1 ;;
        churnguard-logistic-tmpfs) start_cg logistic "$name" --outbox "$SHM/alerts.db" ;;
        churnguard-logistic-tmpfs-unique) start_cg logistic "$name" --outbox "$SHM/alerts.db"; unique=1 ;;
        fastapi) port=$PY_PORT ;;
    esac
    if [[ $svc == fastapi ]]; then pid=$PY_PID; else pid=$CG_PID; fi
    wrk_run "$name.warmup" $port "$c" "$bodies" 2 $unique
    local l0 t0 ticks0 l1 t1 ticks1
    l0=$(load1); ticks0=$(cpu_ticks "$pid"); t0=$(date +%s.%N)
    wrk_run "$name" $port "$c" "$bodies" "$DURATION" $unique
    t1=$(date +%s.%N); ticks1=$(cpu_ticks "$pid"); l1=$(load1)
    local cpu rss hwm non200="-"
    cpu=$(awk -v a="$ticks0" -v b="$ticks1" -v t0="$t0" -v t1="$t1" -v hz="$TCK" 'BEGIN {printf "%.0f", 100 * (b - a) / hz / (t1 - t0)}')
    rss=$(rss_mib "$pid"); hwm=$(hwm_mib "$pid")
    if [[ $svc == churnguard-* ]]; then
        # the server's own count of non-200 answers on /v1/score (warm-up included)
        non200=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '/^churnguard_http_requests_total\{route="\/v1\/score"/ && !/status="200"/ {s += $NF} END {print s + 0}')
        stop_cg
    fi
    local stats
    stats=$(awk "$to_ms"'
        /Latency / && !/Distribution/ {max = ms($4)}
        /^ +50%/ {p50 = ms($2)}
        /^ +99%/ {p99 = ms($2)}
        / requests in / {n = $1}
        /^Requests\/sec:/ {rps = $2}
        /Non-2xx or 3xx responses:/ {bad = $NF}
        /Socket errors:/ {gsub(",", ""); sock = $4 + $6 + $8 + $10}
        END {printf "%.0f\t%.3f\t%.3f\t%.2f\t%d\t%d\t%d", rps, p50, p99, max, n, bad, sock}' "$W/logs/$name.wrk")
    local threads=2
    [[ $c -lt 2 ]] && threads=1
    local wcpu="-"
    [[ -f "$W/logs/$name.wrkcpu" ]] && wcpu=$(tr -d '%' < "$W/logs/$name.wrkcpu" | tail -n 1)
    printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$round" "$svc" "$c" "$threads" "$stats" "$l0" "$l1" "$cpu" "$rss" "$hwm" "$non200" "$wcpu" >> "$RESULTS"
    tail -n 1 "$RESULTS" | awk -F'\t' '{printf "   %-32s c=%-3s %6s req/s  p50 %6.2f ms  p99 %7.2f ms  max %6.1f ms  non-2xx %s  sock err %s  load %s->%s  CPU server %s%% wrk %s%%  RSS %s MiB\n", $2, $3, $5, $6, $7, $8, $10, $11, $12, $13, $14, $18, $15}'
}

SERVICES=(churnguard-logistic fastapi churnguard-gbdt)
VARIANT_SERVICES=()
if [[ $VARIANTS -eq 1 ]]; then
    VARIANT_SERVICES=(churnguard-logistic-unique)
    [[ -n "$SHM" ]] && VARIANT_SERVICES+=(churnguard-logistic-tmpfs churnguard-logistic-tmpfs-unique)
fi
echo ">> load: $ROUNDS rounds x connections {$CONNS} x ${#SERVICES[@]} services (+${#VARIANT_SERVICES[@]} variants at 16), ${DURATION}s each (+2 s warm-up)"
for round in $(seq 1 "$ROUNDS"); do
    for c in $CONNS; do
        echo "-- round $round, $c connections (load $(loadavg))"
        list=("${SERVICES[@]}")
        [[ $c -eq 16 ]] && list+=("${VARIANT_SERVICES[@]}")
        for k in $(seq 0 $((${#list[@]} - 1))); do
            measure "$round" "${list[$(((k + round - 1) % ${#list[@]}))]}" "$c"
        done
    done
done
meta fastapi_rss_after_all "$(rss_mib "$PY_PID")"
kill "$PY_PID" && wait "$PY_PID" 2> /dev/null || true
PY_PID=""
meta loadavg_end "$(loadavg)"
meta outbox "$(python3 - "$W" <<'PYEOF'
import os, sqlite3, sys
out = []
for m, d in (("logistic", "models-logistic/churn"), ("gbdt", "models-gbdt/churn"), ("logistic, new ids", "outbox-unique")):
    d = os.path.join(sys.argv[1], d)
    if not os.path.exists(os.path.join(d, "alerts.db")):
        continue
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.startswith("alerts.db"))
    c = sqlite3.connect(os.path.join(d, "alerts.db"))
    states = c.execute("select count(*) from customer_state").fetchone()[0]
    alerts = c.execute("select count(*) from alerts").fetchone()[0]
    out.append(f"{m}: {states} customer states, {alerts} alerts, {size / 1024:.0f} KiB (db + wal)")
print("; ".join(out))
PYEOF
)"
meta serve_warnings "$(cat "$W"/logs/*.serve.log | grep -c -E 'WARN|ERROR' || true)"

# ---------------------------------------------------------------- 4. report
REPORT_ARGS=(--dir "$W")
[[ $APPEND -eq 1 ]] && REPORT_ARGS+=(--benchmarks "$BENCHMARKS")
python3 "$HERE/report.py" "${REPORT_ARGS[@]}"
