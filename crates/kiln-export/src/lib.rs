//! kiln-export: image assembly and image exchange formats.
//!
//! Owns: writing a new image (config, manifest, tags) from layers in the store; `kiln import`
//! of a rootfs tarball; docker-archive and oci-archive save and load.
//!
//! Must not: decide what is cached, or parse Dockerfiles (config edits arrive as
//! [`ConfigChange`] values). Paths inside archives are never used as filesystem paths.

/// Config edits now live with the config type; re-exported for existing callers.
pub use kiln_oci::changes;
pub mod error;
pub mod image;
pub mod import;
pub mod layout;
pub mod load;
pub mod outputs;
pub mod save;

pub use error::{ExportError, Result};
pub use image::{write_image, Layer, WrittenImage};
pub use import::{import_rootfs, ImportOptions};
pub use kiln_oci::ConfigChange;
pub use layout::{import_layout, LayoutSelector};
pub use load::{load, LoadedImage};
pub use outputs::{parse_output, unpack_rootfs, unpack_rootfs_with, write_output, Output};
pub use save::{resolve_items, save, ArchiveFormat, SaveItem};
