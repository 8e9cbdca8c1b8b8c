mod common;

use common::*;
use kiln_oci::Digest;
use kiln_store::StoreError;
use std::io::Write;

#[test]
fn layout_files_exist_and_are_valid() {
    let (dir, _store) = store();
    let layout = std::fs::read_to_string(dir.path().join("oci-layout")).unwrap();
    assert_eq!(layout, r#"{"imageLayoutVersion":"1.0.0"}"#);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert!(index["manifests"].as_array().unwrap().is_empty());
    // Re-opening must not clobber existing state.
    make_image(
        &kiln_store::Store::open(dir.path()).unwrap(),
        "a",
        "a",
        1,
        1,
    );
    let again = kiln_store::Store::open(dir.path()).unwrap();
    assert_eq!(again.index_entries().unwrap().len(), 1);
}

#[test]
fn put_bytes_dedups_and_reads_back_verified() {
    let (dir, store) = store();
    let a = store.put_bytes(None, b"hello").unwrap();
    let b = store.put_bytes(None, b"hello").unwrap();
    assert_eq!(a, b);
    assert_eq!(a.digest, Digest::of_bytes(b"hello"));
    assert_eq!(blob_files(dir.path()).len(), 1);
    assert!(store.has_blob(&a.digest));
    assert_eq!(store.blob_size(&a.digest).unwrap(), 5);
    assert_eq!(
        store.read_blob_verified(&a.digest, Some(5)).unwrap(),
        b"hello"
    );
    let usage = store.disk_usage().unwrap();
    assert_eq!((usage.blobs, usage.bytes), (1, 5));
    assert!(tmp_files(dir.path()).is_empty());
}

#[test]
fn writer_dropped_midway_leaves_nothing() {
    let (dir, store) = store();
    {
        let mut w = store.blob_writer(None).unwrap();
        w.write_all(&bytes(1, 100_000)).unwrap();
        assert_eq!(tmp_files(dir.path()).len(), 1, "in-flight temp file exists");
        // dropped without commit, e.g. the source failed
    }
    assert!(blob_files(dir.path()).is_empty());
    assert!(tmp_files(dir.path()).is_empty());
    store.prune().unwrap();
    assert!(blob_files(dir.path()).is_empty());
    assert!(tmp_files(dir.path()).is_empty());
}

#[test]
fn mismatching_blob_is_refused_without_leftovers() {
    let (dir, store) = store();
    let data = bytes(2, 50_000);
    let other = Digest::of_bytes(b"something else");

    // streaming writer: wrong digest, right size
    let mut w = store.blob_writer(None).unwrap();
    w.write_all(&data).unwrap();
    let err = w.commit(Some((&other, data.len() as u64))).unwrap_err();
    assert!(
        matches!(err, StoreError::BlobRejected { .. }),
        "unexpected {err}"
    );
    assert!(err.to_string().contains(&other.to_string()), "{err}");

    // ingest: right digest, declared size too small / too large, wrong content
    let good = Digest::of_bytes(&data);
    for (digest, size) in [
        (&good, data.len() as u64 - 1),
        (&good, data.len() as u64 + 1),
        (&other, data.len() as u64),
    ] {
        let err = store
            .ingest(None, &data[..], Some((digest, size)))
            .unwrap_err();
        assert!(matches!(err, StoreError::BlobRejected { .. }), "{err}");
    }
    assert!(blob_files(dir.path()).is_empty(), "no partial blob");
    assert!(tmp_files(dir.path()).is_empty(), "no temp file");
    assert!(!store.has_blob(&good));

    // and the correct declaration is accepted
    let info = store
        .ingest(None, &data[..], Some((&good, data.len() as u64)))
        .unwrap();
    assert_eq!(info.digest, good);
    assert_eq!(blob_files(dir.path()), vec![good.hex().to_string()]);
}

#[test]
fn missing_blob_error_names_digest() {
    let (_dir, store) = store();
    let d = Digest::of_bytes(b"nope");
    let err = store.open_blob(&d).unwrap_err();
    assert!(err.is_not_found());
    assert!(err.to_string().contains(&d.to_string()));
}

#[test]
fn corrupt_blob_read_is_refused() {
    let (_dir, store) = store();
    let info = store.put_bytes(None, b"content").unwrap();
    std::fs::write(store.blob_path(&info.digest), b"CONTENT").unwrap();
    let err = store.read_blob_verified(&info.digest, Some(7)).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}
