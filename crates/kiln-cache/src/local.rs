//! The local-directory transport: an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/`) holding one cache manifest, tagged [`REF_NAME`] in index.json.
//!
//! Writes are atomic per file (temp + rename), blobs first and index.json last, so a
//! reader importing while another build exports sees the old or the new cache, never a
//! manifest whose blobs are not there yet.
//!
//! Garbage: index.json names the new manifest [`REF_NAME`] and keeps the one it replaced
//! as [`PREVIOUS_REF_NAME`] (a build that loaded it may still fetch its layers lazily).
//! After publishing, every blob neither of them references is removed — the directory
//! holds at most two exports, however often it is written. Only entries of `blobs/ALG/`
//! named by a valid digest (regular files, never followed links) and the exporters' stale
//! temp files there are removed; nothing else in the directory is touched.
//!
//! Exports of one directory may overlap: each holds a shared `flock` on
//! [`LOCK_FILE`] from its first look at the blobs until it has published, and collection
//! runs only under an exclusive lock taken without waiting — while another export is
//! writing, collection is skipped (the last one to finish collects), so no export can lose
//! a blob its manifest is about to name.

use crate::format::{PREVIOUS_REF_NAME, REF_NAME};
use crate::{CacheSink, CacheSource, Error};
use kiln_oci::spec::Descriptor;
use kiln_oci::{Digest, VerifyingReader};
use rustix::fs::{flock, FlockOperation};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The lock exporters of one directory coordinate collection with (see the module doc).
pub const LOCK_FILE: &str = ".kiln-export.lock";

/// Manifests larger than this in index.json are not read for collection (nothing is
/// removed then): kiln writes manifests of a few KiB per hundred layers.
const MAX_MANIFEST_FOR_GC: u64 = 16 << 20;

/// Blobs written at once on export, as many as `kiln push` uploads.
const LOCAL_JOBS: usize = 4;

const LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

#[derive(Debug)]
pub struct LocalDir {
    dir: PathBuf,
    name: String,
    /// The shared export lock, held from this sink's first blob check until collection.
    export_lock: Mutex<Option<File>>,
}

struct Entry {
    digest: Digest,
    size: u64,
    media_type: String,
}

/// What collection removed from a cache directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Collected {
    pub blobs: usize,
    pub bytes: u64,
    /// Collection did not run: another export of the directory was still writing.
    pub skipped: bool,
}

