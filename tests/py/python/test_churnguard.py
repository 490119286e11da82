"""The installed churnguard wheel against the churnguard CLI on the same generated base.

Run by tests/python.sh (CHURNGUARD_BIN: the CLI; PY_WORK: a scratch directory). Every
comparison is over every row and column: the Python functions call the library code the
commands call, so features and labels are equal exactly and probabilities to 1e-12.
"""

import os
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

import churnguard as cg

BIN = os.environ["CHURNGUARD_BIN"]
WORK = Path(os.environ["PY_WORK"])
TABLES = ["customers", "logins", "tickets", "orders", "events", "churn"]


def cli(*args, ok=True):
    """Runs the CLI; returns the completed process (stdout, stderr as text)."""
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True)
    if ok and p.returncode != 0:
        raise AssertionError(f"{args} failed ({p.returncode}):\n{p.stderr}")
    return p


# The end of the library's refusal message (Error::Refused) for a nightly run, and for a
# table scored without an outbox.
CLI_REFUSED_OUTCOME = ("No score file written, no alert sent (the refusal is recorded in the "
                       "alert state's nights table); --allow-stale scores anyway")
TABLE_REFUSED_OUTCOME = ("Nothing scored, no alert sent; --allow-stale (allow_stale=True from "
                         "Python) scores anyway")


def cli_error(*args):
    """The one-line cause the CLI prints on failure, without its `error: ` prefix."""
    p = cli(*args, ok=False)
    assert p.returncode != 0, f"{args} succeeded"
    lines = [l for l in p.stderr.splitlines() if l.startswith("error: ")]
    assert len(lines) == 1, p.stderr
    return p.returncode, lines[0][len("error: "):]


@pytest.fixture(scope="session")
def run():
    """A generated base, a model trained by the CLI, and the CLI's outputs."""
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    data, models = WORK / "data", WORK / "models"
    cli("generate", "--customers", 2000, "--seed", 11, "--out", data)
    cli("train", "--data", data, "--models", models, "--algorithms", "logistic,gbdt",
        "--categorical", "plan,channel", "--numeric", "monthly_fee")
    manifest = cg.Model.load(models).manifest
    as_of = manifest["training_data"]["time_range"][1][:10]
    cli("features", "--data", data, "--models", models, "--as-of", as_of,
        "--out", WORK / "features.parquet")
    cli("features", "--data", data, "--training-set", "--out", WORK / "training.parquet")
    cli("score", "--data", data, "--models", models, "--as-of", as_of,
        "--out", WORK / "scores.parquet")
    return {"data": data, "models": models, "as_of": as_of}


def assert_same(got: pl.DataFrame, want: pl.DataFrame, float_tol=0.0):
    """Equal column names, types, order and every cell; floats within `float_tol`."""
    assert got.columns == want.columns
    assert got.schema == want.schema, (got.schema, want.schema)
    assert got.height == want.height
    for name in want.columns:
        g, w = got[name], want[name]
        if w.dtype.is_float() and float_tol > 0:
            assert (g.is_null() == w.is_null()).all(), name
            assert (g.is_nan() == w.is_nan()).fill_null(True).all(), name
            diff = (g - w).abs().fill_nan(0.0).fill_null(0.0)
            assert diff.max() <= float_tol, (name, diff.max())
        else:
            assert g.equals(w, check_names=True), name


def test_inspect_is_the_summary_inspect_json_prints(run):
    import json

    base = cg.CustomerBase.from_dir(str(run["data"]))
    want = json.loads(cli("inspect", "--data", run["data"], "--json").stdout)
    assert cg.inspect(base) == want
    assert len(base) == want["customers"] == 2000


def test_features_equal_the_cli_feature_table(run):
    base = cg.CustomerBase.from_dir(str(run["data"]))
    got = cg.features(base, as_of=run["as_of"], models=str(run["models"]), name="churn")
    assert_same(got, pl.read_parquet(WORK / "features.parquet"))


def test_training_set_equals_the_cli_training_set(run):
    base = cg.CustomerBase.from_dir(str(run["data"]))
    got = cg.training_set(base, horizon_days=30, active_days=90, snapshot_days=30)
    want = pl.read_parquet(WORK / "training.parquet")
    assert got.height > 1000
    assert_same(got, want)


