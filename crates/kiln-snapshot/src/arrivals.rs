//! Unpacking the layers of an image while it is being pulled: each layer goes into its
//! snapshot as soon as its blob is in the store (and the config, which names its diff_id,
//! is too), on a few worker threads, while the other blobs are still downloading. A build
//! right after the pull then finds every snapshot and has nothing to unpack.
//!
//! The input is "this blob is committed" — never a byte stream — so an unpack reads only
//! verified blobs, through the same [`Snapshots::ensure_layer_snapshot`] a build uses
//! (flock per chain id, temp dir renamed into place, diff_id checked, `kiln_fs::SafeRoot`,
//! decode limits, the rootless namespace runner). A blob that fails verification is never
//! reported, so nothing is unpacked from it. What a layer needs is pure bookkeeping
//! ([`LayerArrivals`]): its blob and the config (for the chain of diff_ids below it), in
//! whichever order they arrive.
//!
//! Failures are reported, not raised: unpacking here only moves work a build would do
//! anyway, and that build reports (or, with other limits, avoids) the same error itself.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use kiln_archive::DecodeLimits;
use kiln_oci::spec::{Descriptor, ImageManifest};
use kiln_oci::Digest;

use crate::layer_snapshot::descriptor_digest;
use crate::{chain_ids, Error, SnapshotId, Snapshots};

/// One layer ready to unpack: its diff_id chain (bottom-most first, ending with its own)
/// and its manifest descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerJob {
    pub chain: Vec<Digest>,
    pub blob: Descriptor,
    /// `blob`'s digest, validated.
    pub digest: Digest,
}

impl LayerJob {
    /// The snapshot this job produces.
    pub fn snapshot(&self) -> SnapshotId {
        SnapshotId::from_chain_id(chain_ids(&self.chain).pop().expect("chain is never empty"))
    }
}

/// Which layers of one image manifest can be unpacked, given which of its blobs are in the
/// store. Each layer is handed out once.
#[derive(Debug)]
pub struct LayerArrivals {
    config: Digest,
    config_desc: Descriptor,
    /// Layers of a media type kiln unpacks, by manifest position; others (unknown media
    /// types) are left for the build to report.
    layers: Vec<Option<(Digest, Descriptor)>>,
    diff_ids: Option<Vec<Digest>>,
    arrived: std::collections::HashSet<Digest>,
    handed_out: Vec<bool>,
    /// Config unusable (unreadable, or diff_ids not one per layer): nothing is handed out.
    given_up: bool,
}

impl LayerArrivals {
    /// None when the manifest's config digest is invalid (the pull itself refuses that).
    pub fn new(manifest: &ImageManifest) -> Option<LayerArrivals> {
        let config = descriptor_digest(manifest.config()).ok()?;
        let layers: Vec<_> = manifest
            .layers()
            .iter()
            .map(|d| {
                kiln_oci::media::layer_compression(d.media_type().as_ref())?;
                Some((descriptor_digest(d).ok()?, d.clone()))
            })
            .collect();
        Some(LayerArrivals {
            config,
            config_desc: manifest.config().clone(),
            handed_out: vec![false; layers.len()],
            layers,
            diff_ids: None,
            arrived: Default::default(),
            given_up: false,
        })
    }

    /// The config blob's digest: when it arrives, read it and call [`Self::set_diff_ids`].
    pub fn config_digest(&self) -> &Digest {
        &self.config
    }

    pub fn config_descriptor(&self) -> &Descriptor {
        &self.config_desc
    }

    /// The diff_ids of the config. Returns the layers now ready (those whose blobs came
    /// first). A count that does not match the manifest stops everything for this image
    /// (the build reports that mismatch; there is nothing sound to unpack).
    pub fn set_diff_ids(&mut self, diff_ids: Vec<Digest>) -> Vec<LayerJob> {
        if diff_ids.len() != self.layers.len() {
            self.given_up = true;
            return Vec::new();
        }
        self.diff_ids = Some(diff_ids);
        self.ready()
    }

    /// The config could not be read: nothing of this image is unpacked.
    pub fn give_up(&mut self) {
        self.given_up = true;
    }

    /// `blob` is in the store. Returns the layers now ready (one blob may be several
    /// layers of the same image).
    pub fn blob_arrived(&mut self, blob: &Digest) -> Vec<LayerJob> {
        self.arrived.insert(blob.clone());
        self.ready()
    }

    fn ready(&mut self) -> Vec<LayerJob> {
        let (false, Some(diff_ids)) = (self.given_up, &self.diff_ids) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let Some((digest, desc)) = layer else {
                continue;
            };
            if self.handed_out[i] || !self.arrived.contains(digest) {
                continue;
            }
            self.handed_out[i] = true;
            out.push(LayerJob {
                chain: diff_ids[..=i].to_vec(),
                blob: desc.clone(),
                digest: digest.clone(),
            });
        }
        out
    }
}

