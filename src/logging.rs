//! The one logging set-up (`tracing`), used by the binary and by [`crate::serve::serve`].
//!
//! The filter comes from `CHURNGUARD_LOG` (a `tracing` filter such as
//! `warn,churnguard=debug`), else from `RUST_LOG` (what the service read before), else
//! the caller's default. Output goes to stderr as text, or as JSON lines for a log
//! shipper; colour codes only when stderr is a terminal.
//!
//! A few lines must reach stderr whatever the filter says: a command's final error, and
//! the `batch_done` line a scheduler's log watcher keys on. [`always`] writes them in the
//! same form as the rest (text, or one JSON object per line with `--log-json`), so a log
//! shipper never meets a line it cannot parse.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::EnvFilter;

/// The variable holding the log filter.
pub const LOG_ENV: &str = "CHURNGUARD_LOG";

/// The default filter: the long-running commands (`serve`, `demo`) log what they do;
/// one-shot commands print their results and log only warnings.
pub fn default_filter(long_running: bool) -> &'static str {
    if long_running {
        "warn,churnguard=info"
    } else {
        "warn"
    }
}

/// The filter from [`LOG_ENV`], then `RUST_LOG`, then `default`.
fn filter(default: &str) -> EnvFilter {
    EnvFilter::try_from_env(LOG_ENV)
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(default))
}

/// Whether [`init`] asked for JSON lines (read by [`always`]).
static JSON: AtomicBool = AtomicBool::new(false);

/// Installs the subscriber unless one is installed already (so a library caller's or a
/// test's own subscriber wins).
pub fn init(json: bool, default: &str) {
    JSON.store(json, Ordering::Relaxed);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(default))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if json {
        // A panic's message would otherwise be the one plain-text line on stderr.
        std::panic::set_hook(Box::new(|info| {
            always(tracing::Level::ERROR, &format!("panic: {info}"), &[]);
        }));
        builder.json().try_init()
    } else {
        builder.compact().try_init()
    };
}

/// Writes one line to stderr whatever the log filter: `text` as it is, or with
/// `--log-json` an object shaped like the subscriber's JSON lines (`timestamp`, `level`,
/// `fields` holding `message` = `text` and `fields`, `target`).
pub fn always(level: tracing::Level, text: &str, fields: &[(&str, serde_json::Value)]) {
    let line = render(JSON.load(Ordering::Relaxed), level, text, fields);
    // Nothing sensible is left to do when stderr itself is gone.
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// The line [`always`] writes, without its newline.
fn render(
    json: bool,
    level: tracing::Level,
    text: &str,
    fields: &[(&str, serde_json::Value)],
) -> String {
    if !json {
        return text.to_string();
    }
    let mut f = serde_json::Map::new();
    f.insert("message".into(), text.into());
    for (k, v) in fields {
        f.insert((*k).into(), v.clone());
    }
    serde_json::json!({
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "level": level.as_str(),
        "fields": f,
        "target": "churnguard",
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn a_line_is_the_text_or_one_json_object_with_its_fields() {
        let fields = [("customers", json!(3)), ("as_of", json!("2024-06-01"))];
        let text = "batch_done as_of=2024-06-01 customers=3";
        assert_eq!(render(false, tracing::Level::INFO, text, &fields), text);
        let line = render(true, tracing::Level::INFO, "multi\nline", &fields);
        assert!(!line.contains('\n'), "{line}");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], "churnguard");
        assert_eq!(v["fields"]["message"], "multi\nline");
        assert_eq!(v["fields"]["customers"], 3);
        assert_eq!(v["fields"]["as_of"], "2024-06-01");
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'), "{v}");
    }
}
