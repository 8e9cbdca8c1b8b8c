//! `kiln load`: docker-archive and oci-archive tarballs into the store, in one streaming pass.
//!
//! The archive is untrusted. Its entry names are only used as keys of an in-memory map, never
//! as filesystem paths. Every file is streamed into a store blob while being hashed; a name
//! that claims a digest (`blobs/sha256/<hex>`, `<hex>.json`, `<hex>.tar`) must match what was
//! computed, and docker-archive layers must match the config's `rootfs.diff_ids`. Only after
//! all checks pass are images tagged, so a hostile archive tags nothing. Blobs written for a
//! rejected archive are left unreferenced for `kiln prune`.

use crate::error::{ExportError, Result};
use crate::image::{manifest_for, put_manifest};
use kiln_archive::{DecodeLimits, EntryKind};
use kiln_oci::media::{self, ManifestKind};
use kiln_oci::spec::{Descriptor, ImageIndex, ImageManifest};
use kiln_oci::{Digest, ImageConfig, Reference};
use kiln_store::{BlobInfo, Lease, Store, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Metadata files (manifest.json, index.json, configs) are read into memory up to this size.
pub const MAX_METADATA_BYTES: u64 = 4 << 20;
/// All in-memory metadata of one archive together stays below this; beyond it files go to
/// the store like any blob.
const MAX_METADATA_TOTAL: u64 = 64 << 20;
/// Manifests and indexes nest at most this deep.
const MAX_DEPTH: usize = 8;

/// One image that was loaded.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// Names given to it (empty when the archive did not name it).
    pub references: Vec<Reference>,
    pub manifest: Descriptor,
    /// Config digest (the image id).
    pub id: Digest,
}

#[derive(Default)]
struct Entries {
    files: BTreeMap<PathBuf, BlobInfo>,
    /// Archive metadata that names no digest (manifest.json, index.json, repositories, …):
    /// kept in memory, not in the store, where it would only be garbage.
    meta: BTreeMap<PathBuf, Vec<u8>>,
    meta_bytes: u64,
    symlinks: BTreeMap<PathBuf, PathBuf>,
}

impl Entries {
    /// Follows archive-internal symlinks (docker's legacy format links duplicate layers).
    fn resolve(&self, name: &Path) -> Option<&BlobInfo> {
        let mut p = clean(name)?;
        for _ in 0..16 {
            if let Some(b) = self.files.get(&p) {
                return Some(b);
            }
            let target = self.symlinks.get(&p)?;
            let joined = p.parent().unwrap_or(Path::new("")).join(target);
            p = clean(&joined)?;
        }
        None
    }
}

