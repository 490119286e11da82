//! `churnguard._native`: the Python binding of the churnguard library. Every function
//! here calls the library function the CLI's command calls (no feature, label or score
//! is computed here); `python/churnguard/__init__.py` turns the tables it returns into
//! polars DataFrames and the JSON into dicts.
//!
//! Settings resolve as the CLI's do ([`Settings`]: defaults, then `CHURNGUARD_*`
//! environment variables, then the arguments given here), so a call and the command with
//! the same flags use the same windows, attributes and model.

mod arrow;
mod errors;

use std::path::PathBuf;
use std::sync::Arc;

use churnguard::batch::{self, InputGuard};
use churnguard::data::{self, LoadOptions, Table};
use churnguard::registry::{Registry, Selector};
use churnguard::scoring::Scorer;
use churnguard::settings::{
    AlertStageFlags, AlertsFlags, DataFlags, Env, FeaturesFlags, ModelFlags, RulesFlags, Settings,
    TrainFlags, WindowFlags,
};
use pyo3::prelude::*;

use arrow::{frame_from_py, ArrowTable};
use errors::to_py;

/// The layered settings of a CLI run without a config file: defaults, then the environment.
fn settings() -> PyResult<Settings> {
    Settings::load(None, Env::from_process()).map_err(|e| to_py(e, None))
}

/// A validated customer base (the data contract's tables, indexed by customer), read
/// from a directory as `churnguard --data DIR` reads it, or from tables in memory.
#[pyclass(module = "churnguard._native", name = "CustomerBase", frozen)]
pub struct PyCustomerBase {
    inner: Arc<data::CustomerBase>,
}

#[pymethods]
impl PyCustomerBase {
    /// Reads and validates the customer base in `path` exactly as the CLI's `--data`
    /// does (CSV or Parquet files, or directories of Parquet parts); raises `DataError`
    /// with the CLI's message (table, file, row, column) on bad input.
    #[staticmethod]
    #[pyo3(signature = (path, *, skip_bad_rows=false))]
    fn from_dir(py: Python<'_>, path: PathBuf, skip_bad_rows: bool) -> PyResult<Self> {
        let opts = LoadOptions {
            skip_bad_rows,
            now: None,
        };
        let loaded = py.detach(|| data::load(&path, &opts));
        let context = format!("loading the customer base in {}", path.display());
        let base = loaded.map_err(|e| to_py(e, Some(&context)))?;
        Ok(PyCustomerBase {
            inner: Arc::new(base),
        })
    }

    /// Builds a customer base from tables in memory: any object with the Arrow PyCapsule
    /// interface (a polars DataFrame, a pyarrow Table or RecordBatchReader). `customers`
    /// is required, the other five optional; columns as the data contract names them,
    /// as text (parsed like CSV cells) or typed (like Parquet columns). The checks and
    /// messages are the directory's, with `frame` where a file would be named.
    #[staticmethod]
    #[pyo3(signature = (*, customers=None, logins=None, tickets=None, orders=None, events=None, churn=None, skip_bad_rows=false))]
    #[allow(clippy::too_many_arguments)]
    fn from_frames(
        py: Python<'_>,
        customers: Option<Bound<'_, PyAny>>,
        logins: Option<Bound<'_, PyAny>>,
        tickets: Option<Bound<'_, PyAny>>,
        orders: Option<Bound<'_, PyAny>>,
        events: Option<Bound<'_, PyAny>>,
        churn: Option<Bound<'_, PyAny>>,
        skip_bad_rows: bool,
    ) -> PyResult<Self> {
        let given = [
            (Table::Customers, customers),
            (Table::Logins, logins),
            (Table::Tickets, tickets),
            (Table::Orders, orders),
            (Table::Events, events),
            (Table::Churn, churn),
        ];
        let mut tables = Vec::new();
        for (table, obj) in given {
            if let Some(obj) = obj {
                tables.push((table, frame_from_py(&obj, table.name())?));
            }
        }
        let opts = LoadOptions {
            skip_bad_rows,
            now: None,
        };
        let loaded = py.detach(|| data::load_frames(tables, &opts));
        let base = loaded.map_err(|e| to_py(e, Some("loading the customer base from frames")))?;
        Ok(PyCustomerBase {
            inner: Arc::new(base),
        })
    }

