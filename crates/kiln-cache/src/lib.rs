//! kiln-cache: the shared build cache — its artifact format, the transports that move it,
//! and the verified import of what it holds into the local store.
//!
//! Owns: the cache artifact (an OCI image manifest whose config lists records and whose
//! layers are the records' layer blobs and the tarred cache mounts, see [`format`]); the
//! [`CacheSource`]/[`CacheSink`] traits a transport implements (the local OCI layout
//! directory here, a registry in `kiln_registry::cache`); loading a cache with named limits;
//! fetching a blob from it into the store only after its size, digest and — for layers —
//! diff id matched; restoring a cache mount directory from its tar.
//!
//! Must not: compute cache keys or decide hits (kiln-ops does, from verified local
//! inputs), know about Dockerfiles or snapshots, print, or talk to the network itself
//! (a transport does).
//!
//! Trust model (see also ARCHITECTURE.md): a record is looked up only by a key kiln
//! computed locally, so a cache cannot make kiln use a record for a step whose inputs
//! differ. What a record *claims* as the result of that key (which layer) cannot be
//! checked without re-running the step, so whoever can write the cache can choose the
//! result of a matching step — the same trust BuildKit places in its cache. What is
//! verified is integrity: every blob's size and digest before it is committed, every
//! layer's diff id (the uncompressed digest the image config will carry) before it is
//! committed or unpacked, and the shape of the manifest and config under size limits.

pub mod error;
pub mod export;
pub mod format;
pub mod import;
pub mod local;
pub mod spec;
pub mod transport;

#[cfg(test)]
mod tests;

pub use error::Error;
pub use export::{export, ExportLayer, ExportMount, ExportRecord, ExportReport};
pub use import::{Fetched, ImportLimits, ImportedCache, ImportedLayer, ImportedRecord};
pub use local::{Collected, LocalDir};
pub use spec::{parse_export, parse_import, ExportSpec, ImportSpec, Mode, SpecError, Transport};
pub use transport::{CacheSink, CacheSource};
