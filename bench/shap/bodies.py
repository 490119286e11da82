"""`POST /v1/score` bodies from a feature table: one JSON line per customer,
`{"customer_id": ..., "features": {name: value}}`, the model's features in its order,
an empty (undefined) value as null; a customer with an undefined value the model does
not allow (`may_be_missing` false) is left out. Standard library only.

    python3 bodies.py FEATURES.csv MANIFEST.json OUT.jsonl [N]
"""
import csv
import json
import sys


def main(features, manifest, out, n="256"):
    cols = json.load(open(manifest))["features"]["columns"]
    names = [c["name"] for c in cols]
    required = [c["name"] for c in cols if not c["may_be_missing"]]
    written = 0
    with open(features, newline="") as f, open(out, "w") as o:
        for row in csv.DictReader(f):
            if written >= int(n):
                break
            if any(row[k] == "" for k in required):
                continue
            written += 1
            feats = {k: (float(row[k]) if row[k] != "" else None) for k in names}
            o.write(json.dumps({"customer_id": row["customer_id"], "features": feats}) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
