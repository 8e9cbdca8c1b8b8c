//! Errors. Limit violations say which limit and which CLI flag raises it, because the
//! user's next step is to decide whether the layer is hostile or just large.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// A decode budget was exceeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitExceeded {
    /// Stable name of the limit, e.g. `max-layer-size`.
    pub limit: &'static str,
    /// The value reached (bytes, entries or ratio).
    pub value: u64,
    pub max: u64,
    /// The `kiln` flag that raises it, if it is configurable.
    pub flag: Option<&'static str>,
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "layer exceeds the {} limit ({} > {})",
            self.limit, self.value, self.max
        )?;
        match self.flag {
            Some(flag) => write!(f, "; if the layer is trusted, raise it with {flag}"),
            None => write!(f, "; this limit is fixed"),
        }
    }
}

impl std::error::Error for LimitExceeded {}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    LimitExceeded(LimitExceeded),

    #[error("malformed tar stream: {0}")]
    Malformed(String),

    #[error("non-zero data after the tar end-of-archive marker (at uncompressed byte {offset})")]
    TrailingGarbage { offset: u64 },

    #[error("tar entry {path:?}: {reason}")]
    Unsupported { path: PathBuf, reason: String },

    #[error(transparent)]
    Fs(#[from] kiln_fs::Error),

    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Wrap an I/O error, recovering a limit violation raised inside a `Read` adapter.
    pub(crate) fn io(context: &'static str, e: io::Error) -> Error {
        if let Some(l) = e.get_ref().and_then(|i| i.downcast_ref::<LimitExceeded>()) {
            return Error::LimitExceeded(l.clone());
        }
        if let Some(f) = e.get_ref().and_then(|i| i.downcast_ref::<kiln_fs::Error>()) {
            return Error::Io {
                context,
                source: io::Error::new(e.kind(), f.to_string()),
            };
        }
        match e.kind() {
            io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof | io::ErrorKind::Other => {
                Error::Malformed(format!("{context}: {e}"))
            }
            _ => Error::Io { context, source: e },
        }
    }

    pub(crate) fn unsupported(path: impl Into<PathBuf>, reason: impl Into<String>) -> Error {
        Error::Unsupported {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl From<LimitExceeded> for Error {
    fn from(l: LimitExceeded) -> Error {
        Error::LimitExceeded(l)
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::LimitExceeded(l) => io::Error::other(l),
            Error::Io { source, .. } => source,
            other => io::Error::other(other),
        }
    }
}