def test_model_score_equals_the_cli_score_file(run):
    base = cg.CustomerBase.from_dir(str(run["data"]))
    model = cg.Model.load(str(run["models"]), name="churn", version=None)
    assert (model.name, model.version) == ("churn", "v1")
    got = model.score(base, as_of=run["as_of"])
    want = pl.read_parquet(WORK / "scores.parquet")
    assert got.height > 1000
    assert_same(got, want, float_tol=1e-12)


def test_score_features_of_the_cli_feature_table_equals_the_cli_score_file(run):
    model = cg.Model.load(str(run["models"]))
    # pyarrow in, as a notebook reading the CLI's file would.
    got = model.score_features(pq.read_table(WORK / "features.parquet"))
    assert_same(got, pl.read_parquet(WORK / "scores.parquet"), float_tol=1e-12)


def test_manifest_is_what_models_show_prints(run):
    import json

    want = json.loads(cli("models", "show", "--models", run["models"]).stdout)
    assert cg.Model.load(str(run["models"])).manifest == want


def frames_of(data: Path, reader):
    return {t: reader(data / f"{t}.parquet") for t in TABLES}


@pytest.mark.parametrize("reader", [pl.read_parquet, pq.read_table], ids=["polars", "pyarrow"])
def test_frames_and_the_directory_give_the_same_base_features_and_scores(run, reader):
    by_dir = cg.CustomerBase.from_dir(str(run["data"]))
    by_frames = cg.CustomerBase.from_frames(**frames_of(run["data"], reader))
    model = cg.Model.load(str(run["models"]))
    a, b = cg.inspect(by_dir), cg.inspect(by_frames)
    for summary in (a, b):
        summary.pop("directory")
        for t in summary["tables"]:
            t.pop("files")
    assert a == b
    assert_same(
        cg.features(by_frames, as_of=run["as_of"], models=str(run["models"])),
        cg.features(by_dir, as_of=run["as_of"], models=str(run["models"])),
    )
    assert_same(cg.training_set(by_frames), cg.training_set(by_dir))
    assert_same(model.score(by_frames, run["as_of"]), model.score(by_dir, run["as_of"]))


def test_any_subset_of_the_tables_is_a_base_the_cli_reads_the_same(run):
    sub = WORK / "subset"
    shutil.rmtree(sub, ignore_errors=True)
    sub.mkdir()
    for t in ["customers", "logins", "orders"]:
        shutil.copy(run["data"] / f"{t}.parquet", sub)
    frames = {t: pl.read_parquet(sub / f"{t}.parquet") for t in ["customers", "logins", "orders"]}
    base = cg.CustomerBase.from_frames(**frames)
    assert sorted(cg.inspect(base)["missing_tables"]) == ["churn", "events", "tickets"]
    out = WORK / "subset-features.parquet"
    cli("features", "--data", sub, "--as-of", run["as_of"], "--out", out)
    assert_same(cg.features(base, as_of=run["as_of"]), pl.read_parquet(out))


def test_a_bad_cell_raises_data_error_with_the_cli_message(run):
    bad = WORK / "bad"
    shutil.rmtree(bad, ignore_errors=True)
    bad.mkdir()
    (bad / "customers.csv").write_text("customer_id,signup_at\nc1,2024-01-01\nc2,2024-01-02\n")
    (bad / "logins.csv").write_text("customer_id,at\nc1,2024-02-01\nc2,yesterday\n")
    _, message = cli_error("inspect", "--data", bad)
    with pytest.raises(cg.DataError) as e:
        cg.CustomerBase.from_dir(str(bad))
    assert str(e.value) == message
    assert (e.value.table, e.value.row, e.value.column) == ("logins", 2, "at")
    assert "yesterday" in message and "logins.csv" in message
    # The same cell in a frame: the same message, the frame named where the file was.
    with pytest.raises(cg.DataError) as e:
        cg.CustomerBase.from_frames(
            customers=pl.read_csv(bad / "customers.csv", infer_schema=False),
            logins=pl.read_csv(bad / "logins.csv", infer_schema=False),
        )
    assert str(e.value) == message.replace(f"in {bad}", "from frames").replace(
        str(bad / "logins.csv"), "frame"
    )
    assert isinstance(e.value, cg.ChurnguardError)


def test_a_missing_table_or_column_raises_with_the_cli_message(run):
    empty = WORK / "empty"
    shutil.rmtree(empty, ignore_errors=True)
    empty.mkdir()
    _, message = cli_error("inspect", "--data", empty)
    with pytest.raises(cg.DataError, match="no `customers` table") as e:
        cg.CustomerBase.from_dir(str(empty))
    assert str(e.value) == message
    with pytest.raises(cg.DataError, match="missing required column `signup_at`"):
        cg.CustomerBase.from_frames(customers=pl.DataFrame({"customer_id": ["a"]}))
    with pytest.raises(TypeError, match="Arrow PyCapsule"):
        cg.CustomerBase.from_frames(customers=[1, 2, 3])