    /// The summary `churnguard inspect --json` prints, as JSON text.
    fn summary_json(&self) -> PyResult<String> {
        serde_json::to_string_pretty(&self.inner.summary)
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
    }

    /// How many customers the base holds.
    fn __len__(&self) -> usize {
        self.inner.customers.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "CustomerBase({} customers from {})",
            self.inner.customers.len(),
            self.inner.summary.directory
        )
    }
}

/// The label windows and attribute columns, as the CLI's flags of the same names.
fn windows(
    horizon_days: Option<u32>,
    active_days: Option<u32>,
    snapshot_days: Option<u32>,
    categorical: Option<Vec<String>>,
    numeric: Option<Vec<String>>,
) -> WindowFlags {
    WindowFlags {
        horizon_days,
        active_days,
        snapshot_days,
        categorical,
        numeric,
    }
}

/// The feature settings of `churnguard features` with these flags (`out` is never
/// written: the table is returned).
fn feature_settings(
    as_of: Option<String>,
    models: Option<PathBuf>,
    name: Option<String>,
    windows: WindowFlags,
) -> PyResult<churnguard::settings::FeatureSettings> {
    let flags = FeaturesFlags {
        data: DataFlags::default(),
        windows,
        training_set: as_of.is_none(),
        as_of,
        models,
        name: None,
        out: PathBuf::from("returned-to-python.parquet"),
    };
    let mut fs = settings()?.features(&flags).map_err(|e| to_py(e, None))?;
    if let (Some(m), Some(name)) = (fs.model.as_mut(), name) {
        m.name = name;
    }
    Ok(fs)
}

/// The settings of `features --training-set` with the given attribute columns and the
/// default windows (the Spark training set's passes).
fn training_set_settings(
    categorical: Option<Vec<String>>,
    numeric: Option<Vec<String>>,
) -> PyResult<churnguard::settings::FeatureSettings> {
    feature_settings(
        None,
        None,
        None,
        windows(None, None, None, categorical, numeric),
    )
}

/// `churnguard features --as-of AS_OF [--models MODELS]`: the feature table.
#[pyfunction]
#[pyo3(signature = (base, as_of, *, models=None, name=None, horizon_days=None, active_days=None, snapshot_days=None, categorical=None, numeric=None))]
#[allow(clippy::too_many_arguments)]
fn features(
    py: Python<'_>,
    base: &PyCustomerBase,
    as_of: String,
    models: Option<PathBuf>,
    name: Option<String>,
    horizon_days: Option<u32>,
    active_days: Option<u32>,
    snapshot_days: Option<u32>,
    categorical: Option<Vec<String>>,
    numeric: Option<Vec<String>>,
) -> PyResult<ArrowTable> {
    let w = windows(
        horizon_days,
        active_days,
        snapshot_days,
        categorical,
        numeric,
    );
    let fs = feature_settings(Some(as_of), models, name, w)?;
    let t = fs.as_of.expect("a snapshot's settings have an as_of");
    let b = base.inner.clone();
    let df = py.detach(|| churnguard::export::snapshot(&b, &fs, t));
    Ok(ArrowTable::new(df.map_err(|e| to_py(e, None))?))
}

/// `churnguard features --training-set`: every training snapshot with label and split.
#[pyfunction]
#[pyo3(signature = (base, *, horizon_days=None, active_days=None, snapshot_days=None, categorical=None, numeric=None))]
fn training_set(
    py: Python<'_>,
    base: &PyCustomerBase,
    horizon_days: Option<u32>,
    active_days: Option<u32>,
    snapshot_days: Option<u32>,
    categorical: Option<Vec<String>>,
    numeric: Option<Vec<String>>,
) -> PyResult<ArrowTable> {
    let w = windows(
        horizon_days,
        active_days,
        snapshot_days,
        categorical,
        numeric,
    );
    let fs = feature_settings(None, None, None, w)?;
    let b = base.inner.clone();
    let df = py.detach(|| churnguard::export::training_set(&b, &fs));
    Ok(ArrowTable::new(df.map_err(|e| to_py(e, None))?))
}

