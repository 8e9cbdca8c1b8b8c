//! The shared build cache on the executor's side: hits from imported caches, lazy
//! materialisation of their layers, and the records of this build for `--cache-to`.
//!
//! A hit from an imported cache is taken when the key kiln computed for the step (from
//! its local inputs) is a record's key. The hit's layers get snapshot ids (their chain
//! ids) but are neither fetched nor unpacked: the next step that hits too only needs
//! their diff ids for its own key. Only when a step misses — it needs the files of its
//! inputs — are the input layers fetched (verified) and unpacked ([`Executor::prepare_miss`]),
//! and only the final image's layers are fetched as blobs ([`Executor::ensure_blobs`]).
//! So on an empty store whose every step hits, exactly the final image's layers move.
//!
//! Cache mounts travel with `mounts=true`: a step that misses and mounts a cache whose
//! local directory is missing or empty gets it restored from the import first.

use crate::error::OpError;
use crate::executor::Executor;
use crate::state::{FsState, LayerRef, Output};
use kiln_cache::{ExportLayer, ExportMount, ExportRecord, Fetched, ImportedCache, ImportedLayer};
use kiln_graph::{ExecMount, Op, Vertex, VertexId};
use kiln_oci::Digest;
use kiln_snapshot::SnapshotId;
use kiln_solver::JobCtx;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// What the keys of exported records mean: kiln-ops' key derivation and record version.
/// A cache written with another scheme is ignored as a whole.
pub const KEY_SCHEME: &str = "kiln-ops/v1+records-1";

/// One `--cache-from`.
#[derive(Debug, Clone)]
pub struct CacheImport {
    pub cache: Arc<ImportedCache>,
    /// Restore cache mounts from it (`mounts=false` turns that off).
    pub mounts: bool,
}

/// Which records `--cache-to` exports: `Min`, the steps of the final stage's chain (what
/// the image's layers came from); `Max`, every step of the build.
pub use kiln_cache::Mode as CacheMode;

/// A blob copied from an imported cache into the store during this build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedBlob {
    pub digest: Digest,
    pub size: u64,
    pub cache: String,
}

/// A step's result, for export.
#[derive(Debug, Clone)]
struct StepResult {
    key: Digest,
    own: Vec<LayerRef>,
    chain_id: Option<Digest>,
    exec_seconds: f64,
}

#[derive(Debug, Default)]
pub(crate) struct Shared {
    imports: Vec<CacheImport>,
    /// Inputs of the vertices being executed: a miss materialises them.
    inputs: Mutex<HashMap<VertexId, Vec<Arc<Output>>>>,
    /// (blob, diff id) → the import that has it, for layers of imported hits.
    remote: Mutex<HashMap<(Digest, Digest), usize>>,
    /// Snapshot id → the diff ids of the stack it tops, for layers of imported hits: a
    /// merge (`COPY --link`) moves a layer onto another stack, and only its own chain
    /// names its snapshot.
    chains: Mutex<HashMap<SnapshotId, Vec<Digest>>>,
    /// (blob, diff id) pairs whose content this build has verified.
    verified: Mutex<HashSet<(Digest, Digest)>>,
    steps: Mutex<HashMap<VertexId, StepResult>>,
    /// Cache key → vertex, between probe and finish.
    pending: Mutex<HashMap<Digest, VertexId>>,
    fetched: Mutex<Vec<FetchedBlob>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn blob_digest(l: &LayerRef) -> Result<Digest, OpError> {
    Digest::try_from(l.descriptor.digest()).map_err(|e| OpError::Internal(e.to_string()))
}

impl Executor<'_> {
    /// Adds the caches of `--cache-from`, looked up (in order) after the local cache.
    pub fn with_cache_imports(mut self, imports: Vec<CacheImport>) -> Self {
        self.shared.imports = imports;
        self
    }

    pub(crate) fn stash_inputs(&self, id: VertexId, inputs: &[Arc<Output>]) {
        lock(&self.shared.inputs).insert(id, inputs.to_vec());
    }

    pub(crate) fn unstash_inputs(&self, id: VertexId) {
        lock(&self.shared.inputs).remove(&id);
    }

