#!/usr/bin/env python3
"""Request bodies for the scoring-service benchmark: one `POST /v1/score` JSON body per
line, `{"customer_id": ..., "features": {name: value, ...}}`, for a fixed random sample
of the customers of a real feature snapshot (`churnguard features --as-of ... --models M`).

    python bodies.py FEATURES.parquet SCHEMA.json OUT.jsonl [--customers 256] [--seed 6]

SCHEMA.json is the answer of `GET /v1/models/churn`: the body carries exactly the
model's features in its order; an undefined value (NaN/null in the snapshot) is sent
as `null`, which the service accepts only for the features marked `may_be_missing`.
"""

import argparse
import json
import math
import sys

import polars as pl


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("features")
    ap.add_argument("schema")
    ap.add_argument("out")
    ap.add_argument("--customers", type=int, default=256)
    ap.add_argument("--seed", type=int, default=6)
    a = ap.parse_args()
    schema = json.load(open(a.schema))
    cols = [c["name"] for c in schema["features"]]
    may_be_missing = {c["name"] for c in schema["features"] if c["may_be_missing"]}
    df = pl.read_parquet(a.features)
    absent = [c for c in cols if c not in df.columns]
    if absent:
        print(f"{a.features} lacks the model's features {absent[:5]}", file=sys.stderr)
        return 2
    n = min(a.customers, df.height)
    sample = df.sample(n=n, seed=a.seed, shuffle=True)
    with_null = 0
    with open(a.out, "w") as out:
        for row in sample.iter_rows(named=True):
            feats = {}
            for c in cols:
                v = row[c]
                if v is None or (isinstance(v, float) and math.isnan(v)):
                    if c not in may_be_missing:
                        print(f"{row['customer_id']}: {c} is undefined but not may_be_missing", file=sys.stderr)
                        return 2
                    v = None
                elif float(v).is_integer():
                    v = int(v)  # what a CRM would send for counts
                feats[c] = v
            with_null += any(v is None for v in feats.values())
            out.write(json.dumps({"customer_id": row["customer_id"], "features": feats}, separators=(",", ":")) + "\n")
    size = sum(len(l) for l in open(a.out))
    print(f"{n} request bodies ({len(cols)} features, {with_null} with a null feature, {size / n:.0f} bytes each on average) -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
