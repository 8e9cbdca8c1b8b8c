//! Base layers: each unpacked once into a snapshot keyed by its chain id, shared by every
//! build and image that has the same layer stack below it.
//!
//! Unpack protocol (several kiln processes may race for the same layer):
//! 1. fast path: `snapshots/<hex>/snapshot.json` exists → done (the directory only ever
//!    appears complete, by rename);
//! 2. take the exclusive flock `locks/<hex>.lock` — a concurrent unpacker of the same layer
//!    makes us wait here instead of unpacking twice — and look again;
//! 3. apply the blob into `tmp/<unique>/fs` in overlay-native form, reading it through the
//!    store's verifying reader (compressed digest + size) and hashing the decompressed
//!    stream as it is applied (diff_id);
//! 4. on any mismatch remove the temp dir and fail: no snapshot appears;
//! 5. write `snapshot.json`, rename the temp dir to `snapshots/<hex>`.

use std::fmt;
use std::io::{self, Read};
use std::path::Path;

use kiln_archive::{ApplyMode, ApplyOptions, DecodeLimits};
use kiln_oci::spec::{Descriptor, ImageManifest};
use kiln_oci::{Digest, ImageConfig};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::util::{lock_file, now_rfc3339, remove_tree, unique_name, write_atomic};
use crate::{chain_ids, Error, Result, Snapshots};

/// A snapshot's name: the chain id of the layer stack whose top layer it holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SnapshotId(Digest);

impl SnapshotId {
    pub fn from_chain_id(chain_id: Digest) -> Self {
        SnapshotId(chain_id)
    }
    pub fn chain_id(&self) -> &Digest {
        &self.0
    }
    /// The directory name under `kiln/snapshots/` (a validated digest's hex: no `/`, no `..`).
    pub fn hex(&self) -> &str {
        self.0.hex()
    }
    /// Parses a directory name back (prune); None for anything that is not 64 hex digits.
    pub(crate) fn from_hex(name: &str) -> Option<Self> {
        Digest::parse(&format!("sha256:{name}"))
            .ok()
            .map(SnapshotId)
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// `snapshot.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub chain_id: Digest,
    pub diff_id: Digest,
    /// Chain id of the stack below (None for a bottom layer).
    pub parent: Option<Digest>,
    /// Uncompressed tar size of the layer.
    pub size: u64,
    /// RFC 3339, informational (GC uses its own grace rule on the directory's mtime).
    pub created: String,
    /// How it came to be: "unpack" (a base layer) or "commit" (an upper dir kept).
    pub origin: String,
}

impl Snapshots {
    /// Reads `snapshot.json` of an existing snapshot.
    pub fn meta(&self, id: &SnapshotId) -> Result<SnapshotMeta> {
        let path = self.snapshot_dir(id).join("snapshot.json");
        let bytes = std::fs::read(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::MissingSnapshot(id.to_string())
            } else {
                Error::io("read", &path)(e)
            }
        })?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Meta { path, source })
    }

    /// Makes sure the top layer of `chain` (diff_ids bottom-most first, ending with this
    /// layer's) is unpacked, and returns its snapshot id. `blob` is the manifest's layer
    /// descriptor. Idempotent and safe to call concurrently from many processes: exactly
    /// one of them unpacks, the others wait on the snapshot's flock.
    pub fn ensure_layer_snapshot(
        &self,
        chain: &[Digest],
        blob: &Descriptor,
        limits: &DecodeLimits,
    ) -> Result<SnapshotId> {
        let ids = chain_ids(chain);
        let (Some(chain_id), Some(diff_id)) = (ids.last(), chain.last()) else {
            return Err(Error::LayerCountMismatch {
                layers: 1,
                diff_ids: 0,
            });
        };
        let parent = ids.len().checked_sub(2).map(|i| ids[i].clone());
        let id = SnapshotId(chain_id.clone());
        if self.exists(&id) {
            return Ok(id);
        }
        let _lock = lock_file(&self.lock_path(&id), true)?;
        if self.exists(&id) {
            return Ok(id); // the process we waited for did it
        }
        let blob_digest = descriptor_digest(blob)?;
        let tmp = self.tmp_dir().join(unique_name("unpack"));
        let res = match &self.runner {
            // Rootless with subordinate ids: real owners (see `userns`).
            Some(runner) => self.unpack_in_namespace(
                runner.as_ref(),
                &tmp,
                &id,
                parent,
                diff_id,
                &blob_digest,
                blob.size(),
                limits,
            ),
            None => self.unpack_into(
                &tmp,
                &id,
                parent,
                diff_id,
                &blob_digest,
                blob.size(),
                limits,
            ),
        };
        if res.is_err() {
            let _ = remove_tree(&tmp, self.runner.as_deref());
        }
        res?;
        *UNPACKS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.clone())
            .or_default() += 1;
        Ok(id)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn unpack_into(
        &self,
        tmp: &Path,
        id: &SnapshotId,
        parent: Option<Digest>,
        diff_id: &Digest,
        blob: &Digest,
        size: u64,
        limits: &DecodeLimits,
    ) -> Result<()> {
        let fs_dir = tmp.join("fs");
        std::fs::create_dir_all(&fs_dir).map_err(Error::io("create directory", &fs_dir))?;
        let root = kiln_fs::SafeRoot::open(&fs_dir)?;
        let verified = self.store.open_blob_verified(blob, size)?;
        let decoder =
            kiln_archive::decompress(verified, limits).map_err(|e| blob_read_error(blob, e))?;
        let mut hashing = HashingReader {
            inner: decoder,
            hasher: Sha256::new(),
            count: 0,
        };
        let opts = ApplyOptions {
            limits: limits.clone(),
            mode: ApplyMode::OverlayNative(self.xattr),
            // Rootless: owners the unpacker cannot set are kept in the owner override
            // xattr, which commits (write_tree) honour. In the namespace helper this is
            // the namespace's own view (its ids are container ids).
            id_map: self.id_map.clone(),
            // Device nodes cannot be created in a user namespace either.
            devices: if kiln_fs::running_as_root() && !self.in_namespace {
                kiln_archive::DevicePolicy::Create
            } else {
                kiln_archive::DevicePolicy::CreateOrSkip
            },
            ..ApplyOptions::default()
        };
        // The decompressed stream is already plain tar here; apply_layer's own detection
        // sees no magic and reads it as is.
        kiln_archive::apply_layer(&root, &mut hashing, &opts).map_err(|e| match e {
            kiln_archive::Error::Io { ref source, .. } if verify_error(source).is_some() => {
                Error::BlobVerify {
                    blob: blob.clone(),
                    source: verify_error(source).cloned().expect("checked"),
                }
            }
            e => Error::Archive(e),
        })?;
        // The tar parser stops at the end-of-archive marker; the diff_id covers every byte
        // (padding included), and reading to EOF is also what makes the verifying reader
        // check the compressed digest.
        io::copy(&mut hashing, &mut io::sink()).map_err(|e| blob_read_error(blob, e))?;
        let actual = Digest::from_sha256(hashing.hasher.finalize().into());
        if &actual != diff_id {
            return Err(Error::DiffIdMismatch {
                blob: blob.clone(),
                expected: diff_id.clone(),
                actual,
            });
        }
        let meta = SnapshotMeta {
            chain_id: id.chain_id().clone(),
            diff_id: diff_id.clone(),
            parent,
            size: hashing.count,
            created: now_rfc3339(),
            origin: "unpack".into(),
        };
        write_meta(&tmp.join("snapshot.json"), &meta)?;
        publish(tmp, &self.snapshot_dir(id), None)?;
        tracing::debug!(snapshot = %id, blob = %blob, "layer unpacked");
        Ok(())
    }

    /// Unpacks (or finds) every layer of an image and returns the snapshot ids, bottom-most
    /// first — the `lowers` of [`Snapshots::prepare_active`].
    pub fn prepare_image(
        &self,
        manifest: &ImageManifest,
        config: &ImageConfig,
        limits: &DecodeLimits,
    ) -> Result<Vec<SnapshotId>> {
        let layers = manifest.layers();
        let diff_ids = &config.rootfs.diff_ids;
        if layers.len() != diff_ids.len() {
            return Err(Error::LayerCountMismatch {
                layers: layers.len(),
                diff_ids: diff_ids.len(),
            });
        }
        layers
            .iter()
            .enumerate()
            .map(|(i, blob)| self.ensure_layer_snapshot(&diff_ids[..=i], blob, limits))
            .collect()
    }
}

