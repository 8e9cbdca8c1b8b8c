//! Test helpers: build small synthetic images directly through the store API.
#![allow(dead_code)]

use kiln_oci::spec::Descriptor;
use kiln_oci::{media, Digest, Reference};
use kiln_store::{host_platform, Lease, Store};
use serde_json::json;
use std::path::Path;

pub fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

/// Deterministic pseudo-random bytes (xorshift) so tests need no rand crate.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn config_json(label: &str) -> Vec<u8> {
    let p = host_platform();
    serde_json::to_vec(&json!({
        "created": "2024-05-01T12:00:00Z",
        "architecture": p.architecture().to_string(),
        "os": p.os().to_string(),
        "config": { "Labels": { "test": label } },
        "rootfs": { "type": "layers", "diff_ids": [] },
    }))
    .unwrap()
}

/// Writes config + manifest for `layers` (already stored) under `lease`; returns the
/// manifest descriptor.
pub fn write_manifest(
    store: &Store,
    lease: Option<&Lease>,
    config: &[u8],
    layers: &[Descriptor],
) -> Descriptor {
    let cfg = store.put_bytes(lease, config).unwrap();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": cfg.descriptor(media::OCI_CONFIG),
        "layers": layers,
    });
    store
        .put_json(lease, media::OCI_MANIFEST, &manifest)
        .unwrap()
}

/// A complete image: `n_layers` random layers, a config labelled `label`, tagged `tag`.
/// Returns (manifest descriptor, image id).
pub fn make_image(
    store: &Store,
    tag: &str,
    label: &str,
    seed: u64,
    n_layers: usize,
) -> (Descriptor, Digest) {
    let lease = store.lease().unwrap();
    let layers: Vec<Descriptor> = (0..n_layers)
        .map(|i| {
            store
                .put_bytes(Some(&lease), &bytes(seed * 100 + i as u64, 1000 + i * 10))
                .unwrap()
                .descriptor(media::OCI_LAYER_GZIP)
        })
        .collect();
    let config = config_json(label);
    let desc = write_manifest(store, Some(&lease), &config, &layers);
    store.tag(&Reference::parse(tag).unwrap(), &desc).unwrap();
    (desc, Digest::of_bytes(&config))
}

pub fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub fn blob_files(root: &Path) -> Vec<String> {
    files_in(&root.join("blobs/sha256"))
}

pub fn tmp_files(root: &Path) -> Vec<String> {
    files_in(&root.join("kiln/tmp"))
}

/// Every blob reachable from every tagged image is present and verifies.
pub fn assert_images_complete(store: &Store) {
    for entry in store.index_entries().unwrap() {
        for d in store.descriptors_of(&entry.descriptor).unwrap() {
            let digest = Digest::try_from(d.digest()).unwrap();
            let mut r = store.open_blob_verified(&digest, d.size()).unwrap();
            std::io::copy(&mut r, &mut std::io::sink())
                .unwrap_or_else(|e| panic!("{:?}: blob {digest}: {e}", entry.name));
        }
    }
}
