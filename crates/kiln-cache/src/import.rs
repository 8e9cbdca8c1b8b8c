//! Loading a cache (manifest + config, both size-limited and verified) and fetching its
//! blobs into the store on demand, each verified before it is committed.

use crate::format::{CacheConfig, MountEntry, ARTIFACT_TYPE, CONFIG_MEDIA_TYPE, FORMAT_VERSION};
use crate::{CacheSource, Error};
use kiln_archive::DecodeLimits;
use kiln_fs::IdMapping;
use kiln_oci::spec::{Descriptor, ImageManifest};
use kiln_oci::{Digest, Sha256Writer, VerifyError, VerifyingReader};
use kiln_store::{BlobWriter, Lease, Store};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::Path;

/// Bounds on what a (possibly hostile) cache may make kiln read. Each is settable in the
/// `--cache-from` spec under the option name its error gives.
#[derive(Debug, Clone)]
pub struct ImportLimits {
    /// `max-manifest-size`: the manifest (and a layout's index.json).
    pub max_manifest_bytes: u64,
    /// `max-config-size`: the config listing the records.
    pub max_config_bytes: u64,
    /// Decompression budgets of layers and mount tars (`--max-layer-size` and friends).
    pub decode: DecodeLimits,
}

impl Default for ImportLimits {
    fn default() -> Self {
        ImportLimits {
            max_manifest_bytes: 4 << 20,
            max_config_bytes: 64 << 20,
            decode: DecodeLimits::default(),
        }
    }
}

/// One layer a record adds: the blob (size and media type from the manifest) and the
/// diff id the record claims for it (checked whenever the blob is fetched or unpacked).
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedLayer {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImportedRecord {
    pub key: Digest,
    pub description: String,
    pub layers: Vec<ImportedLayer>,
    /// Chain id of the step's whole result (None: an empty filesystem).
    pub chain_id: Option<Digest>,
    pub exec_seconds: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImportedMount {
    pub entry: MountEntry,
    pub descriptor: Descriptor,
}

/// Whether [`ImportedCache::fetch_layer`] had to copy the blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// The store had it already (its diff id was still checked against the record).
    Present,
    /// Copied from the cache; this many bytes.
    Copied(u64),
}

/// A loaded cache: records by key; blobs are fetched only when asked for.
pub struct ImportedCache {
    source: Box<dyn CacheSource>,
    limits: ImportLimits,
    records: HashMap<Digest, ImportedRecord>,
    mounts: HashMap<Digest, ImportedMount>,
    dropped: usize,
}

impl std::fmt::Debug for ImportedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportedCache")
            .field("source", &self.source.name())
            .field("records", &self.records.len())
            .field("mounts", &self.mounts.len())
            .finish()
    }
}

fn digest_of(cache: &str, d: &Descriptor) -> Result<Digest, Error> {
    Digest::parse(d.digest().as_ref())
        .map_err(|e| Error::malformed(cache, format!("descriptor digest: {e}")))
}

fn verify_err(cache: &str, digest: &Digest, e: io::Error, what: &'static str) -> Error {
    match kiln_oci::verify::as_verify_error(&e) {
        Some(v) => Error::BlobVerify {
            cache: cache.to_string(),
            digest: digest.clone(),
            source: v.clone(),
        },
        None => Error::Io {
            cache: cache.to_string(),
            what,
            path: digest.to_string().into(),
            source: e,
        },
    }
}