    /// Remembers a step's result for export (`own`: the layers it added).
    pub(crate) fn note_step(
        &self,
        vertex: VertexId,
        key: &Digest,
        own: &[LayerRef],
        result: &Output,
        exec_seconds: f64,
    ) {
        let chain_id = match result {
            Output::Fs(s) => kiln_snapshot::chain_id(
                &s.layers
                    .iter()
                    .map(|l| l.diff_id.clone())
                    .collect::<Vec<_>>(),
            ),
            Output::Context(_) => None,
        };
        lock(&self.shared.steps).insert(
            vertex,
            StepResult {
                key: key.clone(),
                own: own.to_vec(),
                chain_id,
                exec_seconds,
            },
        );
    }

    pub(crate) fn note_pending(&self, key: &Digest, vertex: VertexId) {
        lock(&self.shared.pending).insert(key.clone(), vertex);
    }

    pub(crate) fn take_pending(&self, key: &Digest) -> Option<VertexId> {
        lock(&self.shared.pending).remove(key)
    }

    /// A hit from an imported cache: the root's layers plus the record's, unfetched.
    pub(crate) fn imported_hit(
        &self,
        ctx: &JobCtx<'_, Digest, VertexId>,
        root: &FsState,
        key: &Digest,
    ) -> Result<Option<(Output, Vec<LayerRef>, f64)>, OpError> {
        for (i, import) in self.shared.imports.iter().enumerate() {
            let Some(record) = import.cache.get(key) else {
                continue;
            };
            let diff_ids: Vec<Digest> = root.layers.iter().map(|l| l.diff_id.clone()).collect();
            let mut parent = kiln_snapshot::chain_id(&diff_ids);
            let mut stack = diff_ids;
            let mut own = Vec::new();
            let mut chains = Vec::new();
            for l in &record.layers {
                let chain = kiln_snapshot::next_chain_id(parent.as_ref(), &l.diff_id);
                stack.push(l.diff_id.clone());
                chains.push((SnapshotId::from_chain_id(chain.clone()), stack.clone()));
                own.push(LayerRef {
                    snapshot: SnapshotId::from_chain_id(chain.clone()),
                    descriptor: l.descriptor.clone(),
                    diff_id: l.diff_id.clone(),
                });
                parent = Some(chain);
            }
            // The key covers the base, so a record made over another base is inconsistent
            // (damaged or forged): not a result to build on.
            if parent != record.chain_id {
                ctx.status(format!(
                    "{}: the record for this step does not add up to its result; ignored",
                    import.cache.name()
                ));
                continue;
            }
            let mut remote = lock(&self.shared.remote);
            for l in &own {
                remote
                    .entry((blob_digest(l)?, l.diff_id.clone()))
                    .or_insert(i);
            }
            drop(remote);
            lock(&self.shared.chains).extend(chains);
            ctx.cached(Some(&format!("from {}", import.cache.name())));
            return Ok(Some((
                Self::stacked(root, own.clone()),
                own,
                record.exec_seconds,
            )));
        }
        Ok(None)
    }

    /// Before a step that missed touches files: its filesystem inputs exist as snapshots
    /// (fetched from an imported cache and unpacked if they were lazy hits), and its cache
    /// mounts are restored from an import when missing locally.
    pub(crate) fn prepare_miss(
        &self,
        ctx: &JobCtx<'_, Digest, VertexId>,
        vertex: &Vertex,
    ) -> Result<(), OpError> {
        let inputs = lock(&self.shared.inputs)
            .get(ctx.payload())
            .cloned()
            .unwrap_or_default();
        for input in &inputs {
            if let Output::Fs(s) = input.as_ref() {
                self.materialize(Some(ctx), s)?;
            }
        }
        if let Op::Exec(op) = &vertex.op {
            for m in &op.mounts {
                if let ExecMount::Cache { id, .. } = m {
                    self.restore_cache_mount(ctx, id)?;
                }
            }
        }
        Ok(())
    }

