#!/usr/bin/env bash
# End-to-end benchmarks of churnguard against the targets of issues #2, #3, #4 and #7,
# with the Python peers (polars, scikit-learn, LightGBM) measured in the same run.
#
#   bash bench/run.sh            # full run (~35-45 min on the 2-core machine)
#   bash bench/run.sh --quick    # no 2M/5M scoring; the training-set comparison and
#                                # the training-time runs use smaller bases (~10 min)
#
# Options:   --quick        as above
#            --no-python    skip the Python peers (no venv needed)
#            --no-micro     skip `cargo bench --bench online`
#            --with-5m      attempt the 2M and 5M-customer scoring even when the 1M peak
#                           RSS projects past the memory available (skipped otherwise)
#            --from STAGE   resume at STAGE (build data trainset train score big peers
#                           micro report), reusing the work dir of an earlier run; the
#                           binary is rebuilt only when STAGE is build
# Env:       CG_BENCH_DIR   work directory for data, models and logs
#                           [default: /tmp/churnguard-bench]; needs ~10 GB free (full run)
#            CG_BIN         use this churnguard binary instead of building one
#
# Every measurement runs under /usr/bin/time -v (wall time, peak RSS, CPU) with the
# 1-minute load average taken just before it; results go to $CG_BENCH_DIR/results.tsv
# and the table printed at the end. Logs of every command are in $CG_BENCH_DIR/logs/.
# The release binary is built once and copied into the work directory, so concurrent
# rebuilds of the shared target directory cannot change it mid-run.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SELF="$ROOT/bench/run.sh"
cd "$ROOT"
QUICK=0 PYTHON=1 MICRO=1 FORCE5M=0 FROM=build
STAGES="build data trainset train score big peers micro report"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --no-python) PYTHON=0 ;;
        --no-micro) MICRO=0 ;;
        --with-5m) FORCE5M=1 ;;
        --from) FROM="$2"; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$SELF"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[[ " $STAGES " == *" $FROM "* ]] || { echo "--from: one of $STAGES" >&2; exit 2; }
# stage NAME: true when NAME is at or after --from (earlier stages reuse the work dir).
stage() { local seen=0 s; for s in $STAGES; do [[ $s == "$FROM" ]] && seen=1; [[ $s == "$1" ]] && return $((1 - seen)); done; return 1; }
W="${CG_BENCH_DIR:-/tmp/churnguard-bench}"
mkdir -p "$W/logs"
RESULTS="$W/results.tsv"
NOTES="$W/notes.txt"
if [[ $FROM == build || ! -f "$RESULTS" ]]; then
    : > "$NOTES"
    printf "name\twall_s\tpeak_rss_mib\tcpu_pct\tuser_s\tsys_s\tload1_before\tcommand\n" > "$RESULTS"
fi

if [[ ! -x /usr/bin/time ]]; then
    echo "needs GNU time at /usr/bin/time (apt-get install -y time)" >&2
    exit 1
fi
note() { echo "$*" | tee -a "$NOTES"; }
load1() { cut -d' ' -f1 /proc/loadavg; }

