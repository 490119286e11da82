#!/usr/bin/env python3
"""The FastAPI + uvicorn peer of churnguard's scoring service (issue 6 benchmark).

It serves the scikit-learn equivalent of churnguard's `logistic` model with the same
request and answer shape as `POST /v1/score`:

    {"customer_id": "c42", "features": {"tenure_days": 400, ..., "csat_mean_90d": null}}
 -> {"customer_id", "churn_probability", "health_score", "risk_tier", "alert",
     "reasons": [{"feature", "value", "contribution"}], "model": {"name", "version"},
     "ignored_fields"}

Two steps, so that the uvicorn workers load one fitted model instead of each fitting
its own:

    # fit on `churnguard features --training-set` output, pickle the result
    python fastapi_app.py fit --train TRAIN.parquet --manifest M/churn/v1/manifest.json --out peer.pkl
    # serve it (bench/service/run.sh does this with 2 workers)
    CG_PEER_MODEL=peer.pkl uvicorn fastapi_app:app --workers 2 --port 18081

The model mirrors churnguard's logistic pipeline, fitted on the `split == "train"` rows:
signed log1p on the features the manifest marks `log1p` (all non-binary features
without a manifest), median imputation, StandardScaler, L2 LogisticRegression (C=1),
then Platt scaling fitted on the `validation` rows; tiers are the top 5% / 20% of
validation customers (churnguard's capacity policy), health is the share of validation
customers with a higher probability, and the reasons are the top-3 positive coef * z.

Per request the handler validates the body with pydantic (numbers only, `null` only
for features that may be undefined, a missing required feature is a 422 naming it),
runs the fitted sklearn steps on one row and answers. The handler is `async def`
(CPU-bound work on the event loop is the fastest option here; a sync handler would
add a thread hop per request). sklearn's `assume_finite` is on because the handler
checks finiteness itself.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import sys
import time
from typing import Optional, Union

import numpy as np

KEYS = {"customer_id", "as_of", "label", "split"}


def signed_log1p(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """sign(x) * log1p(|x|) on the columns in `mask` (NaN stays NaN)."""
    x = np.array(x, dtype=np.float64, copy=True)
    c = x[:, mask]
    x[:, mask] = np.sign(c) * np.log1p(np.abs(c))
    return x


# --------------------------------------------------------------------------- fit


def fit(train: str, manifest: Optional[str], out: str) -> int:
    import json

    import polars as pl
    import sklearn
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    t0 = time.perf_counter()
    ts = pl.read_parquet(train)
    cols = [c for c in ts.columns if c not in KEYS]
    if manifest:
        m = json.load(open(manifest))
        spec = m["features"]["columns"]
        feats = [c["name"] for c in spec]
        absent = [f for f in feats if f not in cols]
        if absent:
            print(f"the training set lacks the manifest's features {absent[:5]}", file=sys.stderr)
            return 2
        log1p = np.array([c["transform"] == "log1p" for c in spec])
        may_be_missing = [c["name"] for c in spec if c["may_be_missing"]]
    else:
        feats = cols
        x_all = ts.select(pl.col(feats).cast(pl.Float64)).to_numpy()
        log1p = np.array([not np.all(np.isin(c[~np.isnan(c)], [0.0, 1.0])) for c in x_all.T])
        may_be_missing = [f for f, c in zip(feats, x_all.T) if np.isnan(c).any()]

    def matrix(split: str):
        part = ts.filter(pl.col("split") == split)
        x = part.select(pl.col(feats).cast(pl.Float64)).to_numpy()
        y = part["label"].cast(pl.Int8).to_numpy()
        return x, y

    xt, yt = matrix("train")
    xv, yv = matrix("validation")
    pipe = make_pipeline(
        FunctionTransformer(signed_log1p, kw_args={"mask": log1p}),
        SimpleImputer(strategy="median"),
        StandardScaler(),
        LogisticRegression(C=1.0, max_iter=2000),
    )
    pipe.fit(xt, yt)
    # Platt scaling on validation margins (churnguard calibrates the same way).
    platt = LogisticRegression(C=1e6, max_iter=1000)
    platt.fit(pipe.decision_function(xv).reshape(-1, 1), yv)
    a, b = float(platt.coef_[0, 0]), float(platt.intercept_[0])
    pv = 1.0 / (1.0 + np.exp(-(a * pipe.decision_function(xv) + b)))
    high, medium = float(np.quantile(pv, 0.95)), float(np.quantile(pv, 0.80))
    from sklearn.metrics import roc_auc_score

    auc = float(roc_auc_score(yv, pv)) if len(set(yv)) == 2 else float("nan")
    model = {
        "pipeline": pipe,
        "features": feats,
        "may_be_missing": may_be_missing,
        "platt": (a, b),
        "thresholds": {"high": high, "medium": medium},
        "validation_sorted": np.sort(pv),
        "version": f"sklearn-{sklearn.__version__}",
        "validation_roc_auc": auc,
    }
    with open(out, "wb") as f:
        pickle.dump(model, f)
    print(
        f"fitted {len(feats)} features on {len(yt)} training rows in {time.perf_counter() - t0:.1f}s; "
        f"validation ROC AUC {auc:.4f} ({len(yv)} rows); high >= {high:.4f}, medium >= {medium:.4f} -> {out}"
    )
    return 0


# --------------------------------------------------------------------------- serve

app = None
if os.environ.get("CG_PEER_MODEL"):
    import sklearn
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, StrictFloat, StrictInt

    sklearn.set_config(assume_finite=True)
    with open(os.environ["CG_PEER_MODEL"], "rb") as f:
        MODEL = pickle.load(f)
    PIPE = MODEL["pipeline"]
    PRE = PIPE[:-1]  # signed log1p -> median imputation -> standardisation
    CLF = PIPE[-1]
    COEF = CLF.coef_[0]
    FEATURES = MODEL["features"]
    INDEX = {f: i for i, f in enumerate(FEATURES)}
    MAY_BE_MISSING = set(MODEL["may_be_missing"])
    PLATT_A, PLATT_B = MODEL["platt"]
    HIGH, MEDIUM = MODEL["thresholds"]["high"], MODEL["thresholds"]["medium"]
    VAL = MODEL["validation_sorted"]
    MODEL_INFO = {"name": "churn", "version": MODEL["version"]}

    class ScoreRequest(BaseModel):
        customer_id: str
        features: dict[str, Union[StrictInt, StrictFloat, None]]

    app = FastAPI(title="churn scoring (scikit-learn peer)")

    def error(status: int, code: str, message: str, field: str) -> JSONResponse:
        return JSONResponse(status_code=status, content={"error": {"code": code, "message": message, "field": field}})

    @app.get("/readyz")
    async def readyz():
        return {"status": "ready", "model": MODEL_INFO}

    @app.post("/v1/score")
    async def score(req: ScoreRequest):
        row = np.full((1, len(FEATURES)), np.nan)
        ignored = []
        for name, value in req.features.items():
            i = INDEX.get(name)
            if i is None:
                ignored.append(f"features.{name}")
                continue
            if value is None:
                if name not in MAY_BE_MISSING:
                    return error(422, "invalid_input", f"{name} may not be null", f"features.{name}")
                continue
            if not math.isfinite(value):
                return error(422, "invalid_input", f"{name} is not a finite number", f"features.{name}")
            row[0, i] = value
        for name in FEATURES:
            if name not in req.features and name not in MAY_BE_MISSING:
                return error(422, "invalid_input", f"missing feature {name}", f"features.{name}")
        z = PRE.transform(row)
        margin = float(CLF.decision_function(z)[0])
        p = 1.0 / (1.0 + math.exp(-(PLATT_A * margin + PLATT_B)))
        tier = "high" if p >= HIGH else "medium" if p >= MEDIUM else "low"
        health = round(100.0 * (len(VAL) - np.searchsorted(VAL, p, side="right")) / len(VAL), 1)
        contrib = COEF * z[0]
        top = np.argsort(-contrib)[:3]
        reasons = [
            {"feature": FEATURES[i], "value": None if math.isnan(row[0, i]) else float(row[0, i]), "contribution": float(contrib[i])}
            for i in top
            if contrib[i] > 0
        ]
        return {
            "customer_id": req.customer_id,
            "churn_probability": p,
            "health_score": health,
            "risk_tier": tier,
            "alert": tier == "high",
            "reasons": reasons,
            "model": MODEL_INFO,
            "ignored_fields": ignored,
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit", help="fit the peer model and pickle it")
    f.add_argument("--train", required=True, help="`churnguard features --training-set` output")
    f.add_argument("--manifest", help="churnguard manifest.json: feature order, log1p columns, may_be_missing")
    f.add_argument("--out", required=True)
    a = ap.parse_args()
    return fit(a.train, a.manifest, a.out)


if __name__ == "__main__":
    # Pickle `signed_log1p` as `fastapi_app.signed_log1p` (not `__main__.`), so that
    # the uvicorn workers, which import this file as `fastapi_app`, can unpickle it.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import fastapi_app

    sys.exit(fastapi_app.main())
