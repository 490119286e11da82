#!/usr/bin/env bash
# The outbox's hot paths on PostgreSQL against SQLite, in the same run (issue 15's
# targets): 16 concurrent writers recording tier changes (no alert: the service's
# state-only recordings), and 16 threads asking whether confirming scores need writing
# (the service's path for a score that changes nothing: no write). benches/outbox.rs does
# the work; farm-bench alternates the two backends run by run (A = PostgreSQL, B = SQLite).
#
#   bash bench/outbox.sh [THREADS] [SECONDS] [RUNS]      # defaults 16 10 3
#
# Starts a throwaway PostgreSQL server on loopback (tests/lib/pg.sh; installs Debian's
# postgresql when absent); the SQLite file is in the same work directory.
# Env: CG_OUTBOX_BENCH_DIR (default: a new temporary directory).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
THREADS="${1:-16}" SECONDS_EACH="${2:-10}" RUNS="${3:-3}"
WORK="${CG_OUTBOX_BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/churnguard-outbox-bench.XXXXXX")}"
chmod 755 "$WORK"  # the server runs as `postgres`, which must reach WORK/pg
# shellcheck source=../tests/lib/pg.sh
source tests/lib/pg.sh
pg_start "$WORK/pg"

cargo bench --locked --bench outbox --no-run 2> "$WORK/build.log" || { cat "$WORK/build.log"; exit 1; }
BENCH="$(grep -oE '[^ (]*deps/outbox-[0-9a-f]+' "$WORK/build.log" | tail -1)"
[ -x "$BENCH" ] || { echo "bench binary not found in $WORK/build.log" >&2; exit 1; }
cp "$BENCH" "$WORK/outbox-bench"
BENCH="$WORK/outbox-bench"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for mode in writers confirm; do
    rm -f "$WORK"/sqlite.db* "$WORK/$mode".*.txt
    farm-bench -n "$RUNS" --warmup 0 --timeout $(( (SECONDS_EACH + 20) * RUNS * 2 + 60 )) \
        --vs "sh -c 'exec $BENCH $WORK/sqlite.db $mode $THREADS $SECONDS_EACH >> $WORK/$mode.sqlite.txt 2>&1'" \
        -- sh -c "exec $BENCH $PG_URL $mode $THREADS $SECONDS_EACH >> $WORK/$mode.pg.txt 2>&1" \
        > "$WORK/$mode.farm.txt" 2>&1 || true
    echo "== $mode ($THREADS threads, ${SECONDS_EACH}s each run)"
    paste -d' ' <(grep per_second "$WORK/$mode.pg.txt") <(grep per_second "$WORK/$mode.sqlite.txt") |
        awk '{ split($6, a, "="); split($12, b, "="); printf "  postgres %8.0f/s   sqlite %8.0f/s   ratio %.2f\n", a[2], b[2], a[2] / b[2] }'
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
