#!/usr/bin/env python3
"""The Python path of the nightly scoring, timed from inside: what a notebook or a Python
job does instead of `churnguard score` (issue 12's target: within 10% of the CLI on a 1M
base). bench/python/score_vs_cli.sh runs it back to back with the CLI under farm-bench.

    python bench/python/score_api.py --data DIR --models DIR --as-of DATE [--out FILE.parquet]

Prints one line per stage (load and validate the base, load the model, score, write the
frame as Parquet when --out is given) with its wall seconds, so that a gap to the CLI
shows where it is.
"""

from __future__ import annotations

import argparse
import sys
import time

import churnguard as cg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--name", default="churn")
    ap.add_argument("--as-of", required=True)
    ap.add_argument("--out", help="also write the scores as Parquet (the CLI writes its file)")
    a = ap.parse_args()

    t = time.perf_counter()
    stages = []

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        stages.append((name, now - t))
        t = now

    base = cg.CustomerBase.from_dir(a.data)
    lap("from_dir")
    model = cg.Model.load(a.models, name=a.name)
    lap("Model.load")
    scores = model.score(base, as_of=a.as_of)
    lap("score")
    if a.out:
        scores.write_parquet(a.out)
        lap("write_parquet")
    for name, s in stages:
        print(f"{name:14s} {s:8.2f} s")
    print(f"scored {scores.height} customers x {scores.width} columns with {model.name} {model.version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
