//! Round trips through a real store and a local directory, and the ways a cache can lie.

use crate::format::{CacheConfig, ARTIFACT_TYPE, CONFIG_MEDIA_TYPE};
use crate::*;
use kiln_oci::Digest;
use kiln_store::Store;
use std::path::Path;

const SCHEME: &str = "test-scheme/1";

struct World {
    _dir: tempfile::TempDir,
    store: Store,
    lease: kiln_store::Lease,
    cache_dir: std::path::PathBuf,
    base: std::path::PathBuf,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let lease = store.lease().unwrap();
    World {
        cache_dir: dir.path().join("cache"),
        base: dir.path().to_path_buf(),
        _dir: dir,
        store,
        lease,
    }
}

/// A gzip layer holding one file, committed to the store.
fn layer(w: &World, name: &str, content: &str) -> ExportLayer {
    let tree = w.base.join(format!("tree-{name}"));
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join(name), content).unwrap();
    let root = kiln_fs::SafeRoot::open(&tree).unwrap();
    let bw = w.store.blob_writer(Some(&w.lease)).unwrap();
    let (bw, d) = kiln_archive::write_layer(
        &root,
        bw,
        &kiln_archive::WriteOptions::default(),
        kiln_archive::Compression::Gzip,
        None,
    )
    .unwrap();
    let info = bw.commit(None).unwrap();
    ExportLayer {
        descriptor: info.descriptor(kiln_oci::media::OCI_LAYER_GZIP),
        diff_id: d.diff_id,
    }
}

fn record(key: &str, layers: Vec<ExportLayer>, parents: Vec<Digest>) -> ExportRecord {
    let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
    ExportRecord {
        key: Digest::of_bytes(key.as_bytes()),
        description: key.to_string(),
        chain_id: chain(&diff_ids),
        layers,
        parents,
        exec_seconds: 0.5,
    }
}

/// The OCI chain id (computed here independently of kiln-snapshot).
fn chain(diff_ids: &[Digest]) -> Option<Digest> {
    let mut it = diff_ids.iter();
    let mut c = it.next()?.clone();
    for d in it {
        c = Digest::of_bytes(format!("{c} {d}").as_bytes());
    }
    Some(c)
}

fn export_two(w: &World) -> (ExportRecord, ExportRecord) {
    let a = record("a", vec![layer(w, "a", "alpha")], vec![]);
    let b = record("b", vec![layer(w, "b", "beta")], vec![a.key.clone()]);
    let sink = LocalDir::new(&w.cache_dir);
    let r = export(
        &w.store,
        &w.lease,
        &sink,
        SCHEME,
        "max",
        &[a.clone(), b.clone()],
        &[],
    )
    .unwrap();
    assert_eq!(
        (r.records, r.blobs_sent),
        (2, 3),
        "two layers and the config"
    );
    (a, b)
}

fn load(dir: &Path) -> ImportedCache {
    ImportedCache::load(
        Box::new(LocalDir::new(dir)),
        SCHEME,
        ImportLimits::default(),
    )
    .unwrap()
    .expect("a cache")
}

fn fresh_store() -> (tempfile::TempDir, Store, kiln_store::Lease) {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path()).unwrap();
    let l = s.lease().unwrap();
    (d, s, l)
}

fn blob_path(dir: &Path, d: &kiln_oci::spec::Descriptor) -> std::path::PathBuf {
    dir.join("blobs/sha256")
        .join(d.digest().as_ref().strip_prefix("sha256:").unwrap())
}

#[test]
fn export_then_import_round_trips_and_fetches_verified() {
    let w = world();
    let (a, b) = export_two(&w);
    let c = load(&w.cache_dir);
    assert_eq!(c.len(), 2);
    assert_eq!(c.dropped(), 0);
    let got = c.get(&b.key).unwrap();
    assert_eq!(got.layers[0].descriptor, b.layers[0].descriptor);
    assert_eq!(got.layers[0].diff_id, b.layers[0].diff_id);
    assert_eq!(got.chain_id, b.chain_id);
    assert!(c.get(&Digest::of_bytes(b"nope")).is_none());

    let (_d, store, lease) = fresh_store();
    let l = &c.get(&a.key).unwrap().layers[0];
    assert_eq!(
        c.fetch_layer(&store, &lease, l).unwrap(),
        Fetched::Copied(l.descriptor.size())
    );
    let digest = Digest::parse(l.descriptor.digest().as_ref()).unwrap();
    assert!(store.has_blob(&digest));
    assert_eq!(c.fetch_layer(&store, &lease, l).unwrap(), Fetched::Present);
    assert!(store.fsck(false).unwrap().is_clean());
}

