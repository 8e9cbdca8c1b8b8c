//! `kiln save`: images from the store to a docker-archive or oci-archive tarball.
//!
//! Output is deterministic (sorted blobs, fixed headers, mtime 0), and every byte copied out
//! of the store passes a verifying reader, so a corrupt store cannot produce an archive
//! that looks valid.

use crate::error::{io_err, ExportError, Result};
use kiln_archive::{DecodeLimits, EntryHeader, EntryKind, TarBuilder};
use kiln_oci::media::{self, Compression};
use kiln_oci::spec::Descriptor;
use kiln_oci::{Digest, ImageConfig, Reference};
use kiln_store::{ResolvedImage, Store, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Read, Seek, Write};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `docker save` / `docker load` layout: manifest.json, `<id>.json`, uncompressed layers.
    Docker,
    /// An OCI image layout in a tar: oci-layout, index.json, blobs/.
    Oci,
}

/// An image to save and the name to record for it (none when asked for by id).
pub struct SaveItem {
    pub image: ResolvedImage,
    pub name: Option<Reference>,
}

/// Resolves the user's arguments: a name is recorded only when the argument was a name.
pub fn resolve_items(store: &Store, inputs: &[String]) -> Result<Vec<SaveItem>> {
    inputs
        .iter()
        .map(|input| {
            let image = store.resolve(input)?;
            let name = Reference::parse(input)
                .ok()
                .filter(|r| image.reference.as_ref() == Some(r));
            Ok(SaveItem { image, name })
        })
        .collect()
}

pub fn save<W: Write>(
    store: &Store,
    items: &[SaveItem],
    format: ArchiveFormat,
    out: W,
) -> Result<W> {
    match format {
        ArchiveFormat::Oci => save_oci(store, items, out),
        ArchiveFormat::Docker => save_docker(store, items, out),
    }
}

fn file_header(path: &str, size: u64) -> EntryHeader {
    let mut h = EntryHeader::new(path, EntryKind::Regular);
    h.size = size;
    h.mode = 0o644;
    h
}

fn append_bytes<W: Write>(tar: &mut TarBuilder<W>, path: &str, bytes: &[u8]) -> Result<()> {
    tar.append(&file_header(path, bytes.len() as u64), &mut &bytes[..])
        .map_err(io_err(format!("write {path} to archive")))
}

fn descriptor_digest(d: &Descriptor) -> Result<Digest> {
    Digest::try_from(d.digest()).map_err(|e| ExportError::BadArchive {
        archive: "store".into(),
        message: e.to_string(),
    })
}

/// Copies a blob out of the store through the verifying reader.
fn append_blob<W: Write>(
    store: &Store,
    tar: &mut TarBuilder<W>,
    path: &str,
    digest: &Digest,
    size: u64,
) -> Result<()> {
    let mut reader = store.open_blob_verified(digest, size)?;
    tar.append(&file_header(path, size), &mut reader)
        .map_err(io_err(format!("copy blob {digest} into archive")))
}

// ---- oci-archive -------------------------------------------------------------------------

fn save_oci<W: Write>(store: &Store, items: &[SaveItem], out: W) -> Result<W> {
    let mut blobs: BTreeMap<Digest, u64> = BTreeMap::new();
    let mut manifests = Vec::new();
    for item in items {
        for d in std::iter::once(item.image.target.clone())
            .chain(store.descriptors_of(&item.image.target)?)
        {
            blobs.insert(descriptor_digest(&d)?, d.size());
        }
        let mut entry = item.image.target.clone();
        let mut ann: HashMap<String, String> = HashMap::new();
        if let Some(name) = &item.name {
            ann.insert(ANNOTATION_REF_NAME.to_string(), name.to_string());
            ann.insert(ANNOTATION_CONTAINERD_NAME.to_string(), name.to_string());
        }
        entry.set_annotations(if ann.is_empty() { None } else { Some(ann) });
        manifests.push(entry);
    }
    let mut tar = TarBuilder::new(out);
    append_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    for (digest, size) in &blobs {
        append_blob(
            store,
            &mut tar,
            &format!("blobs/sha256/{}", digest.hex()),
            digest,
            *size,
        )?;
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": manifests,
    });
    append_bytes(&mut tar, "index.json", index.to_string().as_bytes())?;
    tar.finish().map_err(io_err("finish archive"))
}

