use kiln_oci::{Digest, VerifyError};
use std::path::PathBuf;

/// What went wrong with a cache. Every message names the cache (its directory or
/// reference) so that a build importing several can tell which one is at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{cache}: {what} {}: {source}", path.display())]
    Io {
        cache: String,
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A transport failure (network, registry answer); the message is the transport's.
    #[error("{cache}: {message}")]
    Transport { cache: String, message: String },
    #[error("{cache}: the cache {what} is larger than {limit} bytes (limit {option}; raise it with {option}=BYTES in the cache spec)")]
    TooLarge {
        cache: String,
        what: &'static str,
        limit: u64,
        option: &'static str,
    },
    #[error("{cache}: malformed cache: {message}")]
    Malformed { cache: String, message: String },
    #[error("{cache}: blob {digest} is corrupt: {source}")]
    BlobVerify {
        cache: String,
        digest: Digest,
        source: VerifyError,
    },
    #[error("{cache}: layer {blob} uncompresses to {actual}, but the cache record says {expected} (the cache is corrupt or lies; nothing was committed)")]
    DiffIdMismatch {
        cache: String,
        blob: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("{cache}: layer {blob} is corrupt or over a limit: cannot be decompressed: {message} (nothing was committed)")]
    Decode {
        cache: String,
        blob: Digest,
        message: String,
    },
    #[error("{cache}: blob {digest} is not part of the cache")]
    UnknownBlob { cache: String, digest: Digest },
    #[error(transparent)]
    Store(#[from] kiln_store::StoreError),
    #[error(transparent)]
    Archive(#[from] kiln_archive::Error),
    #[error(transparent)]
    Fs(#[from] kiln_fs::Error),
}

impl Error {
    pub(crate) fn io(
        cache: &str,
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let cache = cache.to_string();
        let path = path.into();
        move |source| Error::Io {
            cache,
            what,
            path,
            source,
        }
    }

    pub(crate) fn malformed(cache: &str, message: impl Into<String>) -> Error {
        Error::Malformed {
            cache: cache.to_string(),
            message: message.into(),
        }
    }
}
