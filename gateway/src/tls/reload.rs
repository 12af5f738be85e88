//! Certificate hot reload: new handshakes get the new certificate, established
//! sessions keep their connection.
//!
//! The served pair ([`CertFiles`]) is reloaded when its files change — checked by
//! polling `stat` every `tls.reload_check_interval_ms` — and on demand
//! ([`TlsReloader::reload`]: SIGHUP in the binary, `GatewayHandle::reload_tls`
//! in code). A reload reads both files, builds a complete rustls config with the
//! same TLS 1.3 / ALPN / no-0-RTT settings (which fails unless the key matches the
//! leaf certificate), and installs it with `quinn::Endpoint::set_server_config`
//! on a copy of the running QUIC server config (same transport limits, same
//! retry-token key). quinn uses the new config for new handshakes only.
//!
//! An invalid pair — garbage, a missing file, or a half-rotated pair (certificate
//! replaced, key not yet) — is never installed: the gateway keeps serving the old
//! one, logs a warning, counts `outpost_tls_reload_failures_total`, and tries
//! again on every following check until the files form a valid pair. Success
//! counts `outpost_tls_reloads_total` and sets `outpost_tls_cert_not_after_seconds`
//! (the leaf's expiry, unix seconds).
//!
//! Why polling: `stat` follows symlinks and the stamp includes the inode, so it
//! sees in-place writes, atomic renames and Kubernetes secret volumes (whose files
//! are symlinks through a `..data` link swapped on update) alike, with no watcher
//! to re-arm. The files are stamped *before* they are read, so a change racing a
//! reload is seen again on the next check rather than missed.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::broadcast;
use tracing::{debug, info, warn};

use super::{CertFiles, ServerIdentity, TlsError};

/// What `stat` reports about one file (symlinks followed). Two stamps differ
/// when the file was written, replaced by a rename, or re-pointed by a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStamp {
    /// The stamp of `path`, or `None` if it does not exist or cannot be read.
    pub fn of(path: &Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
            Some(FileStamp {
                dev: meta.dev(),
                ino: meta.ino(),
                len: meta.size(),
                mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
                ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
            })
        }
        #[cfg(not(unix))]
        {
            let mtime_ns = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as i128);
            Some(FileStamp {
                dev: 0,
                ino: 0,
                len: meta.len(),
                mtime_ns,
                ctime_ns: 0,
            })
        }
    }
}

/// The stamps of the certificate and key files at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PairStamp {
    pub cert: Option<FileStamp>,
    pub key: Option<FileStamp>,
}

impl PairStamp {
    pub fn of(files: &CertFiles) -> Self {
        PairStamp {
            cert: FileStamp::of(&files.cert),
            key: FileStamp::of(&files.key),
        }
    }
}

/// Decides, from file stamps alone, when the pair must be (re)loaded. No IO.
#[derive(Debug, Clone)]
pub struct CertWatcher {
    /// The files' state when the pair being served was read.
    installed: PairStamp,
    /// The state whose last load attempt failed, if the latest attempt failed.
    failing: Option<PairStamp>,
}

impl CertWatcher {
    /// A watcher for a pair read from files in state `installed`.
    pub fn new(installed: PairStamp) -> Self {
        CertWatcher {
            installed,
            failing: None,
        }
    }

    /// Whether files now in state `now` must be loaded: whenever they differ from
    /// the served pair's — including after a failed attempt on that very state,
    /// so a broken pair is retried on every check until it loads (a fix that
    /// `stat` cannot tell apart is still picked up).
    pub fn should_reload(&self, now: &PairStamp) -> bool {
        *now != self.installed
    }

    /// The pair read from files in state `seen` is now served.
    pub fn installed(&mut self, seen: PairStamp) {
        self.installed = seen;
        self.failing = None;
    }

