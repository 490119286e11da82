"""Compares two `churnguard score` CSV files of the same night row by row.

    python3 compare_scores.py NEW.csv OLD.csv

Prints the largest differences and exits non-zero unless: the same customers in the
same order, churn probabilities within 1e-12, the same risk tiers, health scores,
segments, early warnings and reason features (in order), reason values equal, reason
contributions and every `shap_*` column within 1e-9 (float summation order only).
Standard library only.
"""
import csv
import sys


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def num(s):
    return float(s) if s not in ("", None) else None


def main(new_path, old_path):
    new, old = rows(new_path), rows(old_path)
    bad = []
    if len(new) != len(old):
        bad.append(f"{len(new)} rows against {len(old)}")
    same = ["customer_id", "as_of", "risk_tier", "health_score", "rfm_segment", "early_warnings"]
    same += [f"reason_{i}" for i in (1, 2, 3)] + [f"reason_{i}_value" for i in (1, 2, 3)]
    close = [f"reason_{i}_contribution" for i in (1, 2, 3)]
    close += [c for c in (new[0].keys() if new else []) if c.startswith("shap_")]
    worst = {"churn_probability": 0.0, "contribution": 0.0}
    for i, (a, b) in enumerate(zip(new, old)):
        for c in same:
            if a.get(c) != b.get(c):
                bad.append(f"row {i} ({b['customer_id']}): {c} {a.get(c)!r} != {b.get(c)!r}")
        dp = abs(num(a["churn_probability"]) - num(b["churn_probability"]))
        worst["churn_probability"] = max(worst["churn_probability"], dp)
        if dp > 1e-12:
            bad.append(f"row {i}: churn_probability differs by {dp:.3e}")
        for c in close:
            x, y = num(a.get(c)), num(b.get(c))
            if (x is None) != (y is None):
                bad.append(f"row {i}: {c} {x} != {y}")
            elif x is not None:
                d = abs(x - y)
                worst["contribution"] = max(worst["contribution"], d)
                if d > 1e-9:
                    bad.append(f"row {i}: {c} differs by {d:.3e}")
    print(f"{len(new)} rows; {len(close)} contribution columns compared; "
          f"max |d churn_probability| {worst['churn_probability']:.3e}; "
          f"max |d contribution| {worst['contribution']:.3e}; "
          f"tiers, health, segments, warnings, reason features and values: "
          f"{'identical' if not bad else 'DIFFERENT'}")
    for line in bad[:20]:
        print("  " + line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
