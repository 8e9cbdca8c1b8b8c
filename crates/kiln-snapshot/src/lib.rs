//! kiln-snapshot: layer snapshots, writable overlay mounts and layer diffs.
//!
//! Owns: the directory `KILN_ROOT/kiln/snapshots/` — one *overlay-native* directory per
//! layer, keyed by its OCI chain id and shared by every build; unpacking base layers there
//! exactly once (verified against the diff_id while applying), also while an image is
//! still being pulled ([`PullUnpacker`], fed "this blob is committed" by the caller; this
//! crate knows nothing of registries); writable "active" mounts
//! (a fresh upper + work dir over a stack of snapshots) for RUN and COPY steps; turning an
//! upper directory into a deterministic, compressed layer blob in the store *and* keeping
//! that upper directory as the next snapshot; the copy-based fallback when overlayfs is not
//! usable; pruning of unreferenced snapshots and stale active dirs; a parallel
//! (multi-member) gzip writer.
//!
//! Principle: never scan what you can know. With overlayfs the changes of a step *are* the
//! upper directory; only the copy fallback walks a tree (the documented slow path).
//!
//! Must not: run processes or create namespaces (kiln-sandbox mounts the overlay inside its
//! own mount namespace), resolve untrusted paths itself (everything inside a snapshot goes
//! through `kiln_fs::SafeRoot`), schedule build work (its only threads are the parallel
//! gzip writer and the pull unpacker's small pool), decide cache keys, or print.
//!
//! Rootless stores: on-disk owners are host ids (container 0 is the user, N the
//! subordinate id `start + N - 1`); commits write container ids through
//! [`Snapshots::id_mapping`]. With a subordinate range, base layers are unpacked inside a
//! user namespace with that mapping (a re-exec helper registered by the binary, see
//! [`NamespaceRunner`]; this crate itself creates no namespace), so files get their real
//! owners — the ones the RUN sandbox shows and RUN upper dirs hold — and trees holding
//! subordinate-owned files are removed there too (prune, GC, dropped actives); the tar of
//! an upper dir at commit is written there (it may hold directories only subordinate ids
//! can read). Without a range (single-id map) the process cannot chown: files are
//! unpacked owned by the user and each node meant for another owner keeps that owner in
//! the `user.kiln.owner` xattr (`"uid:gid"`, container ids), which commits prefer where
//! the node is still the user's; inside a RUN such files look root-owned (only container
//! 0 exists there anyway).
//!
//! On-disk layout:
//! ```text
//! kiln/snapshots/<chainid-hex>/fs/             overlay-native layer content (an overlay lower)
//! kiln/snapshots/<chainid-hex>/snapshot.json   chain id, diff_id, parent, size, created
//! kiln/snapshots/locks/<chainid-hex>.lock      flock: one unpacker per snapshot
//! kiln/snapshots/tmp/<unique>/                 unpacks in progress (renamed into place)
//! kiln/snapshots/active/<id>/{upper,work}/     writable layer of a running step
//! kiln/snapshots/active/<id>/root/             copy fallback: materialised lowers
//! kiln/snapshots/active/<id>/lock              flock held while the Active is alive
//! kiln/snapshots/active/<id>/lowers.json       the snapshots it stacks on (pinned for GC)
//! ```

mod active;
mod arrivals;
mod chainid;
mod commit;
mod direct;
mod error;
mod fallback;
mod gc;
mod layer_snapshot;
mod lookup;
mod pgzip;
mod userns;
mod util;

pub use active::{Active, ActiveMount, Snapshotter};
pub use arrivals::{LayerArrivals, LayerJob, PullUnpacker, UnpackOutcome};
pub use chainid::{chain_id, chain_ids, next_chain_id};
pub use commit::{CommitOptions, Committed, LayerCompression};
pub use error::{Error, Result};
pub use gc::{SnapshotPruneReport, DEFAULT_GRACE};
pub use layer_snapshot::{unpack_count, SnapshotId, SnapshotMeta};
pub use pgzip::{ParallelGzWriter, DEFAULT_CHUNK};
pub use userns::{serve_in_namespace, set_namespace_runner, NamespaceRunner};

pub use kiln_archive::{LayerDigests, OverlayXattr};

use std::path::{Path, PathBuf};

use kiln_fs::IdMapping;

