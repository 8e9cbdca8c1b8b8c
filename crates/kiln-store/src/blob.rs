//! Content-addressed blobs: verified writes, dedup, and verified reads.
//!
//! A blob reaches `blobs/<alg>/<hex>` only through [`commit_temp`]: the bytes were hashed
//! while written to a temp file, the digest (and size, when the caller knows them) matched,
//! the digest was recorded in the writer's lease, and only then the file was renamed. So a
//! file under `blobs/` is never partial and never mislabelled (barring disk corruption,
//! which `fsck` finds).

use crate::error::{Result, StoreError};
use crate::layout::{Store, TempFile};
use crate::lease::Lease;
use crate::lock::{self, Mode};
use kiln_oci::digest::DynHasher;
use kiln_oci::spec::{Descriptor, MediaType};
use kiln_oci::{verify::as_verify_error, Digest, VerifyError, VerifyingReader};
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};

const COPY_BUF: usize = 256 * 1024;

/// What was stored: digest and size of a committed blob.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobInfo {
    pub digest: Digest,
    pub size: u64,
}

impl BlobInfo {
    /// An OCI descriptor for this blob with the given media type.
    pub fn descriptor(&self, media_type: &str) -> Descriptor {
        Descriptor::new(MediaType::from(media_type), self.size, &self.digest)
    }
}

/// Streams a blob into the store. Hashes (sha256) while writing; nothing becomes visible
/// before [`commit`](BlobWriter::commit). Dropping it without commit deletes the temp file.
pub struct BlobWriter<'a> {
    store: &'a Store,
    lease: Option<&'a Lease>,
    tmp: TempFile,
    hasher: DynHasher,
    size: u64,
}

impl Store {
    /// Starts a streamed blob write. Pass the lease under which the blob will later be
    /// referenced; without one, a concurrent prune may delete the blob right after commit.
    pub fn blob_writer<'a>(&'a self, lease: Option<&'a Lease>) -> Result<BlobWriter<'a>> {
        Ok(BlobWriter {
            store: self,
            lease,
            tmp: TempFile::new(&self.tmp_dir(), "blob")?,
            hasher: DynHasher::new(kiln_oci::digest::Algorithm::Sha256),
            size: 0,
        })
    }

    /// Copies `reader` into the store. With `expected`, a blob already present is not
    /// re-read (the reader is left unconsumed) and the input must match size and digest
    /// exactly, else [`StoreError::BlobRejected`] and nothing is left behind.
    pub fn ingest<R: Read>(
        &self,
        lease: Option<&Lease>,
        reader: R,
        expected: Option<(&Digest, u64)>,
    ) -> Result<BlobInfo> {
        if let Some((digest, size)) = expected {
            if self.pin_existing(lease, digest, Some(size))? {
                return Ok(BlobInfo {
                    digest: digest.clone(),
                    size,
                });
            }
        }
        let mut w = self.blob_writer(lease)?;
        // Read at most one byte past the expected size: enough to detect "too long" without
        // letting a hostile source fill the disk.
        let limit = expected.map_or(u64::MAX, |(_, s)| s.saturating_add(1));
        let mut reader = reader.take(limit);
        let mut buf = vec![0u8; COPY_BUF];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(match as_verify_error(&e) {
                        Some(v) => StoreError::BlobRejected { source: v.clone() },
                        None => StoreError::io("read blob source for", w.tmp.path())(e),
                    })
                }
            };
            w.write_all(&buf[..n])
                .map_err(StoreError::io("write", w.tmp.path()))?;
        }
        w.commit(expected)
    }

    /// Stores a small in-memory blob (config, manifest) and returns its digest and size.
    pub fn put_bytes(&self, lease: Option<&Lease>, bytes: &[u8]) -> Result<BlobInfo> {
        let info = BlobInfo {
            digest: Digest::of_bytes(bytes),
            size: bytes.len() as u64,
        };
        if self.pin_existing(lease, &info.digest, Some(info.size))? {
            return Ok(info);
        }
        let mut tmp = TempFile::new(&self.tmp_dir(), "blob")?;
        tmp.file()
            .write_all(bytes)
            .map_err(StoreError::io("write", tmp.path()))?;
        commit_temp(self, lease, tmp, &info.digest, info.size)?;
        Ok(info)
    }

    /// Serialises `value` as JSON, stores it, and returns its descriptor.
    pub fn put_json<T: serde::Serialize>(
        &self,
        lease: Option<&Lease>,
        media_type: &str,
        value: &T,
    ) -> Result<Descriptor> {
        let bytes = serde_json::to_vec(value).map_err(|source| StoreError::Json {
            what: format!("{media_type} to store"),
            source,
        })?;
        Ok(self.put_bytes(lease, &bytes)?.descriptor(media_type))
    }

    /// Records `digest` in `lease` and reports whether the blob is present. If it returns
    /// true the blob is guaranteed to stay until the lease is dropped — use it before
    /// referencing a blob that some earlier operation stored.
    pub fn protect(&self, lease: &Lease, digest: &Digest) -> Result<bool> {
        self.pin_existing(Some(lease), digest, None)
    }

    /// Lease first, then look under the shared gc lock: a prune that missed the lease entry
    /// has finished deleting before we look, so "present" really means present.
    fn pin_existing(
        &self,
        lease: Option<&Lease>,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<bool> {
        if let Some(l) = lease {
            l.record(digest)?;
        }
        let _gc = lock::lock_path(&self.gc_lock(), Mode::Shared)?;
        Ok(self.present_with_size(digest, size))
    }

    fn present_with_size(&self, digest: &Digest, size: Option<u64>) -> bool {
        match fs::metadata(self.blob_path(digest)) {
            Ok(m) => m.is_file() && size.is_none_or(|s| s == m.len()),
            Err(_) => false,
        }
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    pub fn blob_size(&self, digest: &Digest) -> Result<u64> {
        let path = self.blob_path(digest);
        match fs::metadata(&path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::BlobNotFound {
                digest: digest.clone(),
            }),
            Err(e) => Err(StoreError::io("stat", path)(e)),
        }
    }

    /// Opens a blob for reading, unverified (callers that stream large layers verify with
    /// [`open_blob_verified`](Self::open_blob_verified)).
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::BlobNotFound {
                    digest: digest.clone(),
                }
            } else {
                StoreError::io("open", path)(e)
            }
        })
    }

    /// A reader that fails at EOF unless the content has `size` bytes and hashes to `digest`.
    pub fn open_blob_verified(&self, digest: &Digest, size: u64) -> Result<VerifyingReader<File>> {
        Ok(VerifyingReader::new(
            self.open_blob(digest)?,
            digest.clone(),
            size,
        ))
    }

    /// Reads a whole blob through a [`VerifyingReader`]. `size` defaults to the file's size
    /// (then only the digest is checked). Meant for JSON-sized blobs.
    pub fn read_blob_verified(&self, digest: &Digest, size: Option<u64>) -> Result<Vec<u8>> {
        let file = self.open_blob(digest)?;
        let path = self.blob_path(digest);
        let size = match size {
            Some(s) => s,
            None => file
                .metadata()
                .map_err(StoreError::io("stat", &path))?
                .len(),
        };
        let mut out = Vec::with_capacity(size.min(64 << 20) as usize);
        VerifyingReader::new(file, digest.clone(), size)
            .read_to_end(&mut out)
            .map_err(|e| match as_verify_error(&e) {
                Some(v) => StoreError::Corrupt {
                    path: path.clone(),
                    source: v.clone(),
                },
                None => StoreError::io("read", path.clone())(e),
            })?;
        Ok(out)
    }
}

