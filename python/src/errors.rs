//! The library's [`Error`] as Python exceptions: one class per kind of failure, under
//! `churnguard.ChurnguardError`, each carrying the message the CLI prints (after its
//! `error: `), the whole cause chain included.

use churnguard::Error;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    churnguard,
    ChurnguardError,
    PyException,
    "Every error churnguard raises; its message is the one the CLI prints."
);
create_exception!(
    churnguard,
    DataError,
    ChurnguardError,
    "A table breaks the data contract, or cannot be read (the message names the table, file, row and column; a bad cell also sets `table`, `file`, `row` and `column`)."
);
create_exception!(
    churnguard,
    ConfigError,
    ChurnguardError,
    "Invalid settings or arguments, found before any work starts."
);
create_exception!(
    churnguard,
    ArtifactError,
    ChurnguardError,
    "A model artifact is invalid, corrupt, or does not match what is expected."
);
create_exception!(
    churnguard,
    ModelNotFoundError,
    ArtifactError,
    "The registry has no such model, alias or version."
);
create_exception!(
    churnguard,
    TrainError,
    ChurnguardError,
    "Training could not produce a model."
);
create_exception!(
    churnguard,
    InputError,
    ChurnguardError,
    "Input to scoring is wrong (a missing feature column, a non-numeric value...); `field` names it."
);
create_exception!(
    churnguard,
    RefusedError,
    ChurnguardError,
    "Scoring refused its input (stale data, an as_of outside the data, an empty population); `reason` is the stable name (`as_of_after_data`...). allow_stale=True scores anyway."
);
create_exception!(
    churnguard,
    OutboxError,
    ChurnguardError,
    "The alert outbox refused a file or an alert, or its database failed."
);

/// `e` as the Python exception of its kind; `context` (what the CLI adds before the
/// library's message, e.g. `loading the customer base in DIR`) is prefixed as the CLI
/// prints it.
pub fn to_py(e: Error, context: Option<&str>) -> PyErr {
    let chain = e.chain().to_string();
    let message = match context {
        Some(c) => format!("{c}: {chain}"),
        None => chain,
    };
    let err = match &e {
        Error::Data(_)
        | Error::BadValue { .. }
        | Error::BadCsv { .. }
        | Error::Io { .. }
        | Error::Polars { .. } => DataError::new_err(message),
        Error::Config(_) => ConfigError::new_err(message),
        Error::Artifact(_) | Error::Corrupt { .. } => ArtifactError::new_err(message),
        Error::ModelNotFound { .. }
        | Error::AliasMissing { .. }
        | Error::VersionNotFound { .. } => ModelNotFoundError::new_err(message),
        Error::Train(_) => TrainError::new_err(message),
        Error::Input { .. } => InputError::new_err(message),
        Error::Refused { .. } => RefusedError::new_err(message),
        Error::Outbox(_)
        | Error::OutboxDb { .. }
        | Error::OutboxPg { .. }
        | Error::OutboxPayload { .. } => OutboxError::new_err(message),
    };
    Python::attach(|py| {
        let value = err.value(py);
        // Best effort: the message already says all of it.
        let _ = match &e {
            Error::BadValue {
                table,
                file,
                row,
                column,
                ..
            } => value
                .setattr("table", table)
                .and_then(|_| value.setattr("file", file))
                .and_then(|_| value.setattr("row", row))
                .and_then(|_| value.setattr("column", column)),
            Error::BadCsv {
                file, row, column, ..
            } => value
                .setattr("file", file)
                .and_then(|_| value.setattr("row", row))
                .and_then(|_| value.setattr("column", column)),
            Error::Input { field, .. } => value.setattr("field", field),
            Error::Refused { reason, as_of, .. } => value
                .setattr("reason", reason.as_str())
                .and_then(|_| value.setattr("as_of", as_of)),
            _ => Ok(()),
        };
    });
    err
}

/// Registers the exception classes on the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("ChurnguardError", py.get_type::<ChurnguardError>())?;
    m.add("DataError", py.get_type::<DataError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("ArtifactError", py.get_type::<ArtifactError>())?;
    m.add("ModelNotFoundError", py.get_type::<ModelNotFoundError>())?;
    m.add("TrainError", py.get_type::<TrainError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("RefusedError", py.get_type::<RefusedError>())?;
    m.add("OutboxError", py.get_type::<OutboxError>())?;
    Ok(())
}