/// `churnguard train`: fits, evaluates and publishes a new version; returns it (`v3`).
#[pyfunction]
#[pyo3(signature = (base, *, models=None, name=None, algorithms=None, horizon_days=None, active_days=None, snapshot_days=None, categorical=None, numeric=None, promote=false))]
#[allow(clippy::too_many_arguments)]
fn train(
    py: Python<'_>,
    base: &PyCustomerBase,
    models: Option<PathBuf>,
    name: Option<String>,
    algorithms: Option<Vec<String>>,
    horizon_days: Option<u32>,
    active_days: Option<u32>,
    snapshot_days: Option<u32>,
    categorical: Option<Vec<String>>,
    numeric: Option<Vec<String>>,
    promote: bool,
) -> PyResult<String> {
    let flags = TrainFlags {
        data: DataFlags::default(),
        models: ModelFlags { models, name },
        windows: windows(
            horizon_days,
            active_days,
            snapshot_days,
            categorical,
            numeric,
        ),
        algorithms,
        promote,
    };
    let t = settings()?.train(&flags).map_err(|e| to_py(e, None))?;
    let b = base.inner.clone();
    let out = py.detach(|| {
        let registry = Registry::new(&t.models);
        churnguard::train::run(&b, &registry, &t.config, &|_| {})
    });
    let out = out.map_err(|e| to_py(e, None))?;
    Ok(format!("v{}", out.published.version))
}

/// A published model version, loaded and verified as `churnguard score` loads it.
#[pyclass(module = "churnguard._native", name = "Model", frozen)]
pub struct PyModel {
    scorer: Arc<Scorer>,
}

#[pymethods]
impl PyModel {
    /// Loads `name` from the registry `models`: `version` (`v3`, `3` or an alias), or
    /// the `production` alias when None. Raises `ModelNotFoundError` / `ArtifactError`
    /// with the CLI's message.
    #[staticmethod]
    #[pyo3(signature = (models=None, *, name=None, version=None))]
    fn load(
        models: Option<PathBuf>,
        name: Option<String>,
        version: Option<String>,
    ) -> PyResult<Self> {
        let m = settings()?.model(&ModelFlags { models, name });
        let shown = version.as_deref().unwrap_or("production");
        let context = format!("loading model `{}` ({shown})", m.name);
        let scorer = shown
            .parse::<Selector>()
            .and_then(|sel| Scorer::load(&Registry::new(&m.models), &m.name, &sel))
            .map_err(|e| to_py(e, Some(&context)))?;
        Ok(PyModel {
            scorer: Arc::new(scorer),
        })
    }

    /// The model's name.
    #[getter]
    fn name(&self) -> String {
        self.scorer.name.clone()
    }

    /// The loaded version (`v3`).
    #[getter]
    fn version(&self) -> String {
        self.scorer.version.clone()
    }