def test_an_unknown_model_raises_with_the_cli_message(run):
    _, message = cli_error("score", "--data", run["data"], "--models", run["models"],
                           "--name", "nope", "--as-of", run["as_of"], "--out", WORK / "x.parquet")
    with pytest.raises(cg.ModelNotFoundError) as e:
        cg.Model.load(str(run["models"]), name="nope")
    assert str(e.value) == message
    _, message = cli_error("models", "show", "--models", run["models"], "v9")
    with pytest.raises(cg.ModelNotFoundError) as e:
        cg.Model.load(str(run["models"]), version="v9")
    assert message in str(e.value)


def test_a_refused_night_raises_refused_error_with_the_cli_message(run):
    late = "2031-01-01"
    code, message = cli_error("score", "--data", run["data"], "--models", run["models"],
                              "--as-of", late, "--out", WORK / "late.parquet")
    assert code == 3
    model = cg.Model.load(str(run["models"]))
    base = cg.CustomerBase.from_dir(str(run["data"]))
    with pytest.raises(cg.RefusedError) as e:
        model.score(base, as_of=late)
    # The library's one message: what was refused in the CLI's words; only the outcome
    # differs (the CLI records the refusal in its outbox, a returned table records nothing).
    assert message.endswith(CLI_REFUSED_OUTCOME)
    assert str(e.value) == message[: -len(CLI_REFUSED_OUTCOME)] + TABLE_REFUSED_OUTCOME
    assert "nights table" not in str(e.value)
    assert e.value.reason == "as_of_after_data"
    assert model.score(base, as_of=late, allow_stale=True).height > 0


def test_score_features_names_a_missing_feature_column(run):
    model = cg.Model.load(str(run["models"]))
    feats = pl.read_parquet(WORK / "features.parquet").drop(model.feature_names[0])
    with pytest.raises(cg.InputError, match=f"missing column `{model.feature_names[0]}`") as e:
        model.score_features(feats)
    assert e.value.field == model.feature_names[0]


def test_train_publishes_the_version_the_cli_would(run):
    models = WORK / "models-py"
    shutil.rmtree(models, ignore_errors=True)
    base = cg.CustomerBase.from_dir(str(run["data"]))
    version = cg.train(base, models=str(models), name="churn", algorithms=["logistic", "gbdt"],
                       categorical=["plan", "channel"], numeric=["monthly_fee"])
    assert version == "v1"
    mine, cli_model = cg.Model.load(str(models)), cg.Model.load(str(run["models"]))
    assert mine.feature_names == cli_model.feature_names
    m, c = mine.manifest, cli_model.manifest
    assert m["algorithm"] == c["algorithm"]
    assert m["training_data"] == c["training_data"]
    # The same code on the same data: the same fitted model, so the same scores.
    assert_same(mine.score(base, run["as_of"]).drop("model_version"),
                cli_model.score(base, run["as_of"]).drop("model_version"), float_tol=1e-12)
    assert cg.train(base, models=str(models), algorithms=["logistic"]) == "v2"
    with pytest.raises(cg.ConfigError, match="invalid configuration"):
        cg.train(base, models=str(models), algorithms=["nope"])


def test_help_shows_the_docstrings():
    assert "feature table" in cg.features.__doc__
    assert "score" in cg.Model.score.__doc__
    assert "customers" in cg.CustomerBase.from_frames.__doc__


def test_every_exception_class_has_a_stub_and_a_docstring():
    import ast

    exported = {n for n in cg.__all__ if isinstance(getattr(cg, n), type)
                and issubclass(getattr(cg, n), Exception)}
    assert {"ChurnguardError", "OutboxError", "RefusedError"} <= exported
    stub = Path(cg.__file__).with_name("_native.pyi")
    stubs = {c.name: ast.get_docstring(c) for c in ast.parse(stub.read_text()).body
             if isinstance(c, ast.ClassDef)}
    for name in exported:
        assert stubs.get(name), f"{name}: no class with a docstring in {stub}"
        assert getattr(cg, name).__doc__, f"{name}: no docstring at run time"
        assert issubclass(getattr(cg, name), cg.ChurnguardError)
