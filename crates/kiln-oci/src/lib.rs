//! kiln-oci: the value types every other kiln crate speaks.
//!
//! Owns: content digests ([`Digest`]) and their OCI grammar, the verifying reader
//! ([`VerifyingReader`]), docker-style image references ([`Reference`]), OCI and Docker
//! schema2 media types, manifest/index/config types (re-exported from `oci-spec`), and the
//! canonical key hasher used for cache keys.
//!
//! Must not: do I/O beyond the `Read`/`Write` traits handed to it. No filesystem, no network.

pub mod changes;
pub mod config;
pub mod digest;
pub mod media;
pub mod reference;
pub mod verify;

pub use changes::ConfigChange;
pub use config::ImageConfig;
pub use digest::{Digest, DigestError, Sha256Writer};
pub use reference::{Reference, ReferenceError};
pub use verify::{VerifyError, VerifyingReader};

/// Re-export of the `oci-spec` image types so that callers use one version of them.
pub use oci_spec::image as spec;
