//! Typed errors. Paths are shown as the user wrote them (source paths relative to the
//! source root), so the caller can attach the Dockerfile line and be understood.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A COPY/ADD source that does not exist in the source root.
    #[error("{path:?}: not found in {source_name}")]
    NotFound { path: String, source_name: String },

    /// A wildcard that matched nothing while empty matches are not allowed.
    #[error("{pattern:?}: no files matched in {source_name}")]
    EmptyWildcard {
        pattern: String,
        source_name: String,
    },

    #[error(
        "when using COPY with more than one source file, the destination must be a \
         directory and end with a / (destination {dest:?})"
    )]
    DestNotDirectory { dest: String },

    #[error("invalid chmod {value:?}: {reason}")]
    BadChmod { value: String, reason: &'static str },

    #[error("invalid pattern {pattern:?}: {reason}")]
    BadPattern {
        pattern: String,
        reason: &'static str,
    },

    #[error("ignore file {file}: {source}")]
    Ignore {
        file: String,
        #[source]
        source: kiln_dockerfile::ignore::IgnoreError,
    },

    #[error("{path:?}: too many levels of symbolic links")]
    SymlinkLoop { path: String },

    #[error(transparent)]
    Fs(#[from] kiln_fs::Error),

    #[error("extracting {path:?}: {source}")]
    Archive {
        path: String,
        #[source]
        source: kiln_archive::Error,
    },

    #[error("{op} {path:?}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
