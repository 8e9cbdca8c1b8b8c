//! Several Store handles in threads behave like several kiln processes: flock locks belong
//! to open file descriptions, and every operation opens its own.
mod common;

use common::*;
use kiln_oci::spec::Descriptor;
use kiln_oci::{media, Digest, Reference};
use kiln_store::Store;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

const ROUNDS: u64 = 4;
const IMAGES_PER_IMPORTER: u64 = 6;
const BLOBS_PER_IMAGE: u64 = 5;

/// One importer: per image, a lease, N blobs (streamed, ingested with a known digest, or
/// put), a shared base layer both importers race to dedup, manifest, tag — then the lease
/// is dropped. Re-tagging the same names turns earlier images into garbage for prune.
fn importer(root: &Path, who: u64, round: u64) {
    let store = Store::open(root).unwrap();
    let base = bytes(round * 1_000_000, 4096); // identical for both importers
    for i in 0..IMAGES_PER_IMPORTER {
        let lease = store.lease().unwrap();
        let mut layers: Vec<Descriptor> = Vec::new();
        let d = Digest::of_bytes(&base);
        let info = store
            .ingest(Some(&lease), &base[..], Some((&d, base.len() as u64)))
            .unwrap();
        layers.push(info.descriptor(media::OCI_LAYER_TAR));
        for b in 0..BLOBS_PER_IMAGE {
            let data = bytes(
                round * 100_000 + who * 10_000 + i * 100 + b,
                2048 + b as usize,
            );
            let info = match b % 3 {
                0 => {
                    let mut w = store.blob_writer(Some(&lease)).unwrap();
                    for chunk in data.chunks(500) {
                        w.write_all(chunk).unwrap();
                    }
                    w.commit(None).unwrap()
                }
                1 => {
                    let d = Digest::of_bytes(&data);
                    store
                        .ingest(Some(&lease), &data[..], Some((&d, data.len() as u64)))
                        .unwrap()
                }
                _ => store.put_bytes(Some(&lease), &data).unwrap(),
            };
            layers.push(info.descriptor(media::OCI_LAYER_GZIP));
        }
        let cfg = config_json(&format!("{round}-{who}-{i}"));
        let m = write_manifest(&store, Some(&lease), &cfg, &layers);
        let tag = format!("importer{who}:v{}", i % 3);
        store.tag(&Reference::parse(&tag).unwrap(), &m).unwrap();
        drop(lease);
    }
}

#[test]
fn importers_racing_prune_never_lose_tagged_blobs() {
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        Store::open(&root).unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let pruner = {
            let root = root.clone();
            let done = done.clone();
            thread::spawn(move || {
                let store = Store::open(&root).unwrap();
                let mut runs = 0u32;
                let mut freed = 0u64;
                while !done.load(Ordering::SeqCst) || runs == 0 {
                    freed += store.prune().unwrap().blobs_removed;
                    runs += 1;
                    // While importing, tagged images must stay complete at every moment.
                    assert_images_complete(&store);
                }
                (runs, freed)
            })
        };
        let importers: Vec<_> = (0..2)
            .map(|who| {
                let root = root.clone();
                thread::spawn(move || importer(&root, who, round))
            })
            .collect();
        for h in importers {
            h.join().unwrap();
        }
        done.store(true, Ordering::SeqCst);
        let (runs, _freed) = pruner.join().unwrap();
        assert!(runs > 0);

        let store = Store::open(&root).unwrap();
        assert_eq!(store.index_entries().unwrap().len(), 6);
        assert_images_complete(&store);
        let report = store.fsck(false).unwrap();
        assert!(report.is_clean(), "round {round}: {report:?}");
        assert!(report.stray_temp_files.is_empty(), "{report:?}");
        // A final prune leaves exactly the tagged images' blobs.
        store.prune().unwrap();
        assert_images_complete(&store);
        assert!(store.fsck(false).unwrap().is_clean());
        assert!(files_in(&root.join("kiln/leases")).is_empty());
        assert!(tmp_files(&root).is_empty());
    }
}

#[test]
fn index_stays_valid_under_concurrent_tagging() {
    let (dir, store) = store();
    let (m, _) = make_image(&store, "base", "base", 1, 1);
    let root = dir.path().to_path_buf();
    let done = Arc::new(AtomicBool::new(false));
    // A lock-free reader must always see a complete, parseable index.json.
    let reader = {
        let root = root.clone();
        let done = done.clone();
        thread::spawn(move || {
            let store = Store::open(&root).unwrap();
            let mut reads = 0;
            while !done.load(Ordering::SeqCst) {
                store.read_index().unwrap();
                reads += 1;
            }
            reads
        })
    };
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let root = root.clone();
            let m = m.clone();
            thread::spawn(move || {
                let store = Store::open(&root).unwrap();
                for i in 0..25 {
                    let r = Reference::parse(&format!("t{t}/img:{i}")).unwrap();
                    store.tag(&r, &m).unwrap();
                    if i % 5 == 4 {
                        // Untag one of our own earlier tags, exercising read-modify-write.
                        store
                            .untag(&Reference::parse(&format!("t{t}/img:{}", i - 4)).unwrap())
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    assert!(reader.join().unwrap() > 0);
    let text = std::fs::read(root.join("index.json")).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
    // 1 base + 4 writers × (25 − 5 untagged)
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1 + 4 * 20);
    assert!(tmp_files(&root).is_empty());
}