    /// Makes every layer of `s` exist as a snapshot.
    fn materialize(
        &self,
        ctx: Option<&JobCtx<'_, Digest, VertexId>>,
        s: &FsState,
    ) -> Result<(), OpError> {
        let diff_ids: Vec<Digest> = s.layers.iter().map(|l| l.diff_id.clone()).collect();
        for (i, l) in s.layers.iter().enumerate() {
            if self.snapshots.exists(&l.snapshot) {
                continue;
            }
            self.ensure_blob(ctx, l)?;
            if let Some(ctx) = ctx {
                ctx.status(format!("unpacking layer {}", short(&blob_digest(l)?)));
            }
            let chain = lock(&self.shared.chains)
                .get(&l.snapshot)
                .cloned()
                .unwrap_or_else(|| diff_ids[..=i].to_vec());
            let from = lock(&self.shared.remote)
                .get(&(blob_digest(l)?, l.diff_id.clone()))
                .copied();
            let limits = match from {
                Some(i) => self.shared.imports[i].cache.limits().decode.clone(),
                None => kiln_archive::DecodeLimits::default(),
            };
            let id = self
                .snapshots
                .ensure_layer_snapshot(&chain, &l.descriptor, &limits)?;
            if id != l.snapshot {
                return Err(OpError::Internal(format!(
                    "layer {} unpacked as snapshot {id}, expected {}",
                    short(&blob_digest(l)?),
                    l.snapshot
                )));
            }
        }
        Ok(())
    }

    /// Makes `l`'s blob present in the store (under this build's lease), fetching it from
    /// the imported cache its hit came from. Verified once per build.
    fn ensure_blob(
        &self,
        ctx: Option<&JobCtx<'_, Digest, VertexId>>,
        l: &LayerRef,
    ) -> Result<(), OpError> {
        let digest = blob_digest(l)?;
        let pair = (digest.clone(), l.diff_id.clone());
        let from = lock(&self.shared.remote).get(&pair).copied();
        let Some(i) = from else {
            if self.store.protect(&self.lease, &digest)? {
                return Ok(());
            }
            return Err(OpError::Store(kiln_store::StoreError::BlobNotFound {
                digest,
            }));
        };
        if lock(&self.shared.verified).contains(&pair)
            && self.store.protect(&self.lease, &digest)?
        {
            return Ok(());
        }
        let import = &self.shared.imports[i];
        if let Some(ctx) = ctx {
            ctx.status(format!(
                "fetching layer {} from {}",
                short(&digest),
                import.cache.name()
            ));
        }
        let fetched = import.cache.fetch_layer(
            &self.store,
            &self.lease,
            &ImportedLayer {
                descriptor: l.descriptor.clone(),
                diff_id: l.diff_id.clone(),
            },
        )?;
        if let Fetched::Copied(size) = fetched {
            lock(&self.shared.fetched).push(FetchedBlob {
                digest,
                size,
                cache: import.cache.name().to_string(),
            });
        }
        lock(&self.shared.verified).insert(pair);
        Ok(())
    }

    /// Makes the blobs of `state` (the final image's layers) present in the store,
    /// fetching from imported caches what only they have. No snapshot is made.
    pub fn ensure_blobs(&self, state: &FsState) -> Result<(), OpError> {
        for l in &state.layers {
            self.ensure_blob(None, l)?;
        }
        Ok(())
    }

    /// Blobs copied from imported caches so far.
    pub fn fetched_blobs(&self) -> Vec<FetchedBlob> {
        lock(&self.shared.fetched).clone()
    }

    /// The directory holding every `RUN --mount=type=cache` directory.
    pub(crate) fn cache_mounts_base(&self) -> PathBuf {
        self.store.root().join("kiln").join("cache-mounts")
    }

    /// Where `RUN --mount=type=cache,id=ID` lives: named by a hash of the id, never the id
    /// itself (ids are user text). The shared (default) directory; exec.rs derives the
    /// private-sharing copies from the same hash.
    pub(crate) fn cache_mount_dir(&self, id: &str) -> (Digest, PathBuf) {
        let hash = Digest::of_bytes(id.as_bytes());
        let dir = self.cache_mounts_base().join(hash.hex());
        (hash, dir)
    }

