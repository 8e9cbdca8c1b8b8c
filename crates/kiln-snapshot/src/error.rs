//! Typed errors; each names the snapshot, digest or path involved.

use std::path::{Path, PathBuf};

use kiln_oci::Digest;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] kiln_store::StoreError),
    #[error(transparent)]
    Archive(#[from] kiln_archive::Error),
    #[error(transparent)]
    Fs(#[from] kiln_fs::Error),
    #[error("layer {blob}: uncompressed content has digest {actual}, but the image config says diff_id {expected}")]
    DiffIdMismatch {
        blob: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("layer blob {blob} failed verification: {source}")]
    BlobVerify {
        blob: Digest,
        #[source]
        source: kiln_oci::VerifyError,
    },
    #[error("image has {layers} layers but {diff_ids} diff_ids in its config")]
    LayerCountMismatch { layers: usize, diff_ids: usize },
    #[error("invalid digest {value:?} in {what}: {source}")]
    BadDigest {
        what: &'static str,
        value: String,
        #[source]
        source: kiln_oci::DigestError,
    },
    #[error("snapshot {0} does not exist (pruned, or never unpacked)")]
    MissingSnapshot(String),
    #[error("invalid snapshot metadata {path}: {source}")]
    Meta {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{op} in the user namespace helper: {detail}")]
    Namespace { op: &'static str, detail: String },
    #[error("{path}: {reason}")]
    Unsupported { path: PathBuf, reason: String },
}

impl Error {
    /// `map_err` helper: `.map_err(Error::io("open", &path))`.
    pub(crate) fn io(
        op: &'static str,
        path: impl AsRef<Path>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.as_ref().to_path_buf();
        move |source| Error::Io { op, path, source }
    }
}
