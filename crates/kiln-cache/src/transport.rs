//! How a cache artifact moves. A transport only moves bytes; every check (sizes, digests,
//! diff ids, limits) is done by the callers in this crate, so a transport cannot weaken
//! them. The local directory transport is [`crate::LocalDir`]; the registry transport is
//! `kiln_registry::cache::RegistryCache` (manifest GET/PUT by tag, blobs GET lazily, HEAD
//! before every upload).

use crate::Error;
use kiln_oci::spec::Descriptor;
use kiln_oci::Digest;
use kiln_store::Store;
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

/// Where a cache is exported to. An export shares one sink between up to
/// [`CacheSink::jobs`] threads, each sending one blob (`has_blob`, then `put_store_blob`)
/// at a time; `put_manifest` is called alone, after all of them.
pub trait CacheSink: Sync {
    fn name(&self) -> &str;

    /// How many blobs an export may send at once. One unless the transport gains from
    /// overlapping transfers.
    fn jobs(&self) -> usize {
        1
    }

    /// Whether the destination already holds this blob (then it is not sent again).
    fn has_blob(&self, digest: &Digest, size: u64) -> Result<bool, Error>;

    /// Stores one blob. `reader` yields the blob's bytes; the sink must refuse (and not
    /// publish) a blob whose size or digest does not match `desc`.
    fn put_blob(&self, desc: &Descriptor, reader: &mut dyn Read) -> Result<(), Error>;

    /// Stores one blob that is in `store` (what an export sends: layers, staged cache
    /// mounts, the config). The default reads it back verified and calls
    /// [`CacheSink::put_blob`]; a transport that must reopen the bytes (a registry upload
    /// retried or sent in chunks) reads the store itself. Either way a blob damaged in the
    /// store must not be published under its digest.
    fn put_store_blob(&self, store: &Store, desc: &Descriptor) -> Result<(), Error> {
        let digest = Digest::parse(desc.digest().as_ref())
            .map_err(|e| Error::malformed(self.name(), format!("blob digest: {e}")))?;
        let mut r = store.open_blob_verified(&digest, desc.size())?;
        self.put_blob(desc, &mut r)
    }

    /// Publishes the manifest, after every blob it references was put: this is the moment
    /// the new cache replaces the old one for readers.
    fn put_manifest(&self, bytes: &[u8], media_type: &str) -> Result<(), Error>;

    /// After publishing: removes what the destination holds that the published caches no
    /// longer reference, where the transport owns its storage (a local directory; a
    /// registry collects its own garbage).
    fn collect_garbage(&self) -> Result<crate::Collected, Error> {
        Ok(crate::Collected::default())
    }
}
