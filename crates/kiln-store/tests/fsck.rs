mod common;

use common::*;
use kiln_oci::Digest;

#[test]
fn clean_store_is_clean() {
    let (_dir, store) = store();
    make_image(&store, "a", "a", 1, 3);
    let report = store.fsck(false).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.blobs_checked, 5);
}

#[test]
fn detects_and_removes_flipped_byte() {
    let (_dir, store) = store();
    let (m, _) = make_image(&store, "a", "a", 1, 2);
    let manifest = store.manifest(&m).unwrap();
    let layer = Digest::try_from(manifest.layers()[1].digest()).unwrap();
    let path = store.blob_path(&layer);
    let mut data = std::fs::read(&path).unwrap();
    data[17] ^= 0x01;
    std::fs::write(&path, &data).unwrap();

    let report = store.fsck(false).unwrap();
    assert!(!report.is_clean());
    assert_eq!(report.corrupt.len(), 1);
    assert_eq!(report.corrupt[0].digest, layer);
    assert_eq!(report.corrupt[0].actual, Digest::of_bytes(&data));
    assert!(!report.corrupt[0].removed);
    assert!(path.exists(), "without the flag nothing is removed");

    let report = store.fsck(true).unwrap();
    assert!(report.corrupt[0].removed);
    assert!(!path.exists());
    // The image now misses that layer, and fsck says who referenced it.
    assert_eq!(report.missing.len(), 1);
    assert_eq!(report.missing[0].digest, layer);
    assert_eq!(report.missing[0].referenced_by, m.digest().to_string());

    let report = store.fsck(false).unwrap();
    assert!(report.corrupt.is_empty());
    assert_eq!(report.missing.len(), 1);
}

#[test]
fn invalid_index_json_is_reported() {
    let (dir, store) = store();
    std::fs::write(dir.path().join("index.json"), b"{ not json").unwrap();
    let report = store.fsck(false).unwrap();
    let err = report.index_error.unwrap();
    assert!(err.contains("index.json"), "{err}");
    // prune must refuse rather than free everything
    assert!(store.prune().is_err());
}

#[test]
fn odd_names_in_blobs_are_reported() {
    let (dir, store) = store();
    std::fs::write(dir.path().join("blobs/sha256/not-a-digest"), b"x").unwrap();
    let report = store.fsck(false).unwrap();
    assert_eq!(report.invalid_blob_names.len(), 1);
    assert!(report.is_clean());
}
