//! How a cache artifact moves. A transport only moves bytes; every check (sizes, digests,
//! diff ids, limits) is done by the callers in this crate, so a transport cannot weaken
//! them. The local directory transport is [`crate::LocalDir`]; a registry transport
//! implements the same two traits with `pull_manifest`/`GET blob` and
//! `push blob`/`push_manifest`.

use crate::Error;
use kiln_oci::spec::Descriptor;
use kiln_oci::Digest;
use std::io::Read;

/// Where a cache is imported from.
pub trait CacheSource: Send + Sync {
    /// How messages and progress name this cache (`cache /srv/cache`,
    /// `cache registry.example/app:buildcache`).
    fn name(&self) -> &str;

    /// The cache's manifest bytes, reading at most `limit + 1` bytes (the caller refuses
    /// more than `limit`). `Ok(None)`: nothing was exported there yet — a first build, not
    /// an error. The bytes are unverified; the caller parses them defensively.
    fn manifest(&self, limit: u64) -> Result<Option<Vec<u8>>, Error>;

    /// A reader of one blob the manifest lists, fetched only when called (lazily). The
    /// caller verifies size and digest while reading and reads at most `size + 1` bytes.
    fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>, Error>;
}

/// Where a cache is exported to.
pub trait CacheSink {
    fn name(&self) -> &str;

    /// Whether the destination already holds this blob (then it is not sent again).
    fn has_blob(&self, digest: &Digest, size: u64) -> Result<bool, Error>;

    /// Stores one blob. `reader` yields the blob's bytes; the sink must refuse (and not
    /// publish) a blob whose size or digest does not match `desc`.
    fn put_blob(&self, desc: &Descriptor, reader: &mut dyn Read) -> Result<(), Error>;

    /// Publishes the manifest, after every blob it references was put: this is the moment
    /// the new cache replaces the old one for readers.
    fn put_manifest(&self, bytes: &[u8], media_type: &str) -> Result<(), Error>;
}
