//! The library's error type: every message carries the failing value, file, row or column.
//!
//! A variant that wraps a lower-level error (`Io`, `Corrupt`, `Polars`, `OutboxDb`,
//! `OutboxPayload`) exposes it as its [`source`](std::error::Error::source) and does not
//! repeat it in its own message, so a printer that walks the chain (`anyhow`'s `{:#}`,
//! [`Chain`]) names each cause once. Print a library error with [`Error::chain`] wherever
//! the whole story is wanted (logs, `models verify`, messages for a caller).

use std::path::PathBuf;

/// ` (row R, column `c`)` / ` (the header)` for [`Error::BadCsv`].
fn csv_where(row: Option<usize>, column: Option<&str>) -> String {
    match (row, column) {
        (None, _) => " (the header)".into(),
        (Some(r), None) => format!(" (row {r})"),
        (Some(r), Some(c)) => format!(" (row {r}, column `{c}`)"),
    }
}

/// Errors raised by the churnguard library. `main` adds context with `anyhow`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}", path.display())]
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
    /// A CSV table file that does not parse as CSV (a ragged row, an unclosed quote,
    /// invalid UTF-8); names the file, the 1-based line, the data row and the column
    /// when known.
    #[error("{file}, line {line}{}: {message}", csv_where(*.row, .column.as_deref()))]
    BadCsv {
        file: String,
        line: usize,
        /// 1-based data row (the header excluded); `None` for the header.
        row: Option<usize>,
        column: Option<String>,
        message: String,
    },
    /// Invalid settings or arguments, found before any work starts.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A model artifact does not match what is expected (an invalid name or version,
    /// a schema that differs from its manifest, nothing to roll back to...).
    #[error("model artifact: {0}")]
    Artifact(String),
    /// The registry has no model of this name: nothing was ever published under it.
    #[error("model artifact: {}: no model named `{name}`", models_dir.join(name).display())]
    ModelNotFound { name: String, models_dir: PathBuf },
    /// The model exists but the alias (e.g. `production`) is not set.
    #[error("model artifact: {}: model {name} has no alias `{alias}` (aliases: {set})", file.display())]
    AliasMissing {
        name: String,
        alias: String,
        /// The alias file read.
        file: PathBuf,
        /// The aliases that are set, comma-separated, or `none`.
        set: String,
    },
    /// The model exists but not this version.
    #[error("model artifact: {}: model {name} has no version v{version} ({known})", dir.display())]
    VersionNotFound {
        name: String,
        version: u32,
        /// The model's directory.
        dir: PathBuf,
        /// The versions there are, in words.
        known: String,
    },
    /// A registry file exists but cannot be trusted: an unparsable or inconsistent
    /// `aliases.json` or manifest, a missing listed file, a checksum mismatch, a model
    /// file that does not decode. Never a reason to publish over it.
    #[error("model artifact: {}: corrupt {what}", path.display())]
    Corrupt {
        path: PathBuf,
        /// What the file is (`aliases file`, `manifest of churn v3`...).
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
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
    #[error("{context}")]
    Polars {
        context: String,
        #[source]
        source: polars::error::PolarsError,
    },
    /// The alert outbox's SQLite database failed; `context` says what the outbox was doing.
    /// (The plain [`Error::Outbox`] is for refusals that have no SQLite cause.)
    #[error("alert outbox: {context}")]
    OutboxDb {
        context: String,
        #[source]
        source: rusqlite::Error,
    },
    /// The alert outbox's PostgreSQL database failed; `context` says what the outbox was
    /// doing (the driver's error, with the server's message, is the source).
    #[error("alert outbox (PostgreSQL): {context}")]
    OutboxPg {
        context: String,
        #[source]
        source: postgres::Error,
    },
    /// The nightly run refused its input: stale data, an `--as-of` outside the data, an
    /// empty or collapsed population. Nothing was scored, written or alerted (a nightly
    /// run records the refusal itself in the alert state's `nights` table, to be counted;
    /// scoring into a table, as the Python package and the Spark job do, records
    /// nothing); `--allow-stale` scores anyway. Its own variant so that callers (the
    /// binary's exit code, a scheduler's wrapper) can tell "the data is not ready" from a
    /// failure. One message for the CLI, Python and Spark: only the outcome differs.
    #[error("refused to score as of {as_of}: {message}. {}", refusal_outcome(*.recorded))]
    Refused {
        /// The first reason found (the one recorded).
        reason: RefusalReason,
        /// The night refused (YYYY-MM-DD or RFC 3339).
        as_of: String,
        /// Every reason found, in words, `; `-separated.
        message: String,
        /// Whether the refusal was recorded in the alert state (a nightly run's).
        recorded: bool,
    },
    /// An alert could not be turned into, or read back from, the JSON the outbox stores.
    #[error("alert outbox: {context}")]
    OutboxPayload {
        context: String,
        #[source]
        source: serde_json::Error,
    },
}