    /// Loading the pair in state `seen` failed. Returns true the first time a
    /// given state fails (worth a warning), false for repeated attempts.
    pub fn failed(&mut self, seen: PairStamp) -> bool {
        self.failing.replace(seen) != Some(seen)
    }
}

/// The outcome of a successful reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadReport {
    /// The new leaf certificate's `notAfter` (unix seconds), if readable.
    pub not_after_unix: Option<i64>,
}

/// Reload figures of one gateway (the Prometheus counters add up every gateway
/// of the process).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TlsStatus {
    #[schema(value_type = String)]
    pub cert_path: std::path::PathBuf,
    #[schema(value_type = String)]
    pub key_path: std::path::PathBuf,
    /// Successful reloads since start.
    pub reloads: u64,
    /// Failed reload attempts since start.
    pub failures: u64,
    /// The served leaf's `notAfter`, unix seconds.
    pub not_after_unix: Option<i64>,
    /// Why the latest attempt failed, while the files stay invalid.
    pub last_error: Option<String>,
}

struct State {
    watcher: CertWatcher,
    not_after: Option<i64>,
    last_error: Option<String>,
}

/// Reloads the served certificate into a running QUIC endpoint.
pub struct TlsReloader {
    files: CertFiles,
    /// `None` once the gateway stopped: a handle must not keep the socket open.
    endpoint: Mutex<Option<quinn::Endpoint>>,
    /// The QUIC server config the endpoint started with; reloads swap its TLS part.
    template: quinn::ServerConfig,
    /// Held for the whole of a reload, so two reloads never interleave.
    state: Mutex<State>,
    reloads: AtomicU64,
    failures: AtomicU64,
}

