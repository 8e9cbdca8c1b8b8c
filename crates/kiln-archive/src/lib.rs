//! kiln-archive: layer tarballs.
//!
//! Owns tar reading and writing, OCI whiteouts and opaque directories (and their
//! overlayfs forms), gzip/zstd with decode budgets ([`DecodeLimits`]), the deterministic
//! tar writer and the one-pass layer writer that yields blob digest, size and diff_id.
//!
//! Must not: resolve paths itself. Every filesystem access goes through
//! [`kiln_fs::SafeRoot`]; the `tar` crate is used only to parse and format headers,
//! never to unpack.

mod apply;
mod compression;
mod entry;
mod error;
mod layer;
mod limits;
mod pax;
mod read;
mod tree;
mod whiteout;
mod write;

pub use apply::{apply_layer, ApplyMode, ApplyOptions, ApplyStats, DevicePolicy, OverlayXattr};
pub use compression::{compress, decompress, detect, Decoder, Encoder};
pub use entry::{EntryHeader, EntryKind};
pub use error::{Error, LimitExceeded};
pub use layer::{write_layer, LayerDigests, LayerWriter};
pub use limits::DecodeLimits;
pub use read::{read_entries, read_tar, ReadStats};
pub use tree::{write_tree, WriteOptions};
pub use whiteout::{OPAQUE_MARKER, WHITEOUT_PREFIX};
pub use write::TarBuilder;

pub use kiln_oci::media::Compression;
