//! The copy-based snapshotter: the slow path, for when overlayfs cannot be mounted.
//!
//! `materialise` applies the lower snapshots in order into one directory (each snapshot is
//! streamed as a tar with `overlay_upper` conversion straight into kiln-archive's merge
//! apply, so whiteout/opaque semantics are exactly those of layer application) and records
//! every node's identity: inode number and ctime. ctime cannot be set from user space and
//! changes on every content or metadata change, so after the step "same inode, same ctime"
//! means unchanged without reading a byte.
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
    ctime: (i64, i64),
    dir: bool,
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
    index_dir(&dst, Path::new(""), &mut m)?;
    Ok(m)
}

fn stat_at(root: &SafeRoot, dir: &Path, name: &OsStr) -> Result<rustix::fs::Stat> {
    let fd = root.open_dir(dir)?;
    rustix::fs::statat(fd.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| Error::io("lstat", dir.join(name))(e.into()))
}

fn ident(st: &rustix::fs::Stat) -> Ident {
    Ident {
        ino: st.st_ino,
        ctime: (st.st_ctime, st.st_ctime_nsec as i64),
        dir: rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory,
    }
}

fn index_dir(root: &SafeRoot, dir: &Path, m: &mut Materialised) -> Result<()> {
    let names = root.read_dir(dir)?;
    for name in &names {
        let st = stat_at(root, dir, name)?;
        let id = ident(&st);
        let path = dir.join(name);
        m.nodes.insert(path.clone(), id);
        if id.dir {
            index_dir(root, &path, m)?;
        }
    }
    m.children.insert(dir.to_path_buf(), names);
    Ok(())
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
            let st = stat_at(&self.root, dir, name)?;
            let id = ident(&st);
            match self.m.nodes.get(&path) {
                None => self.copy_new(&path, false)?,
                Some(old) if old.ino != id.ino || old.dir != id.dir => {
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