/// What [`Error::Refused`] says happened instead of scoring, and how to override it.
fn refusal_outcome(recorded: bool) -> &'static str {
    if recorded {
        "No score file written, no alert sent (the refusal is recorded in the alert state's nights table); --allow-stale scores anyway"
    } else {
        "Nothing scored, no alert sent; --allow-stale (allow_stale=True from Python) scores anyway"
    }
}

/// Why a nightly run refused its input ([`Error::Refused`]); stored in the alert state's
/// `nights` table by [`RefusalReason::as_str`], so that refusals can be counted by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefusalReason {
    /// An activity table's newest row is older than `--as-of` minus the freshness limit
    /// (an export that stopped arriving).
    StaleTable,
    /// `--as-of` is after the end of the data's last day: the features would read the
    /// gap as inactivity.
    AsOfAfterData,
    /// `--as-of` is at or before the first signup: there is no one to score.
    AsOfBeforeSignups,
    /// No customer is active at `--as-of`.
    EmptyPopulation,
    /// Far fewer customers than on the previous night (a partial export).
    CollapsedPopulation,
}

impl RefusalReason {
    /// Every reason, in the order a run checks them.
    pub const ALL: [RefusalReason; 5] = [
        RefusalReason::AsOfAfterData,
        RefusalReason::AsOfBeforeSignups,
        RefusalReason::StaleTable,
        RefusalReason::EmptyPopulation,
        RefusalReason::CollapsedPopulation,
    ];

    /// The stable name stored and exported (`stale_table`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::StaleTable => "stale_table",
            RefusalReason::AsOfAfterData => "as_of_after_data",
            RefusalReason::AsOfBeforeSignups => "as_of_before_signups",
            RefusalReason::EmptyPopulation => "empty_population",
            RefusalReason::CollapsedPopulation => "collapsed_population",
        }
    }
}

impl std::str::FromStr for RefusalReason {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        RefusalReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| Error::Outbox(format!("unknown refusal reason `{s}`")))
    }
}

impl std::fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error and its causes on one line, `outer: cause: root cause`, each once.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl std::fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Shorthand used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// This error with every cause, for a log line or a message (see [`Chain`]).
    pub fn chain(&self) -> Chain<'_> {
        Chain(self)
    }

    /// An I/O error that names the path involved.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A corrupt registry file; `source` says what is wrong with it.
    pub fn corrupt(
        path: impl Into<PathBuf>,
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Corrupt {
            path: path.into(),
            what: what.into(),
            source: source.into(),
        }
    }

    /// The model or the asked alias does not exist yet: publishing one would fix it.
    /// A corrupt registry is not "missing".
    pub fn is_missing_model(&self) -> bool {
        matches!(
            self,
            Error::ModelNotFound { .. } | Error::AliasMissing { .. }
        )
    }

    /// A polars error with what we were doing at the time.
    pub fn polars(context: impl Into<String>, source: polars::error::PolarsError) -> Self {
        Error::Polars {
            context: context.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_is_printed_once_whichever_printer_walks_the_chain() {
        let os = std::io::Error::from_raw_os_error(2);
        let shown = os.to_string();
        let e = Error::io("data/nope", os);
        assert_eq!(e.to_string(), "data/nope");
        assert_eq!(e.chain().to_string(), format!("data/nope: {shown}"));
        let wrapped = anyhow::Error::from(e).context("loading the customer base in data/nope");
        let printed = format!("{wrapped:#}");
        assert_eq!(printed.matches(&shown).count(), 1, "{printed}");

        let corrupt = Error::corrupt("m/aliases.json", "aliases file", "expected `,` at 1:3");
        assert_eq!(
            corrupt.chain().to_string(),
            "model artifact: m/aliases.json: corrupt aliases file: expected `,` at 1:3"
        );
        let printed = format!("{:#}", anyhow::Error::from(corrupt));
        assert_eq!(printed.matches("expected `,`").count(), 1, "{printed}");
    }
}