impl ImportedCache {
    /// Reads the cache's manifest and config. `Ok(None)`: the source holds no cache yet.
    /// A cache made with another `key_scheme` is [`Error::Malformed`]-free but useless: it
    /// loads with no records (the caller may say so from [`ImportedCache::dropped`]).
    pub fn load(
        source: Box<dyn CacheSource>,
        key_scheme: &str,
        limits: ImportLimits,
    ) -> Result<Option<ImportedCache>, Error> {
        let name = source.name().to_string();
        let Some(bytes) = source.manifest(limits.max_manifest_bytes)? else {
            return Ok(None);
        };
        if bytes.len() as u64 > limits.max_manifest_bytes {
            return Err(Error::TooLarge {
                cache: name,
                what: "manifest",
                limit: limits.max_manifest_bytes,
                option: "max-manifest-size",
            });
        }
        let manifest: ImageManifest = serde_json::from_slice(&bytes)
            .map_err(|e| Error::malformed(&name, format!("manifest: {e}")))?;
        let config_desc = manifest.config();
        let artifact_ok = manifest
            .artifact_type()
            .as_ref()
            .is_none_or(|t| t.to_string() == ARTIFACT_TYPE);
        if config_desc.media_type().to_string() != CONFIG_MEDIA_TYPE || !artifact_ok {
            return Err(Error::malformed(
                &name,
                format!(
                    "not a kiln cache (config media type {}, expected {CONFIG_MEDIA_TYPE})",
                    config_desc.media_type()
                ),
            ));
        }
        if config_desc.size() > limits.max_config_bytes {
            return Err(Error::TooLarge {
                cache: name,
                what: "config",
                limit: limits.max_config_bytes,
                option: "max-config-size",
            });
        }
        let config_digest = digest_of(&name, config_desc)?;
        let mut config_bytes = Vec::new();
        VerifyingReader::new(
            source.open_blob(config_desc)?.take(config_desc.size() + 1),
            config_digest.clone(),
            config_desc.size(),
        )
        .read_to_end(&mut config_bytes)
        .map_err(|e| verify_err(&name, &config_digest, e, "read config"))?;
        let config: CacheConfig = serde_json::from_slice(&config_bytes)
            .map_err(|e| Error::malformed(&name, format!("config: {e}")))?;
        if config.version != FORMAT_VERSION {
            return Err(Error::malformed(
                &name,
                format!(
                    "config version {} (this kiln reads {FORMAT_VERSION})",
                    config.version
                ),
            ));
        }
        let mut cache = ImportedCache {
            source,
            limits,
            records: HashMap::new(),
            mounts: HashMap::new(),
            dropped: 0,
        };
        if config.key_scheme != key_scheme {
            // Keys of another derivation can never equal ours: nothing to look up.
            cache.dropped = config.records.len();
            return Ok(Some(cache));
        }
        // Only blobs the manifest lists (with size and a layer media type kiln unpacks)
        // can be named by a record: the manifest is what a registry keeps alive.
        let mut blobs: HashMap<Digest, Descriptor> = HashMap::new();
        for d in manifest.layers() {
            let digest = digest_of(&name, d)?;
            if kiln_oci::media::layer_compression(d.media_type().as_ref()).is_some() {
                blobs.insert(digest, d.clone());
            }
        }
        let n = config.records.len();
        for r in config.records {
            let layers: Option<Vec<ImportedLayer>> = r
                .layers
                .iter()
                .map(|l| {
                    blobs.get(&l.digest).map(|d| ImportedLayer {
                        descriptor: d.clone(),
                        diff_id: l.diff_id.clone(),
                    })
                })
                .collect();
            let links_ok = r.parents.iter().all(|p| *p < n);
            match layers {
                Some(layers) if links_ok && !cache.records.contains_key(&r.key) => {
                    cache.records.insert(
                        r.key.clone(),
                        ImportedRecord {
                            key: r.key,
                            description: r.description,
                            layers,
                            chain_id: r.chain_id,
                            exec_seconds: r.exec_seconds,
                        },
                    );
                }
                _ => cache.dropped += 1,
            }
        }
        for m in config.mounts {
            match blobs.get(&m.digest) {
                Some(d) => {
                    cache.mounts.insert(
                        m.id_hash.clone(),
                        ImportedMount {
                            descriptor: d.clone(),
                            entry: m,
                        },
                    );
                }
                None => cache.dropped += 1,
            }
        }
        Ok(Some(cache))
    }

    /// How messages name this cache.
    pub fn name(&self) -> &str {
        self.source.name()
    }

    /// The budgets this cache was loaded with (unpacking its layers uses them too).
    pub fn limits(&self) -> &ImportLimits {
        &self.limits
    }

