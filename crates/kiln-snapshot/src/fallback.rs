//! The copy-based snapshotter: the slow path, for when overlayfs cannot be mounted.
//!
//! `materialise` applies the lower snapshots in order into one directory (each snapshot is
//! streamed as a tar with `overlay_upper` conversion straight into kiln-archive's merge
//! apply, so whiteout/opaque semantics are exactly those of layer application) and records
//! every node's identity: inode number, birth time and ctime. ctime cannot be set from user
//! space and changes on every content or metadata change, so after the step "same inode,
//! same ctime" means unchanged without reading a byte — provided the step cannot change a
//! node within the same timestamp tick as the recording: `materialise` therefore waits
//! until the filesystem's clock has moved past every recorded time before the step runs.
//! The birth time tells a directory that was deleted and re-created (and happened to get
//! the same inode number back, which ext4 does readily) from the original one, so it
//! becomes opaque exactly as overlayfs would make it.
//!
//! `diff_into_upper` walks the tree once and writes an overlay-native upper dir — the same
//! format overlayfs would have produced (changed/new nodes copied whole, their parent
//! directories created with the current metadata, 0/0 char device whiteouts for deleted
//! names, an opaque directory where a directory replaced something) — so commit is
//! identical for both snapshotters. This walk is what overlayfs saves us; it is O(tree).

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use kiln_archive::{ApplyMode, ApplyOptions, DecodeLimits, WriteOptions};
use kiln_fs::{CopyOptions, FileKind, IdMapping, SafeRoot, OWNER_XATTR};
use rustix::fs::AtFlags;

