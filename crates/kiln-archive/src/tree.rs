//! Deterministic tar of a directory tree, optionally reading it as an overlayfs upper
//! directory (the changes of a RUN step).
//!
//! Order: depth-first, each directory's children sorted by the bytes of their names,
//! a directory before its children. Hardlinked regular files (same device and inode)
//! become link entries to the first path in that order. atime/ctime, inode numbers and
//! user names never reach the output.
//!
//! # Owners of a rootless tree
//!
//! With [`WriteOptions::id_map`] the tree is read as a rootless process sees it on the
//! host: each owner is translated host → container ([`IdMapping::container_owner`]; a host
//! id outside the mapping is written as 65534, `nobody`, as the kernel shows it inside the
//! namespace), and the owner override [`kiln_fs::OWNER_XATTR`] left by a rootless unpack
//! replaces each id that maps to container 0 — the id the unprivileged unpacker had to
//! leave. The override xattr itself is never written to a tar, with or without a mapping.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use kiln_fs::{FileKind, IdMapping, Metadata, SafeRoot, OWNER_XATTR};
use rustix::fs::OFlags;

use crate::entry::{EntryHeader, EntryKind};
use crate::{Error, TarBuilder};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// `SOURCE_DATE_EPOCH`: mtimes later than this are written as this.
    pub clamp_mtime: Option<i64>,
    /// Treat the tree as an overlayfs upper dir: 0/0 char devices become `.wh.<name>`,
    /// directories marked opaque (`trusted.overlay.opaque=y` or `user.overlay.opaque=y`)
    /// get a `.wh..wh..opq` entry, and overlay xattrs are not copied.
    pub overlay_upper: bool,
    /// Copy extended attributes into `SCHILY.xattr.*` records.
    pub xattrs: bool,
    /// The tree's owners are host ids of a rootless build: write them as container ids
    /// and honour the owner override xattr (see the module docs). None: write the ids on
    /// disk as they are.
    pub id_map: Option<IdMapping>,
}

/// Tar the whole tree below `root` (the root directory itself is not an entry) and
/// return `out`, with the end-of-archive marker written.
pub fn write_tree<W: Write>(root: &SafeRoot, out: W, opts: &WriteOptions) -> Result<W, Error> {
    let mut w = TreeWriter {
        root,
        opts,
        tar: TarBuilder::new(out),
        links: HashMap::new(),
    };
    w.dir(Path::new(""))?;
    w.tar.finish().map_err(|e| Error::io("writing tar", e))
}

struct TreeWriter<'a, W: Write> {
    root: &'a SafeRoot,
    opts: &'a WriteOptions,
    tar: TarBuilder<W>,
    links: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> TreeWriter<'_, W> {
    fn dir(&mut self, dir: &Path) -> Result<(), Error> {
        for name in self.root.read_dir(dir)? {
            let path = dir.join(&name);
            let m = self.root.lstat(&path)?;
            self.node(&path, &name, &m)?;
        }
        Ok(())
    }

    fn node(&mut self, path: &Path, name: &OsStr, m: &Metadata) -> Result<(), Error> {
        let io_err = |e: io::Error| Error::io("writing tar", e);
        if self.opts.overlay_upper
            && m.kind == FileKind::CharDevice
            && m.rdev_major == 0
            && m.rdev_minor == 0
        {
            let parent = path.parent().unwrap_or(Path::new(""));
            return self.tar.append_whiteout(parent, name).map_err(io_err);
        }
        let mut xattrs = Vec::new();
        let mut opaque = false;
        let mut owner_override = None;
        if self.opts.xattrs || self.opts.overlay_upper || self.opts.id_map.is_some() {
            for (k, v) in self.root.list_xattrs(path)? {
                let kb = k.as_bytes();
                if kb == OWNER_XATTR.as_bytes() {
                    owner_override = kiln_fs::idmap::parse_owner(&v);
                    continue;
                }
                let overlay =
                    kb.starts_with(b"trusted.overlay.") || kb.starts_with(b"user.overlay.");
                if overlay && self.opts.overlay_upper {
                    if kb.ends_with(b".opaque") && v == b"y" {
                        opaque = true;
                    } else if kb.ends_with(b".redirect") || kb.ends_with(b".metacopy") {
                        // A redirect or metacopy upper entry is not self-contained; kiln
                        // mounts overlays without those features, so this is foreign.
                        return Err(Error::unsupported(
                            path,
                            format!("overlay feature {k:?} is not supported"),
                        ));
                    }
                    continue;
                }
                if self.opts.xattrs {
                    xattrs.push((k, v));
                }
            }
        }
        let mtime = match self.opts.clamp_mtime {
            Some(c) if m.mtime > c => c,
            _ => m.mtime,
        };
        let kind = match m.kind {
            FileKind::Regular => EntryKind::Regular,
            FileKind::Directory => EntryKind::Directory,
            FileKind::Symlink => EntryKind::Symlink,
            FileKind::CharDevice => EntryKind::CharDevice,
            FileKind::BlockDevice => EntryKind::BlockDevice,
            FileKind::Fifo => EntryKind::Fifo,
            FileKind::Socket => return Ok(()), // tar cannot carry sockets; they are runtime state
        };
        let (uid, gid) = match &self.opts.id_map {
            None => (m.uid, m.gid),
            Some(map) => map.effective_owner(m.uid, m.gid, owner_override),
        };
        let mut h = EntryHeader {
            path: path.to_path_buf(),
            kind,
            mode: m.mode,
            uid,
            gid,
            size: 0,
            mtime,
            mtime_nsec: 0,
            link_name: None,
            dev_major: m.rdev_major,
            dev_minor: m.rdev_minor,
            xattrs,
        };
        match kind {
            EntryKind::Directory => {
                self.tar.append(&h, &mut io::empty()).map_err(io_err)?;
                if opaque {
                    self.tar.append_opaque(path).map_err(io_err)?;
                }
                return self.dir(path);
            }
            EntryKind::Symlink => {
                h.link_name = Some(self.root.read_link(path)?);
            }
            EntryKind::Regular => {
                if m.nlink > 1 {
                    if let Some(first) = self.links.get(&(m.dev, m.ino)) {
                        h.kind = EntryKind::Hardlink;
                        h.link_name = Some(first.clone().into_os_string());
                        h.xattrs.clear();
                        return self.tar.append(&h, &mut io::empty()).map_err(io_err);
                    }
                    self.links.insert((m.dev, m.ino), path.to_path_buf());
                }
                let mut f = self
                    .root
                    .open_file(path, OFlags::RDONLY | OFlags::NOFOLLOW, 0)?;
                h.size = m.size;
                return self.tar.append(&h, &mut f).map_err(io_err);
            }
            _ => {}
        }
        self.tar.append(&h, &mut io::empty()).map_err(io_err)
    }
}