/// Lexical clean of an archive-relative name; `None` if it climbs above the archive root.
pub(crate) fn clean(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// The digest an entry name claims, if any.
fn claimed_digest(name: &Path) -> Option<Digest> {
    let s = name.to_str()?;
    if let Some(hex) = s.strip_prefix("blobs/sha256/") {
        return Digest::parse(&format!("sha256:{hex}")).ok();
    }
    let hex = s.strip_suffix(".json").or_else(|| s.strip_suffix(".tar"))?;
    Digest::parse(&format!("sha256:{hex}")).ok()
}

/// Reads an archive (plain, gzip or zstd) and loads every image in it.
pub fn load<R: Read + Send>(
    store: &Store,
    reader: R,
    archive_name: &str,
    limits: &DecodeLimits,
) -> Result<Vec<LoadedImage>> {
    let lease = store.lease()?;
    let entries = read_all(store, &lease, reader, archive_name, limits)?;
    let bad = |message: String| ExportError::BadArchive {
        archive: archive_name.to_string(),
        message,
    };
    let has = |n: &str| {
        entries.meta.contains_key(Path::new(n)) || entries.files.contains_key(Path::new(n))
    };
    let images = if has("index.json") {
        load_oci(store, &lease, &entries, archive_name)?
    } else if has("manifest.json") {
        load_docker(store, &lease, &entries, archive_name)?
    } else {
        return Err(bad(
            "neither an oci-archive (no index.json) nor a docker-archive (no manifest.json)".into(),
        ));
    };
    // Tag only once everything verified, so a bad archive changes no name.
    for img in &images {
        for r in &img.references {
            store.tag(r, &img.manifest)?;
        }
    }
    Ok(images)
}

fn read_all<R: Read + Send>(
    store: &Store,
    lease: &Lease,
    reader: R,
    archive_name: &str,
    limits: &DecodeLimits,
) -> Result<Entries> {
    let mut entries = Entries::default();
    let mut failure: Option<ExportError> = None;
    let result = kiln_archive::read_entries(reader, limits, |h, data| {
        let step =
            || -> Result<()> {
                match h.kind {
                    EntryKind::Regular => {
                        let claimed = claimed_digest(&h.path);
                        // Layer tars are never metadata, even when small and not named after
                        // a digest (docker's legacy `<id>/layer.tar`).
                        if claimed.is_none()
                            && h.path.extension() != Some(std::ffi::OsStr::new("tar"))
                            && h.size <= MAX_METADATA_BYTES
                            && entries.meta_bytes + h.size <= MAX_METADATA_TOTAL
                        {
                            let mut buf = Vec::with_capacity(h.size as usize);
                            data.take(h.size).read_to_end(&mut buf).map_err(
                                crate::error::io_err(format!("{archive_name}: read {:?}", h.path)),
                            )?;
                            entries.meta_bytes += buf.len() as u64;
                            entries.meta.insert(h.path.clone(), buf);
                            return Ok(());
                        }
                        let info = store.ingest(Some(lease), data, None)?;
                        if let Some(expected) = claimed {
                            if expected != info.digest {
                                return Err(ExportError::NameDigestMismatch {
                                    archive: archive_name.to_string(),
                                    entry: h.path.display().to_string(),
                                    expected,
                                    actual: info.digest,
                                });
                            }
                        }
                        entries.files.insert(h.path.clone(), info);
                    }
                    EntryKind::Symlink => {
                        if let Some(t) = &h.link_name {
                            entries.symlinks.insert(h.path.clone(), PathBuf::from(t));
                        }
                    }
                    EntryKind::Hardlink => {
                        if let Some(t) = h.link_name.as_ref().and_then(|t| clean(Path::new(t))) {
                            if let Some(info) = entries.files.get(&t).cloned() {
                                entries.files.insert(h.path.clone(), info);
                            }
                        }
                    }
                    // Directories and anything else carry no image data.
                    _ => {}
                }
                Ok(())
            };
        step().map_err(|e| {
            failure = Some(e);
            kiln_archive::Error::Malformed("load aborted".into())
        })
    });
    if let Some(e) = failure {
        return Err(e);
    }
    result.map_err(|e| match e {
        kiln_archive::Error::Malformed(m) => ExportError::BadArchive {
            archive: archive_name.to_string(),
            message: m,
        },
        other => ExportError::Archive(other),
    })?;
    Ok(entries)
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: String) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| ExportError::Json { what, source })
}

/// Reads a metadata file of the archive back from the store, refusing oversized ones.
fn read_small(store: &Store, entries: &Entries, archive: &str, name: &Path) -> Result<Vec<u8>> {
    if let Some(bytes) = clean(name).and_then(|n| entries.meta.get(&n)) {
        return Ok(bytes.clone());
    }
    let info = entries
        .resolve(name)
        .ok_or_else(|| ExportError::BadArchive {
            archive: archive.to_string(),
            message: format!("{name:?} is referenced but missing"),
        })?;
    if info.size > MAX_METADATA_BYTES {
        return Err(ExportError::MetadataTooLarge {
            archive: archive.to_string(),
            entry: name.display().to_string(),
            size: info.size,
            limit: MAX_METADATA_BYTES,
        });
    }
    Ok(store.read_blob_verified(&info.digest, Some(info.size))?)
}