/// A handle on the snapshot directory of one store. Cheap to clone; holds no descriptors,
/// so several processes (and threads) can use one store at once.
#[derive(Debug, Clone)]
pub struct Snapshots {
    store: kiln_store::Store,
    dir: PathBuf,
    xattr: OverlayXattr,
    id_map: Option<IdMapping>,
    /// Rootless with subordinate ids: runs unpacks and removals in the user namespace.
    runner: Option<std::sync::Arc<dyn NamespaceRunner>>,
    /// This process is the namespace helper (see `userns`).
    in_namespace: bool,
}

impl Snapshots {
    /// Opens (creating if needed) `kiln/snapshots/` under the store root.
    ///
    /// The overlay xattr namespace follows how kiln-sandbox mounts overlays: as root it
    /// mounts without a user namespace (`trusted.overlay.*`), otherwise with `userxattr`
    /// (`user.overlay.*`). A store is therefore used consistently as root or as one user.
    pub fn open(store: &kiln_store::Store) -> Result<Snapshots> {
        let dir = store.root().join("kiln").join("snapshots");
        for d in [dir.join("tmp"), dir.join("active"), dir.join("locks")] {
            std::fs::create_dir_all(&d).map_err(Error::io("create directory", &d))?;
        }
        let xattr = if kiln_fs::running_as_root() {
            OverlayXattr::Trusted
        } else {
            OverlayXattr::User
        };
        Ok(Snapshots {
            store: store.clone(),
            dir,
            xattr,
            id_map: (!kiln_fs::running_as_root()).then(IdMapping::for_current_process),
            runner: if kiln_fs::running_as_root() {
                None
            } else {
                userns::registered_runner()
            },
            in_namespace: false,
        })
    }

    /// Replaces the owner mapping ([`Snapshots::id_mapping`]); None treats on-disk owners
    /// as image owners (root's behaviour). For tests and for callers whose sandboxes use a
    /// mapping other than `IdMapping::for_current_process`. Use one mapping per store.
    pub fn with_id_mapping(mut self, id_map: Option<IdMapping>) -> Snapshots {
        self.id_map = id_map;
        self
    }

    /// Replaces the namespace runner ([`set_namespace_runner`]'s, for a non-root process);
    /// None unpacks and removes as this process (owners kept in the override xattr).
    pub fn with_namespace_runner(
        mut self,
        runner: Option<std::sync::Arc<dyn NamespaceRunner>>,
    ) -> Snapshots {
        self.runner = runner;
        self
    }

    /// Whether unpacks and removals run in a user namespace with the full id mapping.
    pub fn uses_namespace(&self) -> bool {
        self.runner.is_some()
    }

    /// How on-disk owners relate to image owners: None as root (they are the same);
    /// rootless, the mapping kiln-sandbox's `IdMapPolicy::Auto` installs
    /// (`IdMapping::for_current_process`). Unpacks apply layers through it (owners the
    /// process may not chown to are kept in the `user.kiln.owner` xattr) and commits
    /// translate host → container ids with it, preferring that xattr.
    pub fn id_mapping(&self) -> Option<&IdMapping> {
        self.id_map.as_ref()
    }

    pub fn store(&self) -> &kiln_store::Store {
        &self.store
    }

    /// `kiln/snapshots`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Which overlay xattr namespace snapshots and upper dirs of this process use.
    pub fn overlay_xattr(&self) -> OverlayXattr {
        self.xattr
    }

    /// The directory holding a snapshot (`snapshot.json` and `fs/`).
    pub fn snapshot_dir(&self, id: &SnapshotId) -> PathBuf {
        self.dir.join(id.hex())
    }

    /// The overlay lower directory of a snapshot.
    pub fn snapshot_fs(&self, id: &SnapshotId) -> PathBuf {
        self.snapshot_dir(id).join("fs")
    }

    /// Whether a complete snapshot exists (its directory appears atomically).
    pub fn exists(&self, id: &SnapshotId) -> bool {
        self.snapshot_dir(id).join("snapshot.json").is_file()
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }
    pub(crate) fn active_dir(&self) -> PathBuf {
        self.dir.join("active")
    }
    pub(crate) fn lock_path(&self, id: &SnapshotId) -> PathBuf {
        self.dir.join("locks").join(format!("{}.lock", id.hex()))
    }
    pub(crate) fn gc_lock_path(&self) -> PathBuf {
        self.dir.join("locks").join("gc.lock")
    }
}
