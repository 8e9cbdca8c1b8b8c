//! `fsck`: re-hash every blob (streaming), check that index.json parses and that every
//! blob it reaches exists, and list temp files no live writer owns.

use crate::error::{Result, StoreError};
use crate::gc::Root;
use crate::layout::Store;
use crate::lock::{self, Mode};
use kiln_oci::Digest;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A blob whose content does not hash to its file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptBlob {
    pub digest: Digest,
    pub path: PathBuf,
    /// What the content actually hashes to.
    pub actual: Digest,
    pub removed: bool,
}

/// A blob referenced from index.json (directly or through manifests) that is not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingBlob {
    pub digest: Digest,
    /// `index.json` or the digest of the manifest/index that references it.
    pub referenced_by: String,
}

#[derive(Debug, Clone, Default)]
pub struct FsckReport {
    pub blobs_checked: u64,
    pub bytes_checked: u64,
    pub corrupt: Vec<CorruptBlob>,
    pub missing: Vec<MissingBlob>,
    /// Manifests/indexes that exist but cannot be read or parsed, with the reason.
    pub unreadable: Vec<String>,
    /// Files under `blobs/` whose names are not valid digests.
    pub invalid_blob_names: Vec<PathBuf>,
    /// Files in `kiln/tmp` that no live writer holds (leftovers of a crash).
    pub stray_temp_files: Vec<PathBuf>,
    /// Why index.json could not be read or parsed, if it could not.
    pub index_error: Option<String>,
}

impl FsckReport {
    /// No corruption found (even if it was removed), nothing missing, nothing unreadable,
    /// index.json valid. Stray temp files and odd names are reported but do not make a store
    /// unclean: prune clears the former, and neither affects any image.
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty()
            && self.missing.is_empty()
            && self.unreadable.is_empty()
            && self.index_error.is_none()
    }
}

fn hash_file(path: &Path, like: &Digest) -> io::Result<(Digest, u64)> {
    let mut f = File::open(path)?;
    let mut h = like.hasher();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n_total = 0u64;
    loop {
        match f.read(&mut buf) {
            Ok(0) => return Ok((h.finish(), n_total)),
            Ok(n) => {
                h.update(&buf[..n]);
                n_total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

impl Store {
    /// Checks the whole store. With `remove_corrupt`, blobs whose content does not match
    /// their name are deleted (they would otherwise be served as if valid); images using
    /// them then show up as `missing`.
    pub fn fsck(&self, remove_corrupt: bool) -> Result<FsckReport> {
        let mut report = FsckReport::default();
        let (blobs, invalid) = self.list_blobs()?;
        report.invalid_blob_names = invalid;
        for b in blobs {
            let (actual, n) = match hash_file(&b.path, &b.digest) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // pruned meanwhile
                Err(e) => return Err(StoreError::io("read", &b.path)(e)),
            };
            report.blobs_checked += 1;
            report.bytes_checked += n;
            if actual == b.digest {
                continue;
            }
            let mut removed = false;
            if remove_corrupt {
                // Under the gc lock and re-checked: a writer may just have replaced the file
                // with a good copy, which must survive.
                let _gc = lock::lock_path(&self.gc_lock(), Mode::Exclusive)?;
                if let Ok((again, _)) = hash_file(&b.path, &b.digest) {
                    if again != b.digest {
                        fs::remove_file(&b.path).map_err(StoreError::io("remove", &b.path))?;
                        removed = true;
                    }
                }
            }
            report.corrupt.push(CorruptBlob {
                digest: b.digest,
                path: b.path,
                actual,
                removed,
            });
        }
        match self.read_index() {
            Err(e) => report.index_error = Some(e.to_string()),
            Ok(index) => {
                let roots = index
                    .manifests()
                    .iter()
                    .map(|d| Root::Descriptor(Box::new(d.clone()), "index.json".into()))
                    .collect();
                let walk = self.walk(roots);
                report.missing = walk
                    .missing
                    .into_iter()
                    .map(|(digest, referenced_by)| MissingBlob {
                        digest,
                        referenced_by,
                    })
                    .collect();
                report.unreadable = walk.unreadable;
            }
        }
        report.stray_temp_files = self.stale_temp_files(Duration::ZERO)?;
        Ok(report)
    }
}