    /// The feature columns the model reads, in its order.
    #[getter]
    fn feature_names(&self) -> Vec<String> {
        self.scorer
            .feature_names()
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// `manifest.json` as `churnguard models show` prints it, as JSON text.
    fn manifest_json(&self) -> PyResult<String> {
        let bad = |e: serde_json::Error| pyo3::exceptions::PyValueError::new_err(e.to_string());
        let json = self.scorer.manifest.to_json().map_err(bad)?;
        serde_json::to_string(&json).map_err(bad)
    }

    /// Scores every customer of `base` active at `as_of`: the rows and columns of
    /// `churnguard score`'s file (nothing is written, no alert state is touched).
    #[pyo3(signature = (base, as_of, *, allow_stale=false, contributions=false))]
    fn score(
        &self,
        py: Python<'_>,
        base: &PyCustomerBase,
        as_of: String,
        allow_stale: bool,
        contributions: bool,
    ) -> PyResult<ArrowTable> {
        let t = churnguard::time::parse_as_of(&as_of).map_err(|e| to_py(e, None))?;
        let guard = InputGuard {
            allow_stale,
            ..InputGuard::default()
        };
        let (b, s) = (base.inner.clone(), self.scorer.clone());
        let df = py.detach(|| batch::score_frame(&b, &s, t, &guard, contributions));
        Ok(ArrowTable::new(df.map_err(|e| to_py(e, None))?))
    }

    /// Scores precomputed features (`customer_id`, the model's feature columns; an
    /// `as_of` column or the `as_of` argument): the columns of `churnguard score`'s file.
    #[pyo3(signature = (features, *, as_of=None, contributions=false))]
    fn score_features(
        &self,
        py: Python<'_>,
        features: Bound<'_, PyAny>,
        as_of: Option<String>,
        contributions: bool,
    ) -> PyResult<ArrowTable> {
        let df = frame_from_py(&features, "features")?;
        let t = as_of
            .as_deref()
            .map(churnguard::time::parse_as_of)
            .transpose()
            .map_err(|e| to_py(e, None))?;
        let s = self.scorer.clone();
        let out = py.detach(|| {
            let (ids, at, x) = batch::feature_rows(&s, &df, t)?;
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            batch::score_feature_rows(&s, &ids, &at, &x, contributions)
        });
        Ok(ArrowTable::new(out.map_err(|e| to_py(e, None))?))
    }

    fn __repr__(&self) -> String {
        format!("Model({} {})", self.scorer.name, self.scorer.version)
    }
}

/// `churnguard alerts --scores`: the night's alerts from a score table (a path to a
/// score file or a directory of Parquet parts, or a table with the Arrow PyCapsule
/// interface), through `score`'s alert stage; the summary as JSON text.
#[pyfunction]
#[pyo3(signature = (scores, *, models=None, outbox=None, alerts=None, webhook=None, base=None, rules=None))]
#[allow(clippy::too_many_arguments)]
fn alerts_json(
    py: Python<'_>,
    scores: Bound<'_, PyAny>,
    models: Option<PathBuf>,
    outbox: Option<PathBuf>,
    alerts: Option<PathBuf>,
    webhook: Option<String>,
    base: Option<PyRef<'_, PyCustomerBase>>,
    rules: Option<PathBuf>,
) -> PyResult<String> {
    let path: Option<PathBuf> = scores.extract().ok();
    let df = match &path {
        Some(p) => {
            let context = format!("reading --scores {}", p.display());
            churnguard::scores::read_table(p).map_err(|e| to_py(e, Some(&context)))?
        }
        None => frame_from_py(&scores, "scores")?,
    };
    let source = path.unwrap_or_else(|| PathBuf::from("frame"));
    let flags = AlertsFlags {
        scores: Some(source.clone()),
        models,
        data: None,
        alerting: AlertStageFlags {
            alerts,
            outbox,
            alert_webhook: webhook,
            rules: RulesFlags { rules },
            ..AlertStageFlags::default()
        },
    };
    let a = settings()?.alerts(&flags).map_err(|e| to_py(e, None))?;
    let b = base.map(|b| b.inner.clone());
    let summary = py.detach(|| {
        let registry = Registry::new(&a.models);
        batch::alerts_from_scores(&df, &source, &registry, b.as_deref(), &a.options)
    });
    let summary = summary.map_err(|e| to_py(e, None))?;
    serde_json::to_string(&summary)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
}

/// The score file's columns, in order ([`churnguard::scores::COLUMNS`] then
/// [`churnguard::scores::EXPLAIN_COLUMNS`]), for the Spark job's output schema.
#[pyfunction]
fn score_columns() -> Vec<&'static str> {
    churnguard::scores::COLUMNS
        .iter()
        .chain(churnguard::scores::EXPLAIN_COLUMNS.iter())
        .copied()
        .collect()
}

/// The score file's table without rows: its columns ([`score_columns`]) with the types
/// `churnguard score` writes, for the Spark job's output schema.
#[pyfunction]
fn empty_scores() -> PyResult<ArrowTable> {
    let model = churnguard::scoring::ModelRef {
        name: String::new(),
        version: String::new(),
    };
    let df = churnguard::scores::frame(|_| 0, &model, &[], None).map_err(|e| to_py(e, None))?;
    Ok(ArrowTable::new(df))
}

