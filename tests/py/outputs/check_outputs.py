"""churnguard's outputs read as they are by pyarrow, pandas, polars and DuckDB.

    python check_outputs.py SCORES.parquet SCORES.csv TRAINING_SET.parquet FEATURES.parquet \
        VALIDATION_PREDICTIONS.parquet SUMMARY.json

Exits non-zero, naming the file and column, when a type is not the one documented in the
README (as_of a UTC timestamp, early_warnings a list of strings, summary numbers as numbers).
"""
import json
import sys

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

scores, scores_csv, training, features, validation, summary = sys.argv[1:7]
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


UTC_US = pa.timestamp("us", tz="UTC")
for path in (scores, training, features, validation):
    schema = pq.read_schema(path)
    check(schema.field("as_of").type == UTC_US, f"{path}: pyarrow as_of is {schema.field('as_of').type}")
    frame = pd.read_parquet(path)
    check(str(frame["as_of"].dtype) == "datetime64[us, UTC]", f"{path}: pandas as_of is {frame['as_of'].dtype}")
    rel = duckdb.sql(f"select typeof(as_of) as t, count(*) as n from '{path}' group by all").fetchall()
    check([t for t, _ in rel] == ["TIMESTAMP WITH TIME ZONE"], f"{path}: duckdb as_of is {rel}")
    check(pl.read_parquet(path).schema["as_of"] == pl.Datetime("us", "UTC"), f"{path}: polars as_of")

# early_warnings: a list of strings in every tool, not a joined string.
w = pq.read_schema(scores).field("early_warnings").type
check(pa.types.is_list(w) or pa.types.is_large_list(w), f"{scores}: pyarrow early_warnings is {w}")
frame = pd.read_parquet(scores)
lists = frame["early_warnings"].map(list)
check(all(isinstance(x, str) for row in lists for x in row), f"{scores}: pandas early_warnings items are str")
fired = lists.map(len).max()
check(fired >= 1, f"{scores}: some customer has a rule that fired (max {fired})")
check(not any("," in x for row in lists for x in row), f"{scores}: no comma-joined names")
((dtype,),) = duckdb.sql(f"select distinct typeof(early_warnings) from '{scores}'").fetchall()
check(dtype == "VARCHAR[]", f"{scores}: duckdb early_warnings is {dtype}")
check(pl.read_parquet(scores).schema["early_warnings"] == pl.List(pl.String), f"{scores}: polars early_warnings")
# The same rows through the CSV file: as_of RFC 3339 UTC text that tools parse as UTC.
csv = pd.read_csv(scores_csv, keep_default_na=False)
parsed = pd.to_datetime(csv["as_of"], utc=True)
check((parsed == frame["as_of"].iloc[0]).all(), f"{scores_csv}: as_of text parses to the Parquet timestamp")
joined = sorted(zip(csv["customer_id"], csv["early_warnings"]))
listed = sorted(zip(frame["customer_id"], lists.map(",".join)))
check(joined == listed, f"{scores_csv}: early_warnings joined with ',' equals the Parquet lists")

# The validation predictions: one row per validation example of metrics.json.
v = pl.read_parquet(validation)
check(v.height > 0 and "champion_probability" in v.columns, f"{validation}: {v.height} rows, {v.columns}")


def strings_that_are_numbers(node, where="$"):
    if isinstance(node, dict):
        for k, x in node.items():
            yield from strings_that_are_numbers(x, f"{where}.{k}")
    elif isinstance(node, list):
        for i, x in enumerate(node):
            yield from strings_that_are_numbers(x, f"{where}[{i}]")
    elif isinstance(node, str):
        try:
            float(node)
            yield where
        except ValueError:
            pass


s = json.load(open(summary))
bad = list(strings_that_are_numbers(s))
check(not bad, f"{summary}: no number written as text {bad[:5]}")
check(all(isinstance(q["quantile"], float) and isinstance(q["churn_probability"], float) for q in s["score_quantiles"]),
      f"{summary}: score_quantiles are {{quantile, churn_probability}} numbers")
check(all(isinstance(f["psi"], (float, int)) or f["psi"] is None for f in s["feature_psi"]), f"{summary}: feature_psi numbers")

print(f"{len(failures)} failed")
sys.exit(1 if failures else 0)
