"""shap's own TreeExplainer on `churnguard models export --trees`, against churnguard.

For each exported model: shap's path-dependent SHAP values of the feature table that
`churnguard features --models` wrote must equal the `shap_<feature>` columns of
`churnguard score --contributions` within 1e-6, shap's expected value must equal
`shap_base`, and shap's own walk of the trees (its additivity check) must give
logit(churn_probability): so shap routes every value, NaN included, as churnguard does.

    python check_shap.py --export E.json --features F.csv --scores S.csv [...]
"""

import argparse
import json
import math
import sys

import numpy as np
import pandas as pd
import shap

TOL = 1e-6


def load_export(path):
    with open(path) as f:
        model = json.load(f)
    model["trees"] = [
        {k: np.array(v, dtype=np.int32 if k.startswith(("children", "features")) else np.float64)
         for k, v in t.items()}
        for t in model["trees"]
    ]
    return model


def check(export_path, features_path, scores_path):
    model = load_export(export_path)
    names = model["feature_names"]
    feats = pd.read_csv(features_path)
    scores = pd.read_csv(scores_path)
    joined = feats.merge(scores, on="customer_id", suffixes=("", "_score"), validate="one_to_one")
    if len(joined) != len(scores) or len(joined) == 0:
        sys.exit(f"{scores_path}: {len(scores)} scored customers, {len(joined)} with features")
    x = joined[names].to_numpy(dtype=np.float64)
    missing = int(np.isnan(x).sum())
    explainer = shap.TreeExplainer(model, feature_perturbation="tree_path_dependent", model_output="raw")
    # check_additivity: shap walks the trees itself and compares with the sum of its values.
    sv = explainer.shap_values(x, check_additivity=True)
    ours = joined[[f"shap_{n}" for n in names]].to_numpy(dtype=np.float64)
    worst = float(np.max(np.abs(sv - ours)))
    base = float(np.max(np.abs(joined["shap_base"].to_numpy() - explainer.expected_value)))
    margin = explainer.expected_value + sv.sum(axis=1)
    p = joined["churn_probability"].to_numpy()
    logit = np.log(p / (1.0 - p))
    walk = float(np.max(np.abs(margin - logit)))
    print(
        f"{model['model']} {model['version']} ({model['algorithm']}, {len(model['trees'])} trees): "
        f"{len(joined)} customers x {len(names)} features ({missing} undefined values), "
        f"max |shap - churnguard| {worst:.3g}, |expected_value - shap_base| {base:.3g}, "
        f"max |shap margin - logit(p)| {walk:.3g}"
    )
    ok = worst <= TOL and base <= TOL and walk <= TOL
    if not ok:
        j = np.unravel_index(np.argmax(np.abs(sv - ours)), sv.shape)
        print(f"  worst at customer {joined['customer_id'].iloc[j[0]]}, feature {names[j[1]]}: "
              f"shap {sv[j]} vs churnguard {ours[j]}")
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--export", action="append", required=True)
    ap.add_argument("--features", action="append", required=True)
    ap.add_argument("--scores", action="append", required=True)
    a = ap.parse_args()
    results = [check(e, f, s) for e, f, s in zip(a.export, a.features, a.scores, strict=True)]
    if not all(results):
        sys.exit("shap disagrees with churnguard")
    print("shap agrees with churnguard on every model")


if __name__ == "__main__":
    main()