#[test]
fn the_layout_is_an_oci_layout_with_one_named_artifact() {
    let w = world();
    export_two(&w);
    let layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.cache_dir.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.cache_dir.join("index.json")).unwrap()).unwrap();
    let m = &index["manifests"][0];
    assert_eq!(m["artifactType"], ARTIFACT_TYPE);
    let hex = m["digest"]
        .as_str()
        .unwrap()
        .strip_prefix("sha256:")
        .unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.cache_dir.join("blobs/sha256").join(hex)).unwrap())
            .unwrap();
    assert_eq!(manifest["config"]["mediaType"], CONFIG_MEDIA_TYPE);
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 2);
}

#[test]
fn a_flipped_byte_is_refused_and_nothing_is_committed() {
    let w = world();
    let (a, _) = export_two(&w);
    let p = blob_path(&w.cache_dir, &a.layers[0].descriptor);
    let mut bytes = std::fs::read(&p).unwrap();
    let i = bytes.len() - 10; // inside the gzip trailer's CRC/size: decodes badly or not at all
    bytes[i] ^= 1;
    std::fs::write(&p, bytes).unwrap();
    let c = load(&w.cache_dir);
    let (_d, store, lease) = fresh_store();
    let l = &c.get(&a.key).unwrap().layers[0];
    let e = c.fetch_layer(&store, &lease, l).unwrap_err();
    // The gzip CRC catches it while decoding, or the digest at the end.
    assert!(
        matches!(e, Error::BlobVerify { .. } | Error::Decode { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("is corrupt"), "{e}");
    let digest = Digest::parse(l.descriptor.digest().as_ref()).unwrap();
    assert!(!store.has_blob(&digest));
    let leftovers = std::fs::read_dir(store.root().join("kiln/tmp"))
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("lease")
        })
        .count();
    assert_eq!(leftovers, 0, "no temp file left");
}

#[test]
fn a_record_lying_about_the_diff_id_is_refused_even_for_a_present_blob() {
    let w = world();
    let (a, b) = export_two(&w);
    let c = load(&w.cache_dir);
    let (_d, store, lease) = fresh_store();
    // a's blob with b's diff id: a record that claims another layer's content.
    let lie = ImportedLayer {
        descriptor: c.get(&a.key).unwrap().layers[0].descriptor.clone(),
        diff_id: b.layers[0].diff_id.clone(),
    };
    let e = c.fetch_layer(&store, &lease, &lie).unwrap_err();
    assert!(matches!(e, Error::DiffIdMismatch { .. }), "{e}");
    let digest = Digest::parse(lie.descriptor.digest().as_ref()).unwrap();
    assert!(!store.has_blob(&digest), "nothing committed");
    // Once the blob is in the store legitimately, the lie is still caught.
    c.fetch_layer(&store, &lease, &c.get(&a.key).unwrap().layers[0])
        .unwrap();
    let e = c.fetch_layer(&store, &lease, &lie).unwrap_err();
    assert!(matches!(e, Error::DiffIdMismatch { .. }), "{e}");
}

/// Rewrites the config blob and the manifest (as a forger would) with `edit`.
fn forge(dir: &Path, edit: impl FnOnce(&mut CacheConfig)) {
    forge_with(dir, |c, _| edit(c))
}

