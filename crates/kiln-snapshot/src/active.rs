//! Active (writable) mounts: a fresh upper + work dir over a stack of snapshots.
//!
//! kiln does not mount anything here: kiln-sandbox mounts the overlay inside the step's own
//! mount namespace (`RootFs::Overlay { lowers, upper, work }`), so nothing is left mounted
//! on the host if kiln dies. Each active dir holds a flock (`lock`) for the life of the
//! [`Active`]; prune removes active dirs whose lock nobody holds (crashed or finished
//! without cleanup).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::util::{lock_file, remove_tree, unique_name, write_atomic};
use crate::{Error, OverlayXattr, Result, SnapshotId, Snapshots};

/// How steps get a writable root filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshotter {
    /// overlayfs: the upper dir *is* the diff.
    Overlay,
    /// Copy the lowers into one directory, run there, and walk it afterwards to find the
    /// changes (the slow path, for kernels or filesystems where overlayfs is unusable).
    Copy,
}

impl Snapshotter {
    /// `KILN_SNAPSHOTTER=copy|overlay` forces a choice; otherwise decided once per process:
    /// overlay when the kernel has it (`/proc/filesystems`), the store is not itself on
    /// overlayfs (an upper dir cannot live there) and, when not root, the kernel is ≥ 5.11
    /// (unprivileged overlay with `userxattr`). This is a prediction, not a trial mount: a
    /// library must not fork a multi-threaded process to unshare a throwaway mount
    /// namespace; a wrong guess surfaces as the sandbox's typed "mount overlay" error, and
    /// `KILN_SNAPSHOTTER=copy` is the documented way out.
    pub fn detect(store_root: &Path) -> Snapshotter {
        static DETECTED: OnceLock<Snapshotter> = OnceLock::new();
        match std::env::var("KILN_SNAPSHOTTER").as_deref() {
            Ok("copy") => return Snapshotter::Copy,
            Ok("overlay") => return Snapshotter::Overlay,
            _ => {}
        }
        *DETECTED.get_or_init(|| probe(store_root))
    }
}

const OVERLAYFS_SUPER_MAGIC: u64 = 0x794c_7630;

fn probe(store_root: &Path) -> Snapshotter {
    let has_overlay = fs::read_to_string("/proc/filesystems")
        .map(|s| {
            s.lines()
                .any(|l| l.split_whitespace().last() == Some("overlay"))
        })
        .unwrap_or(false);
    if !has_overlay {
        return Snapshotter::Copy;
    }
    if let Ok(st) = rustix::fs::statfs(store_root) {
        if st.f_type as u64 == OVERLAYFS_SUPER_MAGIC {
            return Snapshotter::Copy;
        }
    }
    if !kiln_fs::running_as_root() && !kernel_at_least(5, 11) {
        return Snapshotter::Copy;
    }
    Snapshotter::Overlay
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let u = rustix::system::uname();
    let rel = u.release().to_string_lossy();
    let mut it = rel.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// What the sandbox should mount as the step's root (map it to
/// `kiln_sandbox::RootFs::Overlay` / `RootFs::Dir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActiveMount {
    Overlay {
        /// Bottom-most first, as `kiln_sandbox::RootFs::Overlay` takes them.
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
    },
    /// Copy fallback: a directory holding the materialised lowers.
    Dir(PathBuf),
}

/// A writable layer over a stack of snapshots. Dropping it removes its directory; call
/// [`Active::keep`] to leave it on disk (prune reclaims it later), or
/// [`Snapshots::commit_active`] to turn it into a layer and a snapshot.
#[derive(Debug)]
pub struct Active {
    pub(crate) id: String,
    pub(crate) dir: PathBuf,
    /// Snapshot ids below, bottom-most first.
    pub(crate) lower_ids: Vec<SnapshotId>,
    /// Their `fs/` directories, bottom-most first.
    pub lowers: Vec<PathBuf>,
    /// The upper directory: after a step, exactly its changes (overlay-native format). A
    /// COPY step writes here directly (through `kiln_fs::SafeRoot::open(&active.upper)`).
    pub upper: PathBuf,
    /// overlayfs work dir (same filesystem as `upper`, must start empty).
    pub work: PathBuf,
    pub(crate) snapshotter: Snapshotter,
    pub(crate) xattr: OverlayXattr,
    /// The owner mapping of the snapshots ([`Snapshots::id_mapping`]).
    pub(crate) id_map: Option<kiln_fs::IdMapping>,
    /// Removes what the user cannot (see `userns`).
    pub(crate) runner: Option<std::sync::Arc<dyn crate::NamespaceRunner>>,
    /// Copy fallback: the materialised root and its pre-run state, once mounted.
    pub(crate) copy: Option<crate::fallback::Materialised>,
    pub(crate) _lock: Option<File>,
    pub(crate) keep: bool,
}