impl LocalDir {
    pub fn new(dir: impl Into<PathBuf>) -> LocalDir {
        let dir = dir.into();
        let name = format!("cache {}", dir.display());
        LocalDir {
            dir,
            name,
            export_lock: Mutex::new(None),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        // A parsed digest's algorithm and hex never contain `/` or `..`.
        self.dir
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    fn err(&self, what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
        Error::io(&self.name, what, path.to_path_buf())
    }

    fn open_lock(&self) -> Result<File, Error> {
        fs::create_dir_all(&self.dir).map_err(self.err("create directory", &self.dir))?;
        let path = self.dir.join(LOCK_FILE);
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(self.err("open", &path))
    }

    /// Takes the shared export lock once per sink; waits only for a collection under way.
    fn hold_export_lock(&self) -> Result<(), Error> {
        let mut held = self.export_lock.lock().unwrap_or_else(|p| p.into_inner());
        if held.is_none() {
            let f = self.open_lock()?;
            flock(&f, FlockOperation::LockShared)
                .map_err(|e| self.err("lock", &self.dir.join(LOCK_FILE))(e.into()))?;
            *held = Some(f);
        }
        Ok(())
    }

    /// The manifest index.json names `ref_name` now, if it can be read.
    fn entry(&self, ref_name: &str) -> Option<Entry> {
        let bytes = fs::read(self.dir.join("index.json")).ok()?;
        let index: kiln_oci::spec::ImageIndex = serde_json::from_slice(&bytes).ok()?;
        let d = index.manifests().iter().find(|d| {
            d.annotations()
                .as_ref()
                .and_then(|a| a.get("org.opencontainers.image.ref.name"))
                .is_some_and(|n| n == ref_name)
        })?;
        Some(Entry {
            digest: Digest::parse(d.digest().as_ref()).ok()?,
            size: d.size(),
            media_type: d.media_type().to_string(),
        })
    }

    /// Every digest index.json's manifests reference (themselves, configs, layers).
    /// `None` when any of them cannot be read: then nothing is removed.
    fn referenced(&self) -> Option<HashSet<Digest>> {
        let bytes = fs::read(self.dir.join("index.json")).ok()?;
        let index: kiln_oci::spec::ImageIndex = serde_json::from_slice(&bytes).ok()?;
        let mut keep = HashSet::new();
        for desc in index.manifests() {
            let digest = Digest::parse(desc.digest().as_ref()).ok()?;
            if desc.size() > MAX_MANIFEST_FOR_GC {
                return None;
            }
            let mut m = Vec::new();
            VerifyingReader::new(
                File::open(self.blob_path(&digest)).ok()?,
                digest.clone(),
                desc.size(),
            )
            .read_to_end(&mut m)
            .ok()?;
            let manifest: kiln_oci::spec::ImageManifest = serde_json::from_slice(&m).ok()?;
            for d in std::iter::once(manifest.config()).chain(manifest.layers()) {
                keep.insert(Digest::parse(d.digest().as_ref()).ok()?);
            }
            keep.insert(digest);
        }
        Some(keep)
    }

    /// Removes the blobs index.json no longer references (see the module doc). Runs only
    /// when no other export of the directory holds the lock; gives up this sink's own.
    pub fn collect_unreferenced(&self) -> Result<Collected, Error> {
        drop(
            self.export_lock
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        let lock = self.open_lock()?;
        if flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
            return Ok(Collected {
                skipped: true,
                ..Collected::default()
            });
        }
        let Some(keep) = self.referenced() else {
            return Ok(Collected {
                skipped: true,
                ..Collected::default()
            });
        };
        let mut out = Collected::default();
        let blobs = self.dir.join("blobs");
        let algorithms = match fs::read_dir(&blobs) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(self.err("list", &blobs)(e)),
        };
        for alg in algorithms {
            let alg = alg.map_err(self.err("list", &blobs))?;
            if !alg.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let alg_dir = alg.path();
            let alg_name = alg.file_name().to_string_lossy().to_string();
            for entry in fs::read_dir(&alg_dir).map_err(self.err("list", &alg_dir))? {
                let entry = entry.map_err(self.err("list", &alg_dir))?;
                let name = entry.file_name().to_string_lossy().to_string();
                // Not following links: a link is not a blob kiln wrote, whatever its name.
                let Ok(meta) = entry.path().symlink_metadata() else {
                    continue;
                };
                if !meta.is_file() {
                    continue;
                }
                // Under the exclusive lock no export is writing, so temp files are stale.
                let stale_temp = name.starts_with(".tmp-");
                let unreferenced = Digest::parse(&format!("{alg_name}:{name}"))
                    .is_ok_and(|d| d.hex() == name && !keep.contains(&d));
                if !(stale_temp || unreferenced) {
                    continue;
                }
                let path = entry.path();
                match fs::remove_file(&path) {
                    Ok(()) => {
                        if unreferenced {
                            out.blobs += 1;
                            out.bytes += meta.len();
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(self.err("remove", &path)(e)),
                }
            }
        }
        drop(lock);
        Ok(out)
    }
}

fn descriptor_digest(cache: &str, d: &Descriptor) -> Result<Digest, Error> {
    Digest::parse(d.digest().as_ref())
        .map_err(|e| Error::malformed(cache, format!("descriptor digest: {e}")))
}

impl CacheSource for LocalDir {
    fn name(&self) -> &str {
        &self.name
    }

    fn manifest(&self, limit: u64) -> Result<Option<Vec<u8>>, Error> {
        let index_path = self.dir.join("index.json");
        let file = match File::open(&index_path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.err("open", &index_path)(e)),
        };
        let mut bytes = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(self.err("read", &index_path))?;
        if bytes.len() as u64 > limit {
            return Err(Error::TooLarge {
                cache: self.name.clone(),
                what: "index.json",
                limit,
                option: "max-manifest-size",
            });
        }
        let index: kiln_oci::spec::ImageIndex = serde_json::from_slice(&bytes)
            .map_err(|e| Error::malformed(&self.name, format!("index.json: {e}")))?;
        let named = |d: &&Descriptor| {
            d.annotations()
                .as_ref()
                .and_then(|a| a.get("org.opencontainers.image.ref.name"))
                .is_some_and(|n| n == REF_NAME)
        };
        let Some(desc) = index.manifests().iter().find(named) else {
            return Err(Error::malformed(
                &self.name,
                format!("index.json has no manifest named {REF_NAME:?} (not a kiln cache?)"),
            ));
        };
        if desc.size() > limit {
            return Err(Error::TooLarge {
                cache: self.name.clone(),
                what: "manifest",
                limit,
                option: "max-manifest-size",
            });
        }
        let digest = descriptor_digest(&self.name, desc)?;
        let path = self.blob_path(&digest);
        let f = File::open(&path).map_err(self.err("open manifest blob", &path))?;
        let mut out = Vec::new();
        VerifyingReader::new(f, digest.clone(), desc.size())
            .read_to_end(&mut out)
            .map_err(|e| match kiln_oci::verify::as_verify_error(&e) {
                Some(v) => Error::BlobVerify {
                    cache: self.name.clone(),
                    digest: digest.clone(),
                    source: v.clone(),
                },
                None => self.err("read", &path)(e),
            })?;
        Ok(Some(out))
    }

    fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>, Error> {
        let digest = descriptor_digest(&self.name, desc)?;
        let path = self.blob_path(&digest);
        match File::open(&path) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::UnknownBlob {
                cache: self.name.clone(),
                digest,
            }),
            Err(e) => Err(self.err("open", &path)(e)),
        }
    }
}