fn forge_with(dir: &Path, edit: impl FnOnce(&mut CacheConfig, &mut serde_json::Value)) {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let blob = |d: &str| {
        dir.join("blobs/sha256")
            .join(d.strip_prefix("sha256:").unwrap())
    };
    let mdig = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&mdig)).unwrap()).unwrap();
    let cdig = manifest["config"]["digest"].as_str().unwrap().to_string();
    let mut config: CacheConfig =
        serde_json::from_slice(&std::fs::read(blob(&cdig)).unwrap()).unwrap();
    edit(&mut config, &mut manifest);
    let bytes = serde_json::to_vec(&config).unwrap();
    let d = Digest::of_bytes(&bytes);
    std::fs::write(blob(&d.to_string()), &bytes).unwrap();
    manifest["config"]["digest"] = d.to_string().into();
    manifest["config"]["size"] = bytes.len().into();
    let sink = LocalDir::new(dir);
    sink.put_manifest(
        &serde_json::to_vec(&manifest).unwrap(),
        kiln_oci::media::OCI_MANIFEST,
    )
    .unwrap();
}

#[test]
fn records_naming_unlisted_blobs_or_broken_links_are_dropped() {
    let w = world();
    let (a, b) = export_two(&w);
    forge(&w.cache_dir, |c| {
        c.records[0].layers[0].digest = Digest::of_bytes(b"not in the manifest");
        c.records[1].parents = vec![7];
    });
    let c = load(&w.cache_dir);
    assert_eq!(c.len(), 0);
    assert_eq!(c.dropped(), 2);
    assert!(c.get(&a.key).is_none() && c.get(&b.key).is_none());
}

#[test]
fn another_key_scheme_loads_empty() {
    let w = world();
    export_two(&w);
    let c = ImportedCache::load(
        Box::new(LocalDir::new(&w.cache_dir)),
        "other-scheme/9",
        ImportLimits::default(),
    )
    .unwrap()
    .unwrap();
    assert!(c.is_empty());
    assert_eq!(c.dropped(), 2);
}

#[test]
fn limits_and_damage_are_named() {
    let w = world();
    export_two(&w);
    let limits = ImportLimits {
        max_manifest_bytes: 64,
        ..ImportLimits::default()
    };
    let e = ImportedCache::load(Box::new(LocalDir::new(&w.cache_dir)), SCHEME, limits).unwrap_err();
    assert!(e.to_string().contains("max-manifest-size"), "{e}");
    let limits = ImportLimits {
        max_config_bytes: 10,
        ..ImportLimits::default()
    };
    let e = ImportedCache::load(Box::new(LocalDir::new(&w.cache_dir)), SCHEME, limits).unwrap_err();
    assert!(e.to_string().contains("max-config-size"), "{e}");

    // A config blob whose bytes do not match the manifest's digest.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.cache_dir.join("index.json")).unwrap()).unwrap();
    let blob = |d: &str| {
        w.cache_dir
            .join("blobs/sha256")
            .join(d.strip_prefix("sha256:").unwrap())
    };
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let cfg = blob(manifest["config"]["digest"].as_str().unwrap());
    let mut bytes = std::fs::read(&cfg).unwrap();
    bytes[5] ^= 1;
    std::fs::write(&cfg, bytes).unwrap();
    let e = ImportedCache::load(
        Box::new(LocalDir::new(&w.cache_dir)),
        SCHEME,
        ImportLimits::default(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::BlobVerify { .. }), "{e}");
}

#[test]
fn no_cache_yet_is_none_and_a_foreign_layout_is_malformed() {
    let w = world();
    let r = ImportedCache::load(
        Box::new(LocalDir::new(w.base.join("missing"))),
        SCHEME,
        ImportLimits::default(),
    )
    .unwrap();
    assert!(r.is_none());
    let dir = w.base.join("foreign");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("index.json"),
        br#"{"schemaVersion":2,"manifests":[]}"#,
    )
    .unwrap();
    let e = ImportedCache::load(
        Box::new(LocalDir::new(&dir)),
        SCHEME,
        ImportLimits::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("not a kiln cache"), "{e}");
}