# measure NAME CMD...: runs CMD under /usr/bin/time -v; stdout/stderr in logs/NAME.{out,err}.
measure() {
    local name="$1"; shift
    local l; l="$(load1)"
    echo ">> [$name] load $l: $*"
    if ! /usr/bin/time -v -o "$W/logs/$name.time" "$@" > "$W/logs/$name.out" 2> "$W/logs/$name.err"; then
        echo "!! [$name] failed; last lines of its output:" >&2
        tail -n 20 "$W/logs/$name.out" "$W/logs/$name.err" >&2
        return 1
    fi
    local wall rss cpu user sys
    wall="$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,p,":"); s=0; for(i=1;i<=n;i++) s=s*60+p[i]; print s}' "$W/logs/$name.time")"
    rss="$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$W/logs/$name.time")"
    cpu="$(awk -F': ' '/Percent of CPU/ {sub("%","",$2); print $2}' "$W/logs/$name.time")"
    user="$(awk -F': ' '/User time/ {print $2}' "$W/logs/$name.time")"
    sys="$(awk -F': ' '/System time/ {print $2}' "$W/logs/$name.time")"
    printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$name" "$wall" "$rss" "$cpu" "$user" "$sys" "$l" "$*" >> "$RESULTS"
    printf "   wall %ss, peak RSS %s MiB, CPU %s%%\n" "$wall" "$rss" "$cpu"
}
get() { awk -F'\t' -v n="$1" -v c="$2" 'NR==1 {for(i=1;i<=NF;i++) h[$i]=i} $1==n {print $(h[c])}' "$RESULTS"; }
# json FILE EXPR: a value from a JSON file (python3 from the system is enough).
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
fit_seconds() { awk -v a="$2" '$1==a && NF>=7 {print $NF}' "$W/logs/$1.out" | tail -1; }

ATTRS=(--categorical plan,channel,country --numeric monthly_fee)
AS_OF=2024-12-01
date -u +"run started %Y-%m-%dT%H:%M:%SZ (from stage $FROM)" | tee -a "$NOTES"
note "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
note "commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' + uncommitted changes in the work tree')"
note "mode: $([[ $QUICK == 1 ]] && echo quick || echo full); work dir $W; load at start: $(cat /proc/loadavg)"

# Sizes: --quick compares training sets on a 100k base and trains on the 20k sample;
# the full run uses the 1M base, and a 230k-customer base for ~1M training rows
# (~1.0M rows in its training snapshots, ~0.7M more in validation).
if [[ $QUICK == 1 ]]; then
    TSN=100k TSDIR="$W/d100k" TRN=20k TRDIR="$W/s20k"
else
    TSN=1m TSDIR="$W/d1m" TRN=230k TRDIR="$W/d230k"
fi
BIN="$W/churnguard"
PY="$ROOT/bench/.venv/bin/python"

# ---------------------------------------------------------------- build once
if stage build; then
    if [[ -n "${CG_BIN:-}" ]]; then
        note "binary: CG_BIN=$CG_BIN (not rebuilt)"
        cp "$CG_BIN" "$BIN"
    else
        echo ">> cargo build --release (shared target dir; waits for its lock)"
        cargo build --release --quiet
        cp target/release/churnguard "$BIN"
    fi
fi
note "binary: $("$BIN" --version), sha256 $(sha256sum "$BIN" | cut -c1-12)"
if [[ $PYTHON == 1 ]]; then
    bash bench/python/setup.sh
fi

# ---------------------------------------------------------------- #2 and #3: 1M base
if stage data; then
    rm -rf "$W/d1m"
    measure generate_1m "$BIN" generate --customers 1000000 --seed 7 --out "$W/d1m"
    {
        echo "rows and bytes written by generate --customers 1000000 (from its report):"
        sed -n '/^  customers /,/^  churn /p' "$W/logs/generate_1m.out" | head -6
        echo "bytes on disk: $(du -sb "$W/d1m" | cut -f1) ($(du -sh "$W/d1m" | cut -f1))"
    } | tee -a "$NOTES"
    measure inspect_1m "$BIN" inspect --data "$W/d1m"
    measure features_snapshot_1m "$BIN" features --data "$W/d1m" --as-of "$AS_OF" --out "$W/f1m_snapshot.parquet" "${ATTRS[@]}"
    note "features_snapshot_1m: $(tail -1 "$W/logs/features_snapshot_1m.out")"
fi

