//! The solver's worker: one [`Executor`] per build, dispatching each vertex to its op.
//!
//! Cache keys (what `kiln-graph`'s vertex digest leaves to execution time):
//!
//! | op            | key = `kiln-ops/v1` + vertex digest + …                                   |
//! | ------------- | ------------------------------------------------------------------------- |
//! | Source image  | the resolved manifest digest (a re-tagged image is a different input)     |
//! | Exec          | each input's content identity (chain id of its diff_ids)                  |
//! |               | + for a bind mount of a context, the content digest of the mounted files  |
//! | File          | each input's identity; for a context input, the content digest of exactly |
//! |               | the files each COPY reads (`kiln-context`, stat-cached, never mtimes)     |
//! | ADD <url>     | with `--checksum`: the checksum (a hit needs no download; the download is |
//! |               | verified on a miss); without: sha256 of the content, re-checked on every |
//! |               | build (If-None-Match with the last ETag; a 304 reuses its digest)        |
//! | ADD <git>     | the commit the ref resolves to now (`git ls-remote`, every build)         |
//! | Merge         | nothing: it only stacks its inputs' layers, so it is never cached itself  |
//!
//! Secret values, proxy variables and cache-mount contents are never part of a key.

use crate::cache::{CacheDir, CacheRecord, KeyComponents, LayerRecord, CACHE_VERSION};
use crate::error::OpError;
use crate::state::{FsState, LayerRef, Output};
use kiln_graph::{Graph, Op, SourceOp, Vertex, VertexId};
use kiln_oci::media;
use kiln_oci::Digest;
use kiln_sandbox::Sandbox;
use kiln_snapshot::{CommitOptions, Committed, SnapshotId, Snapshots};
use kiln_solver::{JobCtx, Worker};
use kiln_store::{Lease, Store};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Where a `--secret` comes from.
#[derive(Debug, Clone)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

/// Build-wide settings for the executor.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub commit: CommitOptions,
    /// `--network` of the build: the network of RUN steps that ask for `default`.
    pub default_network: kiln_sandbox::Network,
    /// Identifies this Dockerfile across builds for "why was this rebuilt".
    pub build_identity: String,
    /// The host's CA bundle, offered to RUN steps for TLS-intercepting proxies (mounted
    /// read-only at the image's bundle path only if the image has one; never in a layer).
    pub host_ca_bundle: Option<PathBuf>,
    /// `--max-download-size`: the most bytes one `ADD <url>` (or one git checkout) may
    /// bring in.
    pub max_download_size: u64,
}

pub struct Executor<'g> {
    pub(crate) store: Store,
    pub(crate) snapshots: Snapshots,
    pub(crate) cache: CacheDir,
    pub(crate) sandbox: Sandbox,
    pub(crate) graph: &'g Graph,
    pub(crate) contexts: BTreeMap<String, Arc<kiln_context::Context>>,
    pub(crate) secrets: BTreeMap<String, SecretSource>,
    pub(crate) opts: ExecOptions,
    pub(crate) lease: Lease,
    /// `--ssh ID=…` sources for `RUN --mount=type=ssh`.
    pub(crate) ssh: BTreeMap<String, crate::ssh::SshSource>,
    /// Keep the first failed RUN for inspection (`--on-error shell`).
    pub(crate) keep_failed: bool,
    pub(crate) failed: std::sync::Mutex<Option<crate::exec::FailedStep>>,
    /// Imported caches and this build's records for export (see shared.rs).
    pub(crate) shared: crate::shared::Shared,
}

impl<'g> Executor<'g> {
    pub fn new(
        store: &Store,
        graph: &'g Graph,
        helper_exe: PathBuf,
        contexts: BTreeMap<String, Arc<kiln_context::Context>>,
        secrets: BTreeMap<String, SecretSource>,
        opts: ExecOptions,
    ) -> Result<Self, OpError> {
        Ok(Executor {
            snapshots: Snapshots::open(store)?,
            cache: CacheDir::open(store.root())?,
            sandbox: Sandbox::new(helper_exe),
            store: store.clone(),
            graph,
            contexts,
            secrets,
            opts,
            lease: store.lease()?,
            ssh: BTreeMap::new(),
            keep_failed: false,
            failed: std::sync::Mutex::new(None),
            shared: Default::default(),
        })
    }

    /// The `--ssh` sources RUN steps may mount.
    pub fn with_ssh(mut self, ssh: BTreeMap<String, crate::ssh::SshSource>) -> Self {
        self.ssh = ssh;
        self
    }

