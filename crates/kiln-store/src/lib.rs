//! kiln-store: the embedded image store.
//!
//! Owns: content-addressed blobs, tags (index.json), leases, locks, garbage collection and
//! fsck — later also snapshots and cache records. On disk the store is an OCI image layout
//! (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`) so that skopeo/umoci can read it, plus
//! kiln's private state under `kiln/` (`tmp/`, `locks/`, `leases/`).
//!
//! Must not: talk to the network. It reads and writes only below its root directory.
//!
//! Concurrency model (several kiln processes may share one store):
//! - every file appears by `rename` of a fsynced temp file from `kiln/tmp` (same filesystem),
//!   so readers never see partial content and need no lock;
//! - `index.json` read-modify-write happens under an exclusive flock on
//!   `kiln/locks/index.lock`;
//! - blob writes take no index lock; they record their digest in a [`Lease`] *before* the
//!   blob is renamed into place, and take a shared flock on `kiln/locks/gc.lock` only for the
//!   instant of the rename/dedup check, so that [`Store::prune`] (which holds it exclusively
//!   while deleting) can never delete a blob a live writer is about to reference.

mod blob;
mod error;
mod fsck;
mod gc;
mod images;
mod index;
mod layout;
mod lease;
mod lock;
mod root;
mod sources;

pub use blob::{BlobInfo, BlobWriter};
pub use error::{Result, StoreError};
pub use fsck::{CorruptBlob, FsckReport, MissingBlob};
pub use gc::{DiskUsage, PruneReport};
pub use images::{host_platform, ImageRecord, ResolvedImage};
pub use index::{
    IndexEntry, ANNOTATION_CONTAINERD_NAME, ANNOTATION_INDEX_DIGEST, ANNOTATION_REF_NAME,
};
pub use layout::Store;
pub use lease::Lease;
pub use root::{default_root, resolve_root};
