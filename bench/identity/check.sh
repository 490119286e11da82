#!/usr/bin/env bash
# Byte-identity check of a churnguard binary against outputs of an earlier binary on the same
# inputs (made by running this same script with the earlier binary, then copying its outputs
# into BASELINE).  Usage: BASELINE=DIR bash bench/identity/check.sh path/to/churnguard [outdir]
# Writes to outdir (default: a temp dir) and prints SAME/DIFF per artifact.
set -uo pipefail
BIN="$(realpath "$1")"; HERE="$(cd "$(dirname "$0")" && pwd)"; OUT="${2:-$(mktemp -d /tmp/cgcheck.XXXX)}"
B="${BASELINE:?set BASELINE: a directory holding the outputs of the old binary (data/, models/, scores.parquet, ...)}"
mkdir -p "$OUT"; cd "$OUT"
export CHURNGUARD_LOG=warn
for v in $(compgen -v CHURNGUARD_ || true); do [ "$v" = CHURNGUARD_LOG ] || unset "$v"; done
AS_OF=2024-12-01
run() { "$@" >"$OUT/last.log" 2>&1 || { echo "FAILED: $*"; cat "$OUT/last.log" | tail -5; }; }
# 1. training on the same data (model bytes, report, metrics, manifest minus times)
rm -rf models; run "$BIN" train --data $B/data --models models --algorithms logistic,tree,gbdt
cmp -s models/churn/v1/model.bin $B/models/churn/v1/model.bin && echo "SAME train/model.bin" || echo "DIFF train/model.bin"
for f in metrics.json report.html manifest.json; do echo -n "train/$f: "; python3 "$HERE/norm.py" models/churn/v1/$f $B/models/churn/v1/$f; done
# 2. nightly score with the baseline's model (fresh alert state)
rm -rf smodels; cp -a $B/models smodels; rm -f smodels/churn/alerts.db*
run "$BIN" score --data $B/data --models smodels --as-of $AS_OF --out scores.parquet --alerts alerts.jsonl
cmp -s scores.parquet $B/scores.parquet && echo "SAME score/scores.parquet" || echo "DIFF score/scores.parquet"
python3 - "$OUT/scores.parquet.summary.json" "$B/scores.parquet.summary.json" <<'PY'
import json,sys
a,b=[json.load(open(p)) for p in sys.argv[1:]]
for x in (a,b): x.pop("seconds",None); x.pop("output",None)
print(("SAME" if a==b else "DIFF")+" score/summary.json (minus seconds, output)")
PY
python3 - alerts.jsonl $B/alerts.jsonl <<'PY'
import json,sys
def load(p):
    out=[]
    for l in open(p):
        d=json.loads(l)
        for k in ("raised_at","alert_id","id","delivered_at"): d.pop(k,None)
        out.append(d)
    return out
a,b=[sorted(load(p),key=lambda d:d["idempotency_key"]) for p in sys.argv[1:]]
print(("SAME" if a==b else f"DIFF ({len(a)} vs {len(b)})")+" score/alerts.jsonl (minus raised_at/ids)")
PY
# 3. features
run "$BIN" features --data $B/data --as-of $AS_OF --models $B/models --out feat.parquet
cmp -s feat.parquet $B/feat.parquet && echo "SAME features/as-of" || echo "DIFF features/as-of"
run "$BIN" features --data $B/data --training-set --out ts.parquet
cmp -s ts.parquet $B/ts.parquet && echo "SAME features/training-set" || echo "DIFF features/training-set"
# 4. retention and backtest
run "$BIN" retention --data $B/data --as-of $AS_OF --scores $B/scores.parquet --out ret.html
cmp -s ret.html $B/ret.html && echo "SAME retention/html" || echo "DIFF retention/html"
"$BIN" retention --data $B/data --as-of $AS_OF --scores $B/scores.parquet --out ret2.html --json > ret.json 2>/dev/null
python3 - ret.json $B/ret.json <<'PY'
import json,sys,math
def eq(a,b):
    if isinstance(a,float) or isinstance(b,float):
        return isinstance(a,(int,float)) and isinstance(b,(int,float)) and math.isclose(a,b,rel_tol=1e-9,abs_tol=1e-12)
    if isinstance(a,dict): return isinstance(b,dict) and a.keys()==b.keys() and all(eq(a[k],b[k]) for k in a)
    if isinstance(a,list): return isinstance(b,list) and len(a)==len(b) and all(map(eq,a,b))
    return a==b
a,b=[json.load(open(p)) for p in sys.argv[1:]]
print(("SAME" if eq(a,b) else "DIFF")+" retention/json (floats to 1e-9)")
PY
"$BIN" backtest --data $B/data --models $B/models --scores $B/old-scores.parquet --json > bt.json 2>/dev/null
cmp -s bt.json $B/bt.json && echo "SAME backtest/json" || echo "DIFF backtest/json"
"$BIN" inspect --data $B/data --json > inspect.json 2>/dev/null
cmp -s inspect.json $B/inspect.json && echo "SAME inspect/json" || echo "DIFF inspect/json"
echo "outputs in $OUT"