/// The extent of `base` the data guards read (data end, first signup, each activity
/// table's newest row), as JSON text: a Spark bucket's part of the whole base's.
#[pyfunction]
fn data_extent_json(base: &PyCustomerBase) -> PyResult<String> {
    serde_json::to_string(&batch::DataExtent::of(&base.inner))
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
}

/// The data guards of `churnguard score` (stale tables, an `as_of` outside the data) on
/// the merged extents of a base's parts (JSON texts of [`data_extent_json`]), layered
/// like the CLI's (`CHURNGUARD_MAX_DATA_AGE_DAYS`...): raises `RefusedError` unless
/// `allow_stale`, else returns what they found, as warnings.
#[pyfunction]
#[pyo3(signature = (extents, as_of, *, allow_stale=false, max_data_age_days=None))]
fn check_extents(
    extents: Vec<String>,
    as_of: String,
    allow_stale: bool,
    max_data_age_days: Option<u32>,
) -> PyResult<Vec<String>> {
    let t = churnguard::time::parse_as_of(&as_of).map_err(|e| to_py(e, None))?;
    let flags = churnguard::settings::ScoreFlags {
        allow_stale,
        max_data_age_days,
        ..Default::default()
    };
    let guard = settings()?.guard(&flags).map_err(|e| to_py(e, None))?;
    let mut whole = batch::DataExtent::default();
    for e in &extents {
        let part: batch::DataExtent = serde_json::from_str(e)
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("extent: {e}")))?;
        whole = whole.merge(&part);
    }
    batch::check_extent(&whole, t, &guard).map_err(|e| to_py(e, None))
}

fn json_err(what: &'static str) -> impl Fn(serde_json::Error) -> PyErr {
    move |e| pyo3::exceptions::PyValueError::new_err(format!("{what}: {e}"))
}

/// What the training plan reads of `base` (which tables, the time range of its rows), as
/// JSON text: a Spark bucket's part of the whole base's (the first pass of the Spark
/// job's training set).
#[pyfunction]
fn plan_extent_json(base: &PyCustomerBase) -> PyResult<String> {
    serde_json::to_string(&churnguard::labels::PlanExtent::of(&base.inner))
        .map_err(json_err("plan extent"))
}

/// The training plan (snapshots, splits, churn definition) of `features --training-set`
/// with these windows, for the base whose parts have `extents` ([`plan_extent_json`]), as
/// JSON text.
#[pyfunction]
#[pyo3(signature = (extents, *, horizon_days=None, active_days=None, snapshot_days=None))]
fn training_plan_json(
    extents: Vec<String>,
    horizon_days: Option<u32>,
    active_days: Option<u32>,
    snapshot_days: Option<u32>,
) -> PyResult<String> {
    let w = windows(horizon_days, active_days, snapshot_days, None, None);
    let fs = feature_settings(None, None, None, w)?;
    let mut whole = churnguard::labels::PlanExtent::default();
    for e in &extents {
        let part: churnguard::labels::PlanExtent =
            serde_json::from_str(e).map_err(json_err("plan extent"))?;
        whole = whole.merge(&part);
    }
    let plan = churnguard::labels::plan_for(&whole, &fs.labels).map_err(|e| to_py(e, None))?;
    serde_json::to_string(&plan).map_err(json_err("plan"))
}

/// What the feature spec is learned from in the part `base` of a base, on the whole
/// base's `plan` ([`training_plan_json`]); `positions[i]`: the position of the part's
/// `i`-th customer in the whole base. JSON text (the second pass).
#[pyfunction]
#[pyo3(signature = (base, plan, positions, *, categorical=None, numeric=None))]
fn spec_inputs_json(
    py: Python<'_>,
    base: &PyCustomerBase,
    plan: String,
    positions: Vec<u64>,
    categorical: Option<Vec<String>>,
    numeric: Option<Vec<String>>,
) -> PyResult<String> {
    let fs = training_set_settings(categorical, numeric)?;
    let plan: churnguard::labels::Plan = serde_json::from_str(&plan).map_err(json_err("plan"))?;
    let b = base.inner.clone();
    let inputs = py.detach(|| {
        churnguard::train::TrainingExamples::spec_inputs(&b, &plan, &positions, &fs.attributes)
    });
    let inputs = inputs.map_err(|e| to_py(e, None))?;
    serde_json::to_string(&inputs).map_err(json_err("spec inputs"))
}