    pub fn get(&self, key: &Digest) -> Option<&ImportedRecord> {
        self.records.get(key)
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Records and mounts ignored at load: they named blobs the manifest does not list,
    /// had broken links, repeated a key, or came from another key scheme.
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    pub fn mount(&self, id_hash: &Digest) -> Option<&ImportedMount> {
        self.mounts.get(id_hash)
    }

    /// Makes `layer`'s blob present in the store under `lease`. A copy is committed only
    /// after its size and digest matched and its decompressed stream hashed to the diff id
    /// the record claims; any mismatch leaves nothing behind. A blob already in the store
    /// is trusted for its digest but its diff id is still checked: the claim is the
    /// cache's, and the image config will carry it.
    pub fn fetch_layer(
        &self,
        store: &Store,
        lease: &Lease,
        layer: &ImportedLayer,
    ) -> Result<Fetched, Error> {
        let name = self.name();
        let digest = digest_of(name, &layer.descriptor)?;
        let size = layer.descriptor.size();
        if store.protect(lease, &digest)? && store.blob_size(&digest)? == size {
            let mut r = store.open_blob_verified(&digest, size)?;
            let actual =
                diff_id(&mut r, &self.limits.decode).map_err(|e| decode_err(name, &digest, e))?;
            if actual != layer.diff_id {
                return Err(Error::DiffIdMismatch {
                    cache: name.to_string(),
                    blob: digest,
                    expected: layer.diff_id.clone(),
                    actual,
                });
            }
            return Ok(Fetched::Present);
        }
        let mut src = self.source.open_blob(&layer.descriptor)?.take(size + 1);
        let mut writer = store.blob_writer(Some(lease))?;
        let mut hasher = digest.hasher();
        let mut count = 0u64;
        let mut tee = Tee {
            inner: &mut src,
            out: &mut writer,
            hasher: &mut hasher,
            count: &mut count,
        };
        // One pass: the bytes go to the store's temp file and through the decompressor.
        // A stream that does not decode stops here: reading on to check the digest would
        // let a lying size make kiln write without bound (the decode budgets, named by
        // their flags, are what bounds a fetch).
        let decoded =
            diff_id(&mut tee, &self.limits.decode).map_err(|e| decode_err(name, &digest, e))?;
        // Whatever the decoder left unread (trailing bytes) still counts for the digest.
        io::copy(&mut tee, &mut io::sink()).map_err(|e| Error::Io {
            cache: name.to_string(),
            what: "read blob",
            path: digest.to_string().into(),
            source: e,
        })?;
        let actual = hasher.finish();
        let verify = if count > size {
            Some(VerifyError::TooLong {
                digest: digest.clone(),
                expected: size,
            })
        } else if count < size {
            Some(VerifyError::TooShort {
                digest: digest.clone(),
                expected: size,
                actual: count,
            })
        } else if actual != digest {
            Some(VerifyError::DigestMismatch {
                expected: digest.clone(),
                actual,
            })
        } else {
            None
        };
        if let Some(source) = verify {
            return Err(Error::BlobVerify {
                cache: name.to_string(),
                digest,
                source,
            });
        }
        let got = decoded;
        if got != layer.diff_id {
            return Err(Error::DiffIdMismatch {
                cache: name.to_string(),
                blob: digest,
                expected: layer.diff_id.clone(),
                actual: got,
            });
        }
        writer.commit(Some((&digest, size)))?;
        Ok(Fetched::Copied(size))
    }

    /// Restores a cache mount into `dest` (a directory that must not exist or be empty),
    /// unpacking into a sibling temp directory first: a blob that fails verification
    /// leaves `dest` as it was. Returns false when `dest` was filled meanwhile by someone
    /// else (their content wins).
    pub fn restore_mount(
        &self,
        mount: &ImportedMount,
        dest: &Path,
        id_map: Option<IdMapping>,
    ) -> Result<bool, Error> {
        let name = self.name();
        let parent = dest.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(Error::io(name, "create directory", parent))?;
        let tmp = parent.join(kiln_fs::atomic::unique_name(".restore"));
        std::fs::create_dir(&tmp).map_err(Error::io(name, "create directory", &tmp))?;
        let res = self.unpack_mount(mount, &tmp, id_map);
        let res = res.map(|()| {
            // An empty directory left by an earlier build that never wrote to it is
            // replaced; a non-empty one is kept (rename fails on it).
            let _ = std::fs::remove_dir(dest);
            std::fs::rename(&tmp, dest).is_ok()
        });
        if !matches!(res, Ok(true)) {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        res
    }

    fn unpack_mount(
        &self,
        mount: &ImportedMount,
        tmp: &Path,
        id_map: Option<IdMapping>,
    ) -> Result<(), Error> {
        let name = self.name();
        let digest = digest_of(name, &mount.descriptor)?;
        let size = mount.descriptor.size();
        let src = self.source.open_blob(&mount.descriptor)?.take(size + 1);
        let mut verified = VerifyingReader::new(src, digest.clone(), size);
        let root = kiln_fs::SafeRoot::open(tmp)?;
        let opts = kiln_archive::ApplyOptions {
            limits: self.limits.decode.clone(),
            id_map,
            // The directory is bind-mounted into RUN steps: a device node from someone
            // else's cache would be a door to the host's devices. Package caches hold none.
            devices: kiln_archive::DevicePolicy::Skip,
            ..kiln_archive::ApplyOptions::default()
        };
        let applied = kiln_archive::apply_layer(&root, &mut verified, &opts);
        // Read to EOF so the digest is checked even when the tar ended early.
        io::copy(&mut verified, &mut io::sink())
            .map_err(|e| verify_err(name, &digest, e, "read cache mount"))?;
        applied?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            tmp,
            std::fs::Permissions::from_mode(mount.entry.mode & 0o7777),
        )
        .map_err(Error::io(name, "chmod", tmp))?;
        if kiln_fs::running_as_root() {
            std::os::unix::fs::chown(tmp, Some(mount.entry.uid), Some(mount.entry.gid))
                .map_err(Error::io(name, "chown", tmp))?;
        }
        Ok(())
    }
}

/// sha256 of the decompressed stream of `r`, reading `r` to its end.
fn diff_id(r: &mut (dyn Read + Send), limits: &DecodeLimits) -> io::Result<Digest> {
    let mut dec = kiln_archive::decompress(r, limits)?;
    let mut h = Sha256Writer::new(io::sink());
    io::copy(&mut dec, &mut h)?;
    Ok(h.finish().1)
}

fn decode_err(cache: &str, blob: &Digest, e: io::Error) -> Error {
    Error::Decode {
        cache: cache.to_string(),
        blob: blob.clone(),
        message: e.to_string(),
    }
}

/// Copies what is read into the blob writer and a digest hasher.
struct Tee<'a, 'b> {
    inner: &'a mut (dyn Read + Send),
    out: &'a mut BlobWriter<'b>,
    hasher: &'a mut kiln_oci::digest::DynHasher,
    count: &'a mut u64,
}

impl Read for Tee<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        self.hasher.update(&buf[..n]);
        *self.count += n as u64;
        Ok(n)
    }
}