impl BlobWriter<'_> {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.size
    }

    /// Verifies and publishes the blob. With `expected`, a size or digest mismatch refuses
    /// the blob ([`StoreError::BlobRejected`]) and removes the temp file. If the blob already
    /// exists the new copy is discarded (content addressing makes them identical).
    pub fn commit(mut self, expected: Option<(&Digest, u64)>) -> Result<BlobInfo> {
        let sha256 = std::mem::replace(
            &mut self.hasher,
            DynHasher::new(kiln_oci::digest::Algorithm::Sha256),
        )
        .finish();
        let digest = match expected {
            None => sha256,
            Some((want, want_size)) => {
                if self.size < want_size {
                    return Err(StoreError::BlobRejected {
                        source: VerifyError::TooShort {
                            digest: want.clone(),
                            expected: want_size,
                            actual: self.size,
                        },
                    });
                }
                if self.size > want_size {
                    return Err(StoreError::BlobRejected {
                        source: VerifyError::TooLong {
                            digest: want.clone(),
                            expected: want_size,
                        },
                    });
                }
                let actual = if want.algorithm() == sha256.algorithm() {
                    sha256
                } else {
                    // Rare (sha512): re-read the temp file with the other algorithm.
                    rehash(self.tmp.file(), want)
                        .map_err(StoreError::io("re-read", self.tmp.path()))?
                };
                if &actual != want {
                    return Err(StoreError::BlobRejected {
                        source: VerifyError::DigestMismatch {
                            expected: want.clone(),
                            actual,
                        },
                    });
                }
                actual
            }
        };
        let size = self.size;
        commit_temp(self.store, self.lease, self.tmp, &digest, size)?;
        Ok(BlobInfo { digest, size })
    }
}

fn rehash(file: &mut File, like: &Digest) -> io::Result<Digest> {
    file.rewind()?;
    let mut h = like.hasher();
    let mut buf = vec![0u8; COPY_BUF];
    loop {
        match file.read(&mut buf)? {
            0 => return Ok(h.finish()),
            n => h.update(&buf[..n]),
        }
    }
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.tmp.file().write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The single place where a verified temp file becomes a blob: lease entry first (so a
/// prune that lists the new blob also sees the lease), then — under the shared gc lock, so
/// no prune is mid-deletion — dedup check and rename.
fn commit_temp(
    store: &Store,
    lease: Option<&Lease>,
    tmp: TempFile,
    digest: &Digest,
    size: u64,
) -> Result<()> {
    if let Some(l) = lease {
        l.record(digest)?;
    }
    let dest = store.blob_path(digest);
    let _gc = lock::lock_path(&store.gc_lock(), Mode::Shared)?;
    if store.present_with_size(digest, Some(size)) {
        tmp.discard();
        return Ok(());
    }
    if let Some(dir) = dest.parent() {
        // blobs/sha512 is created on first use only.
        fs::create_dir_all(dir).map_err(StoreError::io("create directory", dir))?;
    }
    tmp.persist(&dest)
}