#[test]
fn cache_mounts_round_trip() {
    let w = world();
    let mount_dir = w.base.join("mount");
    std::fs::create_dir_all(mount_dir.join("pkgs")).unwrap();
    std::fs::write(mount_dir.join("pkgs/index"), "packages").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&mount_dir, std::fs::Permissions::from_mode(0o750)).unwrap();
    let hash = Digest::of_bytes(b"pkgs");
    let sink = LocalDir::new(&w.cache_dir);
    let r = export(
        &w.store,
        &w.lease,
        &sink,
        SCHEME,
        "min",
        &[],
        &[ExportMount {
            id_hash: hash.clone(),
            dir: mount_dir,
            id_map: None,
        }],
    )
    .unwrap();
    assert_eq!(r.mounts, 1);
    let c = load(&w.cache_dir);
    let m = c.mount(&hash).expect("mount exported");
    let dest = w.base.join("restored/dir");
    assert!(c.restore_mount(m, &dest, None).unwrap());
    assert_eq!(
        std::fs::read_to_string(dest.join("pkgs/index")).unwrap(),
        "packages"
    );
    assert_eq!(
        std::fs::metadata(&dest).unwrap().permissions().mode() & 0o7777,
        0o750
    );
    // A directory that has content is left alone.
    std::fs::write(dest.join("mine"), "x").unwrap();
    assert!(!c.restore_mount(m, &dest, None).unwrap());
    assert!(dest.join("mine").exists());
    let stray = std::fs::read_dir(w.base.join("restored"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name() != "dir")
        .count();
    assert_eq!(stray, 0, "no temp dir left");
}

/// A cache mount tar carrying a block device node: restored without it (the directory is
/// bind-mounted into RUN steps).
#[test]
fn restored_cache_mounts_never_get_device_nodes() {
    use kiln_archive::{EntryHeader, EntryKind, TarBuilder};
    use std::io::Write;
    let w = world();
    export_two(&w);
    let mut tar = TarBuilder::new(Vec::new());
    let mut f = EntryHeader::new("pkg", EntryKind::Regular);
    f.size = 2;
    tar.append(&f, &mut &b"ok"[..]).unwrap();
    let mut dev = EntryHeader::new("disk", EntryKind::BlockDevice);
    (dev.dev_major, dev.dev_minor, dev.mode) = (8, 0, 0o666);
    tar.append(&dev, &mut std::io::empty()).unwrap();
    let mut gz = kiln_archive::compress(Vec::new(), kiln_archive::Compression::Gzip, None).unwrap();
    gz.write_all(&tar.finish().unwrap()).unwrap();
    let blob = gz.finish().unwrap();
    let digest = Digest::of_bytes(&blob);
    std::fs::write(w.cache_dir.join("blobs/sha256").join(digest.hex()), &blob).unwrap();
    let hash = Digest::of_bytes(b"apt");
    forge_with(&w.cache_dir, |c, m| {
        c.mounts = vec![crate::format::MountEntry {
            id_hash: hash.clone(),
            digest: digest.clone(),
            mode: 0o755,
            uid: 0,
            gid: 0,
        }];
        m["layers"].as_array_mut().unwrap().push(serde_json::json!({
            "mediaType": kiln_oci::media::OCI_LAYER_GZIP,
            "digest": digest.to_string(),
            "size": blob.len(),
        }));
    });
    let c = load(&w.cache_dir);
    let dest = w.base.join("apt");
    assert!(c
        .restore_mount(c.mount(&hash).unwrap(), &dest, None)
        .unwrap());
    assert_eq!(std::fs::read(dest.join("pkg")).unwrap(), b"ok");
    assert!(
        std::fs::symlink_metadata(dest.join("disk")).is_err(),
        "device node restored"
    );
}

/// A blob file replaced by another valid layer decodes fine; its digest gives it away.
#[test]
fn a_swapped_blob_is_refused_by_digest() {
    let w = world();
    let (a, b) = export_two(&w);
    std::fs::copy(
        blob_path(&w.cache_dir, &b.layers[0].descriptor),
        blob_path(&w.cache_dir, &a.layers[0].descriptor),
    )
    .unwrap();
    let c = load(&w.cache_dir);
    let (_d, store, lease) = fresh_store();
    let l = &c.get(&a.key).unwrap().layers[0];
    let e = c.fetch_layer(&store, &lease, l).unwrap_err();
    assert!(matches!(e, Error::BlobVerify { .. }), "{e}");
    let digest = Digest::parse(l.descriptor.digest().as_ref()).unwrap();
    assert!(!store.has_blob(&digest));
    assert!(store.fsck(false).unwrap().is_clean());
}

