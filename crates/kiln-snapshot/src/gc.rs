//! Garbage collection of snapshots and of active/temp dirs left by dead processes.
//!
//! Ordering against writers: [`Snapshots::prepare_active`] checks its lowers under a shared
//! flock on `locks/gc.lock` and records them in `lowers.json` while holding the active dir's
//! own lock; prune holds `gc.lock` exclusively and treats the lowers of every *locked*
//! active dir as referenced. Snapshots younger than a grace period are kept too, because
//! between `ensure_layer_snapshot`/`commit_active` returning and the next `prepare_active`
//! nothing else pins them. A snapshot is deleted by first renaming it into `tmp/` (it
//! vanishes atomically: nobody sees a half-deleted lower) and then removing the tree.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::util::{lock_file, remove_tree, tree_size, try_lock, unique_name};
use crate::{Error, Result, SnapshotId, Snapshots};

/// Snapshots and temp dirs younger than this survive a prune (see the module doc).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotPruneReport {
    pub snapshots_removed: u64,
    pub active_removed: u64,
    pub temp_removed: u64,
    /// Bytes of file content freed (regular files' sizes).
    pub bytes_freed: u64,
}

impl Snapshots {
    /// Removes every snapshot not in `keep` (nor below one in `keep`, nor under a live
    /// active dir, nor younger than [`DEFAULT_GRACE`]), every active dir whose lock nobody
    /// holds, and stale unpack temp dirs.
    pub fn prune(&self, keep: &HashSet<SnapshotId>) -> Result<SnapshotPruneReport> {
        self.prune_with(keep, DEFAULT_GRACE)
    }

    pub fn prune_with(
        &self,
        keep: &HashSet<SnapshotId>,
        grace: Duration,
    ) -> Result<SnapshotPruneReport> {
        let _gc = lock_file(&self.gc_lock_path(), true)?;
        let mut report = SnapshotPruneReport::default();
        let mut keep = keep.clone();

        for (path, _) in entries(&self.active_dir())? {
            // No lock file: being created (impossible under our gc lock) or broken.
            let lock = fs::File::open(path.join("lock")).ok();
            let live = match &lock {
                Some(f) => !try_lock(f).map_err(Error::io("flock", &path))?,
                // No lock file: only a prepare_active between mkdir and lock looks like
                // this, and that holds gc.lock shared — which we exclude. So it is debris.
                None => false,
            };
            if live {
                if let Ok(bytes) = fs::read(path.join("lowers.json")) {
                    let ids: Vec<SnapshotId> = serde_json::from_slice(&bytes).unwrap_or_default();
                    keep.extend(ids);
                }
                continue;
            }
            report.bytes_freed += tree_size(&path);
            remove_tree(&path, self.runner.as_deref())?;
            report.active_removed += 1;
        }

        for (path, age) in entries(&self.tmp_dir())? {
            if age >= grace {
                report.bytes_freed += tree_size(&path);
                remove_tree(&path, self.runner.as_deref())?;
                report.temp_removed += 1;
            }
        }

        // A kept snapshot needs every snapshot below it.
        let mut stack: Vec<SnapshotId> = keep.iter().cloned().collect();
        while let Some(id) = stack.pop() {
            if let Ok(meta) = self.meta(&id) {
                if let Some(p) = meta.parent {
                    let p = SnapshotId::from_chain_id(p);
                    if keep.insert(p.clone()) {
                        stack.push(p);
                    }
                }
            }
        }

        for (path, age) in entries(&self.dir)? {
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(SnapshotId::from_hex)
            else {
                continue; // tmp, active, locks
            };
            if keep.contains(&id) || age < grace {
                continue;
            }
            let lock = lock_file(&self.lock_path(&id), true)?;
            let doomed = self.tmp_dir().join(unique_name("prune"));
            fs::rename(&path, &doomed).map_err(Error::io("rename", &path))?;
            report.bytes_freed += tree_size(&doomed);
            remove_tree(&doomed, self.runner.as_deref())?;
            drop(lock);
            let _ = fs::remove_file(self.lock_path(&id));
            report.snapshots_removed += 1;
        }
        Ok(report)
    }

    /// Every snapshot present (for `kiln du` and tests).
    pub fn list(&self) -> Result<Vec<SnapshotId>> {
        Ok(entries(&self.dir)?
            .into_iter()
            .filter_map(|(p, _)| p.file_name()?.to_str().and_then(SnapshotId::from_hex))
            .filter(|id| self.exists(id))
            .collect())
    }
}

/// Directory entries with their age (by mtime).
fn entries(dir: &Path) -> Result<Vec<(std::path::PathBuf, Duration)>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read directory", dir)(e)),
    };
    let now = SystemTime::now();
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(Error::io("read directory", dir))?;
        let age = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .unwrap_or_default();
        out.push((e.path(), age));
    }
    Ok(out)
}