# ---------------------------------------------------------------- #3: training sets
if stage trainset; then
    rm -rf "$W/s20k"
    "$BIN" generate --customers 20000 --seed 42 --out "$W/s20k" > "$W/logs/generate_20k.out" 2>&1
    measure training_set_20k "$BIN" features --data "$W/s20k" --training-set --out "$W/ts20k.parquet" "${ATTRS[@]}"
    note "training_set_20k: $(tail -1 "$W/logs/training_set_20k.out")"
    printf '[labels]\nmax_snapshots = 12\n' > "$W/twelve.toml"
    measure training_set_20k_12snap "$BIN" --config "$W/twelve.toml" features --data "$W/s20k" --training-set --out "$W/ts20k_12.parquet" "${ATTRS[@]}"
    note "training_set_20k_12snap: $(tail -1 "$W/logs/training_set_20k_12snap.out")"
    # The training-set comparison with the Python-polars reference, on the same files.
    if [[ $QUICK == 1 ]]; then
        rm -rf "$W/d100k"
        "$BIN" generate --customers 100000 --seed 7 --out "$W/d100k" > "$W/logs/generate_100k.out" 2>&1
    fi
    measure "training_set_$TSN" "$BIN" features --data "$TSDIR" --training-set --out "$W/ts_$TSN.parquet" "${ATTRS[@]}"
    note "training_set_$TSN: $(tail -1 "$W/logs/training_set_$TSN.out")"
    if [[ $PYTHON == 1 ]]; then
        measure "polars_reference_$TSN" "$PY" bench/python/features_reference.py "$TSDIR" --out "$W/ref_$TSN.parquet"
        note "polars_reference_$TSN: $(grep '^seconds:' "$W/logs/polars_reference_$TSN.out")"
        # Correctness of the reference on the 20k sample (every common column must agree).
        "$PY" bench/python/features_reference.py "$W/s20k" --check "$W/ts20k.parquet" > "$W/logs/reference_check_20k.out" 2>&1 \
            && note "reference check on the 20k sample: $(tail -1 "$W/logs/reference_check_20k.out")" \
            || note "reference check on the 20k sample FAILED: see $W/logs/reference_check_20k.out"
    fi
    rm -f "$W/ts_$TSN.parquet" "$W/ref_$TSN.parquet"
fi

# ---------------------------------------------------------------- #4: training time
if stage train; then
    if [[ $QUICK == 0 ]]; then
        rm -rf "$TRDIR"
        "$BIN" generate --customers 230000 --seed 7 --out "$TRDIR" > "$W/logs/generate_230k.out" 2>&1
    fi
    rm -rf "$W/models-logistic" "$W/models-gbdt" "$W/models-all"
    measure "train_logistic_$TRN" "$BIN" train --data "$TRDIR" --models "$W/models-logistic" --algorithms logistic "${ATTRS[@]}"
    measure "train_gbdt_$TRN" "$BIN" train --data "$TRDIR" --models "$W/models-gbdt" --algorithms gbdt "${ATTRS[@]}"
    note "train_logistic_$TRN: fit $(fit_seconds "train_logistic_$TRN" logistic)s; train_gbdt_$TRN: fit $(fit_seconds "train_gbdt_$TRN" gbdt)s ($(json "$W/models-gbdt/churn/v1/metrics.json" "next(c['params']['trees_kept'] for c in d['candidates'] if c['algorithm'] == 'gbdt')") trees kept); examples: $(json "$W/models-gbdt/churn/v1/metrics.json" "d['examples']")"
    measure train_all_20k "$BIN" train --data "$W/s20k" --models "$W/models-all" "${ATTRS[@]}"
    "$BIN" features --data "$TRDIR" --training-set --out "$W/ts_train_$TRN.parquet" "${ATTRS[@]}" > "$W/logs/ts_train_$TRN.out" 2>&1
fi