use crate::lookup::opaque_key;
use crate::{Error, OverlayXattr, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ident {
    ino: u64,
    ctime: (i64, u32),
    /// None where the filesystem does not report birth times.
    btime: Option<(i64, u32)>,
    dir: bool,
}

impl Ident {
    /// Same inode number but not the same node: deleted and re-created during the step.
    fn replaced_by(&self, now: &Ident) -> bool {
        self.ino != now.ino
            || self.dir != now.dir
            || matches!((self.btime, now.btime), (Some(a), Some(b)) if a != b)
    }
}

/// A materialised root and the identity of every node in it before the step ran.
#[derive(Debug)]
pub(crate) struct Materialised {
    pub root: PathBuf,
    nodes: HashMap<PathBuf, Ident>,
    children: HashMap<PathBuf, Vec<OsString>>,
}

pub(crate) fn materialise(
    lowers: &[PathBuf],
    root: &Path,
    x: OverlayXattr,
    id_map: Option<&IdMapping>,
) -> Result<Materialised> {
    std::fs::create_dir_all(root).map_err(Error::io("create directory", root))?;
    let dst = SafeRoot::open(root)?;
    let apply = ApplyOptions {
        // Snapshots were checked against the limits when they were unpacked.
        limits: DecodeLimits::unlimited(),
        mode: ApplyMode::Merge,
        id_map: id_map.cloned(),
        ..ApplyOptions::default()
    };
    // Rootless, owners travel through the pipe as container ids and land as the owner
    // override again (kiln_fs::idmap).
    let wopts = WriteOptions {
        clamp_mtime: None,
        overlay_upper: true,
        xattrs: true,
        id_map: id_map.cloned(),
    };
    let _ = x; // both xattr namespaces are recognised by write_tree's overlay_upper mode
    for lower in lowers {
        let src = SafeRoot::open(lower)?;
        let (reader, writer) = io::pipe().map_err(Error::io("pipe", lower))?;
        std::thread::scope(|s| -> Result<()> {
            let w = s.spawn(|| kiln_archive::write_tree(&src, writer, &wopts).map(drop));
            let applied = kiln_archive::apply_layer(&dst, reader, &apply);
            let written = w.join().expect("tar writer thread panicked");
            written?;
            applied?;
            Ok(())
        })?;
    }
    let mut m = Materialised {
        root: root.to_path_buf(),
        nodes: HashMap::new(),
        children: HashMap::new(),
    };
    let latest = index_dir(&dst, Path::new(""), &mut m)?;
    let probe = root.with_extension("clock-probe");
    wait_for_clock_past(&probe, latest)?;
    Ok(m)
}

fn ident_at(root: &SafeRoot, dir: &Path, name: &OsStr) -> Result<Ident> {
    use rustix::fs::{FileType, StatxFlags};
    let fd = root.open_dir(dir)?;
    let st = rustix::fs::statx(
        fd.as_fd(),
        name,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS | StatxFlags::BTIME,
    )
    .map_err(|e| Error::io("statx", dir.join(name))(e.into()))?;
    let btime = (st.stx_mask & StatxFlags::BTIME.bits() != 0)
        .then_some((st.stx_btime.tv_sec, st.stx_btime.tv_nsec));
    Ok(Ident {
        ino: st.stx_ino,
        ctime: (st.stx_ctime.tv_sec, st.stx_ctime.tv_nsec),
        btime,
        dir: FileType::from_raw_mode(st.stx_mode.into()) == FileType::Directory,
    })
}

/// Blocks until a change made to `probe`'s filesystem now gets a ctime later than `latest`,
/// so no change made by the step can share a timestamp with the recorded state. Timestamps
/// come from a coarse clock (one tick is a few milliseconds), so this is a short wait.
fn wait_for_clock_past(probe: &Path, latest: (i64, u32)) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    std::fs::write(probe, b"").map_err(Error::io("write", probe))?;
    let result = loop {
        let f = std::fs::File::options()
            .write(true)
            .open(probe)
            .map_err(Error::io("open", probe))?;
        // A chmod to the same mode still bumps ctime to the filesystem's current time.
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(Error::io("chmod", probe))?;
        let md = f.metadata().map_err(Error::io("stat", probe))?;
        if (md.ctime(), md.ctime_nsec() as u32) > latest {
            break Ok(());
        }
        // A clock far in the future (a layer with a bogus ctime cannot exist: ctime is
        // set by the kernel) would only be a mis-set system clock; do not hang on it.
        if std::time::Instant::now() > deadline {
            break Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    let _ = std::fs::remove_file(probe);
    result
}

/// Records every node under `dir`; returns the latest ctime or birth time seen.
fn index_dir(root: &SafeRoot, dir: &Path, m: &mut Materialised) -> Result<(i64, u32)> {
    let names = root.read_dir(dir)?;
    let mut latest = (i64::MIN, 0);
    for name in &names {
        let id = ident_at(root, dir, name)?;
        latest = latest.max(id.ctime).max(id.btime.unwrap_or(latest));
        let path = dir.join(name);
        m.nodes.insert(path.clone(), id);
        if id.dir {
            latest = latest.max(index_dir(root, &path, m)?);
        }
    }
    m.children.insert(dir.to_path_buf(), names);
    Ok(latest)
}

/// Writes the changes made to `m.root` since [`materialise`] into the empty dir `upper`.
pub(crate) fn diff_into_upper(
    m: &Materialised,
    upper: &Path,
    x: OverlayXattr,
    id_map: Option<&IdMapping>,
) -> Result<()> {
    let is_root = kiln_fs::running_as_root();
    let mut d = Differ {
        m,
        root: SafeRoot::open(&m.root)?,
        upper: SafeRoot::open(upper)?,
        x,
        made: HashSet::new(),
        dir_times: Vec::new(),
        is_root,
        // Not root: the copies cannot be chowned; keep each owner in the override xattr.
        id_map: id_map.filter(|_| !is_root),
    };
    d.dir(Path::new(""))?;
    // Directory times last: creating children bumped them.
    for (p, t) in std::mem::take(&mut d.dir_times).into_iter().rev() {
        d.upper.set_times(&p, t, t)?;
    }
    Ok(())
}

struct Differ<'a> {
    m: &'a Materialised,
    root: SafeRoot,
    upper: SafeRoot,
    x: OverlayXattr,
    /// Directories already created in the upper dir.
    made: HashSet<PathBuf>,
    dir_times: Vec<(PathBuf, (i64, u32))>,
    is_root: bool,
    id_map: Option<&'a IdMapping>,
}

impl Differ<'_> {
    fn dir(&mut self, dir: &Path) -> Result<()> {
        let now = self.root.read_dir(dir)?;
        let now_set: HashSet<&OsString> = now.iter().collect();
        if let Some(old) = self.m.children.get(dir) {
            for name in old.iter().filter(|n| !now_set.contains(n)) {
                self.whiteout(&dir.join(name))?;
            }
        }
        for name in &now {
            let path = dir.join(name);
            let id = ident_at(&self.root, dir, name)?;
            match self.m.nodes.get(&path) {
                None => self.copy_new(&path, false)?,
                Some(old) if old.replaced_by(&id) => {
                    // Replaced: overlayfs shows a directory created over a deleted name as
                    // opaque; a non-directory simply replaces.
                    self.copy_new(&path, id.dir)?
                }
                Some(old) if id.dir => {
                    if old.ctime != id.ctime {
                        self.ensure_dir(&path)?;
                    }
                    self.dir(&path)?;
                }
                Some(old) if old.ctime != id.ctime => self.copy_new(&path, false)?,
                Some(_) => {}
            }
        }
        Ok(())
    }

    fn whiteout(&mut self, path: &Path) -> Result<()> {
        self.ensure_parent(path)?;
        self.upper.mknod(path, FileKind::CharDevice, 0, 0, 0)?;
        Ok(())
    }

    fn copy_new(&mut self, path: &Path, opaque: bool) -> Result<()> {
        self.ensure_parent(path)?;
        let opts = CopyOptions {
            preserve_owner: self.is_root,
            chown: None,
            xattrs: true,
            id_map: self.id_map.cloned(),
        };
        kiln_fs::copy(&self.root, path, &self.upper, path, &opts)?;
        if opaque {
            self.upper
                .set_xattr(path, OsStr::new(opaque_key(self.x)), b"y")?;
        }
        Ok(())
    }

    fn ensure_parent(&mut self, path: &Path) -> Result<()> {
        match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => self.ensure_dir(p),
            _ => Ok(()),
        }
    }

    /// Creates `dir` (and its ancestors) in the upper dir with the metadata it has now,
    /// like an overlayfs copy-up of a directory.
    fn ensure_dir(&mut self, dir: &Path) -> Result<()> {
        if self.made.contains(dir) {
            return Ok(());
        }
        self.ensure_parent(dir)?;
        let m = self.root.lstat(dir)?;
        self.upper.mkdir(dir, 0o700)?;
        if self.is_root {
            self.upper.chown(dir, m.uid, m.gid)?;
        }
        let mut over = None;
        for (k, v) in self.root.list_xattrs(dir)? {
            let kb = k.as_encoded_bytes();
            if kb.starts_with(b"trusted.overlay.") || kb.starts_with(b"user.overlay.") {
                continue;
            }
            if kb == OWNER_XATTR.as_bytes() && self.id_map.is_some() {
                over = kiln_fs::idmap::parse_owner(&v);
                continue; // restated below from the effective owner
            }
            let _ = self.upper.set_xattr(dir, &k, &v); // refusals: as kiln_fs::copy does
        }
        if let Some(map) = self.id_map {
            let want = map.effective_owner(m.uid, m.gid, over);
            let made = self.upper.lstat(dir)?;
            if want != map.container_owner(made.uid, made.gid) {
                let v = kiln_fs::idmap::format_owner(want.0, want.1);
                let _ = self
                    .upper
                    .set_xattr(dir, OsStr::new(OWNER_XATTR), v.as_bytes());
            }
        }
        self.upper.chmod(dir, m.mode)?;
        self.dir_times
            .push((dir.to_path_buf(), (m.mtime, m.mtime_nsec)));
        self.made.insert(dir.to_path_buf());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Ident;

    fn node(ino: u64, btime: Option<(i64, u32)>) -> Ident {
        Ident {
            ino,
            ctime: (10, 0),
            btime,
            dir: true,
        }
    }

    /// ext4 hands a freed inode number straight back to the next mkdir: only the birth time
    /// tells `rm -rf d && mkdir d` from `d` kept (the CI failure that motivated it).
    #[test]
    fn recreated_directory_with_reused_inode_is_a_replacement() {
        let before = node(7, Some((100, 5)));
        assert!(before.replaced_by(&node(7, Some((101, 0)))));
        assert!(before.replaced_by(&node(8, Some((100, 5)))));
        assert!(!before.replaced_by(&node(7, Some((100, 5)))));
        // Without birth times only the inode number can tell.
        assert!(!node(7, None).replaced_by(&node(7, None)));
        let mut file = node(7, None);
        file.dir = false;
        assert!(node(7, None).replaced_by(&file));
    }
}