static UNPACKS: std::sync::Mutex<std::collections::BTreeMap<SnapshotId, u64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// How often this process unpacked snapshot `id` (tests check "unpacked once").
#[doc(hidden)]
pub fn unpack_count(id: &SnapshotId) -> u64 {
    UNPACKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(id)
        .copied()
        .unwrap_or(0)
}

/// Renames a finished temp dir into place. If the name is taken, a snapshot with the same
/// chain id — hence the same content — won the race; ours is discarded.
pub(crate) fn publish(
    tmp: &Path,
    dest: &Path,
    runner: Option<&dyn crate::NamespaceRunner>,
) -> Result<bool> {
    match std::fs::rename(tmp, dest) {
        Ok(()) => {
            crate::util::sync_dir(dest.parent().unwrap_or(Path::new(".")))?;
            Ok(true)
        }
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc_errno::EEXIST) | Some(libc_errno::ENOTEMPTY)
            ) =>
        {
            remove_tree(tmp, runner)?;
            Ok(false)
        }
        Err(e) => Err(Error::io("rename snapshot into place", dest)(e)),
    }
}

/// errno values (avoids a libc dependency for two constants).
mod libc_errno {
    pub const EEXIST: i32 = 17;
    pub const ENOTEMPTY: i32 = 39;
}

pub(crate) fn write_meta(path: &Path, meta: &SnapshotMeta) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(meta).map_err(|source| Error::Meta {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, &bytes)
}

pub(crate) fn descriptor_digest(d: &Descriptor) -> Result<Digest> {
    let s = d.digest().to_string();
    Digest::parse(&s).map_err(|source| Error::BadDigest {
        what: "layer descriptor",
        value: s,
        source,
    })
}

fn verify_error(e: &io::Error) -> Option<&kiln_oci::VerifyError> {
    kiln_oci::verify::as_verify_error(e)
}

fn blob_read_error(blob: &Digest, e: io::Error) -> Error {
    match verify_error(&e) {
        Some(v) => Error::BlobVerify {
            blob: blob.clone(),
            source: v.clone(),
        },
        None => Error::io("read layer blob", blob.to_string())(e),
    }
}

/// Hashes (sha256) and counts what is read through it: the diff_id of a layer is taken
/// from the very bytes being applied, so there is no second pass over the blob.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}
