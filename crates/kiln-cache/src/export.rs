//! Writing a cache artifact: blobs from the store (and tarred cache mounts) to a sink,
//! several at a time (as many as the sink's [`CacheSink::jobs`]), the manifest last.

use crate::format::{
    CacheConfig, LayerEntry, MountEntry, RecordEntry, ARTIFACT_TYPE, CONFIG_MEDIA_TYPE,
    FORMAT_VERSION, MOUNT_MEDIA_TYPE,
};
use crate::{CacheSink, Error};
use kiln_fs::IdMapping;
use kiln_oci::spec::Descriptor;
use kiln_oci::Digest;
use kiln_store::{Lease, Store};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq)]
pub struct ExportLayer {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
}

/// One step's result, as the build knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRecord {
    pub key: Digest,
    pub description: String,
    /// Layers the step added (each blob must be in the store).
    pub layers: Vec<ExportLayer>,
    /// Chain id of the step's whole result (None: an empty filesystem).
    pub chain_id: Option<Digest>,
    /// Keys of the records whose results are this step's inputs (links that point at
    /// records not exported are left out).
    pub parents: Vec<Digest>,
    pub exec_seconds: f64,
}

/// A `RUN --mount=type=cache` directory to export.
#[derive(Debug, Clone)]
pub struct ExportMount {
    /// sha256 of the mount's id (the directory's name in the store).
    pub id_hash: Digest,
    pub dir: PathBuf,
    /// Rootless stores hold host ids: write container ids (see kiln-snapshot).
    pub id_map: Option<IdMapping>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    pub records: usize,
    pub mounts: usize,
    pub blobs_sent: usize,
    pub blobs_present: usize,
    pub bytes_sent: u64,
    /// Blobs the destination no longer referenced and removed after publishing.
    pub blobs_removed: usize,
    pub bytes_removed: u64,
    /// Why collection failed (the cache was published all the same).
    pub collect_error: Option<String>,
    /// Digest of the manifest published.
    pub manifest: Option<String>,
}

/// Exports `records` (and `mounts`) to `sink`. Mount tars are staged as blobs in the
/// store under `lease` (they are garbage for the store once the lease ends). `mode` is
/// recorded in the config for the reader's information.
pub fn export(
    store: &Store,
    lease: &Lease,
    sink: &dyn CacheSink,
    key_scheme: &str,
    mode: &str,
    records: &[ExportRecord],
    mounts: &[ExportMount],
) -> Result<ExportReport, Error> {
    let mut report = ExportReport::default();
    let mut layers: Vec<Descriptor> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let index: BTreeMap<&Digest, usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (&r.key, i))
        .collect();
    let mut entries = Vec::new();
    for r in records {
        for l in &r.layers {
            if seen.insert(l.descriptor.digest().to_string()) {
                layers.push(l.descriptor.clone());
            }
        }
        let mut parents: Vec<usize> = r
            .parents
            .iter()
            .filter_map(|p| index.get(p).copied())
            .collect();
        parents.sort_unstable();
        parents.dedup();
        entries.push(RecordEntry {
            key: r.key.clone(),
            description: r.description.clone(),
            layers: r
                .layers
                .iter()
                .map(|l| {
                    Ok(LayerEntry {
                        digest: Digest::parse(l.descriptor.digest().as_ref()).map_err(|e| {
                            Error::malformed(sink.name(), format!("layer digest: {e}"))
                        })?,
                        diff_id: l.diff_id.clone(),
                    })
                })
                .collect::<Result<_, Error>>()?,
            chain_id: r.chain_id.clone(),
            parents,
            exec_seconds: r.exec_seconds,
        });
    }
    let mut mount_entries = Vec::new();
    for m in mounts {
        let (desc, entry) = stage_mount(store, lease, m)?;
        if seen.insert(desc.digest().to_string()) {
            layers.push(desc);
        }
        mount_entries.push(entry);
    }
    let config = CacheConfig {
        version: FORMAT_VERSION,
        key_scheme: key_scheme.to_string(),
        mode: mode.to_string(),
        records: entries,
        mounts: mount_entries,
    };
    let config_bytes = serde_json::to_vec(&config).expect("cache config serialises");
    let config_desc = store
        .put_bytes(Some(lease), &config_bytes)?
        .descriptor(CONFIG_MEDIA_TYPE);
    let mut blobs = layers.clone();
    blobs.push(config_desc.clone());
    for sent in send_all(store, sink, &blobs)? {
        match sent {
            Sent::Present => report.blobs_present += 1,
            Sent::Uploaded(size) => {
                report.blobs_sent += 1;
                report.bytes_sent += size;
            }
        }
    }
    // Only now, with every blob in place, may readers see the new cache.
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": kiln_oci::media::OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": config_desc,
        "layers": layers,
    });
    let bytes = serde_json::to_vec(&manifest).expect("manifest serialises");
    sink.put_manifest(&bytes, kiln_oci::media::OCI_MANIFEST)?;
    // The new cache is published: failing to tidy up must not fail the export.
    match sink.collect_garbage() {
        Ok(c) => {
            report.blobs_removed = c.blobs;
            report.bytes_removed = c.bytes;
        }
        Err(e) => report.collect_error = Some(e.to_string()),
    }
    report.records = records.len();
    report.mounts = mounts.len();
    report.manifest = Some(Digest::of_bytes(&bytes).to_string());
    Ok(report)
}

