"""churnguard.spark on a real local[2] Spark session against `churnguard score`.

Run by tests/spark.sh (CHURNGUARD_BIN: the CLI; SPARK_WORK: a scratch directory).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

import churnguard as cg
from churnguard.spark import configure, read_tables, score_base

BIN = os.environ["CHURNGUARD_BIN"]
WORK = Path(os.environ["SPARK_WORK"])


def cli(*args):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True)
    assert p.returncode == 0, f"{args}: {p.stderr}"
    return p


@pytest.fixture(scope="session")
def run():
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    data, models = WORK / "data", WORK / "models"
    cli("generate", "--customers", 1500, "--seed", 5, "--out", data)
    cli("train", "--data", data, "--models", models, "--algorithms", "logistic,gbdt")
    as_of = cg.Model.load(str(models)).manifest["training_data"]["time_range"][1][:10]
    cli("score", "--data", data, "--models", models, "--as-of", as_of,
        "--out", WORK / "scores.parquet")
    return {"data": data, "models": models, "as_of": as_of}


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master("local[2]")
        .appName("churnguard-test")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        # Four buckets must not be merged into one task: both cores do Python work.
        .config("spark.sql.adaptive.coalescePartitions.enabled", "false")
    )
    session = configure(builder).getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def same_scores(got: pl.DataFrame, want: pl.DataFrame):
    got, want = got.sort("customer_id"), want.sort("customer_id")
    assert got.columns == want.columns
    assert got.height == want.height > 500
    for name in want.columns:
        g, w = got[name], want[name]
        if w.dtype.is_float():
            assert (g.is_null() == w.is_null()).all(), name
            assert ((g - w).abs().fill_null(0.0).max() or 0.0) <= 1e-12, name
        elif w.dtype == pl.Datetime:
            assert (g.dt.epoch("us") == w.dt.epoch("us")).all(), name
        else:
            assert g.cast(w.dtype).equals(w), name


def test_score_base_with_4_buckets_equals_churnguard_score(run, spark):
    tables = read_tables(spark, str(run["data"]))
    assert sorted(tables) == sorted(["customers", "logins", "tickets", "orders", "events", "churn"])
    scores = score_base(spark, tables, str(run["models"]), run["as_of"], name="churn", buckets=4)
    got = pl.from_arrow(scores.toArrow())
    same_scores(got, pl.read_parquet(WORK / "scores.parquet"))


def test_the_command_line_writes_the_same_scores_as_parquet(run):
    out = WORK / "spark-scores"
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    p = subprocess.run(
        [sys.executable, "-m", "churnguard.spark", "score", "--data", str(run["data"]),
         "--models", str(run["models"]), "--as-of", run["as_of"], "--out", str(out),
         "--buckets", "3"],
        capture_output=True, text=True, env=env,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert "scored" in p.stdout
    same_scores(pl.read_parquet(out / "*.parquet"), pl.read_parquet(WORK / "scores.parquet"))