impl Snapshots {
    /// Creates `active/<id>/{upper,work}` over `lowers` (bottom-most first; empty for
    /// `FROM scratch`), with the snapshotter [`Snapshotter::detect`] picks.
    pub fn prepare_active(&self, lowers: &[SnapshotId]) -> Result<Active> {
        self.prepare_active_with(lowers, Snapshotter::detect(self.store.root()))
    }

    pub fn prepare_active_with(
        &self,
        lowers: &[SnapshotId],
        snapshotter: Snapshotter,
    ) -> Result<Active> {
        // Shared gc lock: prune (exclusive) either ran before — and then the lowers we check
        // below are really there — or runs after and sees our lowers.json and live lock.
        let _gc = lock_file(&self.gc_lock_path(), false)?;
        for id in lowers {
            if !self.exists(id) {
                return Err(Error::MissingSnapshot(id.to_string()));
            }
        }
        let id = unique_name("a");
        let dir = self.active_dir().join(&id);
        fs::create_dir(&dir).map_err(Error::io("create directory", &dir))?;
        let lock = lock_file(&dir.join("lock"), true)?;
        let upper = dir.join("upper");
        let work = dir.join("work");
        let mut active = Active {
            id,
            dir: dir.clone(),
            lower_ids: lowers.to_vec(),
            lowers: lowers.iter().map(|l| self.snapshot_fs(l)).collect(),
            upper: upper.clone(),
            work: work.clone(),
            snapshotter,
            xattr: self.xattr,
            id_map: self.id_map.clone(),
            runner: self.runner.clone(),
            copy: None,
            _lock: Some(lock),
            keep: false,
        };
        for d in [&upper, &work] {
            fs::create_dir(d).map_err(Error::io("create directory", d))?;
        }
        let ids: Vec<String> = lowers.iter().map(|l| l.to_string()).collect();
        let json = serde_json::to_vec(&ids).expect("strings serialise");
        write_atomic(&dir.join("lowers.json"), &json)?;
        active.keep = false;
        Ok(active)
    }
}

impl Active {
    /// Unique name of this active dir (`kiln/snapshots/active/<id>`).
    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn lower_ids(&self) -> &[SnapshotId] {
        &self.lower_ids
    }
    pub fn snapshotter(&self) -> Snapshotter {
        self.snapshotter
    }

    /// What the sandbox mounts for a RUN step. With the copy fallback this materialises
    /// the lowers (once) and records their state for the later diff.
    pub fn mount(&mut self) -> Result<ActiveMount> {
        match self.snapshotter {
            Snapshotter::Overlay => Ok(ActiveMount::Overlay {
                lowers: self.lowers.clone(),
                upper: self.upper.clone(),
                work: self.work.clone(),
            }),
            Snapshotter::Copy => {
                if self.copy.is_none() {
                    let root = self.dir.join("root");
                    self.copy = Some(crate::fallback::materialise(
                        &self.lowers,
                        &root,
                        self.xattr,
                        self.id_map.as_ref(),
                    )?);
                }
                Ok(ActiveMount::Dir(self.dir.join("root")))
            }
        }
    }

    /// Reads a regular file of the step's root filesystem as the image presents it (e.g.
    /// `etc/passwd` for `-u`), through the safe root; at most `limit` bytes. None if absent.
    pub fn read_file(&self, path: &Path, limit: u64) -> Result<Option<Vec<u8>>> {
        if let Some(m) = &self.copy {
            let root = kiln_fs::SafeRoot::open(&m.root)?;
            return match root.try_lstat(path)? {
                Some(md) if md.kind == kiln_fs::FileKind::Regular => {
                    crate::lookup::read_limited(&root, path, limit).map(Some)
                }
                _ => Ok(None),
            };
        }
        let mut layers = self.lowers.clone();
        layers.push(self.upper.clone());
        crate::lookup::read_file(&layers, path, self.xattr, limit)
    }

    /// Leaves the directory on disk (e.g. `kiln run` without `--rm`: the container's
    /// changes stay in `upper/`). Its lock is released, so `kiln prune` may reclaim it.
    pub fn keep(mut self) -> PathBuf {
        self.keep = true;
        self.dir.clone()
    }

    /// Removes the active dir now (what dropping does, with the error reported).
    pub fn remove(mut self) -> Result<()> {
        self.keep = true; // Drop must not try again
        remove_tree(&self.dir, self.runner.as_deref())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        if !self.keep {
            let _ = remove_tree(&self.dir, self.runner.as_deref());
        }
    }
}