// ---- docker-archive ----------------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

fn save_docker<W: Write>(store: &Store, items: &[SaveItem], out: W) -> Result<W> {
    let mut tar = TarBuilder::new(out);
    let mut written: BTreeSet<String> = BTreeSet::new();
    let mut entries: Vec<DockerManifestEntry> = Vec::new();
    for item in items {
        let image_name = item
            .name
            .as_ref()
            .map(|r| r.familiar())
            .unwrap_or_else(|| item.image.id.to_string());
        let m = &item.image.manifest;
        let config_desc = m.config();
        let config_digest = descriptor_digest(config_desc)?;
        let config_bytes = store.read_blob_verified(&config_digest, Some(config_desc.size()))?;
        let config =
            ImageConfig::from_slice(&config_bytes).map_err(|source| ExportError::Json {
                what: format!("config {config_digest} of {image_name}"),
                source,
            })?;
        if config.rootfs.diff_ids.len() != m.layers().len() {
            return Err(ExportError::BadArchive {
                archive: image_name,
                message: "config diff_ids and manifest layers differ in number".into(),
            });
        }
        let mut layer_names = Vec::new();
        for (layer, diff_id) in m.layers().iter().zip(&config.rootfs.diff_ids) {
            let name = format!("{}.tar", diff_id.hex());
            if written.insert(name.clone()) {
                append_uncompressed_layer(store, &mut tar, &name, layer, diff_id, &image_name)?;
            }
            layer_names.push(name);
        }
        let config_name = format!("{}.json", config_digest.hex());
        if written.insert(config_name.clone()) {
            append_bytes(&mut tar, &config_name, &config_bytes)?;
        }
        entries.push(DockerManifestEntry {
            config: config_name,
            repo_tags: item.name.iter().map(|r| r.familiar()).collect(),
            layers: layer_names,
        });
    }
    let manifest = serde_json::to_vec(&entries).map_err(|source| ExportError::Json {
        what: "manifest.json".into(),
        source,
    })?;
    append_bytes(&mut tar, "manifest.json", &manifest)?;
    tar.finish().map_err(io_err("finish archive"))
}

/// Docker archives hold uncompressed layers. A compressed blob is decompressed into a temp
/// file first (the tar header needs the size up front) and its diff_id checked on the way.
fn append_uncompressed_layer<W: Write>(
    store: &Store,
    tar: &mut TarBuilder<W>,
    name: &str,
    layer: &Descriptor,
    diff_id: &Digest,
    image: &str,
) -> Result<()> {
    let digest = descriptor_digest(layer)?;
    let media_type = layer.media_type().to_string();
    match media::layer_compression(&media_type) {
        Some(Compression::None) => append_blob(store, tar, name, &digest, layer.size()),
        Some(_) => {
            let reader = store.open_blob_verified(&digest, layer.size())?;
            // The store's own blobs were verified on the way in; the decoder still bounds
            // them in case the store directory was tampered with.
            let mut dec = kiln_archive::decompress(reader, &DecodeLimits::default())
                .map_err(io_err(format!("decompress layer {digest}")))?;
            let mut tmp =
                tempfile::tempfile_in(store.root()).map_err(io_err("create temp file in store"))?;
            let mut hashing = kiln_oci::Sha256Writer::new(&mut tmp);
            io::copy(&mut dec, &mut hashing)
                .map_err(io_err(format!("decompress layer {digest}")))?;
            let (_, actual, size) = hashing.finish();
            if &actual != diff_id {
                return Err(ExportError::StoredDiffIdMismatch {
                    image: image.to_string(),
                    digest,
                    expected: diff_id.clone(),
                    actual,
                });
            }
            tmp.rewind().map_err(io_err("rewind temp file"))?;
            let mut reader = (&mut tmp).take(size);
            tar.append(&file_header(name, size), &mut reader)
                .map_err(io_err(format!("copy layer {digest} into archive")))
        }
        None => Err(ExportError::UnsupportedLayer {
            image: image.to_string(),
            digest,
            media_type,
        }),
    }
}
