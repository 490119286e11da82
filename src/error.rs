//! The library's error type: every message carries the failing value, file, row or column.

use std::path::PathBuf;

/// Errors raised by the churnguard library. `main` adds context with `anyhow`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A table breaks the data contract (missing column, bad value, duplicate key...).
    #[error("{0}")]
    Data(String),
    /// A cell could not be parsed; names the table, 1-based data row and column.
    #[error("table `{table}` ({file}), row {row}, column `{column}`: {message}")]
    BadValue {
        table: String,
        file: String,
        row: usize,
        column: String,
        message: String,
    },
    /// Invalid settings or arguments, found before any work starts.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A model artifact is missing, corrupt or does not match what is expected.
    #[error("model artifact: {0}")]
    Artifact(String),
    /// Training could not produce a model (too few examples, a fit that failed...).
    #[error("training: {0}")]
    Train(String),
    /// Input to scoring is wrong (a missing feature, a non-finite value...).
    #[error("{message}")]
    Input { field: String, message: String },
    /// The alert outbox refused a file or an alert (not WAL, a newer layout, an alert
    /// that does not match its score, an unknown key).
    #[error("alert outbox: {0}")]
    Outbox(String),
    /// polars failed while reading or writing a table.
    #[error("{context}: {source}")]
    Polars {
        context: String,
        #[source]
        source: polars::error::PolarsError,
    },
    /// The alert outbox's SQLite database failed; `context` says what the outbox was doing.
    /// (The plain [`Error::Outbox`] is for refusals that have no SQLite cause.)
    #[error("alert outbox: {context}: {source}")]
    OutboxDb {
        context: String,
        #[source]
        source: rusqlite::Error,
    },
    /// An alert could not be turned into, or read back from, the JSON the outbox stores.
    #[error("alert outbox: {context}: {source}")]
    OutboxPayload {
        context: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Shorthand used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error that names the path involved.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A polars error with what we were doing at the time.
    pub fn polars(context: impl Into<String>, source: polars::error::PolarsError) -> Self {
        Error::Polars {
            context: context.into(),
            source,
        }
    }
}