impl TlsReloader {
    /// A reloader for `endpoint`, which serves the pair read from `files` while
    /// they were in state `installed`, with `template` as its server config.
    pub fn new(
        files: CertFiles,
        endpoint: quinn::Endpoint,
        template: quinn::ServerConfig,
        installed: PairStamp,
        not_after: Option<i64>,
    ) -> Self {
        set_not_after_gauge(not_after);
        TlsReloader {
            files,
            endpoint: Mutex::new(Some(endpoint)),
            template,
            state: Mutex::new(State {
                watcher: CertWatcher::new(installed),
                not_after,
                last_error: None,
            }),
            reloads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// Reloads now, whether or not the files changed (SIGHUP). On error the
    /// previous certificate stays in service. Blocks briefly: reads two files.
    pub fn reload(&self) -> Result<ReloadReport, TlsError> {
        let mut state = self.state.lock().expect("tls reload lock");
        let seen = PairStamp::of(&self.files);
        self.attempt(&mut state, seen, "requested")
    }

    /// Reloads if the files changed since the served pair was read (or the last
    /// attempt failed). `None` when there was nothing to do.
    pub fn check(&self) -> Option<Result<ReloadReport, TlsError>> {
        let mut state = self.state.lock().expect("tls reload lock");
        let seen = PairStamp::of(&self.files);
        if !state.watcher.should_reload(&seen) {
            return None;
        }
        Some(self.attempt(&mut state, seen, "files changed"))
    }

    /// Checks the files every `every` until `stop` fires.
    pub fn spawn_polling(self: &Arc<Self>, every: Duration, mut stop: broadcast::Receiver<()>) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await; // the first tick is immediate; the pair was just loaded
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stop.recv() => break,
                }
                let r = me.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || r.check()).await {
                    warn!(error = %e, "TLS reload check did not finish");
                }
            }
        });
    }

    /// Lets go of the endpoint once the gateway has stopped (so its UDP socket
    /// closes even while handles live on); later reloads fail with `Stopped`.
    pub fn detach(&self) {
        self.endpoint.lock().expect("tls endpoint lock").take();
    }

    /// This gateway's reload figures.
    pub fn status(&self) -> TlsStatus {
        let state = self.state.lock().expect("tls reload lock");
        TlsStatus {
            cert_path: self.files.cert.clone(),
            key_path: self.files.key.clone(),
            reloads: self.reloads.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            not_after_unix: state.not_after,
            last_error: state.last_error.clone(),
        }
    }

    fn attempt(&self, state: &mut State, seen: PairStamp, trigger: &str) -> Result<ReloadReport, TlsError> {
        match self.install() {
            Ok(report) => {
                state.watcher.installed(seen);
                state.not_after = report.not_after_unix;
                state.last_error = None;
                self.reloads.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("outpost_tls_reloads_total").increment(1);
                set_not_after_gauge(report.not_after_unix);
                info!(
                    trigger,
                    cert = %self.files.cert.display(),
                    not_after_unix = report.not_after_unix,
                    "TLS certificate reloaded; new handshakes use it"
                );
                Ok(report)
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("outpost_tls_reload_failures_total").increment(1);
                if state.watcher.failed(seen) {
                    warn!(
                        trigger,
                        error = %e,
                        cert = %self.files.cert.display(),
                        key = %self.files.key.display(),
                        "TLS reload failed; still serving the previous certificate (retrying on every check)"
                    );
                } else {
                    debug!(trigger, error = %e, "TLS reload failed again");
                }
                state.last_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    fn install(&self) -> Result<ReloadReport, TlsError> {
        let identity = ServerIdentity::from_files(&self.files)?;
        let rustls = identity.rustls_config()?;
        let crypto = crate::endpoint::quic_crypto(rustls)?;
        let mut server = self.template.clone();
        server.crypto = Arc::new(crypto);
        self.endpoint
            .lock()
            .expect("tls endpoint lock")
            .as_ref()
            .ok_or(TlsError::Stopped)?
            .set_server_config(Some(server));
        Ok(ReloadReport {
            not_after_unix: identity.not_after(),
        })
    }
}

fn set_not_after_gauge(not_after: Option<i64>) {
    if let Some(t) = not_after {
        metrics::gauge!("outpost_tls_cert_not_after_seconds").set(t as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(ino: u64, mtime_ns: i128) -> Option<FileStamp> {
        Some(FileStamp {
            dev: 1,
            ino,
            len: 100,
            mtime_ns,
            ctime_ns: mtime_ns,
        })
    }

    #[test]
    fn reloads_only_when_the_files_differ_from_the_served_pair() {
        let a = PairStamp {
            cert: stamp(1, 10),
            key: stamp(2, 10),
        };
        let mut w = CertWatcher::new(a);
        assert!(!w.should_reload(&a));
        // Certificate renamed into place, key not yet: a reload is due (and will
        // fail on the key mismatch, keeping the old pair).
        let half = PairStamp {
            cert: stamp(3, 20),
            ..a
        };
        assert!(w.should_reload(&half));
        assert!(w.failed(half), "the first failure of a state is reported");
        assert!(
            w.should_reload(&half),
            "a failed state is retried on the next check"
        );
        assert!(!w.failed(half), "repeats are not reported again");
        // The key follows; the full pair loads.
        let b = PairStamp {
            cert: stamp(3, 20),
            key: stamp(4, 21),
        };
        assert!(w.should_reload(&b));
        w.installed(b);
        assert!(!w.should_reload(&b));
        // A deleted file is a change too (and fails to load).
        let gone = PairStamp { cert: None, ..b };
        assert!(w.should_reload(&gone));
        assert!(w.failed(gone));
    }

    #[test]
    fn stamps_see_rename_and_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cert.pem");
        assert_eq!(FileStamp::of(&path), None);
        std::fs::write(&path, "one").unwrap();
        let first = FileStamp::of(&path).unwrap();
        assert_eq!(FileStamp::of(&path), Some(first));
        // Same size, replaced by rename: the inode differs.
        let tmp = dir.path().join("cert.tmp");
        std::fs::write(&tmp, "two").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_ne!(FileStamp::of(&path), Some(first));
    }
}
