//! Garbage collection (`prune`), the reachability walk it shares with fsck, and `du`.
//!
//! Ordering is what makes prune safe next to live writers:
//! 1. list blobs *first* — a blob renamed in after this point is simply not a candidate;
//! 2. take the index lock (no tag can change) and the gc lock exclusively (no blob commit or
//!    dedup check is between its lease entry and its rename);
//! 3. read index.json and every live lease — any blob listed in step 1 that a writer will
//!    still reference was recorded in its lease before its rename, hence before step 1;
//! 4. delete listed blobs that are neither reachable nor leased.

use crate::error::{Result, StoreError};
use crate::index::descriptor_digest;
use crate::layout::Store;
use crate::lease;
use crate::lock::{self, Mode};
use kiln_oci::media::{manifest_kind, ManifestKind};
use kiln_oci::spec::{Descriptor, ImageIndex, ImageManifest};
use kiln_oci::Digest;
use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Temp files untouched for this long whose writer holds no lock are leftovers of a crash.
pub(crate) const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);
/// Blobs of unknown type reached from a lease are sniffed as JSON only up to this size.
const MAX_SNIFF: u64 = 8 << 20;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub blobs_removed: u64,
    pub bytes_freed: u64,
    pub temp_files_removed: u64,
    pub stale_leases_removed: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskUsage {
    pub blobs: u64,
    pub bytes: u64,
}

/// A file under `blobs/`.
pub(crate) struct BlobFile {
    pub digest: Digest,
    pub path: PathBuf,
    pub size: u64,
}

/// What to walk from: a descriptor (media type known) or a bare leased digest (sniffed).
pub(crate) enum Root {
    Descriptor(Box<Descriptor>, String),
    Leased(Digest),
}

#[derive(Default)]
pub(crate) struct Walk {
    pub reachable: HashSet<Digest>,
    /// (digest, what referenced it)
    pub missing: Vec<(Digest, String)>,
    /// manifests/indexes that could not be read or parsed, with the reason
    pub unreadable: Vec<String>,
}

enum Kind {
    Manifest,
    Index,
    Leaf,
}

impl Store {
    /// Every file under `blobs/<alg>/`, plus paths whose names are no valid digest.
    pub(crate) fn list_blobs(&self) -> Result<(Vec<BlobFile>, Vec<PathBuf>)> {
        let mut blobs = Vec::new();
        let mut invalid = Vec::new();
        let root = self.blobs_dir();
        for alg in fs::read_dir(&root).map_err(StoreError::io("read directory", &root))? {
            let alg = alg.map_err(StoreError::io("read directory", &root))?;
            let alg_dir = alg.path();
            if !alg_dir.is_dir() {
                invalid.push(alg_dir);
                continue;
            }
            let alg_name = alg.file_name().to_string_lossy().into_owned();
            let rd = fs::read_dir(&alg_dir).map_err(StoreError::io("read directory", &alg_dir))?;
            for e in rd {
                let e = e.map_err(StoreError::io("read directory", &alg_dir))?;
                let path = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                let meta = match e.metadata() {
                    Ok(m) => m,
                    Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(StoreError::io("stat", &path)(err)),
                };
                match Digest::parse(&format!("{alg_name}:{name}")) {
                    Ok(digest) if meta.is_file() => blobs.push(BlobFile {
                        digest,
                        path,
                        size: meta.len(),
                    }),
                    _ => invalid.push(path),
                }
            }
        }
        Ok((blobs, invalid))
    }

