//! Reading an image out of an OCI image layout *directory* (`--build-context
//! NAME=oci-layout://DIR[:TAG|@DIGEST]`): the selected manifest (or index) and everything
//! it references are ingested into the store, each blob verified against its descriptor
//! (size and digest) as it is copied. Only digests ever become paths
//! (`DIR/blobs/<alg>/<hex>`), so names in the layout cannot point elsewhere.

use crate::error::{ExportError, Result};
use kiln_oci::media::{self, ManifestKind};
use kiln_oci::spec::{Descriptor, ImageIndex, ImageManifest};
use kiln_oci::Digest;
use kiln_store::{Lease, Store, ANNOTATION_REF_NAME};
use std::io::Read;
use std::path::Path;

/// index.json and manifests are read into memory up to this size.
const MAX_JSON: u64 = crate::load::MAX_METADATA_BYTES;
/// Manifests and indexes nest at most this deep.
const MAX_DEPTH: usize = 8;

/// Which image of the layout: `@digest`, `:tag` (the `org.opencontainers.image.ref.name`
/// annotation), or the default (`latest`, else the only image).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutSelector {
    Default,
    Tag(String),
    Digest(Digest),
}

/// Ingests the selected image of the layout at `dir` into `store` under `lease`; returns
/// its descriptor (a manifest or an index).
pub fn import_layout(
    store: &Store,
    lease: &Lease,
    dir: &Path,
    selector: &LayoutSelector,
) -> Result<Descriptor> {
    let name = format!("oci-layout://{}", dir.display());
    let bad = |message: String| ExportError::BadArchive {
        archive: name.clone(),
        message,
    };
    let index: ImageIndex = serde_json::from_slice(&read_small(&dir.join("index.json"), &name)?)
        .map_err(|e| bad(format!("index.json: {e}")))?;
    let tag_of = |d: &Descriptor| {
        d.annotations()
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_REF_NAME).cloned())
    };
    let manifests = index.manifests();
    let chosen = match selector {
        LayoutSelector::Digest(want) => manifests
            .iter()
            .find(|d| d.digest().as_ref() == want.to_string())
            .cloned()
            .ok_or_else(|| bad(format!("index.json lists no image {want}")))?,
        LayoutSelector::Tag(tag) => manifests
            .iter()
            .find(|d| tag_of(d).as_deref() == Some(tag.as_str()))
            .cloned()
            .ok_or_else(|| bad(format!("index.json has no image tagged {tag:?}")))?,
        LayoutSelector::Default => match manifests
            .iter()
            .find(|d| tag_of(d).as_deref() == Some("latest"))
        {
            Some(d) => d.clone(),
            None if manifests.len() == 1 => manifests[0].clone(),
            None => {
                return Err(bad(format!(
                    "index.json lists {} images and none is tagged \"latest\"; choose one with :TAG or @DIGEST",
                    manifests.len()
                )))
            }
        },
    };
    ingest_tree(store, lease, dir, &name, &chosen, 0)?;
    Ok(chosen)
}

fn read_small(path: &Path, name: &str) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).map_err(|source| ExportError::Io {
        what: format!("{name}: open {}", path.display()),
        source,
    })?;
    let mut out = Vec::new();
    f.take(MAX_JSON + 1)
        .read_to_end(&mut out)
        .map_err(|source| ExportError::Io {
            what: format!("{name}: read {}", path.display()),
            source,
        })?;
    if out.len() as u64 > MAX_JSON {
        return Err(ExportError::MetadataTooLarge {
            archive: name.to_string(),
            entry: path.display().to_string(),
            size: out.len() as u64,
            limit: MAX_JSON,
        });
    }
    Ok(out)
}

fn ingest_tree(
    store: &Store,
    lease: &Lease,
    dir: &Path,
    name: &str,
    desc: &Descriptor,
    depth: usize,
) -> Result<()> {
    let bad = |message: String| ExportError::BadArchive {
        archive: name.to_string(),
        message,
    };
    if depth > MAX_DEPTH {
        return Err(bad(format!(
            "manifests nest deeper than {MAX_DEPTH} levels"
        )));
    }
    let digest = ingest_blob(store, lease, dir, name, desc)?;
    match media::manifest_kind(desc.media_type().as_ref()) {
        Some(ManifestKind::Index) => {
            let idx: ImageIndex =
                serde_json::from_slice(&store.read_blob_verified(&digest, Some(desc.size()))?)
                    .map_err(|e| bad(format!("index {digest}: {e}")))?;
            for child in idx.manifests() {
                ingest_tree(store, lease, dir, name, child, depth + 1)?;
            }
        }
        Some(ManifestKind::Manifest) => {
            let m: ImageManifest =
                serde_json::from_slice(&store.read_blob_verified(&digest, Some(desc.size()))?)
                    .map_err(|e| bad(format!("manifest {digest}: {e}")))?;
            for d in std::iter::once(m.config()).chain(m.layers().iter()) {
                ingest_blob(store, lease, dir, name, d)?;
            }
        }
        None => {
            return Err(bad(format!(
                "{digest} has media type {:?}, not an image manifest or index",
                desc.media_type().to_string()
            )))
        }
    }
    Ok(())
}

/// Copies one blob into the store, verified against `desc`.
fn ingest_blob(
    store: &Store,
    lease: &Lease,
    dir: &Path,
    name: &str,
    desc: &Descriptor,
) -> Result<Digest> {
    let digest = Digest::try_from(desc.digest()).map_err(|e| ExportError::BadArchive {
        archive: name.to_string(),
        message: e.to_string(),
    })?;
    let path = dir
        .join("blobs")
        .join(digest.algorithm().as_str())
        .join(digest.hex());
    let f = std::fs::File::open(&path).map_err(|source| ExportError::Io {
        what: format!("{name}: blob {digest} ({})", path.display()),
        source,
    })?;
    store.ingest(Some(lease), f, Some((&digest, desc.size())))?;
    Ok(digest)
}
