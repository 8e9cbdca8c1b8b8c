use kiln_oci::{Digest, ReferenceError};
use kiln_store::StoreError;
use std::io;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Archive(#[from] kiln_archive::Error),
    #[error(transparent)]
    Fs(#[from] kiln_fs::Error),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("{archive}: {message}")]
    BadArchive { archive: String, message: String },
    #[error("{archive}: entry {entry:?} is {size} bytes, more than the {limit} bytes allowed for metadata files")]
    MetadataTooLarge {
        archive: String,
        entry: String,
        size: u64,
        limit: u64,
    },
    #[error("{archive}: more than {limit} entries (limit max-layer-entries; raise it with --max-layer-entries)")]
    TooManyEntries { archive: String, limit: u64 },
    #[error("{archive}: entry name of {len} bytes exceeds max-path-length {limit} (raise it with --max-path-length)")]
    PathTooLong {
        archive: String,
        len: usize,
        limit: usize,
    },
    #[error("{archive}: layer {entry:?} has digest {actual}, but the image config lists diff_id {expected}")]
    DiffIdMismatch {
        archive: String,
        entry: String,
        expected: Digest,
        actual: Digest,
    },
    #[error(
        "{archive}: {entry:?} is named after digest {expected} but its content hashes to {actual}"
    )]
    NameDigestMismatch {
        archive: String,
        entry: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{archive}: image name {name:?}: {source}")]
    BadName {
        archive: String,
        name: String,
        source: Box<ReferenceError>,
    },
    #[error("cannot parse {what}: {source}")]
    Json {
        what: String,
        source: serde_json::Error,
    },
    #[error(
        "image {image}: layer {digest} has media type {media_type:?}, which kiln cannot convert"
    )]
    UnsupportedLayer {
        image: String,
        digest: Digest,
        media_type: String,
    },
    #[error("image {image}: uncompressed layer {digest} hashes to {actual}, but the config lists diff_id {expected}")]
    StoredDiffIdMismatch {
        image: String,
        digest: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("invalid --change {change:?}: {message}")]
    BadChange { change: String, message: String },
}

pub type Result<T, E = ExportError> = std::result::Result<T, E>;

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ExportError {
    let what = what.into();
    move |source| ExportError::Io { what, source }
}