enum Sent {
    Present,
    Uploaded(u64),
}

fn send(store: &Store, sink: &dyn CacheSink, d: &Descriptor) -> Result<Sent, Error> {
    let digest = Digest::parse(d.digest().as_ref())
        .map_err(|e| Error::malformed(sink.name(), format!("blob digest: {e}")))?;
    if sink.has_blob(&digest, d.size())? {
        return Ok(Sent::Present);
    }
    // A store blob damaged on disk must not be published (see put_store_blob).
    sink.put_store_blob(store, d)?;
    Ok(Sent::Uploaded(d.size()))
}

/// Sends `blobs` with up to [`CacheSink::jobs`] at a time. Results come back in `blobs`'
/// order, and a failure is reported as the error of the earliest blob that failed, not of
/// whichever failed first in time, so that one export gives the same report every run.
/// After a failure no new blob is started (the ones under way finish on their own).
fn send_all(store: &Store, sink: &dyn CacheSink, blobs: &[Descriptor]) -> Result<Vec<Sent>, Error> {
    let jobs = sink.jobs().clamp(1, blobs.len().max(1));
    if jobs == 1 {
        return blobs.iter().map(|d| send(store, sink, d)).collect();
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Vec<Mutex<Option<Result<Sent, Error>>>> =
        blobs.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(d) = blobs.get(i) else {
                        return;
                    };
                    let r = send(store, sink, d);
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                }
            });
        }
    });
    let mut out = Vec::with_capacity(blobs.len());
    for r in results {
        // Blobs never started (after a failure) come after the failed one: claimed in order.
        match r.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(Ok(sent)) => out.push(sent),
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    Ok(out)
}

/// Tars a cache mount directory deterministically (gzip) into a store blob.
fn stage_mount(
    store: &Store,
    lease: &Lease,
    m: &ExportMount,
) -> Result<(Descriptor, MountEntry), Error> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&m.dir).map_err(Error::io("cache export", "stat", &m.dir))?;
    let root = kiln_fs::SafeRoot::open(&m.dir)?;
    let opts = kiln_archive::WriteOptions {
        clamp_mtime: None,
        overlay_upper: false,
        xattrs: true,
        id_map: m.id_map.clone(),
    };
    let bw = store.blob_writer(Some(lease))?;
    let (bw, _digests) =
        kiln_archive::write_layer(&root, bw, &opts, kiln_archive::Compression::Gzip, None)?;
    let info = bw.commit(None)?;
    let (uid, gid) = match &m.id_map {
        Some(map) => map.container_owner(meta.uid(), meta.gid()),
        None => (meta.uid(), meta.gid()),
    };
    Ok((
        info.descriptor(MOUNT_MEDIA_TYPE),
        MountEntry {
            id_hash: m.id_hash.clone(),
            digest: info.digest,
            mode: meta.mode() & 0o7777,
            uid,
            gid,
        },
    ))
}
