//! Who holds a data directory: the pid file beside fjall's lock.
//!
//! fjall locks its data directory (an advisory `flock` on its lock file) for as
//! long as a process has it open; a second open fails with `Locked` and says
//! nothing of the holder. So the process that opened it writes its pid to
//! `holder.pid` in the directory right after taking the lock, and an open that
//! finds the directory locked reads that file back
//! ([`OpenError::Locked`](super::OpenError::Locked)) and reports the pid, the
//! holder's command name and whether it is running ([`Holder`]). The file is
//! left in place when the process exits: the lock (released by the kernel) is
//! what counts, and the next holder overwrites the file.

use std::fmt;
use std::path::Path;

/// The pid file's name inside the data directory.
pub const PID_FILE: &str = "holder.pid";

/// What is known of the process holding a locked data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// No readable pid file: the holder predates pid files, or could not write it.
    Unknown,
    /// The pid file's process.
    Pid {
        /// Its pid.
        pid: u32,
        /// Its command name (`/proc/<pid>/comm`), when it runs on this host.
        command: Option<String>,
        /// Whether a process with this pid runs in this pid namespace. A locked
        /// directory whose holder is not running here is held from another
        /// container or host sharing the volume.
        running: bool,
    },
}

impl Holder {
    /// Reads the pid file of `dir`.
    pub fn of(dir: &Path) -> Holder {
        let Some(pid) = std::fs::read_to_string(dir.join(PID_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        else {
            return Holder::Unknown;
        };
        let proc_dir = Path::new("/proc").join(pid.to_string());
        let command = std::fs::read_to_string(proc_dir.join("comm"))
            .ok()
            .map(|c| c.trim().to_owned());
        Holder::Pid {
            pid,
            running: proc_dir.exists(),
            command,
        }
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Holder::Unknown => write!(f, "by an unknown process (no readable {PID_FILE})"),
            Holder::Pid {
                pid,
                command: Some(command),
                running: true,
            } => write!(f, "by pid {pid} ({command}, running)"),
            Holder::Pid {
                pid, running: true, ..
            } => write!(f, "by pid {pid} (running)"),
            Holder::Pid { pid, .. } => write!(
                f,
                "by pid {pid}, which is not running here: another container or host shares this directory"
            ),
        }
    }
}

/// The error of a failed open of `dir`: [`OpenError::Locked`] naming the
/// holder when fjall found the directory locked.
pub(super) fn open_error(e: fjall::Error, dir: &Path) -> super::OpenError {
    match e {
        fjall::Error::Locked => super::OpenError::Locked {
            path: dir.to_owned(),
            holder: Holder::of(dir),
        },
        source => super::OpenError::Fjall {
            path: dir.to_owned(),
            source,
        },
    }
}

/// Records this process as the holder of `dir` (called with the lock held).
/// Best effort: a directory that cannot take the file still opens.
pub(super) fn record(dir: &Path) {
    if let Err(e) = std::fs::write(dir.join(PID_FILE), format!("{}\n", std::process::id())) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot write the data directory's pid file");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::{EmbeddedConfig, EmbeddedStore, OpenError};

    #[tokio::test]
    async fn a_locked_directory_names_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = EmbeddedStore::open(EmbeddedConfig::new(dir.path()))
            .await
            .unwrap();
        let me = std::process::id();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(PID_FILE)).unwrap().trim(),
            me.to_string()
        );
        // fjall's lock is an flock on an open file: a second open in the same
        // process is refused like one from another process.
        let err = EmbeddedStore::open(EmbeddedConfig::new(dir.path()))
            .await
            .unwrap_err();
        let OpenError::Locked { holder, .. } = &err else {
            panic!("expected Locked, got {err}")
        };
        assert!(
            matches!(holder, Holder::Pid { pid, running: true, command: Some(_) } if *pid == me),
            "{holder:?}"
        );
        let message = err.to_string();
        assert!(message.contains(&format!("locked by pid {me} (")), "{message}");
        assert!(message.contains("running"), "{message}");
        // Once the holder closes, the directory (pid file and all) opens again.
        drop(first);
        let mut reopened = None;
        for _ in 0..100 {
            match EmbeddedStore::open(EmbeddedConfig::new(dir.path())).await {
                Ok(store) => {
                    reopened = Some(store);
                    break;
                }
                Err(OpenError::Locked { .. }) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await
                }
                Err(e) => panic!("reopening: {e}"),
            }
        }
        assert!(reopened.is_some(), "still locked 5 s after the holder closed");
    }

    #[test]
    fn a_holder_that_is_not_running_is_said_to_be_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Holder::of(dir.path()), Holder::Unknown);
        assert!(Holder::Unknown.to_string().contains("unknown process"));
        // Above the kernel's pid_max (at most 2^22), so never a live pid.
        std::fs::write(dir.path().join(PID_FILE), "4000000000\n").unwrap();
        let holder = Holder::of(dir.path());
        assert_eq!(
            holder,
            Holder::Pid {
                pid: 4_000_000_000,
                command: None,
                running: false
            }
        );
        assert!(holder.to_string().contains("not running here"), "{holder}");
    }
}
