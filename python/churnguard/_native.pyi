"""Type stubs of the native module (the Rust binding); use the wrappers in churnguard."""

from typing import Any, List, Optional

__version__: str

class ChurnguardError(Exception):
    """Every error churnguard raises; its message is the one the CLI prints."""

class DataError(ChurnguardError):
    """A table breaks the data contract or cannot be read (the message names the table, file,
    row and column). A bad cell also sets these attributes."""

    table: str
    file: str
    row: int
    column: str

class ConfigError(ChurnguardError):
    """Invalid settings or arguments, found before any work starts."""

class ArtifactError(ChurnguardError):
    """A model artifact is invalid, corrupt, or does not match what is expected."""

class ModelNotFoundError(ArtifactError):
    """The registry has no such model, alias or version."""

class TrainError(ChurnguardError):
    """Training could not produce a model."""

class InputError(ChurnguardError):
    """Input to scoring is wrong; ``field`` names it."""

    field: str

class RefusedError(ChurnguardError):
    """Scoring refused its input (stale data, an ``as_of`` outside the data, an empty
    population), with the CLI's message; ``reason`` is the stable name
    (``as_of_after_data``...), ``as_of`` the night refused. ``allow_stale=True`` scores
    anyway."""

    reason: str
    as_of: str

class OutboxError(ChurnguardError):
    """The alert outbox refused a file or an alert, or its database failed (from
    :func:`alerts_json`)."""

class ArrowTable:
    """A result table; exports itself once through the Arrow PyCapsule interface."""

    def __arrow_c_stream__(self, requested_schema: Optional[object] = None) -> object: ...

class CustomerBase:
    """A validated customer base (the data contract's tables, indexed by customer)."""

    @staticmethod
    def from_dir(path: str, *, skip_bad_rows: bool = False) -> "CustomerBase":
        """Reads and validates the tables in ``path`` as the CLI's ``--data`` does."""
    @staticmethod
    def from_frames(
        *,
        customers: Any = None,
        logins: Any = None,
        tickets: Any = None,
        orders: Any = None,
        events: Any = None,
        churn: Any = None,
        skip_bad_rows: bool = False,
    ) -> "CustomerBase":
        """Builds a base from polars or pyarrow tables (``customers`` required)."""
    def summary_json(self) -> str:
        """The summary ``churnguard inspect --json`` prints, as JSON text."""
    def __len__(self) -> int: ...

class Model:
    """A published model version, loaded and verified as ``churnguard score`` loads it."""

    @staticmethod
    def load(
        models: Optional[str] = None, *, name: Optional[str] = None, version: Optional[str] = None
    ) -> "Model":
        """Loads ``name`` from the registry ``models``: ``version`` (``v3``, ``3`` or an
        alias), or the ``production`` alias when None."""
    @property
    def name(self) -> str:
        """The model's name."""
    @property
    def version(self) -> str:
        """The loaded version (``v3``)."""
    @property
    def feature_names(self) -> List[str]:
        """The feature columns the model reads, in its order."""
    def manifest_json(self) -> str:
        """``manifest.json`` as ``churnguard models show`` prints it, as JSON text."""
    def score(
        self, base: CustomerBase, as_of: str, *, allow_stale: bool = False, contributions: bool = False
    ) -> ArrowTable:
        """The rows and columns of ``churnguard score``'s file for ``base`` at ``as_of``."""
    def score_features(
        self, features: Any, *, as_of: Optional[str] = None, contributions: bool = False
    ) -> ArrowTable:
        """Scores precomputed features (``customer_id``, the model's feature columns)."""

def inspect_json(base: CustomerBase) -> str:
    """``churnguard inspect --json``'s summary of ``base``, as JSON text."""
def features(
    base: CustomerBase,
    as_of: str,
    *,
    models: Optional[str] = None,
    name: Optional[str] = None,
    horizon_days: Optional[int] = None,
    active_days: Optional[int] = None,
    snapshot_days: Optional[int] = None,
    categorical: Optional[List[str]] = None,
    numeric: Optional[List[str]] = None,
) -> ArrowTable:
    """``churnguard features --as-of AS_OF [--models MODELS]``: the feature table."""
def training_set(
    base: CustomerBase,
    *,
    horizon_days: Optional[int] = None,
    active_days: Optional[int] = None,
    snapshot_days: Optional[int] = None,
    categorical: Optional[List[str]] = None,
    numeric: Optional[List[str]] = None,
) -> ArrowTable:
    """``churnguard features --training-set``: every training snapshot with label and split."""
def train(
    base: CustomerBase,
    *,
    models: Optional[str] = None,
    name: Optional[str] = None,
    algorithms: Optional[List[str]] = None,
    horizon_days: Optional[int] = None,
    active_days: Optional[int] = None,
    snapshot_days: Optional[int] = None,
    categorical: Optional[List[str]] = None,
    numeric: Optional[List[str]] = None,
    promote: bool = False,
) -> str:
    """``churnguard train``: fits, evaluates and publishes a new version; returns it (``v3``)."""
def alerts_json(
    scores: Any,
    *,
    models: Optional[str] = None,
    outbox: Optional[str] = None,
    alerts: Optional[str] = None,
    webhook: Optional[str] = None,
    base: Optional[CustomerBase] = None,
    rules: Optional[str] = None,
) -> str:
    """``churnguard alerts --scores``: the night's alerts from a score table; the summary as
    JSON text. Raises :class:`OutboxError` when the outbox refuses."""
def score_columns() -> List[str]:
    """The score file's columns in order (the library's COLUMNS then EXPLAIN_COLUMNS)."""
def empty_scores() -> ArrowTable:
    """The score file's table without rows: its columns with their types."""
def data_extent_json(base: CustomerBase) -> str:
    """What the data guards read of ``base`` (data end, first signup, newest rows)."""
def check_extents(
    extents: List[str], as_of: str, *, allow_stale: bool = False, max_data_age_days: Optional[int] = None
) -> List[str]:
    """The data guards of ``score`` on merged extents; raises RefusedError unless allow_stale."""
