#!/usr/bin/env bash
# Times the synthetic data generator at scale: 1,000,000 customers over two years.
#
#   bench/generate.sh [customers] [out-dir]
#
# Builds the release binary once, runs `churnguard generate` under /usr/bin/time -v and
# prints wall time, peak RSS, then rows per table and bytes on disk. Note that the
# `generate` command also loads and summarises the written base after generating it, so
# the numbers include one full read of the tables.
set -euo pipefail

cd "$(dirname "$0")/.."
CUSTOMERS="${1:-1000000}"
OUT="${2:-/tmp/cg1m}"
SEED=7

if [[ ! -x /usr/bin/time ]]; then
    echo "needs GNU time at /usr/bin/time (apt-get install time)" >&2
    exit 1
fi

cargo build --release --quiet
BIN=target/release/churnguard

rm -rf "$OUT"
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT

echo "== churnguard generate --customers $CUSTOMERS --seed $SEED --out $OUT"
/usr/bin/time -v "$BIN" generate --customers "$CUSTOMERS" --seed "$SEED" --out "$OUT" 2>"$LOG" | tee "$LOG.out" >/dev/null || {
    cat "$LOG" >&2
    exit 1
}
sed -n '1,/^  churn /p' "$LOG.out"
rm -f "$LOG.out"

echo
echo "== resources"
grep -E "Elapsed \(wall clock\)|Maximum resident set size|User time|System time|Percent of CPU" "$LOG" | sed 's/^\s*/  /'
rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$LOG")
awk -v kb="$rss_kb" 'BEGIN { printf "  peak RSS: %.2f GiB\n", kb / 1048576 }'

echo
echo "== files"
total=0
for f in "$OUT"/*; do
    [[ -e "$f" ]] || continue
    bytes=$(du -b --apparent-size "$f" | cut -f1)
    total=$((total + bytes))
    printf "  %-20s %14d bytes\n" "$(basename "$f")" "$bytes"
done
printf "  %-20s %14d bytes (%s on disk)\n" "total" "$total" "$(du -sh "$OUT" | cut -f1)"