/// A local directory that records how many blob writes overlap and can fail one blob.
struct Watched {
    inner: LocalDir,
    jobs: usize,
    in_flight: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
    fail: Vec<Digest>,
}

impl CacheSink for Watched {
    fn name(&self) -> &str {
        CacheSink::name(&self.inner)
    }
    fn jobs(&self) -> usize {
        self.jobs
    }
    fn has_blob(&self, digest: &Digest, size: u64) -> Result<bool, Error> {
        CacheSink::has_blob(&self.inner, digest, size)
    }
    fn put_blob(&self, desc: &Descriptor, reader: &mut dyn std::io::Read) -> Result<(), Error> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.peak.fetch_max(now, SeqCst);
        // Long enough for the other workers to start theirs.
        std::thread::sleep(std::time::Duration::from_millis(30));
        let d = Digest::parse(desc.digest().as_ref()).unwrap();
        let r = if self.fail.contains(&d) {
            Err(Error::malformed(self.name(), format!("refused {d}")))
        } else {
            self.inner.put_blob(desc, reader)
        };
        self.in_flight.fetch_sub(1, SeqCst);
        r
    }
    fn put_manifest(&self, bytes: &[u8], media_type: &str) -> Result<(), Error> {
        assert_eq!(self.in_flight.load(std::sync::atomic::Ordering::SeqCst), 0);
        self.inner.put_manifest(bytes, media_type)
    }
}

use kiln_oci::spec::Descriptor;

fn watched(w: &World, jobs: usize, fail: Vec<Digest>) -> Watched {
    Watched {
        inner: LocalDir::new(&w.cache_dir),
        jobs,
        in_flight: Default::default(),
        peak: Default::default(),
        fail,
    }
}

/// Blobs go several at a time but never more than the sink's `jobs`; the manifest (same
/// bytes whatever the parallelism) is written after all of them.
#[test]
fn export_sends_blobs_in_parallel_bounded_by_jobs() {
    let w = world();
    let records: Vec<ExportRecord> = (0..10)
        .map(|i| {
            record(
                &format!("r{i}"),
                vec![layer(&w, &format!("f{i}"), &format!("content {i}"))],
                vec![],
            )
        })
        .collect();
    let sink = watched(&w, 3, vec![]);
    let r = export(&w.store, &w.lease, &sink, SCHEME, "max", &records, &[]).unwrap();
    assert_eq!((r.blobs_sent, r.blobs_present), (11, 0));
    let peak = sink.peak.load(std::sync::atomic::Ordering::SeqCst);
    assert!((2..=3).contains(&peak), "peak {peak} blob writes at once");
    let c = load(&w.cache_dir);
    for rec in &records {
        assert!(c.get(&rec.key).is_some());
    }

    let mut one = watched(&w, 1, vec![]);
    one.inner = LocalDir::new(w.base.join("sequential"));
    let r1 = export(&w.store, &w.lease, &one, SCHEME, "max", &records, &[]).unwrap();
    assert_eq!(one.peak.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(r1.manifest, r.manifest, "the same manifest sent one by one");
}

/// With several blobs failing, the error names the earliest of them in manifest order
/// (whichever failed first in time), and no manifest is published.
#[test]
fn parallel_export_failure_reports_the_earliest_blob_and_publishes_nothing() {
    let w = world();
    let records: Vec<ExportRecord> = (0..8)
        .map(|i| {
            record(
                &format!("r{i}"),
                vec![layer(&w, &format!("f{i}"), &format!("content {i}"))],
                vec![],
            )
        })
        .collect();
    let digest =
        |i: usize| Digest::parse(records[i].layers[0].descriptor.digest().as_ref()).unwrap();
    let sink = watched(&w, 4, vec![digest(1), digest(2), digest(3)]);
    let e = export(&w.store, &w.lease, &sink, SCHEME, "max", &records, &[]).unwrap_err();
    assert!(
        e.to_string().contains(&format!("refused {}", digest(1))),
        "{e}"
    );
    assert!(!w.cache_dir.join("index.json").exists());
}

/// Exports one generation (one record with one layer) to `dir` with a sink of its own,
/// as each build does; returns the report and the blobs it wrote.
fn export_generation(w: &World, dir: &Path, name: &str) -> (ExportReport, Vec<Digest>) {
    let rec = record(name, vec![layer(w, name, name)], vec![]);
    let sink = LocalDir::new(dir);
    let r = export(
        &w.store,
        &w.lease,
        &sink,
        SCHEME,
        "max",
        std::slice::from_ref(&rec),
        &[],
    )
    .unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let m = Digest::parse(index["manifests"][0]["digest"].as_str().unwrap()).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("blobs/sha256").join(m.hex())).unwrap())
            .unwrap();
    let config = Digest::parse(manifest["config"]["digest"].as_str().unwrap()).unwrap();
    let layer = Digest::parse(rec.layers[0].descriptor.digest().as_ref()).unwrap();
    (r, vec![m, config, layer])
}

