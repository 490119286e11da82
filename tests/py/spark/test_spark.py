"""churnguard.spark on a real local[2] Spark session against `churnguard score`, and
`churnguard alerts --scores` over the Spark output against `score`'s alerts.

Run by tests/spark.sh (CHURNGUARD_BIN: the CLI; SPARK_WORK: a scratch directory).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

import churnguard as cg
from churnguard.spark import configure, features_base, read_tables, score_base

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
        "--out", WORK / "scores.parquet", "--outbox", WORK / "score.db",
        "--alerts", WORK / "score-alerts.jsonl")
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


def alert_keys(path: Path):
    """(idempotency key, customer id) of every alert in a JSON-lines file."""
    if not path.exists():
        return []
    return sorted((a["idempotency_key"], a["customer_id"])
                  for a in map(json.loads, path.read_text().splitlines()))


def test_alerts_over_the_spark_output_are_scores_alerts_once(run, spark):
    out = WORK / "spark-alerts-scores"
    tables = read_tables(spark, str(run["data"]))
    score_base(spark, tables, str(run["models"]), run["as_of"], buckets=4) \
        .write.mode("overwrite").parquet(str(out))
    want = alert_keys(WORK / "score-alerts.jsonl")
    assert len(want) > 5
    log, outbox = WORK / "spark-alerts.jsonl", WORK / "spark.db"
    args = ("alerts", "--scores", out, "--models", run["models"], "--outbox", outbox,
            "--alerts", log)
    first = cli(*args)
    assert f"{len(want)} raised, {len(want)} new" in first.stdout, first.stdout
    assert alert_keys(log) == want
    # A re-run of the night raises none, and the sink receives nothing more.
    again = cli(*args)
    assert "0 raised, 0 new, 0 delivered" in again.stdout, again.stdout
    assert alert_keys(log) == want
    # The same from Python, over the Spark DataFrame itself.
    py_log = WORK / "py-alerts.jsonl"
    summary = cg.alerts(spark.read.parquet(str(out)), models=str(run["models"]),
                        outbox=str(WORK / "py.db"), alerts=str(py_log))
    assert (summary["alerts_new"], summary["as_of"]) == (len(want), run["as_of"])
    assert alert_keys(py_log) == want
    assert cg.alerts(str(out), models=str(run["models"]),
                     outbox=str(WORK / "py.db"))["alerts_new"] == 0


def test_features_base_equals_cg_features(run, spark):
    tables = read_tables(spark, str(run["data"]))
    got = pl.from_arrow(
        features_base(spark, tables, str(run["models"]), run["as_of"], buckets=4).toArrow()
    )
    base = cg.CustomerBase.from_dir(str(run["data"]))
    want = cg.features(base, run["as_of"], models=str(run["models"]))
    same_scores(got.select(want.columns), want)


def test_score_base_refuses_what_score_refuses_unless_allow_stale(run, spark):
    late = "2031-01-01"
    p = subprocess.run([BIN, "score", "--data", run["data"], "--models", run["models"],
                        "--as-of", late, "--out", WORK / "late.parquet"],
                       capture_output=True, text=True)
    assert p.returncode == 3
    tables = read_tables(spark, str(run["data"]))
    with pytest.raises(cg.RefusedError) as e:
        score_base(spark, tables, str(run["models"]), late, buckets=4)
    assert e.value.reason == "as_of_after_data"
    # The library's message, as Model.score raises it on the whole base; what was refused
    # in the CLI's words (only the outcome differs: the CLI records it in its outbox).
    with pytest.raises(cg.RefusedError) as whole:
        cg.Model.load(str(run["models"])).score(cg.CustomerBase.from_dir(str(run["data"])), late)
    assert str(e.value) == str(whole.value)
    assert "nights table" not in str(e.value)
    cli_message = [l for l in p.stderr.splitlines() if l.startswith("error: ")][0]
    refused = str(e.value).split(". Nothing scored")[0]
    assert "after the data ends" in refused and cli_message == f"error: {refused}. " + (
        "No score file written, no alert sent (the refusal is recorded in the alert state's "
        "nights table); --allow-stale scores anyway")
    scored = score_base(spark, tables, str(run["models"]), late, buckets=4, allow_stale=True)
    assert scored.count() > 500


def same_rows(got: pl.DataFrame, want: pl.DataFrame, keys):
    """Every row and column equal, exactly (floats to the bit, nulls where nulls)."""
    assert got.columns == want.columns
    assert got.height == want.height
    got, want = got.sort(keys), want.sort(keys)
    for name in want.columns:
        g, w = got[name], want[name]
        if w.dtype == pl.Datetime:
            g, w = g.dt.epoch("us"), w.dt.epoch("us")
        assert (g.is_null() == w.is_null()).all(), name
        assert g.cast(w.dtype).equals(w), name


def test_features_base_training_set_equals_cg_training_set(run, spark):
    # The RFM cuts, event types and attribute levels are learned from the whole base, the
    # snapshots from its whole time range: each bucket on its own would learn others.
    # (One case, with attributes: each Spark pass costs tens of seconds here.)
    attrs = {"categorical": ["plan", "channel", "country"], "numeric": ["monthly_fee"]}
    tables = read_tables(spark, str(run["data"]))
    base = cg.CustomerBase.from_dir(str(run["data"]))
    want = cg.training_set(base, **attrs)
    assert want.height > 5000 and {"label", "split", "rfm_r", "rfm_m"} <= set(want.columns)
    got = pl.from_arrow(features_base(spark, tables, training_set=True, buckets=4,
                                      **attrs).toArrow())
    same_rows(got, want, ["customer_id", "as_of"])
    assert set(want["split"]) == {"train", "validation"}
    assert any(c.startswith("plan_") for c in want.columns) and "monthly_fee" in want.columns
