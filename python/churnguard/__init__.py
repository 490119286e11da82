"""churnguard from Python: the same feature, training and scoring code as the CLI.

Every function calls the Rust library function the corresponding ``churnguard`` command
calls; nothing is computed a second time in Python. Tables go in through the Arrow
PyCapsule interface (polars or pyarrow objects) and come back as polars DataFrames.

    import churnguard as cg
    base = cg.CustomerBase.from_dir("data/sample")
    cg.inspect(base)                                   # = churnguard inspect --json
    feats = cg.features(base, as_of="2024-12-01", models="models")   # = features --as-of
    ts = cg.training_set(base)                         # = features --training-set
    version = cg.train(base, models="models", algorithms=["logistic", "gbdt"])  # = train
    model = cg.Model.load("models", name="churn")      # the production alias
    scores = model.score(base, as_of="2024-12-01")     # the columns of `score`'s file
    again = model.score_features(feats)

Settings resolve as the CLI's do: defaults, then ``CHURNGUARD_*`` environment variables,
then the arguments given. Errors raise subclasses of :class:`ChurnguardError` whose
message is the one the CLI prints after ``error:``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional, Sequence, Union

import polars as pl

from . import _native
from ._native import (
    ArtifactError,
    ChurnguardError,
    ConfigError,
    CustomerBase,
    DataError,
    InputError,
    ModelNotFoundError,
    OutboxError,
    RefusedError,
    TrainError,
)

__version__ = _native.__version__

__all__ = [
    "CustomerBase",
    "Model",
    "inspect",
    "features",
    "training_set",
    "train",
    "alerts",
    "ChurnguardError",
    "DataError",
    "ConfigError",
    "ArtifactError",
    "ModelNotFoundError",
    "TrainError",
    "InputError",
    "RefusedError",
    "OutboxError",
]

PathLike = Union[str, "os.PathLike[str]"]


def _frame(table: Any) -> pl.DataFrame:
    # The native table exports itself once through __arrow_c_stream__.
    return pl.DataFrame(table)


def _list(values: Optional[Sequence[str]]) -> Optional[list]:
    if values is None:
        return None
    if isinstance(values, str):
        return [v for v in values.split(",") if v]
    return list(values)


def inspect(base: CustomerBase) -> Dict[str, Any]:
    """The summary ``churnguard inspect --data DIR --json`` prints, as a dict: rows per
    table, customers, time range, orphans, bad rows, missing tables."""
    return json.loads(_native.inspect_json(base))


def features(
    base: CustomerBase,
    as_of: str,
    models: Optional[PathLike] = None,
    name: Optional[str] = None,
    *,
    horizon_days: Optional[int] = None,
    active_days: Optional[int] = None,
    snapshot_days: Optional[int] = None,
    categorical: Optional[Sequence[str]] = None,
    numeric: Optional[Sequence[str]] = None,
) -> pl.DataFrame:
    """The feature table of the customers active at ``as_of`` (``YYYY-MM-DD`` or RFC
    3339): ``customer_id``, ``as_of``, then the features; exactly what ``churnguard
    features --as-of AS_OF --out FILE`` writes. With ``models``, the schema is the
    production model of ``name`` (default ``churn``) in that registry (what it scores);
    else it is learned from the snapshot's population."""
    return _frame(
        _native.features(
            base,
            as_of,
            models=None if models is None else str(models),
            name=name,
            horizon_days=horizon_days,
            active_days=active_days,
            snapshot_days=snapshot_days,
            categorical=_list(categorical),
            numeric=_list(numeric),
        )
    )


def training_set(
    base: CustomerBase,
    horizon_days: Optional[int] = None,
    active_days: Optional[int] = None,
    snapshot_days: Optional[int] = None,
    *,
    categorical: Optional[Sequence[str]] = None,
    numeric: Optional[Sequence[str]] = None,
) -> pl.DataFrame:
    """Every training snapshot with ``as_of``, the features, ``label`` and ``split``
    (train / validation), exactly as ``train`` uses them and ``churnguard features
    --training-set`` writes them. Defaults: 30, 90 and 30 days (or ``CHURNGUARD_*``)."""
    return _frame(
        _native.training_set(
            base,
            horizon_days=horizon_days,
            active_days=active_days,
            snapshot_days=snapshot_days,
            categorical=_list(categorical),
            numeric=_list(numeric),
        )
    )


def train(
    base: CustomerBase,
    models: Optional[PathLike] = "models",
    name: Optional[str] = None,
    algorithms: Optional[Sequence[str]] = None,
    *,
    horizon_days: Optional[int] = None,
    active_days: Optional[int] = None,
    snapshot_days: Optional[int] = None,
    categorical: Optional[Sequence[str]] = None,
    numeric: Optional[Sequence[str]] = None,
    promote: bool = False,
) -> str:
    """Fits, compares, calibrates and publishes a new version of model ``name`` (default
    ``churn``) in the registry ``models``, exactly as ``churnguard train``; returns the
    new version (``"v3"``). ``algorithms``: any of logistic, tree, forest, gbdt (default
    all). The first version becomes ``production``, later ones ``staging`` unless
    ``promote``."""
    return _native.train(
        base,
        models=None if models is None else str(models),
        name=name,
        algorithms=_list(algorithms),
        horizon_days=horizon_days,
        active_days=active_days,
        snapshot_days=snapshot_days,
        categorical=_list(categorical),
        numeric=_list(numeric),
        promote=promote,
    )