// ---- oci-archive -------------------------------------------------------------------------

fn load_oci(
    store: &Store,
    lease: &Lease,
    entries: &Entries,
    archive: &str,
) -> Result<Vec<LoadedImage>> {
    let index: ImageIndex = parse_json(
        &read_small(store, entries, archive, Path::new("index.json"))?,
        format!("{archive}: index.json"),
    )?;
    let mut out = Vec::new();
    for desc in index.manifests() {
        let id = check_tree(store, lease, entries, archive, desc, 0)?;
        let names = desc
            .annotations()
            .as_ref()
            .map(|a| {
                // containerd's full name wins; ref.name is often just a tag, which names no
                // repository and so cannot become a kiln image name on its own.
                a.get(ANNOTATION_CONTAINERD_NAME)
                    .or_else(|| {
                        a.get(ANNOTATION_REF_NAME)
                            .filter(|n| n.contains(['/', ':']))
                    })
                    .cloned()
            })
            .unwrap_or_default();
        let mut references = Vec::new();
        if let Some(n) = names {
            references.push(Reference::parse(&n).map_err(|source| ExportError::BadName {
                archive: archive.to_string(),
                name: n.clone(),
                source: Box::new(source),
            })?);
        }
        out.push(LoadedImage {
            references,
            manifest: desc.clone(),
            id: id.unwrap_or_else(|| Digest::try_from(desc.digest()).expect("checked")),
        });
    }
    Ok(out)
}

/// Verifies that a manifest or index and everything it references arrived intact; returns
/// the config digest of a single-platform manifest.
fn check_tree(
    store: &Store,
    lease: &Lease,
    entries: &Entries,
    archive: &str,
    desc: &Descriptor,
    depth: usize,
) -> Result<Option<Digest>> {
    let bad = |message: String| ExportError::BadArchive {
        archive: archive.to_string(),
        message,
    };
    if depth > MAX_DEPTH {
        return Err(bad(format!(
            "manifests nest deeper than {MAX_DEPTH} levels"
        )));
    }
    let digest = Digest::try_from(desc.digest()).map_err(|e| bad(e.to_string()))?;
    let name = PathBuf::from(format!("blobs/sha256/{}", digest.hex()));
    let info = entries
        .files
        .get(&name)
        .ok_or_else(|| bad(format!("{name:?} is referenced but missing")))?;
    if info.size != desc.size() {
        return Err(bad(format!(
            "{name:?} is {} bytes, its descriptor says {}",
            info.size,
            desc.size()
        )));
    }
    // Protect blobs that were already in the store and so skipped by this lease.
    store.protect(lease, &digest)?;
    let media_type = desc.media_type().to_string();
    match media::manifest_kind(&media_type) {
        Some(ManifestKind::Index) => {
            let bytes = read_small(store, entries, archive, &name)?;
            let idx: ImageIndex = parse_json(&bytes, format!("{archive}: index {digest}"))?;
            for child in idx.manifests() {
                check_tree(store, lease, entries, archive, child, depth + 1)?;
            }
            Ok(None)
        }
        Some(ManifestKind::Manifest) => {
            let bytes = read_small(store, entries, archive, &name)?;
            let m: ImageManifest = parse_json(&bytes, format!("{archive}: manifest {digest}"))?;
            let config = m.config().clone();
            for d in std::iter::once(&config).chain(m.layers().iter()) {
                check_leaf(store, lease, entries, archive, d)?;
            }
            Ok(Some(
                Digest::try_from(config.digest()).map_err(|e| bad(e.to_string()))?,
            ))
        }
        None => Err(bad(format!(
            "index entry {digest} has media type {media_type:?}, not a manifest or index"
        ))),
    }
}

