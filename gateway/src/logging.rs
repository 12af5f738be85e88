//! Log output of the gateway binary (`[log]` in the config, [`LogConfig`]):
//! text or JSON lines on standard error, colour only on a terminal, the
//! third-party crates at WARN unless `RUST_LOG` says otherwise.

use std::io::IsTerminal;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// The filter in force: `RUST_LOG` when set (and valid), else `config.filter`.
pub fn filter(config: &LogConfig, rust_log: Option<&str>) -> Result<EnvFilter, String> {
    match rust_log.filter(|v| !v.trim().is_empty()) {
        Some(v) => EnvFilter::try_new(v).map_err(|e| format!("RUST_LOG {v:?}: {e}")),
        None => {
            EnvFilter::try_new(&config.filter).map_err(|e| format!("log.filter {:?}: {e}", config.filter))
        }
    }
}

/// Installs the process-wide subscriber writing to standard error (and routes
/// the `log` crate's records, which fjall and rustls use, through it).
pub fn init(config: &LogConfig) -> Result<(), String> {
    let filter = filter(config, std::env::var("RUST_LOG").ok().as_deref())?;
    let ansi = std::io::stderr().is_terminal();
    install(config.format, filter, ansi, std::io::stderr)
}

/// Installs a subscriber with `format` and `filter` writing to `writer`.
pub fn install<W>(format: LogFormat, filter: EnvFilter, ansi: bool, writer: W) -> Result<(), String>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let done = match format {
        LogFormat::Text => builder.with_ansi(ansi).try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
    done.map_err(|e| format!("installing the log subscriber: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_filter_quiets_libraries_and_rust_log_replaces_it() {
        let config = LogConfig::default();
        let f = filter(&config, None).unwrap().to_string();
        for lib in ["fjall=warn", "lsm_tree=warn", "quinn=warn", "rustls=warn"] {
            assert!(f.contains(lib), "{f}");
        }
        let f = filter(&config, Some("debug")).unwrap().to_string();
        assert_eq!(f, "debug");
        assert!(
            filter(&config, Some("info,fjall=loud")).is_err(),
            "a broken RUST_LOG is an error"
        );
        let bad = LogConfig {
            filter: "info,fjall=loud".into(),
            ..LogConfig::default()
        };
        assert!(filter(&bad, None).is_err());
    }
}
