//! The one logging set-up (`tracing`), used by the binary and by [`crate::serve::serve`].
//!
//! The filter comes from `CHURNGUARD_LOG` (a `tracing` filter such as
//! `warn,churnguard=debug`), else from `RUST_LOG` (what the service read before), else
//! the caller's default. Output goes to stderr as text, or as JSON lines for a log
//! shipper; colour codes only when stderr is a terminal.

use std::io::IsTerminal;

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

/// Installs the subscriber unless one is installed already (so a library caller's or a
/// test's own subscriber wins).
pub fn init(json: bool, default: &str) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(default))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.compact().try_init()
    };
}