fn check_leaf(
    store: &Store,
    lease: &Lease,
    entries: &Entries,
    archive: &str,
    d: &Descriptor,
) -> Result<()> {
    let bad = |message: String| ExportError::BadArchive {
        archive: archive.to_string(),
        message,
    };
    let digest = Digest::try_from(d.digest()).map_err(|e| bad(e.to_string()))?;
    let name = PathBuf::from(format!("blobs/sha256/{}", digest.hex()));
    match entries.files.get(&name) {
        Some(info) if info.size == d.size() => {
            store.protect(lease, &digest)?;
            Ok(())
        }
        Some(info) => Err(bad(format!(
            "{name:?} is {} bytes, its descriptor says {}",
            info.size,
            d.size()
        ))),
        None => Err(bad(format!("{name:?} is referenced but missing"))),
    }
}

// ---- docker-archive ----------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn load_docker(
    store: &Store,
    lease: &Lease,
    entries: &Entries,
    archive: &str,
) -> Result<Vec<LoadedImage>> {
    let bad = |message: String| ExportError::BadArchive {
        archive: archive.to_string(),
        message,
    };
    let list: Vec<DockerManifestEntry> = parse_json(
        &read_small(store, entries, archive, Path::new("manifest.json"))?,
        format!("{archive}: manifest.json"),
    )?;
    let mut out = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let config_path = clean(Path::new(&item.config))
            .ok_or_else(|| bad(format!("bad config path {:?}", item.config)))?;
        let config_info = entries
            .resolve(&config_path)
            .ok_or_else(|| {
                bad(format!(
                    "manifest.json[{i}]: config {:?} missing",
                    item.config
                ))
            })?
            .clone();
        let config_bytes = read_small(store, entries, archive, &config_path)?;
        let config: ImageConfig =
            parse_json(&config_bytes, format!("{archive}: config {}", item.config))?;
        if config.rootfs.diff_ids.len() != item.layers.len() {
            return Err(bad(format!(
                "manifest.json[{i}] lists {} layers but its config has {} diff_ids",
                item.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        let mut seen = BTreeSet::new();
        for (layer_name, diff_id) in item.layers.iter().zip(&config.rootfs.diff_ids) {
            let info = entries
                .resolve(Path::new(layer_name))
                .ok_or_else(|| bad(format!("layer {layer_name:?} missing")))?;
            if &info.digest != diff_id {
                return Err(ExportError::DiffIdMismatch {
                    archive: archive.to_string(),
                    entry: layer_name.clone(),
                    expected: diff_id.clone(),
                    actual: info.digest.clone(),
                });
            }
            store.protect(lease, &info.digest)?;
            seen.insert(info.digest.clone());
            // Docker archives carry layers uncompressed: the blob digest is the diff_id,
            // so the layer digests stay those of the archive.
            layers.push(info.descriptor(media::OCI_LAYER_TAR));
        }
        store.protect(lease, &config_info.digest)?;
        let manifest = manifest_for(config_info.descriptor(media::OCI_CONFIG), layers);
        let manifest_desc = put_manifest(store, lease, &manifest)?;
        let mut references = Vec::new();
        for t in item.repo_tags.iter().flatten() {
            references.push(Reference::parse(t).map_err(|source| ExportError::BadName {
                archive: archive.to_string(),
                name: t.clone(),
                source: Box::new(source),
            })?);
        }
        out.push(LoadedImage {
            references,
            manifest: manifest_desc,
            id: config_info.digest,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_refuses_escape() {
        assert_eq!(clean(Path::new("a/../b")), Some(PathBuf::from("b")));
        assert_eq!(clean(Path::new("../b")), None);
        assert_eq!(clean(Path::new("/x/./y")), Some(PathBuf::from("x/y")));
    }

    #[test]
    fn claimed_digests() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(claimed_digest(Path::new(&format!("blobs/sha256/{hex}"))).is_some());
        assert!(claimed_digest(Path::new(&format!("{hex}.json"))).is_some());
        assert!(claimed_digest(Path::new(&format!("{hex}.tar"))).is_some());
        assert!(claimed_digest(Path::new(&format!("{hex}/layer.tar"))).is_none());
        assert!(claimed_digest(Path::new("manifest.json")).is_none());
    }
}