    /// Blob count and bytes (for `kiln du`).
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let (blobs, _) = self.list_blobs()?;
        Ok(DiskUsage {
            blobs: blobs.len() as u64,
            bytes: blobs.iter().map(|b| b.size).sum(),
        })
    }

    /// Every descriptor reachable from `root` (itself included): children of manifests and
    /// indexes, recursively. For `save`: these are the blobs an archive must contain.
    pub fn descriptors_of(&self, root: &Descriptor) -> Result<Vec<Descriptor>> {
        let mut out = vec![root.clone()];
        let mut seen = HashSet::new();
        let mut i = 0;
        while i < out.len() {
            let d = out[i].clone();
            i += 1;
            if !seen.insert(d.digest().to_string()) {
                continue;
            }
            match manifest_kind(d.media_type().as_ref()) {
                Some(ManifestKind::Manifest) => out.extend(manifest_children(&self.manifest(&d)?)),
                Some(ManifestKind::Index) => out.extend(index_children(&self.index(&d)?)),
                None => {}
            }
        }
        let mut uniq = HashSet::new();
        out.retain(|d| uniq.insert(d.digest().to_string()));
        Ok(out)
    }

    /// The reachability walk. Missing or unreadable blobs are recorded, never fatal: prune
    /// must still run on a damaged store, and fsck wants the whole list.
    pub(crate) fn walk(&self, roots: Vec<Root>) -> Walk {
        let mut w = Walk::default();
        // (digest, media type if known, expected size if known, referrer)
        let mut queue: Vec<(Digest, Option<String>, Option<u64>, String)> = Vec::new();
        let push_desc =
            |q: &mut Vec<_>, w: &mut Walk, d: &Descriptor, from: &str| match descriptor_digest(
                d, from,
            ) {
                Ok(dg) => q.push((
                    dg,
                    Some(d.media_type().to_string()),
                    Some(d.size()),
                    from.to_string(),
                )),
                Err(e) => w.unreadable.push(e.to_string()),
            };
        for r in roots {
            match r {
                Root::Descriptor(d, from) => push_desc(&mut queue, &mut w, &d, &from),
                Root::Leased(dg) => queue.push((dg, None, None, "a lease".into())),
            }
        }
        while let Some((digest, media, size, from)) = queue.pop() {
            if !w.reachable.insert(digest.clone()) {
                continue;
            }
            if !self.has_blob(&digest) {
                w.missing.push((digest, from));
                continue;
            }
            let kind = match media.as_deref() {
                Some(m) => match manifest_kind(m) {
                    Some(ManifestKind::Manifest) => Kind::Manifest,
                    Some(ManifestKind::Index) => Kind::Index,
                    None => Kind::Leaf, // unknown types (layers, configs, artifacts) are leaves
                },
                None => self.sniff(&digest),
            };
            if matches!(kind, Kind::Leaf) {
                continue;
            }
            let bytes = match self.read_blob_verified(&digest, size) {
                Ok(b) => b,
                Err(e) => {
                    w.unreadable.push(e.to_string());
                    continue;
                }
            };
            let what = format!("{digest}");
            let children = match kind {
                Kind::Manifest => {
                    serde_json::from_slice::<ImageManifest>(&bytes).map(|m| manifest_children(&m))
                }
                _ => serde_json::from_slice::<ImageIndex>(&bytes).map(|i| index_children(&i)),
            };
            match children {
                Ok(children) => {
                    for c in &children {
                        push_desc(&mut queue, &mut w, c, &what);
                    }
                }
                Err(e) => w.unreadable.push(format!("cannot parse {what}: {e}")),
            }
        }
        w
    }

    /// A leased blob has no media type; treat small JSON objects shaped like a manifest or
    /// index as one, so a lease on a manifest also protects what it references.
    fn sniff(&self, digest: &Digest) -> Kind {
        let small = self.blob_size(digest).is_ok_and(|s| s <= MAX_SNIFF);
        if !small {
            return Kind::Leaf;
        }
        let Ok(bytes) = fs::read(self.blob_path(digest)) else {
            return Kind::Leaf;
        };
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Kind::Leaf;
        }
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(v) if v.get("manifests").is_some_and(|m| m.is_array()) => Kind::Index,
            Ok(v) if v.get("config").is_some() && v.get("layers").is_some() => Kind::Manifest,
            _ => Kind::Leaf,
        }
    }

    /// Deletes blobs that neither index.json nor a live lease reaches, stale lease files,
    /// and temp files older than an hour whose writer is gone. Safe to run while other
    /// kiln processes import, build and tag.
    pub fn prune(&self) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        let (listed, _invalid) = self.list_blobs()?;
        {
            let _index = lock::lock_path(&self.index_lock(), Mode::Exclusive)?;
            let _gc = lock::lock_path(&self.gc_lock(), Mode::Exclusive)?;
            // An unreadable index.json must stop prune: it would otherwise free every blob.
            let index = self.read_index()?;
            let (leased, stale) = lease::live_digests(self)?;
            report.stale_leases_removed = stale as u64;
            let mut roots: Vec<Root> = index
                .manifests()
                .iter()
                .map(|d| Root::Descriptor(Box::new(d.clone()), "index.json".into()))
                .collect();
            roots.extend(leased.into_iter().map(Root::Leased));
            let walk = self.walk(roots);
            for b in listed {
                if walk.reachable.contains(&b.digest) {
                    continue;
                }
                match fs::remove_file(&b.path) {
                    Ok(()) => {
                        self.forget_blob_sources(&b.digest);
                        report.blobs_removed += 1;
                        report.bytes_freed += b.size;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StoreError::io("remove", &b.path)(e)),
                }
            }
        }
        report.temp_files_removed = self.clean_temp(STALE_TEMP_AGE)?;
        Ok(report)
    }

    /// Temp files not locked by a live writer and older than `age` (fsck passes zero to
    /// list them all). Returns them without deleting when `delete` is false.
    pub(crate) fn stale_temp_files(&self, age: Duration) -> Result<Vec<PathBuf>> {
        let dir = self.tmp_dir();
        let now = SystemTime::now();
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(StoreError::io("read directory", &dir))? {
            let e = e.map_err(StoreError::io("read directory", &dir))?;
            let path = e.path();
            let Ok(meta) = e.metadata() else { continue };
            let old = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|a| a >= age);
            if old && !lock::is_locked(&path).map_err(StoreError::io("check lock of", &path))? {
                out.push(path);
            }
        }
        Ok(out)
    }

    fn clean_temp(&self, age: Duration) -> Result<u64> {
        let mut n = 0;
        for p in self.stale_temp_files(age)? {
            if fs::remove_file(&p).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }
}

fn manifest_children(m: &ImageManifest) -> Vec<Descriptor> {
    let mut v = vec![m.config().clone()];
    v.extend(m.layers().iter().cloned());
    v.extend(m.subject().iter().cloned());
    v
}

fn index_children(i: &ImageIndex) -> Vec<Descriptor> {
    let mut v: Vec<Descriptor> = i.manifests().to_vec();
    v.extend(i.subject().iter().cloned());
    v
}
