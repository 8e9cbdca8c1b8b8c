//! Assembling a new image (config + manifest) from layers already in the store.

use crate::error::{ExportError, Result};
use kiln_oci::media;
use kiln_oci::spec::{Descriptor, ImageManifest, ImageManifestBuilder, MediaType};
use kiln_oci::{Digest, ImageConfig, Reference};
use kiln_store::{Lease, Store};

/// A layer blob in the store together with its uncompressed digest.
#[derive(Debug, Clone)]
pub struct Layer {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
}

/// The result of writing an image.
#[derive(Debug, Clone)]
pub struct WrittenImage {
    pub manifest: Descriptor,
    /// The config digest: what `kiln images` shows as IMAGE ID.
    pub id: Digest,
}

/// Writes `config` (its `rootfs.diff_ids` must already list `layers`) and an OCI manifest
/// into the store under `lease`, then points every tag at it.
pub fn write_image(
    store: &Store,
    lease: &Lease,
    config: &ImageConfig,
    layers: &[Layer],
    tags: &[Reference],
) -> Result<WrittenImage> {
    debug_assert_eq!(
        config.rootfs.diff_ids,
        layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()
    );
    let config_bytes = config.to_bytes();
    let config_blob = store.put_bytes(Some(lease), &config_bytes)?;
    let manifest = manifest_for(
        config_blob.descriptor(media::OCI_CONFIG),
        layers.iter().map(|l| l.descriptor.clone()).collect(),
    );
    let manifest_desc = put_manifest(store, lease, &manifest)?;
    for t in tags {
        store.tag(t, &manifest_desc)?;
    }
    Ok(WrittenImage {
        manifest: manifest_desc,
        id: config_blob.digest,
    })
}

pub(crate) fn manifest_for(config: Descriptor, layers: Vec<Descriptor>) -> ImageManifest {
    ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(layers)
        .build()
        .expect("all required manifest fields are set")
}

pub(crate) fn put_manifest(store: &Store, lease: &Lease, m: &ImageManifest) -> Result<Descriptor> {
    let bytes = serde_json::to_vec(m).map_err(|source| ExportError::Json {
        what: "new image manifest".into(),
        source,
    })?;
    Ok(store
        .put_bytes(Some(lease), &bytes)?
        .descriptor(media::OCI_MANIFEST))
}

/// An RFC 3339 time in UTC, as image configs and history record it.
pub fn rfc3339(unix_seconds: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix_seconds)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// Seconds since the epoch: `SOURCE_DATE_EPOCH` when set (reproducible builds), else now.
pub fn creation_time() -> i64 {
    if let Some(v) = std::env::var_os("SOURCE_DATE_EPOCH") {
        if let Some(n) = v.to_str().and_then(|s| s.trim().parse::<i64>().ok()) {
            return n;
        }
    }
    time::OffsetDateTime::now_utc().unix_timestamp()
}
