"""churnguard on Apache Spark: score a customer base that does not fit one machine.

Every table's rows are routed to ``bucket = xxhash64(customer_id) mod buckets``; each
bucket is scored by the library as a small customer base (``groupBy("_bucket")
.applyInArrow``), with the model loaded once per Python worker. A customer's features
read only that customer's rows, so the union of the buckets' scores is what
``churnguard score`` writes for the whole base.

    from churnguard.spark import score_base
    scores = score_base(spark, tables={"customers": sdf, "logins": sdf, ...},
                        models="models", name="churn", as_of="2024-12-01", buckets=64)

or from the command line (``spark-submit path/to/churnguard/spark.py score ...`` runs
the same)::

    python -m churnguard.spark score --data DIR --models DIR --as-of DATE --out DIR --buckets N

Needs pyspark (4.x), pandas (applyInArrow requires it) and pyarrow on the driver and the
workers, the churnguard wheel on the workers, and ``models`` readable by every worker
(a shared file system). The session should set ``spark.sql.session.timeZone=UTC`` and
``spark.sql.execution.arrow.useLargeVarTypes=true`` (:func:`configure` does).

Not done here: the input guards of ``churnguard score`` (stale tables, an ``as_of``
after the data, a collapsed population) need the whole base; each bucket is scored with
``allow_stale=True``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, Optional

TABLES = ["customers", "logins", "tickets", "orders", "events", "churn"]

# The columns of `churnguard score`'s file, as a Spark schema.
SCORE_SCHEMA = (
    "customer_id string, as_of timestamp, churn_probability double, health_score double, "
    "risk_tier string, "
    + ", ".join(
        f"reason_{k} string, reason_{k}_value double, reason_{k}_contribution double"
        for k in (1, 2, 3)
    )
    + ", rfm_segment string, early_warnings array<string>, model_name string, model_version string"
    # The trend block, then the explanations (see the README's score file columns);
    # tests/spark.sh fails when this list and the library's columns part.
    + ", probability_30d_ago double, change_30d double, trend string, "
    + ", ".join(f"reason_{k}_text string" for k in (1, 2, 3))
    + ", "
    + ", ".join(
        f"{kind}_{d} double"
        for kind in ("contribution", "health")
        for d in ("engagement", "support", "billing", "relationship")
    )
    + ", primary_driver string"
)

# One loaded model per Python worker process (workers are reused between tasks).
_MODELS: Dict[tuple, object] = {}


def _model(models: str, name: str, version: str):
    import churnguard as cg

    key = (models, name, version)
    if key not in _MODELS:
        _MODELS[key] = cg.Model.load(models, name=name, version=version)
    return _MODELS[key]


def configure(builder):
    """The session settings the job's Arrow types need (UTC timestamps, large strings)."""
    return (
        builder.config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.useLargeVarTypes", "true")
    )


def score_base(
    spark,
    tables: Dict[str, object],
    models: str,
    as_of: str,
    name: str = "churn",
    buckets: int = 64,
    version: Optional[str] = None,
):
    """Scores every customer active at ``as_of`` of the base whose tables are the Spark
    DataFrames ``tables`` (``customers`` required; the data contract's columns): a Spark
    DataFrame with the columns of ``churnguard score``'s file. ``version`` None is the
    production alias, resolved once on the driver so that every bucket uses the same
    version."""
    import churnguard as cg
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import _parse_datatype_string

    if "customers" not in tables:
        raise cg.DataError("no `customers` table; it is the one required table")
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise cg.DataError(f"unknown tables {unknown}; the contract's are {TABLES}")
    if buckets < 1:
        raise cg.ConfigError(f"invalid configuration: buckets must be at least 1, got {buckets}")
    pinned = cg.Model.load(models, name=name, version=version).version
    columns = {t: list(df.columns) for t, df in tables.items()}
    tagged = None
    for t, df in tables.items():
        df = df.withColumn("_table", F.lit(t)).withColumn(
            "_bucket", F.pmod(F.xxhash64(F.col("customer_id").cast("string")), F.lit(buckets))
        )
        tagged = df if tagged is None else tagged.unionByName(df, allowMissingColumns=True)
    out_schema = _parse_datatype_string(SCORE_SCHEMA)
    arrow_out = to_arrow_schema(out_schema, timezone="UTC", prefers_large_types=True)

    def score_bucket(table):
        import pyarrow.compute as pc

        frames = {
            t: table.filter(pc.equal(table["_table"], t)).select(cols)
            for t, cols in columns.items()
        }
        base = cg.CustomerBase.from_frames(**frames)
        # Through the installed module, so that its cache lives as long as the worker
        # (a function pickled from `python -m churnguard.spark`'s __main__ would carry a
        # fresh copy of the cache to every task).
        from churnguard import spark as installed

        model = installed._model(models, name, pinned)
        scores = model.score(base, as_of, allow_stale=True)
        return scores.to_arrow().cast(arrow_out)

    return tagged.groupBy("_bucket").applyInArrow(score_bucket, schema=out_schema)


def read_tables(spark, data: str) -> Dict[str, object]:
    """The contract's tables in ``data``: ``<table>.parquet``, ``<table>.csv`` (read as
    text, as the CLI reads CSV) or a ``<table>/`` directory of Parquet parts."""
    found = {}
    root = Path(data)
    for t in TABLES:
        parquet, csv, folder = root / f"{t}.parquet", root / f"{t}.csv", root / t
        if parquet.exists() or folder.is_dir():
            found[t] = spark.read.parquet(str(parquet if parquet.exists() else folder))
        elif csv.exists():
            found[t] = spark.read.option("header", True).option("inferSchema", False).csv(str(csv))
    return found


def main(argv=None) -> int:
    """``python -m churnguard.spark score ...`` (also through ``spark-submit``)."""
    parser = argparse.ArgumentParser(prog="python -m churnguard.spark")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("score", help="score a base read from Parquet/CSV; write Parquet")
    s.add_argument("--data", required=True, help="directory of the contract's tables")
    s.add_argument("--models", required=True, help="model registry (readable by every worker)")
    s.add_argument("--name", default="churn")
    s.add_argument("--version", default=None, help="default: the production alias")
    s.add_argument("--as-of", required=True, help="YYYY-MM-DD or RFC 3339")
    s.add_argument("--out", required=True, help="output directory of Parquet parts")
    s.add_argument("--buckets", type=int, default=64)
    args = parser.parse_args(argv)

    import churnguard as cg
    from pyspark.sql import SparkSession

    spark = configure(SparkSession.builder.appName("churnguard score")).getOrCreate()
    try:
        tables = read_tables(spark, args.data)
        scores = score_base(spark, tables, args.models, args.as_of, name=args.name,
                            buckets=args.buckets, version=args.version)
        scores.write.mode("overwrite").parquet(args.out)
        written = spark.read.parquet(args.out).count()
        print(f"scored {written} customers as of {args.as_of} -> {args.out}")
    except cg.ChurnguardError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