    fn restore_cache_mount(
        &self,
        ctx: &JobCtx<'_, Digest, VertexId>,
        id: &str,
    ) -> Result<(), OpError> {
        let (hash, dir) = self.cache_mount_dir(id);
        if !dir_is_empty(&dir) {
            return Ok(());
        }
        for import in self.shared.imports.iter().filter(|i| i.mounts) {
            if let Some(m) = import.cache.mount(&hash) {
                ctx.status(format!(
                    "restoring cache mount {id:?} from {}",
                    import.cache.name()
                ));
                import
                    .cache
                    .restore_mount(m, &dir, self.snapshots.id_mapping().cloned())?;
                return Ok(());
            }
        }
        Ok(())
    }

    /// The records of this build for `--cache-to`: with [`CacheMode::Min`] the steps of
    /// `target`'s stage chain, with [`CacheMode::Max`] every step that has a key. Blobs
    /// that only an imported cache had are fetched (verified) so they can be exported,
    /// unless `dest_has` says the destination holds them already (exporting back to the
    /// cache that was imported moves nothing it has).
    pub fn cache_records(
        &self,
        target: VertexId,
        mode: CacheMode,
        dest_has: &dyn Fn(&kiln_oci::spec::Descriptor) -> bool,
    ) -> Result<Vec<ExportRecord>, OpError> {
        let steps = lock(&self.shared.steps).clone();
        let mut selected: Vec<VertexId> = match mode {
            CacheMode::Max => steps.keys().copied().collect(),
            CacheMode::Min => self.stage_chain(target),
        };
        selected.sort();
        selected.dedup();
        let mut out = Vec::new();
        for id in selected {
            let (Some(step), Some(vertex)) = (steps.get(&id), self.graph.vertex(id)) else {
                continue;
            };
            for l in &step.own {
                if !dest_has(&l.descriptor) {
                    self.ensure_blob(None, l)?;
                }
            }
            out.push(ExportRecord {
                key: step.key.clone(),
                description: vertex.meta.description.clone(),
                layers: step
                    .own
                    .iter()
                    .map(|l| ExportLayer {
                        descriptor: l.descriptor.clone(),
                        diff_id: l.diff_id.clone(),
                    })
                    .collect(),
                chain_id: step.chain_id.clone(),
                parents: vertex
                    .inputs
                    .iter()
                    .filter_map(|i| steps.get(i).map(|s| s.key.clone()))
                    .collect(),
                exec_seconds: step.exec_seconds,
            });
        }
        Ok(out)
    }

    /// The target and the vertices its filesystem is stacked on (root inputs down to the
    /// stage's source; every input of a merge).
    fn stage_chain(&self, target: VertexId) -> Vec<VertexId> {
        let mut out = Vec::new();
        let mut todo = vec![target];
        while let Some(id) = todo.pop() {
            let Some(v) = self.graph.vertex(id) else {
                continue;
            };
            let root = match &v.op {
                Op::Exec(e) => Some(e.root),
                Op::File(f) => f.root,
                Op::Merge => {
                    todo.extend(v.inputs.iter().copied());
                    None
                }
                Op::Source(_) => None,
            };
            out.push(id);
            if let Some(r) = root.and_then(|r| v.inputs.get(r.as_usize())) {
                todo.push(*r);
            }
        }
        out
    }

    /// Cache mounts used by this build's RUN steps that hold something, for
    /// `--cache-to …,mounts=true`.
    pub fn cache_mounts(&self) -> Vec<ExportMount> {
        let steps = lock(&self.shared.steps);
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut ids: Vec<&VertexId> = steps.keys().collect();
        ids.sort();
        for id in ids {
            let Some(Op::Exec(op)) = self.graph.vertex(*id).map(|v| &v.op) else {
                continue;
            };
            for m in &op.mounts {
                let ExecMount::Cache { id, .. } = m else {
                    continue;
                };
                let (hash, dir) = self.cache_mount_dir(id);
                if !dir_is_empty(&dir) && seen.insert(hash.clone()) {
                    out.push(ExportMount {
                        id_hash: hash,
                        dir,
                        id_map: self.snapshots.id_mapping().cloned(),
                    });
                }
            }
        }
        out
    }
}

/// Missing or without entries.
fn dir_is_empty(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut rd| rd.next().is_none())
}

fn short(d: &Digest) -> String {
    d.to_string().chars().take(19).collect()
}