class Model:
    """A published model version, loaded and checked (manifest checksums, feature
    schema) as ``churnguard score`` loads it. Build it with :meth:`Model.load`."""

    def __init__(self, native: "_native.Model") -> None:
        self._native = native

    @classmethod
    def load(
        cls,
        models: Optional[PathLike] = "models",
        name: Optional[str] = None,
        version: Optional[str] = None,
    ) -> "Model":
        """Loads model ``name`` (default ``churn``) from the registry ``models``:
        ``version`` (``"v3"``, ``"3"`` or an alias such as ``"staging"``), or the
        ``production`` alias when None. Raises :class:`ModelNotFoundError` or
        :class:`ArtifactError` with the CLI's message."""
        return cls(
            _native.Model.load(None if models is None else str(models), name=name, version=version)
        )

    @property
    def name(self) -> str:
        """The model's name."""
        return self._native.name

    @property
    def version(self) -> str:
        """The loaded version (``"v3"``)."""
        return self._native.version

    @property
    def feature_names(self) -> list:
        """The feature columns the model reads, in its order."""
        return self._native.feature_names

    @property
    def manifest(self) -> Dict[str, Any]:
        """``manifest.json`` as ``churnguard models show`` prints it: algorithm, feature
        schema, horizon, churn definition, training data fingerprint, metrics,
        thresholds."""
        return json.loads(self._native.manifest_json())

    def score(
        self,
        base: CustomerBase,
        as_of: str,
        *,
        allow_stale: bool = False,
        contributions: bool = False,
    ) -> pl.DataFrame:
        """Scores every customer of ``base`` active at ``as_of``: the rows and columns of
        ``churnguard score --as-of AS_OF --out FILE``'s file (``customer_id``, ``as_of``,
        ``churn_probability``, ``health_score``, ``risk_tier``, three reasons,
        ``rfm_segment``, ``early_warnings``, ``model_name``, ``model_version``; with
        ``contributions`` also ``shap_base`` and ``shap_<feature>``). Nothing is written
        and no alert is raised. Input the CLI's guards refuse (stale tables, an
        ``as_of`` after the data, no active customer) raises :class:`RefusedError`
        unless ``allow_stale``."""
        return _frame(
            self._native.score(base, as_of, allow_stale=allow_stale, contributions=contributions)
        )

    def score_features(
        self,
        features: Any,
        as_of: Optional[str] = None,
        *,
        contributions: bool = False,
    ) -> pl.DataFrame:
        """Scores precomputed features (a polars or pyarrow table with ``customer_id`` and
        the model's feature columns, e.g. from :func:`features` or :func:`training_set`):
        the columns of :meth:`score`. Each row's ``as_of`` is its ``as_of`` column, or the
        ``as_of`` argument when given. A missing or non-numeric feature column raises
        :class:`InputError`."""
        return _frame(
            self._native.score_features(features, as_of=as_of, contributions=contributions)
        )

    def __repr__(self) -> str:
        return repr(self._native)


def alerts(
    scores: Any,
    *,
    models: Optional[PathLike] = None,
    outbox: Optional[PathLike] = None,
    alerts: Optional[PathLike] = None,
    webhook: Optional[str] = None,
    base: Optional[CustomerBase] = None,
    rules: Optional[PathLike] = None,
) -> Dict[str, Any]:
    """The night's alerts from a score table, exactly as ``churnguard alerts --scores``:
    ``score``'s alert stage (tier transitions, cooldown, the outbox transaction, the same
    idempotency keys, the sinks) over ``scores``, a path (a score file or a directory of
    Parquet parts such as :func:`churnguard.spark.score_base`'s output) or a table (polars,
    pyarrow, or a Spark DataFrame, collected). A re-run of the same night raises none.

    ``outbox``: SQLite file or ``postgres://`` URL (default beside the model in
    ``models``); ``alerts``: JSON-lines file the alerts are appended to; ``webhook``:
    signed with ``CHURNGUARD_WEBHOOK_SECRET``; ``base``: the customer base, for alerts
    carrying the feature summary, profile, trail and owner as ``score``'s do. Returns the
    summary: ``as_of``, ``model``, ``customers``, ``tiers``, ``alerts_raised``,
    ``alerts_new``, ``alerts_delivered``, ``outbox``."""
    if isinstance(scores, (str, os.PathLike)):
        scores = os.fspath(scores)
    elif hasattr(scores, "toArrow") and hasattr(scores, "sparkSession"):
        # A Spark DataFrame: collected through toArrow (pyspark 4.3's own
        # __arrow_c_stream__ fails on timestamp columns without a time zone argument).
        scores = scores.toArrow()
    path = lambda p: None if p is None else os.fspath(p)  # noqa: E731
    return json.loads(
        _native.alerts_json(
            scores,
            models=path(models),
            outbox=path(outbox),
            alerts=path(alerts),
            webhook=webhook,
            base=base,
            rules=path(rules),
        )
    )
