#!/usr/bin/env bash
# Times the synthetic data generator at scale: 1,000,000 customers over two years.
#
#   bench/generate.sh [customers] [out-dir]        (defaults: 1000000 /tmp/cg1m)
#
# Builds the release binary once, runs `churnguard generate` under /usr/bin/time -v and
# prints wall time and peak RSS, then rows per table and bytes on disk.
#
# `churnguard generate` also loads and summarises the base it wrote, so the totals of
# /usr/bin/time include one full read of the tables; "generation" below is the time
# until the generator's own report line ("wrote ...") appeared.
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
TIMES="$(mktemp)"
STDOUT="$(mktemp)"
trap 'rm -f "$TIMES" "$STDOUT"' EXIT

echo "== churnguard generate --customers $CUSTOMERS --seed $SEED --out $OUT"
start=$(date +%s.%N)
# Rust's stdout is line-buffered, so each line is stamped when it is printed.
if ! /usr/bin/time -v -o "$TIMES" "$BIN" generate --customers "$CUSTOMERS" --seed "$SEED" --out "$OUT" \
    | while IFS= read -r line; do printf '%s\t%s\n' "$(date +%s.%N)" "$line"; done >"$STDOUT"; then
    cut -f2- "$STDOUT"
    cat "$TIMES" >&2
    exit 1
fi
cut -f2- "$STDOUT" | sed -n '1,/^  churn /p'

echo
echo "== resources"
wrote_at=$(awk -F'\t' '$2 ~ /^wrote / {print $1; exit}' "$STDOUT")
if [[ -n "$wrote_at" ]]; then
    awk -v a="$start" -v b="$wrote_at" 'BEGIN { printf "  generation (until the report line): %.1f s\n", b - a }'
fi
grep -E "Elapsed \(wall clock\)|Maximum resident set size|User time|System time|Percent of CPU" "$TIMES" | sed 's/^\s*/  /'
rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$TIMES")
awk -v kb="$rss_kb" 'BEGIN { printf "  peak RSS (whole command): %.2f GiB\n", kb / 1048576 }'

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
