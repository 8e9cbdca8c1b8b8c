//! Errors. Failures inside the sandbox happen in another process; they travel
//! back as [`StepError`] (JSON over the setup socket) so the caller learns
//! which step failed on which path, not just "exit status 1".

use serde::{Deserialize, Serialize};
use std::fmt;
use std::io;
use std::path::PathBuf;

/// A failed setup step inside the sandbox, e.g. `mount proc in /x/rootfs: EPERM`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepError {
    /// What was being done ("mount proc", "pivot_root", "exec", ...).
    pub step: String,
    /// The path concerned, when there is one.
    pub path: Option<String>,
    /// The OS error number, when the failure was a syscall.
    pub errno: Option<i32>,
    /// Human-readable detail (the errno's description or a reason).
    pub detail: String,
}

impl StepError {
    pub(crate) fn os(step: impl Into<String>, path: Option<&str>, err: rustix::io::Errno) -> Self {
        let io = io::Error::from(err);
        StepError {
            step: step.into(),
            path: path.map(str::to_owned),
            errno: Some(err.raw_os_error()),
            detail: io.to_string(),
        }
    }

    pub(crate) fn msg(
        step: impl Into<String>,
        path: Option<&str>,
        detail: impl Into<String>,
    ) -> Self {
        StepError {
            step: step.into(),
            path: path.map(str::to_owned),
            errno: None,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.step)?;
        if let Some(p) = &self.path {
            write!(f, " {p}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

impl std::error::Error for StepError {}

/// Everything [`crate::Sandbox`] can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid sandbox spec: {0}")]
    InvalidSpec(String),
    #[error("start sandbox helper {}: {source}", helper.display())]
    Spawn { helper: PathBuf, source: io::Error },
    #[error("sandbox setup failed: {0}")]
    Setup(StepError),
    #[error("write {what} for sandbox pid {pid}: {detail}")]
    IdMap {
        what: &'static str,
        pid: u32,
        detail: String,
    },
    #[error("prepare /etc files for the sandbox: {0}")]
    EtcFiles(io::Error),
    #[error("talk to sandbox helper: {0}")]
    Protocol(String),
    #[error("sandbox helper exited during setup ({0}); is it a binary that calls kiln_sandbox::init_main()?")]
    HelperDied(String),
    #[error("wait for sandbox: {0}")]
    Wait(io::Error),
    /// The request a [`crate::NamespaceHelper`] ran failed; the message is the handler's.
    #[error("{0}")]
    Request(String),
}