    /// Keep the first failed RUN step (its layer, mounts, environment) for
    /// [`Executor::take_failed_step`] instead of discarding it.
    pub fn keep_failed_step(mut self, keep: bool) -> Self {
        self.keep_failed = keep;
        self
    }

    /// The failed RUN step kept by [`Executor::keep_failed_step`], if one failed.
    pub fn take_failed_step(&self) -> Option<crate::exec::FailedStep> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// The lease under which every blob of this build is written; keep the executor alive
    /// until the image is tagged.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn vertex(&self, id: VertexId) -> Result<&'g Vertex, OpError> {
        self.graph
            .vertex(id)
            .ok_or_else(|| OpError::Internal(format!("vertex {} not in graph", id.0)))
    }

    /// `kiln-ops/v1` + vertex digest + named components, hashed in name order.
    pub(crate) fn cache_key(vertex: &Vertex, components: &KeyComponents) -> Digest {
        let mut h = Sha256::new();
        h.update(b"kiln-ops/v1\n");
        h.update(vertex.digest.to_string().as_bytes());
        for (k, v) in components {
            h.update(b"\n");
            h.update(k.as_bytes());
            h.update(b"=");
            h.update(v.as_bytes());
        }
        Digest::from_sha256(h.finalize().into())
    }

    /// The stable place of a step in this Dockerfile (not its content): stage and position.
    pub(crate) fn step_identity(&self, vertex: &Vertex) -> Digest {
        let stage = vertex
            .meta
            .stage
            .as_ref()
            .map(|s| s.index.to_string())
            .unwrap_or_default();
        // "[build 3/5] RUN make" → "3": the ordinal survives edits of the command itself.
        let ordinal = vertex
            .meta
            .description
            .split_once(']')
            .and_then(|(head, _)| head.rsplit(' ').next())
            .and_then(|n| n.split('/').next())
            .unwrap_or("");
        Digest::of_bytes(
            format!(
                "{}\n{stage}\n{ordinal}\n{}",
                self.opts.build_identity,
                vertex.op.kind()
            )
            .as_bytes(),
        )
    }

    /// A usable cache hit: the record exists and everything it names is still here (and is
    /// now protected by this build's lease).
    pub(crate) fn lookup(&self, key: &Digest) -> Result<Option<CacheRecord>, OpError> {
        let Some(record) = self.cache.get(key) else {
            return Ok(None);
        };
        for l in &record.layers {
            let snapshot = SnapshotId::from_chain_id(
                Digest::parse(&l.snapshot).map_err(|e| OpError::Internal(e.to_string()))?,
            );
            if !self.store.protect(&self.lease, &l.digest)? || !self.snapshots.exists(&snapshot) {
                self.cache.remove(key);
                return Ok(None);
            }
        }
        Ok(Some(record))
    }

    pub(crate) fn layer_refs(record: &CacheRecord) -> Result<Vec<LayerRef>, OpError> {
        record
            .layers
            .iter()
            .map(|l| {
                Ok(LayerRef {
                    snapshot: SnapshotId::from_chain_id(
                        Digest::parse(&l.snapshot).map_err(|e| OpError::Internal(e.to_string()))?,
                    ),
                    descriptor: kiln_store::BlobInfo {
                        digest: l.digest.clone(),
                        size: l.size,
                    }
                    .descriptor(&l.media_type),
                    diff_id: l.diff_id.clone(),
                })
            })
            .collect()
    }

    /// Stores the cache record of a committed step and returns its layers.
    pub(crate) fn record(
        &self,
        key: &Digest,
        committed: &Committed,
        exec_seconds: f64,
    ) -> Result<Vec<LayerRef>, OpError> {
        let mut layers = Vec::new();
        if let (Some(l), Some(snapshot), Some(media_type)) =
            (&committed.layer, &committed.snapshot, committed.media_type)
        {
            layers.push(LayerRecord {
                snapshot: snapshot.chain_id().to_string(),
                digest: l.digest.clone(),
                size: l.size,
                media_type: media_type.to_string(),
                diff_id: l.diff_id.clone(),
            });
        }
        let record = CacheRecord {
            version: CACHE_VERSION,
            key: key.clone(),
            layers,
            exec_seconds,
        };
        self.cache.put(&record)?;
        Self::layer_refs(&record)
    }

    /// Looks the step up in the cache: the local records, then the imported caches
    /// (`--cache-from`, in order; their layers stay lazy, see shared.rs). A hit returns
    /// the root's layers plus the recorded ones; a miss reports why on the progress
    /// stream, makes the step's inputs real files, and returns the key to record under.
    pub(crate) fn probe(
        &self,
        ctx: &JobCtx<'_, Digest, VertexId>,
        vertex: &Vertex,
        root: &FsState,
        components: &KeyComponents,
        file_changes: &[String],
    ) -> Result<Probe, OpError> {
        let key = Self::cache_key(vertex, components);
        let reason = self.miss_reason(vertex, components, file_changes);
        if !vertex.meta.ignore_cache {
            if let Some(record) = self.lookup(&key)? {
                ctx.cached(None);
                let own = Self::layer_refs(&record)?;
                let out = Self::stacked(root, own.clone());
                self.note_step(*ctx.payload(), &key, &own, &out, record.exec_seconds);
                return Ok(Probe::Hit(out));
            }
            if let Some((out, own, secs)) = self.imported_hit(ctx, root, &key)? {
                self.note_step(*ctx.payload(), &key, &own, &out, secs);
                return Ok(Probe::Hit(out));
            }
        }
        ctx.status(reason);
        // The step will read its inputs' files: lazy hits among them become real now.
        self.prepare_miss(ctx, vertex)?;
        self.note_pending(&key, *ctx.payload());
        Ok(Probe::Miss(key))
    }

    /// Records a committed step under `key` and returns the root with its new layer.
    pub(crate) fn finish(
        &self,
        root: &FsState,
        key: &Digest,
        committed: &Committed,
        exec_seconds: f64,
    ) -> Result<Output, OpError> {
        let own = self.record(key, committed, exec_seconds)?;
        let out = Self::stacked(root, own.clone());
        if let Some(vertex) = self.take_pending(key) {
            self.note_step(vertex, key, &own, &out, exec_seconds);
        }
        Ok(out)
    }

    pub(crate) fn stacked(root: &FsState, new_layers: Vec<LayerRef>) -> Output {
        let mut layers = root.layers.clone();
        layers.extend(new_layers);
        Output::Fs(FsState {
            layers,
            image_config: None,
        })
    }

    /// Explains a miss: which named components changed since this step's last build; for
    /// copied files, which files (`file_changes`, named by path) rather than their total.
    pub(crate) fn miss_reason(
        &self,
        vertex: &Vertex,
        components: &KeyComponents,
        file_changes: &[String],
    ) -> String {
        let changed = match self
            .cache
            .remember_step(&self.step_identity(vertex), components)
        {
            Ok(Some(c)) => c,
            Ok(None) => return "cache miss: first build of this step".into(),
            Err(_) => return "cache miss".into(),
        };
        let mut changed: Vec<String> = changed
            .into_iter()
            .filter(|c| file_changes.is_empty() || !c.starts_with("files "))
            .collect();
        changed.splice(0..0, file_changes.iter().cloned());
        if changed.is_empty() {
            return "cache miss: same inputs as last build, but its result is gone (pruned or --no-cache)".into();
        }
        const SHOWN: usize = 5;
        let mut text = changed
            .iter()
            .take(SHOWN)
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        if changed.len() > SHOWN {
            text.push_str(&format!(" and {} more", changed.len() - SHOWN));
        }
        format!("cache miss: changed {text}")
    }

    fn source(
        &self,
        ctx: &JobCtx<'_, Digest, VertexId>,
        src: &SourceOp,
    ) -> Result<Output, OpError> {
        match src {
            SourceOp::Scratch => Ok(Output::Fs(FsState::default())),
            SourceOp::Context { name, .. } => {
                let c = self
                    .contexts
                    .get(name)
                    .ok_or_else(|| OpError::UnknownContext {
                        name: name.clone(),
                        known: self.contexts.keys().cloned().collect::<Vec<_>>().join(", "),
                    })?;
                ctx.cached(None);
                Ok(Output::Context(c.clone()))
            }
            SourceOp::Image { reference, .. } => self.image(ctx, reference).map(Output::Fs),
        }
    }

    /// A base image from the local store: every layer unpacked once into a snapshot keyed
    /// by its chain id, shared by all builds.
    fn image(
        &self,
        ctx: &JobCtx<'_, Digest, VertexId>,
        reference: &kiln_oci::Reference,
    ) -> Result<FsState, OpError> {
        let name = reference.to_string();
        let img = match self.store.resolve(&name) {
            Ok(i) => i,
            Err(e) if e.is_not_found() => {
                return Err(OpError::ImageNotFound {
                    reference: reference.familiar(),
                })
            }
            Err(e) => return Err(e.into()),
        };
        let bad = |message: String| OpError::BadImage {
            reference: reference.familiar(),
            message,
        };
        let config = self.store.image_config(img.manifest.config())?;
        let layers = img.manifest.layers();
        if layers.len() != config.rootfs.diff_ids.len() {
            return Err(bad(format!(
                "{} layers but {} diff_ids in its config",
                layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let mut out = Vec::new();
        let mut all_present = true;
        let chain_ids = kiln_snapshot::chain_ids(&config.rootfs.diff_ids);
        for (i, blob) in layers.iter().enumerate() {
            let digest = Digest::try_from(blob.digest()).map_err(|e| bad(e.to_string()))?;
            if media::layer_compression(blob.media_type().as_ref()).is_none() {
                return Err(bad(format!(
                    "layer {digest} has unsupported media type {}",
                    blob.media_type()
                )));
            }
            self.store.protect(&self.lease, &digest)?;
            let chain = &config.rootfs.diff_ids[..=i];
            let known = self
                .snapshots
                .exists(&SnapshotId::from_chain_id(chain_ids[i].clone()));
            all_present &= known;
            if !known {
                ctx.status(format!("unpacking layer {}", &digest.to_string()[..19]));
            }
            let snapshot = self.snapshots.ensure_layer_snapshot(
                chain,
                blob,
                &kiln_archive::DecodeLimits::default(),
            )?;
            out.push(LayerRef {
                snapshot,
                descriptor: blob.clone(),
                diff_id: config.rootfs.diff_ids[i].clone(),
            });
        }
        if all_present {
            ctx.cached(None);
        }
        Ok(FsState {
            layers: out,
            image_config: Some(Box::new(config)),
        })
    }
}

/// The outcome of [`Executor::probe`].
pub(crate) enum Probe {
    Hit(Output),
    Miss(Digest),
}

pub(crate) fn fs_input<'a>(
    inputs: &'a [Arc<Output>],
    i: kiln_graph::InputIndex,
    what: &str,
) -> Result<&'a FsState, OpError> {
    match inputs.get(i.as_usize()).map(|o| o.as_ref()) {
        Some(Output::Fs(s)) => Ok(s),
        Some(Output::Context(_)) => Err(OpError::Internal(format!(
            "{what}: input {i} is a context, not a filesystem"
        ))),
        None => Err(OpError::Internal(format!("{what}: missing input {i}"))),
    }
}

impl Worker<Digest, VertexId> for Executor<'_> {
    type Output = Output;
    type Error = OpError;

    fn describe(&self, _key: &Digest, payload: &VertexId) -> String {
        self.graph
            .vertex(*payload)
            .map(|v| v.meta.description.clone())
            .unwrap_or_default()
    }

    fn execute(
        &self,
        ctx: &JobCtx<'_, Digest, VertexId>,
        inputs: &[Arc<Output>],
    ) -> Result<Output, OpError> {
        let vertex = self.vertex(*ctx.payload())?;
        // A miss materialises its inputs (shared.rs); file.rs and exec.rs only see them
        // through probe, so they are kept here for the step's duration.
        self.stash_inputs(*ctx.payload(), inputs);
        let result = self.dispatch(ctx, vertex, inputs);
        self.unstash_inputs(*ctx.payload());
        result
    }
}

impl Executor<'_> {
    fn dispatch(
        &self,
        ctx: &JobCtx<'_, Digest, VertexId>,
        vertex: &Vertex,
        inputs: &[Arc<Output>],
    ) -> Result<Output, OpError> {
        match &vertex.op {
            Op::Source(src) => self.source(ctx, src),
            Op::Exec(exec) => self.exec(ctx, vertex, exec, inputs),
            Op::File(file) => self.file(ctx, vertex, file, inputs),
            Op::Merge => {
                let mut layers = Vec::new();
                for i in 0..inputs.len() {
                    layers.extend(
                        fs_input(inputs, kiln_graph::InputIndex(i as u32), "merge")?
                            .layers
                            .iter()
                            .cloned(),
                    );
                }
                ctx.cached(None);
                Ok(Output::Fs(FsState {
                    layers,
                    image_config: None,
                }))
            }
        }
    }
}
