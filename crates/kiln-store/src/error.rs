//! Typed store errors. Every variant names what the user gave or what was touched (a
//! reference, a digest, a path) because "No such file or directory" alone helps nobody.

use kiln_oci::{Digest, DigestError, ReferenceError, VerifyError};
use std::io;
use std::path::PathBuf;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot lock {path}: {source}")]
    Lock { path: PathBuf, source: io::Error },
    #[error("blob {digest} is not in the store")]
    BlobNotFound { digest: Digest },
    #[error("blob rejected: {source}")]
    BlobRejected { source: VerifyError },
    #[error("stored blob {path} is corrupt: {source} (run `kiln fsck`)")]
    Corrupt { path: PathBuf, source: VerifyError },
    #[error("blob {digest} is {size} bytes, more than the {limit} bytes allowed for {what}")]
    TooLarge {
        digest: Digest,
        what: &'static str,
        size: u64,
        limit: u64,
    },
    #[error("cannot parse {what}: {source}")]
    Json {
        what: String,
        source: serde_json::Error,
    },
    #[error("invalid digest in {what}: {source}")]
    BadDigest { what: String, source: DigestError },
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("reference {reference} has no tag; a tag is needed to name an image in the store")]
    TagRequired { reference: String },
    #[error("{digest} has media type {media_type:?}, which is not an image manifest or index")]
    NotAManifest { digest: Digest, media_type: String },
    #[error("no such image: {input}")]
    ImageNotFound { input: String },
    #[error("{input:?} is ambiguous; it matches: {}", candidates.join(", "))]
    Ambiguous {
        input: String,
        candidates: Vec<String>,
    },
    #[error("image index {digest} has no manifest for {wanted} (available: {})", available.join(", "))]
    NoMatchingPlatform {
        digest: Digest,
        wanted: String,
        available: Vec<String>,
    },
    #[error("image index {digest} nests deeper than {limit} levels")]
    TooDeep { digest: Digest, limit: usize },
    #[error("cannot find a store root: {0}")]
    NoRoot(String),
}

impl StoreError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { op, path, source }
    }

    /// True when the error means "the thing asked for does not exist" (as opposed to a
    /// broken store), so callers can map it to a not-found exit code.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            StoreError::BlobNotFound { .. } | StoreError::ImageNotFound { .. }
        )
    }
}