# ---------------------------------------------------------------- #7: batch scoring
score() { # score NAME DATA MODELS [timeout-seconds]
    rm -f "$W/$1.parquet" "$W/$1.parquet.summary.json"
    local t=()
    [[ -n "${4:-}" ]] && t=(timeout --signal=KILL "$4")
    measure "$1" "${t[@]}" "$BIN" score --data "$2" --models "$3" --as-of "$AS_OF" --out "$W/$1.parquet" --outbox "$W/$1.outbox.db"
    local rc=$?
    rm -f "$W/$1.outbox.db"
    return $rc
}
if stage score; then
    [[ -d "$W/d100k" ]] || "$BIN" generate --customers 100000 --seed 7 --out "$W/d100k" > "$W/logs/generate_100k.out" 2>&1
    score score_100k_gbdt "$W/d100k" "$W/models-gbdt"
    if [[ $QUICK == 0 ]]; then
        rm -rf "$W/d300k"
        "$BIN" generate --customers 300000 --seed 7 --out "$W/d300k" > "$W/logs/generate_300k.out" 2>&1
        score score_300k_gbdt "$W/d300k" "$W/models-gbdt"
        rm -rf "$W/d300k"
    fi
    score score_1m_gbdt "$W/d1m" "$W/models-gbdt"
    score score_1m_logistic "$W/d1m" "$W/models-logistic"
fi

# ---------------------------------------------------------------- 2M and 5M bases
# Only when the 1M peak RSS, scaled linearly, fits in 90% of the memory available now
# (other engineers share the machine: an OOM kill could hit them), and each command
# gets 4x its linear time projection from 1M, then is killed and reported (a
# superlinear step shows up as such instead of hanging the run).
if stage big; then
    RSS1M="$(get score_1m_gbdt peak_rss_mib)"
    GEN1M="$(get generate_1m wall_s)"
    SC1M="$(get score_1m_gbdt wall_s)"
    avail_mib() { awk '/MemAvailable/ {printf "%.0f", $2/1024}' /proc/meminfo; }
    for big in 2m:2000000:2 5m:5000000:5; do
        IFS=: read -r tag n mult <<< "$big"
        need=$((RSS1M * mult))
        disk="$(df -Pm "$W" | awk 'NR==2 {print $4}')"
        if [[ $QUICK == 1 ]]; then
            note "score_${tag}: skipped (--quick)"
        elif [[ $FORCE5M == 0 && $need -gt $(( $(avail_mib) * 9 / 10 )) ]]; then
            note "score_${tag}: skipped: the 1M run peaked at ${RSS1M} MiB, so ${tag} projects to ~${need} MiB, more than 90% of the $(avail_mib) MiB available now (of $(awk '/MemTotal/ {printf "%.0f", $2/1024}' /proc/meminfo) MiB; --with-5m forces it)"
        elif [[ $disk -lt $((mult * 1500)) ]]; then
            note "score_${tag}: skipped: only ${disk} MiB free in $W"
        else
            rm -rf "$W/d$tag"
            limit="$(python3 -c "print(int(4 * $mult * $GEN1M) + 60)")"
            if measure "generate_$tag" timeout --signal=KILL "$limit" "$BIN" generate --customers "$n" --seed 7 --out "$W/d$tag"; then
                limit="$(python3 -c "print(int(4 * $mult * $SC1M) + 60)")"
                score "score_${tag}_gbdt" "$W/d$tag" "$W/models-gbdt" "$limit" \
                    || note "score_${tag}_gbdt: FAILED or killed after ${limit}s (4x the linear projection from 1M); see $W/logs/score_${tag}_gbdt.err"
            else
                note "generate_$tag: FAILED or killed after ${limit}s (4x the linear projection from 1M: generate loads the base it wrote); files written: $(du -sh "$W/d$tag" 2>/dev/null | cut -f1); see $W/logs/generate_$tag.out"
            fi
            rm -rf "$W/d$tag"
        fi
    done
fi

