mod common;

use common::*;
use kiln_oci::{Digest, Reference};
use std::time::{Duration, SystemTime};

#[test]
fn prune_keeps_tagged_and_leased_removes_rest() {
    let (dir, store) = store();
    let (_m, _id) = make_image(&store, "keep", "keep", 1, 3);
    let garbage = store.put_bytes(None, b"garbage").unwrap();
    let lease = store.lease().unwrap();
    let leased = store.put_bytes(Some(&lease), b"leased").unwrap();

    let report = store.prune().unwrap();
    assert_eq!(report.blobs_removed, 1);
    assert_eq!(report.bytes_freed, 7);
    assert!(!store.has_blob(&garbage.digest));
    assert!(store.has_blob(&leased.digest));
    assert_images_complete(&store);

    drop(lease);
    let report = store.prune().unwrap();
    assert_eq!(report.blobs_removed, 1);
    assert!(!store.has_blob(&leased.digest));
    // 3 layers + config + manifest remain
    assert_eq!(blob_files(dir.path()).len(), 5);
    assert!(files_in(&dir.path().join("kiln/leases")).is_empty());
}

#[test]
fn untagged_image_is_collected() {
    let (dir, store) = store();
    make_image(&store, "a", "a", 1, 2);
    store.untag(&Reference::parse("a").unwrap()).unwrap();
    let report = store.prune().unwrap();
    assert_eq!(report.blobs_removed, 4);
    assert!(blob_files(dir.path()).is_empty());
}

#[test]
fn leased_manifest_protects_its_children() {
    let (_dir, store) = store();
    let (m, _) = make_image(&store, "a", "a", 1, 2);
    let lease = store.lease().unwrap();
    let digest = Digest::try_from(m.digest()).unwrap();
    assert!(store.protect(&lease, &digest).unwrap());
    store.untag(&Reference::parse("a").unwrap()).unwrap();
    assert_eq!(store.prune().unwrap().blobs_removed, 0);
    drop(lease);
    assert_eq!(store.prune().unwrap().blobs_removed, 4);
}

#[test]
fn stale_lease_and_old_temp_files_are_removed() {
    let (dir, store) = store();
    let blob = store.put_bytes(None, b"orphan").unwrap();
    // A lease file nobody holds a lock on: its writer died.
    std::fs::write(
        dir.path().join("kiln/leases/lease-dead"),
        format!("{}\n", blob.digest),
    )
    .unwrap();
    let old = dir.path().join("kiln/tmp/blob-dead");
    std::fs::write(&old, b"partial").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    let young = dir.path().join("kiln/tmp/blob-young");
    std::fs::write(&young, b"partial").unwrap();

    let report = store.prune().unwrap();
    assert_eq!(report.stale_leases_removed, 1);
    assert_eq!(report.blobs_removed, 1);
    assert_eq!(report.temp_files_removed, 1);
    assert!(!old.exists());
    assert!(young.exists(), "temp files younger than an hour are kept");
}

#[test]
fn live_temp_file_is_not_stray() {
    let (dir, store) = store();
    let _w = store.blob_writer(None).unwrap();
    let report = store.fsck(false).unwrap();
    assert!(report.stray_temp_files.is_empty());
    std::fs::write(dir.path().join("kiln/tmp/blob-crashed"), b"x").unwrap();
    let report = store.fsck(false).unwrap();
    assert_eq!(report.stray_temp_files.len(), 1);
}
