#!/usr/bin/env python3
"""scikit-learn / LightGBM predict_proba throughput (customers per second) on the same
feature matrix that churnguard's nightly batch scores, next to churnguard's own scoring
stage from its run summaries (issue #7: "report scoring throughput alone (customers/s)
for logistic and gbdt, against scikit-learn's and LightGBM's predict_proba on the same
matrix in the same run").

    churnguard features --data DIR --as-of DATE --models M --out MATRIX.parquet   # the scored matrix
    churnguard score --data DIR --models M --as-of DATE --out S.parquet            # S.parquet.summary.json
    bench/.venv/bin/python bench/python/score_throughput.py MATRIX.parquet TRAINING_SET.parquet \
        [--cg logistic=S_logistic.parquet.summary.json --cg gbdt=S_gbdt.parquet.summary.json]

The peers are fitted on the training set's `split == "train"` rows exactly as
compare_models.py fits them (LogisticRegression: median impute, signed log1p,
standardise; LightGBM: churnguard's gbdt hyper-parameters, 300 trees); fit time is not
what is measured here. predict_proba runs --repeats times over the whole matrix; the
best and median are reported. churnguard's number is its `scoring` stage (probability,
calibration, health, tier and top-3 reasons for every customer, both cores) divided
into the customers it scored.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

# LightGBM's OpenMP threads spin while waiting by default; on a shared 2-core machine
# that makes 2 threads several times slower than 1 (measured: 8.1 s vs 1.8 s for the
# same fit at load ~3). Passive waiting gives LightGBM its best time here.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

KEYS = {"customer_id", "as_of", "label", "split"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("matrix", help="churnguard `features --as-of ... --models M` output")
    ap.add_argument("training_set", help="churnguard `features --training-set` output (to fit the peers)")
    ap.add_argument("--cg", action="append", default=[], metavar="NAME=SUMMARY.json",
                    help="a churnguard score run summary, e.g. gbdt=out.parquet.summary.json")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--trees", type=int, default=300)
    a = ap.parse_args()

    import lightgbm as lgb
    import sklearn
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    ts = pl.read_parquet(a.training_set)
    feats = [c for c in ts.columns if c not in KEYS]
    tr = ts.filter(pl.col("split") == "train")
    xt = tr.select(pl.col(feats).cast(pl.Float64)).to_numpy()
    yt = tr["label"].cast(pl.Int8).to_numpy()
    m = pl.read_parquet(a.matrix)
    missing = [f for f in feats if f not in m.columns]
    if missing:
        print(f"the matrix lacks training features {missing[:5]}...: export it with --models", file=sys.stderr)
        return 2
    xm = np.ascontiguousarray(m.select(pl.col(feats).cast(pl.Float64)).to_numpy())
    n = len(xm)
    print(f"matrix {a.matrix}: {n} customers x {len(feats)} features; peers fitted on {len(yt)} training rows")
    print(f"scikit-learn {sklearn.__version__}, LightGBM {lgb.__version__}, {a.threads} threads for LightGBM (OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']})")

    binary = np.array([np.all(np.isin(c[~np.isnan(c)], [0.0, 1.0])) for c in xt.T])

    def slog1p(z):
        z = z.copy()
        z[:, ~binary] = np.sign(z[:, ~binary]) * np.log1p(np.abs(z[:, ~binary]))
        return z

    lr = make_pipeline(SimpleImputer(strategy="median"), FunctionTransformer(slog1p), StandardScaler(),
                       LogisticRegression(C=1.0, max_iter=1000)).fit(xt, yt)
    gb = lgb.LGBMClassifier(n_estimators=a.trees, objective="binary", learning_rate=0.05, max_depth=6,
                            num_leaves=63, subsample=0.8, subsample_freq=1, colsample_bytree=0.8,
                            min_child_weight=5.0, reg_lambda=1.0, n_jobs=a.threads, verbose=-1,
                            random_state=7).fit(xt, yt)

    rows = []
    for name, model in [("sklearn LogisticRegression predict_proba", lr),
                        (f"LightGBM predict_proba ({a.trees} trees)", gb)]:
        secs = []
        for _ in range(a.repeats):
            t = time.perf_counter()
            model.predict_proba(xm)
            secs.append(time.perf_counter() - t)
        rows.append((name, n, min(secs), statistics.median(secs)))
    for spec in a.cg:
        name, path = spec.split("=", 1)
        s = json.loads(Path(path).read_text())
        k = s["customers_scored"]
        rows.append((f"churnguard {name} scoring stage ({s.get('model', '?')})", k, s["seconds"]["scoring"], None))

    print()
    print(f"{'scorer':<58} {'customers':>10} {'best s':>8} {'median s':>9} {'customers/s':>13}")
    for name, k, best, med in rows:
        print(f"{name:<58} {k:>10} {best:>8.3f} {('-' if med is None else format(med, '.3f')):>9} {k / best:>13,.0f}")
        print(f"RESULT throughput {json.dumps({'scorer': name, 'customers': k, 'best_s': best, 'median_s': med, 'per_s': k / best})}",
              file=sys.stderr)
    by = {r[0]: r[1] / r[2] for r in rows}
    for cgname, peer in [("logistic", "sklearn LogisticRegression predict_proba"),
                         ("gbdt", f"LightGBM predict_proba ({a.trees} trees)")]:
        cg = next((r for r in rows if r[0].startswith(f"churnguard {cgname} ")), None)
        if cg:
            print(f"ratio churnguard {cgname} / {peer}: {by[cg[0]] / by[peer]:.2f}x customers/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
