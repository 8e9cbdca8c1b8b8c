//! kiln-snapshot: layer snapshots, writable overlay mounts and layer diffs.
//!
//! Owns: the directory `KILN_ROOT/kiln/snapshots/` — one *overlay-native* directory per
//! layer, keyed by its OCI chain id and shared by every build; unpacking base layers there
//! exactly once (verified against the diff_id while applying); writable "active" mounts
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
//! through `kiln_fs::SafeRoot`), schedule work, decide cache keys, or print.
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
mod chainid;
mod commit;
mod error;
mod fallback;
mod gc;
mod layer_snapshot;
mod lookup;
mod pgzip;
mod util;

pub use active::{Active, ActiveMount, Snapshotter};
pub use chainid::{chain_id, chain_ids, next_chain_id};
pub use commit::{CommitOptions, Committed, LayerCompression};
pub use error::{Error, Result};
pub use gc::{SnapshotPruneReport, DEFAULT_GRACE};
pub use layer_snapshot::{unpack_count, SnapshotId, SnapshotMeta};
pub use pgzip::{ParallelGzWriter, DEFAULT_CHUNK};

pub use kiln_archive::{LayerDigests, OverlayXattr};

use std::path::{Path, PathBuf};

/// A handle on the snapshot directory of one store. Cheap to clone; holds no descriptors,
/// so several processes (and threads) can use one store at once.
#[derive(Debug, Clone)]
pub struct Snapshots {
    store: kiln_store::Store,
    dir: PathBuf,
    xattr: OverlayXattr,
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
        })
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
