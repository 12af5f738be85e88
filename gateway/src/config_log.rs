//! The `[log]` section: log line format and the default filter.

use serde::Deserialize;

/// Logging. Lines go to standard error; colours (ANSI codes) only when standard
/// error is a terminal, never into files, pipes or the journal.
///
/// `RUST_LOG` (tracing-subscriber's `EnvFilter` syntax, e.g.
/// `info,outpost_gateway::driver=debug`), when set, replaces `filter` whole:
/// include `fjall=warn,lsm_tree=warn` in it to keep the storage library quiet.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default: one human-readable line per event) or `json` (one JSON
    /// object per line: `timestamp`, `level`, `target`, `fields`, and the
    /// `span`s it happened in), for log shippers.
    pub format: LogFormat,
    /// The filter used when `RUST_LOG` is not set. Default
    /// `info,fjall=warn,lsm_tree=warn,quinn=warn,quinn_proto=warn,rustls=warn`:
    /// Outpost at INFO, third-party crates at WARN (the storage library
    /// otherwise logs its recovery steps at INFO on every start). Checked at
    /// startup.
    pub filter: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The default filter (see [`LogConfig::filter`]).
pub const DEFAULT_LOG_FILTER: &str = "info,fjall=warn,lsm_tree=warn,quinn=warn,quinn_proto=warn,rustls=warn";

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            filter: DEFAULT_LOG_FILTER.into(),
        }
    }
}
