//! Copy a subtree from one safe root into another (COPY --from, cache export).
//!
//! Both sides go through [`SafeRoot`], so neither a hostile source tree nor a hostile
//! destination tree can redirect the copy outside its root.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;
use rustix::io::Errno;

use crate::idmap::{format_owner, parse_owner};
use crate::{Error, FileKind, IdMapping, Metadata, SafeRoot, OWNER_XATTR};

#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Give copies the source's uid/gid (needs privileges). Ignored when `chown` is set.
    pub preserve_owner: bool,
    /// Force this uid/gid on everything copied (`COPY --chown`).
    pub chown: Option<(u32, u32)>,
    /// Copy extended attributes; refusals (EPERM/ENOTSUP) are counted, not fatal.
    pub xattrs: bool,
    /// Rootless trees on both sides (module docs of [`crate::idmap`]): instead of chowning,
    /// give each copy the owner override holding the source's effective container owner
    /// ([`IdMapping::effective_owner`]), wherever the copy's own (mapped) owner would not
    /// already say so. Ignored when `chown` or `preserve_owner` is set.
    pub id_map: Option<IdMapping>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub special: u64,
    pub bytes: u64,
    pub skipped_xattrs: u64,
}

/// Copy the node at `src_path` (a final symlink is copied as a symlink) to `dst_path`,
/// recursively. Existing non-directories at the destination are replaced; existing
/// directories are merged into. Modes, owners (per options), xattrs and times are kept;
/// files hardlinked to each other in the source stay hardlinked in the copy.
pub fn copy(
    src: &SafeRoot,
    src_path: &Path,
    dst: &SafeRoot,
    dst_path: &Path,
    opts: &CopyOptions,
) -> Result<CopyStats, Error> {
    let mut c = Copier {
        src,
        dst,
        opts,
        stats: CopyStats::default(),
        links: HashMap::new(),
        dirs: Vec::new(),
    };
    c.node(&crate::normalize(src_path)?, &crate::normalize(dst_path)?)?;
    // Directory times last: creating children would bump them again.
    for (path, m) in std::mem::take(&mut c.dirs).into_iter().rev() {
        dst.chmod(&path, m.mode)?;
        dst.set_times(&path, (m.mtime, m.mtime_nsec), (m.mtime, m.mtime_nsec))?;
    }
    Ok(c.stats)
}

struct Copier<'a> {
    src: &'a SafeRoot,
    dst: &'a SafeRoot,
    opts: &'a CopyOptions,
    stats: CopyStats,
    links: HashMap<(u64, u64), PathBuf>,
    dirs: Vec<(PathBuf, Metadata)>,
}

impl Copier<'_> {
    fn node(&mut self, s: &Path, d: &Path) -> Result<(), Error> {
        let m = self.src.lstat(s)?;
        let existing = self.dst.try_lstat(d)?;
        if m.kind == FileKind::Directory {
            match existing {
                Some(e) if e.kind == FileKind::Directory => {}
                Some(_) => {
                    self.dst.remove_all(d)?;
                    self.dst.mkdir(d, 0o700)?;
                }
                None => self.dst.mkdir_all(d, 0o700)?,
            }
            self.meta(s, d, &m)?;
            self.stats.dirs += 1;
            self.dirs.push((d.to_path_buf(), m));
            for child in self.src.read_dir(s)? {
                self.node(&s.join(&child), &d.join(&child))?;
            }
            return Ok(());
        }
        if existing.is_some() && !d.as_os_str().is_empty() {
            self.dst.remove_all(d)?;
        }
        if m.kind == FileKind::Regular && m.nlink > 1 {
            if let Some(first) = self.links.get(&(m.dev, m.ino)) {
                self.dst.hardlink(first, d)?;
                self.stats.hardlinks += 1;
                return Ok(());
            }
            self.links.insert((m.dev, m.ino), d.to_path_buf());
        }
        match m.kind {
            FileKind::Regular => {
                let mut from = self
                    .src
                    .open_file(s, OFlags::RDONLY | OFlags::NOFOLLOW, 0)?;
                let mut to = self.dst.create_file_excl(d, 0o600)?;
                self.stats.bytes +=
                    copy_data(&mut from, &mut to).map_err(|e| Error::io("copy", d, e))?;
                self.stats.files += 1;
            }
            FileKind::Symlink => {
                let target = self.src.read_link(s)?;
                self.dst.symlink(&target, d)?;
                self.stats.symlinks += 1;
            }
            kind => {
                self.dst
                    .mknod(d, kind, m.mode, m.rdev_major, m.rdev_minor)?;
                self.stats.special += 1;
            }
        }
        self.meta(s, d, &m)?;
        if m.kind != FileKind::Symlink {
            self.dst.chmod(d, m.mode)?;
        }
        self.dst
            .set_times(d, (m.mtime, m.mtime_nsec), (m.mtime, m.mtime_nsec))
    }

    /// Owner before mode (chown clears setuid), xattrs after owner.
    fn meta(&mut self, s: &Path, d: &Path, m: &Metadata) -> Result<(), Error> {
        let owner = self
            .opts
            .chown
            .or(self.opts.preserve_owner.then_some((m.uid, m.gid)));
        if let Some((u, g)) = owner {
            self.dst.chown(d, u, g)?;
        }
        let record = self.opts.id_map.as_ref().filter(|_| owner.is_none());
        let xattrs = if self.opts.xattrs || record.is_some() {
            self.src.list_xattrs(s)?
        } else {
            Vec::new()
        };
        let mut over = None;
        for (k, v) in &xattrs {
            if k.as_encoded_bytes() == OWNER_XATTR.as_bytes() {
                over = parse_owner(v);
                if record.is_some() {
                    continue; // restated below from the effective owner
                }
            }
            if !self.opts.xattrs {
                continue;
            }
            match self.dst.set_xattr(d, k, v) {
                Ok(()) => {}
                Err(e) if is_refusal(&e) => self.stats.skipped_xattrs += 1,
                Err(e) => return Err(e),
            }
        }
        if let Some(map) = record {
            let want = map.effective_owner(m.uid, m.gid, over);
            let copy = self.dst.lstat(d)?;
            let plain = map.container_owner(copy.uid, copy.gid);
            // Regular files and directories only: other nodes cannot carry user.* xattrs.
            if want != plain && matches!(m.kind, FileKind::Regular | FileKind::Directory) {
                let v = format_owner(want.0, want.1);
                match self
                    .dst
                    .set_xattr(d, std::ffi::OsStr::new(OWNER_XATTR), v.as_bytes())
                {
                    Ok(()) => {}
                    Err(e) if is_refusal(&e) => self.stats.skipped_xattrs += 1,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

fn is_refusal(e: &Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw_os_error),
        Some(Errno::PERM) | Some(Errno::OPNOTSUPP) | Some(Errno::ACCESS)
    )
}

/// Copy file contents, in-kernel when the filesystems allow it.
pub(crate) fn copy_data(from: &mut std::fs::File, to: &mut std::fs::File) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        match rustix::fs::copy_file_range(from.as_fd(), None, to.as_fd(), None, 1 << 30) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(Errno::XDEV) | Err(Errno::NOSYS) | Err(Errno::INVAL) | Err(Errno::OPNOTSUPP)
                if total == 0 =>
            {
                return io::copy(from, to);
            }
            Err(e) => return Err(e.into()),
        }
    }
}