fn blob_files(dir: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect()
}

/// The local directory keeps the current and the previous export: a third export removes
/// the first one's blobs (manifest, config, layer) and stale temp files, and leaves alone
/// what is not a blob kiln wrote (other names, a link named like a digest, its target).
#[test]
fn local_export_collects_blobs_no_longer_referenced() {
    use std::os::unix::fs::symlink;
    let w = world();
    let dir = w.base.join("gc-cache");
    let (r1, g1) = export_generation(&w, &dir, "one");
    assert_eq!(r1.blobs_removed, 0);
    let sha = dir.join("blobs/sha256");
    std::fs::write(sha.join("README"), "not a blob").unwrap();
    std::fs::write(sha.join(".tmp-1-2-3"), "a crashed export's temp").unwrap();
    let victim = w.base.join("victim");
    std::fs::write(&victim, "outside").unwrap();
    let linked = Digest::of_bytes(b"linked");
    symlink(&victim, sha.join(linked.hex())).unwrap();

    let (r2, g2) = export_generation(&w, &dir, "two");
    assert_eq!(r2.blobs_removed, 0, "the previous export is kept");
    assert!(g1.iter().all(|d| sha.join(d.hex()).exists()));
    assert!(!sha.join(".tmp-1-2-3").exists(), "stale temp removed");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let names: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(names, ["kiln-cache", "kiln-cache-previous"]);
    assert_eq!(index["manifests"][1]["digest"], g1[0].to_string());

    let (r3, g3) = export_generation(&w, &dir, "three");
    assert_eq!(r3.blobs_removed, 3, "{r3:?}");
    assert!(r3.bytes_removed > 0);
    assert!(g1.iter().all(|d| !sha.join(d.hex()).exists()));
    let mut expected: std::collections::BTreeSet<String> =
        g2.iter().chain(&g3).map(|d| d.hex().to_string()).collect();
    expected.insert("README".into());
    expected.insert(linked.hex().to_string());
    assert_eq!(blob_files(&dir), expected);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "outside");
    let c = load(&dir);
    assert!(c.get(&Digest::of_bytes(b"three")).is_some());
    // Re-exporting the same generation replaces nothing: current stays, previous stays.
    let (r4, _) = export_generation(&w, &dir, "three");
    assert_eq!((r4.blobs_sent, r4.blobs_removed), (0, 0), "{r4:?}");
}

/// While another export of the directory is writing (it holds the shared lock), a
/// finished export does not collect: the other export may name a blob it found present.
/// Once no one writes, collection runs.
#[test]
fn collection_is_skipped_while_another_export_writes() {
    let w = world();
    let dir = w.base.join("gc-busy");
    let (_, g1) = export_generation(&w, &dir, "one");
    export_generation(&w, &dir, "two");
    let other = LocalDir::new(&dir);
    assert!(CacheSink::has_blob(&other, &g1[2], 1).is_ok());
    let (r3, _) = export_generation(&w, &dir, "three");
    assert_eq!(r3.blobs_removed, 0, "{r3:?}");
    assert!(g1
        .iter()
        .all(|d| dir.join("blobs/sha256").join(d.hex()).exists()));
    drop(other);
    let c = LocalDir::new(&dir).collect_unreferenced().unwrap();
    assert_eq!((c.blobs, c.skipped), (3, false), "{c:?}");
    assert!(g1
        .iter()
        .all(|d| !dir.join("blobs/sha256").join(d.hex()).exists()));
}
