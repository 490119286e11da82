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

The input guards of ``churnguard score`` on the data (stale tables, an ``as_of`` outside
the data) run on the whole base: each bucket reports its extent (data end, first signup,
each table's newest row), the driver merges them and the library's guard decides, so
``score_base`` refuses (:class:`churnguard.RefusedError`) exactly when ``score`` would,
unless ``allow_stale=True``. Not here: the collapsed-population check (it compares with
the previous night in the outbox, which ``churnguard alerts --scores`` then records).

Alerts stay exactly-once on the driver: ``churnguard alerts --scores OUT_DIR`` (or
:func:`churnguard.alerts`) over the job's output raises the night's alerts as ``score``
would, with the same idempotency keys.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

TABLES = ["customers", "logins", "tickets", "orders", "events", "churn"]

# Spark types of the polars types the score file and feature tables use.
_SPARK_TYPES = {
    "String": "string",
    "Float64": "double",
    "Int64": "long",
    "Boolean": "boolean",
    "Datetime": "timestamp",
    "List(String)": "array<string>",
}


def _spark_schema(frame) -> str:
    """A Spark DDL schema for a polars frame's columns."""
    import polars as pl

    out = []
    for name, dtype in frame.schema.items():
        key = "Datetime" if isinstance(dtype, pl.Datetime) else str(dtype)
        out.append(f"{name} {_SPARK_TYPES[key]}")
    return ", ".join(out)


def score_schema() -> str:
    """The columns of ``churnguard score``'s file as a Spark DDL schema, from the
    library (its ``scores::COLUMNS`` then ``EXPLAIN_COLUMNS``, with the types the file
    has): one source of truth for the CLI, Python and Spark."""
    import polars as pl

    from . import _native

    empty = pl.DataFrame(_native.empty_scores())
    assert empty.columns == _native.score_columns()
    return _spark_schema(empty)


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


def _tagged(tables: Dict[str, object], buckets: int, positions: bool = False):
    """Every table's rows in one DataFrame, tagged with their table and routed to
    ``_bucket = xxhash64(customer_id) mod buckets``; and each table's columns. With
    ``positions``, each customer's row also carries ``_pos``, its position in the
    customers table (``monotonically_increasing_id``: increasing in the order Spark reads
    it, a file's row order)."""
    import churnguard as cg
    from pyspark.sql import functions as F

    if "customers" not in tables:
        raise cg.DataError("no `customers` table; it is the one required table")
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise cg.DataError(f"unknown tables {unknown}; the contract's are {TABLES}")
    if buckets < 1:
        raise cg.ConfigError(f"invalid configuration: buckets must be at least 1, got {buckets}")
    columns = {t: list(df.columns) for t, df in tables.items()}
    tagged = None
    for t, df in tables.items():
        if positions and t == "customers":
            df = df.withColumn("_pos", F.monotonically_increasing_id())
        df = df.withColumn("_table", F.lit(t)).withColumn(
            "_bucket", F.pmod(F.xxhash64(F.col("customer_id").cast("string")), F.lit(buckets))
        )
        tagged = df if tagged is None else tagged.unionByName(df, allowMissingColumns=True)
    return tagged, columns


def _bucket_base(table, columns):
    """A bucket's rows (an Arrow table) as a customer base, through the library."""
    import pyarrow.compute as pc

    import churnguard as cg

    frames = {
        t: table.filter(pc.equal(table["_table"], t)).select(cols) for t, cols in columns.items()
    }
    return cg.CustomerBase.from_frames(**frames)


def _per_bucket(tagged, fn, ddl: str):
    """``fn(bucket's Arrow table) -> polars frame`` on every bucket, as a Spark
    DataFrame of schema ``ddl`` (the Arrow types applyInArrow requires)."""
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import _parse_datatype_string

    out_schema = _parse_datatype_string(ddl)
    arrow_out = to_arrow_schema(out_schema, timezone="UTC", prefers_large_types=True)

    def run(table):
        return fn(table).to_arrow().cast(arrow_out)

    return tagged.groupBy("_bucket").applyInArrow(run, schema=out_schema)


def check_input(tagged, columns, as_of: str, allow_stale: bool = False,
                max_data_age_days: Optional[int] = None) -> list:
    """The data guards of ``churnguard score`` on the whole base: every bucket's extent
    merged on the driver, decided by the library. Raises :class:`churnguard.RefusedError`
    (what was refused, and the override) unless ``allow_stale``; else returns what the
    guards found, as warnings."""
    import polars as pl

    from churnguard import _native

    def extent(table):
        return pl.DataFrame({"extent": [_native.data_extent_json(_bucket_base(table, columns))]})

    parts = [r["extent"] for r in _per_bucket(tagged, extent, "extent string").collect()]
    # The library's refusal, message included: the one Model.score raises.
    return _native.check_extents(parts, as_of, allow_stale=allow_stale,
                                 max_data_age_days=max_data_age_days)


def score_base(
    spark,
    tables: Dict[str, object],
    models: str,
    as_of: str,
    name: str = "churn",
    buckets: int = 64,
    version: Optional[str] = None,
    allow_stale: bool = False,
    max_data_age_days: Optional[int] = None,
):
    """Scores every customer active at ``as_of`` of the base whose tables are the Spark
    DataFrames ``tables`` (``customers`` required; the data contract's columns): a Spark
    DataFrame with the columns of ``churnguard score``'s file. ``version`` None is the
    production alias, resolved once on the driver so that every bucket uses the same
    version. Input ``churnguard score`` refuses (stale tables, an ``as_of`` outside the
    data) raises :class:`churnguard.RefusedError` unless ``allow_stale``."""
    import churnguard as cg

    tagged, columns = _tagged(tables, buckets)
    pinned = cg.Model.load(models, name=name, version=version).version
    check_input(tagged, columns, as_of, allow_stale, max_data_age_days)

    def score_bucket(table):
        # Through the installed module, so that its cache lives as long as the worker
        # (a function pickled from `python -m churnguard.spark`'s __main__ would carry a
        # fresh copy of the cache to every task).
        from churnguard import spark as installed

        model = installed._model(models, name, pinned)
        # The guards ran on the whole base above; a bucket alone would misjudge them.
        return model.score(_bucket_base(table, columns), as_of, allow_stale=True)

    return _per_bucket(tagged, score_bucket, score_schema())


def features_base(
    spark,
    tables: Dict[str, object],
    models: Optional[str] = None,
    as_of: Optional[str] = None,
    name: str = "churn",
    buckets: int = 64,
    allow_stale: bool = False,
    max_data_age_days: Optional[int] = None,
    *,
    training_set: bool = False,
    horizon_days: Optional[int] = None,
    active_days: Optional[int] = None,
    snapshot_days: Optional[int] = None,
    categorical: Optional[Sequence[str]] = None,
    numeric: Optional[Sequence[str]] = None,
):
    """The feature table of the customers active at ``as_of`` (``churnguard features
    --as-of AS_OF --models MODELS``, :func:`churnguard.features`), bucket by bucket as
    :func:`score_base` routes them: a Spark DataFrame (``customer_id``, ``as_of``, the
    features). The schema is the production model ``name``'s in ``models`` (a schema
    learned from one bucket's population would differ between buckets). Guarded like
    :func:`score_base`.

    With ``training_set=True`` (``models`` and ``as_of`` unused): the training set,
    ``churnguard features --training-set`` (:func:`churnguard.training_set`) with the
    same windows and attributes, every row and column (``customer_id``, ``as_of``, the
    features, ``label``, ``split``), so that a model can be trained on a sample pulled to
    the driver. What is learned from the whole base is learned on the driver, from every
    bucket's part: the snapshots from the merged time range, then the feature spec (top
    event types and attribute levels, the RFM quintile cuts) from the merged inputs of
    the training rows. That first pass brings about 40 bytes per training row to the
    driver (the RFM inputs, sampled there as the CLI samples them, in the customers
    table's order: ``tables["customers"]`` in the CLI's row order, e.g. one file)."""
    import churnguard as cg

    if training_set:
        return _training_set(tables, buckets, horizon_days, active_days, snapshot_days,
                             categorical, numeric)
    if models is None or as_of is None:
        raise cg.ConfigError("invalid configuration: features_base needs models and as_of "
                             "(or training_set=True)")
    tagged, columns = _tagged(tables, buckets)
    model = cg.Model.load(models, name=name)
    check_input(tagged, columns, as_of, allow_stale, max_data_age_days)
    ddl = ", ".join(
        ["customer_id string", "as_of timestamp"] + [f"`{f}` double" for f in model.feature_names]
    )

    def features_bucket(table):
        return cg.features(_bucket_base(table, columns), as_of, models=models, name=name)

    return _per_bucket(tagged, features_bucket, ddl)


def _training_set(tables, buckets, horizon_days, active_days, snapshot_days, categorical,
                  numeric):
    """:func:`features_base` with ``training_set=True``: three passes over the buckets
    (the plan's extent, the spec's inputs, the rows), the whole base's parts merged on
    the driver by the library between them."""
    import polars as pl
    import pyarrow.compute as pc

    from churnguard import _list, _native

    tagged, columns = _tagged(tables, buckets, positions=True)
    attrs = {"categorical": _list(categorical), "numeric": _list(numeric)}

    def one(text):
        return pl.DataFrame({"part": [text]})

    def extent(table):
        return one(_native.plan_extent_json(_bucket_base(table, columns)))

    extents = [r["part"] for r in _per_bucket(tagged, extent, "part string").collect()]
    plan = _native.training_plan_json(extents, horizon_days=horizon_days,
                                      active_days=active_days, snapshot_days=snapshot_days)

    def inputs(table):
        customers = table.filter(pc.equal(table["_table"], "customers"))
        positions = customers["_pos"].to_pylist()
        return one(_native.spec_inputs_json(_bucket_base(table, columns), plan, positions,
                                            **attrs))

    parts = [r["part"] for r in _per_bucket(tagged, inputs, "part string").collect()]
    spec = _native.learn_spec_json(parts, **attrs)
    ddl = ", ".join(
        ["customer_id string", "as_of timestamp"]
        + [f"`{f}` double" for f in _native.spec_feature_names(spec)]
        + ["label int", "split string"]
    )

    def rows(table):
        return pl.DataFrame(_native.training_set_part(_bucket_base(table, columns), plan, spec))

    return _per_bucket(tagged, rows, ddl)


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
    s.add_argument("--allow-stale", action="store_true",
                   help="score even when the data guards fail (as churnguard score --allow-stale)")
    s.add_argument("--max-data-age-days", type=int, default=None)
    args = parser.parse_args(argv)

    import churnguard as cg
    from pyspark.sql import SparkSession

    spark = configure(SparkSession.builder.appName("churnguard score")).getOrCreate()
    try:
        tables = read_tables(spark, args.data)
        scores = score_base(spark, tables, args.models, args.as_of, name=args.name,
                            buckets=args.buckets, version=args.version,
                            allow_stale=args.allow_stale,
                            max_data_age_days=args.max_data_age_days)
        scores.write.mode("overwrite").parquet(args.out)
        written = spark.read.parquet(args.out).count()
        print(f"scored {written} customers as of {args.as_of} -> {args.out}")
        print(f"alerts: churnguard alerts --scores {args.out} --models {args.models}")
    except cg.ChurnguardError as e:
        print(f"error: {e}", file=sys.stderr)
        # As `churnguard score`: 3 when the input was refused (the data is not ready).
        return 3 if isinstance(e, cg.RefusedError) else 1
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
