//! Typed errors. Every variant names the path inside the root, so a message points at the
//! offending entry of the untrusted input rather than at a host path.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A name that would leave the root lexically (`a/../../x`).
    #[error("path {path:?} escapes the root")]
    PathEscapes { path: PathBuf },

    /// A name kiln refuses outright (NUL byte, empty final component, ...).
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: PathBuf, reason: &'static str },

    #[error("creating device node {path:?} is not permitted (needs root or CAP_MKNOD)")]
    DeviceNodeNotPermitted { path: PathBuf },

    #[error("hardlink {link:?}: source {source_path:?} is not a regular file inside the root")]
    HardlinkSource { link: PathBuf, source_path: PathBuf },

    #[error("{path:?}: too many levels of symbolic links")]
    SymlinkLoop { path: PathBuf },

    #[error("{path:?}: not a directory")]
    NotADirectory { path: PathBuf },

    #[error("{op} {path:?}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, e: impl Into<io::Error>) -> Self {
        let path = path.into();
        let source: io::Error = e.into();
        match source.raw_os_error() {
            Some(code) if code == rustix::io::Errno::LOOP.raw_os_error() => {
                Error::SymlinkLoop { path }
            }
            Some(code) if code == rustix::io::Errno::NOTDIR.raw_os_error() => {
                Error::NotADirectory { path }
            }
            _ => Error::Io { op, path, source },
        }
    }

    /// The OS error code behind an I/O failure, if there is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.raw_os_error() == Some(rustix::io::Errno::NOENT.raw_os_error())
    }

    /// The root-relative path the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            Error::PathEscapes { path }
            | Error::InvalidPath { path, .. }
            | Error::DeviceNodeNotPermitted { path }
            | Error::SymlinkLoop { path }
            | Error::NotADirectory { path }
            | Error::Io { path, .. } => path,
            Error::HardlinkSource { link, .. } => link,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match &e {
            Error::Io { source, .. } => source.kind(),
            Error::PathEscapes { .. }
            | Error::InvalidPath { .. }
            | Error::HardlinkSource { .. } => io::ErrorKind::InvalidInput,
            Error::DeviceNodeNotPermitted { .. } => io::ErrorKind::PermissionDenied,
            Error::SymlinkLoop { .. } | Error::NotADirectory { .. } => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}
