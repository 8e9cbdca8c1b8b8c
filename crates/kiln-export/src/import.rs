//! `kiln import`: a root filesystem tarball becomes a one-layer image.
//!
//! The tarball is untrusted. It is not stored as given: each entry is parsed (within the
//! decode limits) and re-written by the deterministic tar writer, so the layer has clean
//! names, normalised headers and a known compression, and the same tarball always gives the
//! same layer digest.

use crate::error::{io_err, ExportError, Result};
use crate::image::{creation_time, rfc3339, write_image, Layer, WrittenImage};
use kiln_archive::{DecodeLimits, EntryHeader, EntryKind, LayerWriter, TarBuilder};
use kiln_oci::config::{host_platform, History};
use kiln_oci::media::{self, Compression};
use kiln_oci::ConfigChange;
use kiln_oci::{ImageConfig, Reference};
use kiln_store::Store;
use std::io::Read;
use std::path::Path;

pub struct ImportOptions {
    pub tags: Vec<Reference>,
    pub changes: Vec<ConfigChange>,
    pub message: Option<String>,
    pub compression: Compression,
    pub limits: DecodeLimits,
    /// Shown in the history's `created_by`, e.g. the file name.
    pub source_name: String,
}

pub fn import_rootfs<R: Read + Send>(
    store: &Store,
    reader: R,
    opts: &ImportOptions,
) -> Result<WrittenImage> {
    let lease = store.lease()?;
    let blob = store.blob_writer(Some(&lease))?;
    let layer_writer = LayerWriter::new(blob, opts.compression, None)
        .map_err(io_err("start layer compression"))?;
    let mut tar = TarBuilder::new(layer_writer);
    let mut failure: Option<ExportError> = None;
    let read = kiln_archive::read_entries(reader, &opts.limits, |h, data| {
        // Hardlink targets are names inside the rootfs too: written cleaned (no leading `/`),
        // and one that climbs out of the root is refused, like an entry name would be.
        let fixed;
        let h = match (h.kind, &h.link_name) {
            (EntryKind::Hardlink, Some(link)) => {
                let Some(target) = crate::load::clean(Path::new(link)) else {
                    failure = Some(ExportError::BadArchive {
                        archive: opts.source_name.clone(),
                        message: format!("hardlink {:?} points outside the root: {link:?}", h.path),
                    });
                    return Err(kiln_archive::Error::Malformed("import aborted".into()));
                };
                fixed = EntryHeader {
                    link_name: Some(target.into_os_string()),
                    ..h.clone()
                };
                &fixed
            }
            _ => h,
        };
        tar.append(h, data).map_err(|e| {
            failure = Some(ExportError::Io {
                what: format!("{}: re-write entry {:?}", opts.source_name, h.path),
                source: e,
            });
            kiln_archive::Error::Malformed("import aborted".into())
        })
    });
    if let Some(e) = failure {
        return Err(e);
    }
    read.map_err(|e| match e {
        kiln_archive::Error::Malformed(m) => ExportError::BadArchive {
            archive: opts.source_name.clone(),
            message: m,
        },
        other => ExportError::Archive(other),
    })?;
    let layer_writer = tar.finish().map_err(io_err("finish layer tar"))?;
    let (blob, digests) = layer_writer
        .finish()
        .map_err(io_err("finish layer compression"))?;
    let info = blob.commit(Some((&digests.digest, digests.size)))?;

    let created = rfc3339(creation_time());
    let (os, arch, variant) = host_platform();
    let mut config = ImageConfig {
        created: Some(created.clone()),
        architecture: arch.to_string(),
        os: os.to_string(),
        variant: variant.map(str::to_string),
        ..ImageConfig::default()
    };
    config.rootfs.diff_ids.push(digests.diff_id.clone());
    for change in &opts.changes {
        change.apply(&mut config);
    }
    config.history.push(History {
        created: Some(created),
        created_by: Some(format!("kiln import {}", opts.source_name)),
        comment: opts.message.clone(),
        ..History::default()
    });
    let layer = Layer {
        descriptor: info.descriptor(media::oci_layer_type(opts.compression)),
        diff_id: digests.diff_id,
    };
    write_image(store, &lease, &config, &[layer], &opts.tags)
}