/// What happened to one layer.
#[derive(Debug)]
pub enum UnpackOutcome {
    /// Unpacked by this pull.
    Unpacked { blob: Digest, snapshot: SnapshotId },
    /// The snapshot existed already (another image, an earlier pull or build).
    Present { blob: Digest, snapshot: SnapshotId },
    /// Not unpacked; a build unpacks it when it needs it (and reports the error then).
    Failed { blob: Digest, error: Error },
}

type Report = dyn Fn(&UnpackOutcome) + Send + Sync;

struct State {
    images: HashMap<Digest, LayerArrivals>,
    queue: VecDeque<LayerJob>,
    /// No more jobs will come; workers leave when the queue is empty.
    closing: bool,
    /// Queued jobs are dropped (the pull failed); running unpacks finish.
    cancelled: bool,
    outcomes: Vec<UnpackOutcome>,
}

struct Shared {
    snapshots: Snapshots,
    limits: DecodeLimits,
    state: Mutex<State>,
    wake: Condvar,
    report: Box<Report>,
}

/// A small pool unpacking layers as a pull reports their blobs in the store.
pub struct PullUnpacker {
    shared: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl PullUnpacker {
    /// Starts `workers` threads (at least one). `report` is called from them as each layer
    /// is done.
    pub fn start(
        snapshots: Snapshots,
        workers: usize,
        limits: DecodeLimits,
        report: impl Fn(&UnpackOutcome) + Send + Sync + 'static,
    ) -> PullUnpacker {
        let shared = Arc::new(Shared {
            snapshots,
            limits,
            state: Mutex::new(State {
                images: HashMap::new(),
                queue: VecDeque::new(),
                closing: false,
                cancelled: false,
                outcomes: Vec::new(),
            }),
            wake: Condvar::new(),
            report: Box::new(report),
        });
        let workers = (0..workers.max(1))
            .map(|_| {
                let shared = shared.clone();
                std::thread::spawn(move || work(&shared))
            })
            .collect();
        PullUnpacker {
            shared,
            workers: Mutex::new(workers),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enqueue(&self, jobs: Vec<LayerJob>) {
        if jobs.is_empty() {
            return;
        }
        let mut st = self.lock();
        if st.cancelled || st.closing {
            return;
        }
        st.queue.extend(jobs);
        drop(st);
        self.shared.wake.notify_all();
    }

    /// An image manifest whose blobs are about to arrive (`digest` names it in
    /// [`Self::blob_ready`]).
    pub fn manifest(&self, digest: &Digest, manifest: &ImageManifest) {
        if let Some(a) = LayerArrivals::new(manifest) {
            self.lock().images.insert(digest.clone(), a);
        }
    }

    /// `blob` of the manifest `manifest` is committed to the store. The config is read
    /// here (small, bounded by the store's config limit); unpacks run on the workers.
    pub fn blob_ready(&self, manifest: &Digest, blob: &Digest) {
        let config = match self.lock().images.get(manifest) {
            Some(a) => (a.config_digest() == blob).then(|| a.config_descriptor().clone()),
            None => return,
        };
        let diff_ids = config.map(|c| self.read_diff_ids(manifest, &c));
        let jobs = {
            let mut st = self.lock();
            let Some(a) = st.images.get_mut(manifest) else {
                return;
            };
            let mut jobs = match diff_ids {
                Some(Some(d)) => a.set_diff_ids(d),
                Some(None) => {
                    a.give_up();
                    Vec::new()
                }
                None => Vec::new(),
            };
            // A config digest may also name a layer in a crafted manifest; count it as both.
            jobs.extend(a.blob_arrived(blob));
            jobs
        };
        self.enqueue(jobs);
    }

    fn read_diff_ids(&self, manifest: &Digest, config: &Descriptor) -> Option<Vec<Digest>> {
        match self.shared.snapshots.store().image_config(config) {
            Ok(c) => Some(c.rootfs.diff_ids),
            Err(e) => {
                // Not an image config (an artifact) or a bad one: the build says which.
                tracing::debug!(%manifest, config = %config.digest(), error = %e, "no unpack during pull");
                None
            }
        }
    }

    /// Waits for every queued unpack and returns what happened, in completion order.
    /// `cancel`: drop what has not started (the pull failed, nothing will use it soon).
    /// Later [`Self::blob_ready`] calls are ignored. Takes `&self` because the pull that
    /// feeds it may still hold a reference (it is shared with the download threads).
    pub fn finish(&self, cancel: bool) -> Vec<UnpackOutcome> {
        {
            let mut st = self.lock();
            st.closing = true;
            if cancel {
                st.cancelled = true;
                st.queue.clear();
            }
        }
        self.shared.wake.notify_all();
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()));
        for w in workers {
            let _ = w.join();
        }
        std::mem::take(&mut self.lock().outcomes)
    }
}

impl Drop for PullUnpacker {
    fn drop(&mut self) {
        // Never finished (an early return): end the workers without starting more work.
        self.finish(true);
    }
}

fn work(shared: &Shared) {
    loop {
        let job = {
            let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(j) = st.queue.pop_front() {
                    break j;
                }
                if st.closing {
                    return;
                }
                st = shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        };
        let outcome = unpack(shared, &job);
        (shared.report)(&outcome);
        shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .outcomes
            .push(outcome);
    }
}

fn unpack(shared: &Shared, job: &LayerJob) -> UnpackOutcome {
    let blob = job.digest.clone();
    let snapshot = job.snapshot();
    if shared.snapshots.exists(&snapshot) {
        return UnpackOutcome::Present { blob, snapshot };
    }
    match shared
        .snapshots
        .ensure_layer_snapshot(&job.chain, &job.blob, &shared.limits)
    {
        Ok(snapshot) => UnpackOutcome::Unpacked { blob, snapshot },
        Err(error) => UnpackOutcome::Failed { blob, error },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_oci::spec::MediaType;

    fn d(n: u8) -> Digest {
        Digest::of_bytes(&[n])
    }

    fn desc(media: &str, digest: &Digest) -> Descriptor {
        Descriptor::new(MediaType::from(media), 1, digest)
    }

    fn manifest(layers: &[(&str, Digest)]) -> ImageManifest {
        let config = desc(kiln_oci::media::OCI_CONFIG, &d(100));
        let layers: Vec<_> = layers.iter().map(|(m, g)| desc(m, g)).collect();
        kiln_oci::spec::ImageManifestBuilder::default()
            .schema_version(2u32)
            .config(config)
            .layers(layers)
            .build()
            .unwrap()
    }

    const GZ: &str = kiln_oci::media::OCI_LAYER_GZIP;

    fn diff(n: u8) -> Digest {
        Digest::of_bytes(&[n, n])
    }

    #[test]
    fn layers_wait_for_the_config_then_go_in_arrival_order() {
        let m = manifest(&[(GZ, d(1)), (GZ, d(2)), (GZ, d(3))]);
        let mut a = LayerArrivals::new(&m).unwrap();
        assert_eq!(a.config_digest(), &d(100));
        assert!(a.blob_arrived(&d(2)).is_empty(), "no diff_ids yet");
        let jobs = a.set_diff_ids(vec![diff(1), diff(2), diff(3)]);
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].chain, vec![diff(1), diff(2)]);
        assert_eq!(
            jobs[0].snapshot().chain_id(),
            chain_ids(&[diff(1), diff(2)]).last().unwrap()
        );
        let jobs = a.blob_arrived(&d(3));
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].chain, vec![diff(1), diff(2), diff(3)]);
        let jobs = a.blob_arrived(&d(1));
        assert_eq!(jobs[0].chain, vec![diff(1)]);
        // Each layer once, even if a blob is reported again.
        assert!(a.blob_arrived(&d(1)).is_empty());
        assert!(a.blob_arrived(&d(3)).is_empty());
    }

    #[test]
    fn one_blob_at_two_positions_gives_two_snapshots() {
        let m = manifest(&[(GZ, d(1)), (GZ, d(2)), (GZ, d(1))]);
        let mut a = LayerArrivals::new(&m).unwrap();
        assert!(a.set_diff_ids(vec![diff(1), diff(2), diff(1)]).is_empty());
        let jobs = a.blob_arrived(&d(1));
        assert_eq!(jobs.len(), 2);
        assert_ne!(jobs[0].snapshot(), jobs[1].snapshot());
    }

    #[test]
    fn diff_id_count_mismatch_and_unknown_media_types_unpack_nothing() {
        let m = manifest(&[(GZ, d(1)), (GZ, d(2))]);
        let mut a = LayerArrivals::new(&m).unwrap();
        a.blob_arrived(&d(1));
        assert!(a.set_diff_ids(vec![diff(1)]).is_empty());
        assert!(a.blob_arrived(&d(2)).is_empty());

        let m = manifest(&[("application/x-not-a-layer", d(1)), (GZ, d(2))]);
        let mut a = LayerArrivals::new(&m).unwrap();
        a.set_diff_ids(vec![diff(1), diff(2)]);
        assert!(a.blob_arrived(&d(1)).is_empty());
        assert_eq!(a.blob_arrived(&d(2)).len(), 1);

        let mut a = LayerArrivals::new(&manifest(&[(GZ, d(1))])).unwrap();
        a.give_up();
        a.blob_arrived(&d(1));
        assert!(a.set_diff_ids(vec![diff(1)]).is_empty());
    }
}