# ---------------------------------------------------------------- Python peers
if stage peers && [[ $PYTHON == 1 ]]; then
    "$BIN" features --data "$W/d1m" --as-of "$AS_OF" --models "$W/models-gbdt" --out "$W/score_matrix_1m.parquet" > "$W/logs/score_matrix_1m.out" 2>&1
    measure "compare_models_$TRN" "$PY" bench/python/compare_models.py "$W/ts_train_$TRN.parquet" \
        "$W/models-logistic/churn/v1/metrics.json" "$W/models-gbdt/churn/v1/metrics.json" --json "$W/compare_$TRN.json"
    measure compare_models_all_20k "$PY" bench/python/compare_models.py "$W/ts20k.parquet" "$W/models-all/churn/v1/metrics.json" --skip-fixed300
    TREES="$(json "$W/models-gbdt/churn/v1/metrics.json" "next(c['params']['trees_kept'] for c in d['candidates'] if c['algorithm'] == 'gbdt')")"
    measure score_throughput_1m "$PY" bench/python/score_throughput.py "$W/score_matrix_1m.parquet" "$W/ts_train_$TRN.parquet" --trees "$TREES" \
        --cg "logistic=$W/score_1m_logistic.parquet.summary.json" --cg "gbdt=$W/score_1m_gbdt.parquet.summary.json"
fi

# ---------------------------------------------------------------- micro-benchmarks
if stage micro && [[ $MICRO == 1 ]]; then
    echo ">> cargo bench --bench online (load $(load1))"
    note "micro: load before cargo bench: $(load1)"
    cargo bench --quiet --bench online > "$W/logs/micro_online.out" 2> "$W/logs/micro_online.err" \
        || { tail -20 "$W/logs/micro_online.err"; exit 1; }
    note "micro: load after cargo bench: $(load1); $(grep '^fixture' "$W/logs/micro_online.err" | tail -1)"
fi
# ---------------------------------------------------------------- report
echo
echo "================================================================ results ($W)"
cat "$NOTES"
echo
printf "%-28s %9s %11s %6s %7s\n" "benchmark" "wall s" "peak MiB" "CPU%" "load1"
tail -n +2 "$RESULTS" | awk -F'\t' '{printf "%-28s %9.2f %11d %6s %7s\n", $1, $2, $3, $4, $7}'
echo
echo "== batch scoring stages (seconds, from each run's summary.json)"
printf "%-20s %10s %9s %9s %9s %9s %9s %12s %10s\n" run customers features scoring writing alerts total "scored/s" "peak MiB"
for s in score_100k_gbdt score_300k_gbdt score_1m_gbdt score_1m_logistic score_2m_gbdt score_5m_gbdt; do
    f="$W/$s.parquet.summary.json"
    [[ -f "$f" ]] || continue
    python3 - "$f" "$s" "$(get "$s" wall_s)" "$(get "$s" peak_rss_mib)" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1])); s = d["seconds"]
print(f"{sys.argv[2]:<20} {d['customers_scored']:>10} {s.get('features',0):>9.2f} {s.get('scoring',0):>9.2f} "
      f"{s.get('writing',0):>9.2f} {s.get('alerts',0):>9.2f} {float(sys.argv[3]):>9.2f} "
      f"{d['customers_scored']/max(s.get('scoring',1e-9),1e-9):>12,.0f} {sys.argv[4]:>10}")
EOF
done
echo "(total = wall clock of the whole command, loading included)"
for f in "train_logistic_$TRN" "train_gbdt_$TRN" train_all_20k; do
    [[ -f "$W/logs/$f.out" ]] && { echo; echo "== $f"; sed -n '/^algorithm/,/^champion/p' "$W/logs/$f.out"; }
done
if [[ $PYTHON == 1 ]]; then
    for f in "compare_models_$TRN" compare_models_all_20k score_throughput_1m; do
        echo; echo "== $f"; grep -v '^RESULT' "$W/logs/$f.out" | sed -n '/^model\|^scorer/,$p'
    done
fi
if [[ $MICRO == 1 ]]; then
    echo; echo "== cargo bench --bench online"; grep -v '^\s*$' "$W/logs/micro_online.out" | tail -n 20
fi
echo
date -u +"run finished %Y-%m-%dT%H:%M:%SZ; load $(cat /proc/loadavg)"