/// The feature spec `features --training-set` learns on the whole base, from its parts'
/// inputs ([`spec_inputs_json`], merged), as JSON text.
#[pyfunction]
#[pyo3(signature = (parts, *, categorical=None, numeric=None))]
fn learn_spec_json(
    py: Python<'_>,
    parts: Vec<String>,
    categorical: Option<Vec<String>>,
    numeric: Option<Vec<String>>,
) -> PyResult<String> {
    let fs = training_set_settings(categorical, numeric)?;
    let spec = py.detach(|| -> PyResult<_> {
        let mut whole = churnguard::features::SpecInputs::default();
        for p in &parts {
            let part: churnguard::features::SpecInputs =
                serde_json::from_str(p).map_err(json_err("spec inputs"))?;
            whole = whole.merge(part);
        }
        Ok(whole.learn(&fs.attributes))
    })?;
    serde_json::to_string(&spec).map_err(json_err("feature spec"))
}

fn spec_of(spec: &str) -> PyResult<churnguard::features::FeatureSpec> {
    let spec: churnguard::features::FeatureSpec =
        serde_json::from_str(spec).map_err(json_err("feature spec"))?;
    Ok(spec.rebuilt())
}

/// The feature columns of a spec ([`learn_spec_json`]), in order.
#[pyfunction]
fn spec_feature_names(spec: String) -> PyResult<Vec<String>> {
    Ok(spec_of(&spec)?
        .names()
        .into_iter()
        .map(str::to_string)
        .collect())
}

/// The training set rows of the part `base`, on the whole base's `plan` and `spec` (the
/// third pass): the parts' tables together are `training_set` of the whole base.
#[pyfunction]
fn training_set_part(
    py: Python<'_>,
    base: &PyCustomerBase,
    plan: String,
    spec: String,
) -> PyResult<ArrowTable> {
    let plan: churnguard::labels::Plan = serde_json::from_str(&plan).map_err(json_err("plan"))?;
    let spec = spec_of(&spec)?;
    let b = base.inner.clone();
    let df = py.detach(|| {
        let set = churnguard::train::TrainingExamples::part(&b, plan, spec);
        churnguard::export::training_set_frame(&b, &set)
    });
    Ok(ArrowTable::new(df.map_err(|e| to_py(e, None))?))
}

/// `churnguard inspect --json`'s summary of `base`, as JSON text.
#[pyfunction]
fn inspect_json(base: &PyCustomerBase) -> PyResult<String> {
    base.summary_json()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCustomerBase>()?;
    m.add_class::<PyModel>()?;
    m.add_class::<ArrowTable>()?;
    m.add_function(wrap_pyfunction!(features, m)?)?;
    m.add_function(wrap_pyfunction!(training_set, m)?)?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(inspect_json, m)?)?;
    m.add_function(wrap_pyfunction!(alerts_json, m)?)?;
    m.add_function(wrap_pyfunction!(score_columns, m)?)?;
    m.add_function(wrap_pyfunction!(empty_scores, m)?)?;
    m.add_function(wrap_pyfunction!(data_extent_json, m)?)?;
    m.add_function(wrap_pyfunction!(check_extents, m)?)?;
    m.add_function(wrap_pyfunction!(plan_extent_json, m)?)?;
    m.add_function(wrap_pyfunction!(training_plan_json, m)?)?;
    m.add_function(wrap_pyfunction!(spec_inputs_json, m)?)?;
    m.add_function(wrap_pyfunction!(learn_spec_json, m)?)?;
    m.add_function(wrap_pyfunction!(spec_feature_names, m)?)?;
    m.add_function(wrap_pyfunction!(training_set_part, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)
}