impl CacheSink for LocalDir {
    fn name(&self) -> &str {
        &self.name
    }

    /// Each blob is a copy out of the store plus an fsync; several overlap the fsync waits.
    fn jobs(&self) -> usize {
        LOCAL_JOBS
    }

    fn has_blob(&self, digest: &Digest, size: u64) -> Result<bool, Error> {
        // Before looking: a collection must not remove a blob this export found present.
        self.hold_export_lock()?;
        Ok(fs::metadata(self.blob_path(digest)).is_ok_and(|m| m.is_file() && m.len() == size))
    }

    fn put_blob(&self, desc: &Descriptor, reader: &mut dyn Read) -> Result<(), Error> {
        self.hold_export_lock()?;
        let digest = descriptor_digest(&self.name, desc)?;
        let dest = self.blob_path(&digest);
        let dir = dest.parent().expect("blob path has a parent");
        fs::create_dir_all(dir).map_err(self.err("create directory", dir))?;
        let tmp = dir.join(kiln_fs::atomic::unique_name(".tmp"));
        let res = (|| {
            let mut f = File::create(&tmp).map_err(self.err("create", &tmp))?;
            let mut src =
                VerifyingReader::new(reader.take(desc.size() + 1), digest.clone(), desc.size());
            io::copy(&mut src, &mut f).map_err(|e| {
                match kiln_oci::verify::as_verify_error(&e) {
                    Some(v) => Error::BlobVerify {
                        cache: self.name.clone(),
                        digest: digest.clone(),
                        source: v.clone(),
                    },
                    None => self.err("write", &tmp)(e),
                }
            })?;
            f.sync_all().map_err(self.err("fsync", &tmp))?;
            fs::rename(&tmp, &dest).map_err(self.err("rename into place", &dest))
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res
    }

    fn collect_garbage(&self) -> Result<crate::Collected, Error> {
        self.collect_unreferenced()
    }

    fn put_manifest(&self, bytes: &[u8], media_type: &str) -> Result<(), Error> {
        let digest = Digest::of_bytes(bytes);
        let desc = kiln_store::BlobInfo {
            digest: digest.clone(),
            size: bytes.len() as u64,
        }
        .descriptor(media_type);
        self.put_blob(&desc, &mut &bytes[..])?;
        let mut manifests = vec![serde_json::json!({
            "mediaType": media_type,
            "digest": digest.to_string(),
            "size": bytes.len(),
            "artifactType": crate::format::ARTIFACT_TYPE,
            "annotations": { "org.opencontainers.image.ref.name": REF_NAME },
        })];
        // Re-publishing the current manifest must not forget the previous one.
        let previous = match self.entry(REF_NAME) {
            Some(current) if current.digest != digest => Some(current),
            _ => self.entry(PREVIOUS_REF_NAME),
        };
        if let Some(previous) = previous {
            manifests.push(serde_json::json!({
                "mediaType": previous.media_type,
                "digest": previous.digest.to_string(),
                "size": previous.size,
                "artifactType": crate::format::ARTIFACT_TYPE,
                "annotations": { "org.opencontainers.image.ref.name": PREVIOUS_REF_NAME },
            }));
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": kiln_oci::media::OCI_INDEX,
            "manifests": manifests,
        });
        let write = |name: &str, data: &[u8]| {
            let p = self.dir.join(name);
            kiln_fs::atomic::write_file(&p, data).map_err(self.err("write", &p))
        };
        write("oci-layout", LAYOUT)?;
        write(
            "index.json",
            &serde_json::to_vec(&index).expect("index serialises"),
        )?;
        Ok(())
    }
}
