//! Applying a layer to a directory through the safe root.
//!
//! Semantics follow the OCI image-spec "changesets": entries replace what is there
//! (a directory over a directory merges), `.wh.<name>` deletes a lower entry, and
//! `.wh..wh..opq` hides the lower contents of its directory but not entries of the same
//! layer, wherever the marker sits in the tar. Whiteouts only ever apply to lower
//! content, so a path this layer itself wrote is never deleted by its whiteouts.
//!
//! # Owners in a rootless apply
//!
//! With [`ApplyOptions::id_map`] the tar's owners are container ids and are translated to
//! host ids before `chown`. An unprivileged process may not chown to ids other than its
//! own, so there the intended container owner is kept in the xattr
//! [`kiln_fs::OWNER_XATTR`] (`"uid:gid"`) instead, on every node whose owner differs from
//! what the mapping makes of the unpacker's own ids (container 0:0) — which the tree
//! writer (`WriteOptions::id_map`) honours. kiln-snapshot uses this only without a
//! subordinate range (a single-id map): with one, it applies layers inside a user
//! namespace with the full mapping, where the chowns succeed (real owners the RUN sandbox
//! sees too, at the cost of one helper process per unpack). The xattr's costs: the sandbox
//! shows such files as root-owned, and symlinks, fifos and devices cannot carry `user.*`
//! xattrs (counted in [`ApplyStats::skipped_owners`]).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use kiln_fs::{FileKind, IdMapping, SafeRoot, OWNER_XATTR};
use rustix::io::Errno;

use crate::entry::{EntryHeader, EntryKind};
use crate::whiteout::{classify, xattr_allowed, Name};
use crate::{read_entries, DecodeLimits, Error};

/// Where device nodes go when the process may not create them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevicePolicy {
    /// Create them; fail with `DeviceNodeNotPermitted` when not allowed.
    Create,
    /// Create them when allowed, otherwise skip and count (rootless builds).
    CreateOrSkip,
    /// Never create char/block devices; count them.
    Skip,
}

/// Which xattr namespace overlayfs reads (`user.` when mounted with `userxattr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlayXattr {
    Trusted,
    User,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    /// Merge into a directory holding the lower layers: whiteouts delete.
    Merge,
    /// Write a standalone overlayfs lower dir: whiteouts become 0/0 char devices and
    /// opaque markers become the `overlay.opaque=y` xattr.
    OverlayNative(OverlayXattr),
}

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// chown entries to their uid/gid. Refusals are errors as root and counted otherwise.
    pub preserve_owner: bool,
    /// The owners in the tar are container ids of this user-namespace mapping: chown to
    /// the mapped host ids, and where that is impossible (unprivileged, or unmapped ids)
    /// record the owner override xattr (module docs). Implies owners are preserved,
    /// whatever `preserve_owner` says.
    pub id_map: Option<IdMapping>,
    pub devices: DevicePolicy,
    pub limits: DecodeLimits,
    pub mode: ApplyMode,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        let root = kiln_fs::running_as_root();
        ApplyOptions {
            preserve_owner: root,
            id_map: None,
            devices: if root {
                DevicePolicy::Create
            } else {
                DevicePolicy::CreateOrSkip
            },
            limits: DecodeLimits::default(),
            mode: ApplyMode::Merge,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyStats {
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub devices: u64,
    pub whiteouts: u64,
    pub opaques: u64,
    /// Content bytes written.
    pub bytes: u64,
    /// Uncompressed tar bytes read.
    pub tar_bytes: u64,
    pub skipped_devices: u64,
    pub skipped_owners: u64,
    /// Xattrs refused by the filesystem or the kernel (not permitted / unsupported).
    pub skipped_xattrs: u64,
    /// Xattrs dropped by policy (overlay control, SELinux, ACLs).
    pub filtered_xattrs: u64,
}

/// Apply a (compressed or plain, auto-detected) layer tar to `root`.
///
/// Xattr policy: `user.*`, `trusted.*` and `security.capability` are applied;
/// `trusted.overlay.*`/`user.overlay.*` (forgeable overlay state), other `security.*`
/// (host LSM labels) and `system.*` (ACLs) are dropped and counted.
pub fn apply_layer<R: Read + Send>(
    root: &SafeRoot,
    reader: R,
    opts: &ApplyOptions,
) -> Result<ApplyStats, Error> {
    let mut a = Applier {
        root,
        opts,
        is_root: kiln_fs::running_as_root(),
        me: (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        ),
        stats: ApplyStats::default(),
        touched: HashSet::new(),
        dirs: Vec::new(),
    };
    let read = read_entries(reader, &opts.limits, |h, body| a.entry(h, body))?;
    // Directory modes and times last: creating children changes mtimes, and a read-only
    // directory mode would block them when not root.
    for (path, mode, mtime) in std::mem::take(&mut a.dirs).into_iter().rev() {
        match root
            .chmod(&path, mode)
            .and_then(|_| root.set_times(&path, mtime, mtime))
        {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {} // replaced or whited out later in the layer
            Err(e) => return Err(e.into()),
        }
    }
    a.stats.tar_bytes = read.tar_bytes;
    a.stats.entries = read.entries;
    Ok(a.stats)
}

struct Applier<'a> {
    root: &'a SafeRoot,
    opts: &'a ApplyOptions,
    is_root: bool,
    /// Effective uid/gid: what every node this process creates is owned by.
    me: (u32, u32),
    stats: ApplyStats,
    /// Paths written by this layer, and their ancestors.
    touched: HashSet<PathBuf>,
    dirs: Vec<(PathBuf, u32, (i64, u32))>,
}

impl Applier<'_> {
    fn entry(&mut self, h: &EntryHeader, body: &mut dyn Read) -> Result<(), Error> {
        let path = h.path.as_path();
        let (parent, name) = match (path.parent(), path.file_name()) {
            (Some(p), Some(n)) => (p, n),
            _ => {
                // The root itself ("./"): only directory metadata makes sense.
                if h.kind != EntryKind::Directory {
                    return Err(Error::unsupported(
                        "/",
                        "the root of a layer must be a directory",
                    ));
                }
                self.meta(h, true)?;
                self.dirs
                    .push((PathBuf::new(), h.mode, (h.mtime, h.mtime_nsec)));
                return Ok(());
            }
        };
        match classify(name) {
            Name::Meta => return Ok(()),
            Name::Opaque => return self.opaque(parent),
            Name::Whiteout(target) => return self.whiteout(parent, target),
            Name::Plain => {}
        }
        self.touch(path);
        self.root.mkdir_all(parent, 0o755)?;
        let existing = self.root.try_lstat(path)?;
        match h.kind {
            EntryKind::Directory => {
                let merged = match existing {
                    Some(m) if m.kind == FileKind::Directory => true,
                    other => {
                        if other.is_some() {
                            self.root.remove_all(path)?;
                        }
                        self.root.mkdir(path, 0o700)?;
                        false
                    }
                };
                self.meta(h, merged)?;
                self.dirs
                    .push((path.to_path_buf(), h.mode, (h.mtime, h.mtime_nsec)));
                self.stats.dirs += 1;
                return Ok(());
            }
            EntryKind::Hardlink => {
                let link = h.link_name.as_deref().unwrap_or_default();
                let target = kiln_fs::normalize(Path::new(link))?;
                if target == path {
                    return Ok(()); // a self-link: the file is already what it names
                }
                if existing.is_some() {
                    self.root.remove_all(path)?;
                }
                self.root.hardlink(&target, path)?;
                self.stats.hardlinks += 1;
                return Ok(()); // shares the target's inode and metadata
            }
            _ => {}
        }
        if existing.is_some() {
            self.root.remove_all(path)?;
        }
        match h.kind {
            EntryKind::Regular => {
                let mut f = self.root.create_file_excl(path, 0o600)?;
                let n = io::copy(body, &mut f).map_err(|e| Error::io("writing layer file", e))?;
                self.stats.bytes += n;
                self.stats.files += 1;
            }
            EntryKind::Symlink => {
                self.root
                    .symlink(h.link_name.as_deref().unwrap_or_default(), path)?;
                self.stats.symlinks += 1;
            }
            EntryKind::Fifo => self.root.mknod(path, FileKind::Fifo, h.mode, 0, 0)?,
            EntryKind::CharDevice | EntryKind::BlockDevice => {
                let kind = if h.kind == EntryKind::CharDevice {
                    FileKind::CharDevice
                } else {
                    FileKind::BlockDevice
                };
                if self.opts.devices == DevicePolicy::Skip {
                    self.stats.skipped_devices += 1;
                    return Ok(());
                }
                match self
                    .root
                    .mknod(path, kind, h.mode, h.dev_major, h.dev_minor)
                {
                    Ok(()) => self.stats.devices += 1,
                    Err(kiln_fs::Error::DeviceNodeNotPermitted { .. })
                        if self.opts.devices == DevicePolicy::CreateOrSkip =>
                    {
                        self.stats.skipped_devices += 1;
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            EntryKind::Directory | EntryKind::Hardlink => unreachable!("handled above"),
        }
        self.meta(h, false)?;
        if h.kind != EntryKind::Symlink {
            self.root.chmod(path, h.mode)?;
        }
        let t = (h.mtime, h.mtime_nsec);
        self.root.set_times(path, t, t)?;
        Ok(())
    }

    fn touch(&mut self, path: &Path) {
        for a in path.ancestors() {
            if !self.touched.insert(a.to_path_buf()) {
                break; // ancestors of a known path are known
            }
        }
    }

    /// Owner, then xattrs (chown would clear security.capability; mode comes after, so a
    /// read-only mode cannot block the owner override xattr). `merged`: an existing
    /// directory, which may carry another layer's owner override.
    fn meta(&mut self, h: &EntryHeader, merged: bool) -> Result<(), Error> {
        let path = h.path.as_path();
        if let Some(map) = &self.opts.id_map {
            self.mapped_owner(h, map, merged)?;
        } else if self.opts.preserve_owner {
            match self.root.chown(path, h.uid, h.gid) {
                Ok(()) => {}
                Err(e) if !self.is_root && refused(&e) => self.stats.skipped_owners += 1,
                Err(e) => return Err(e.into()),
            }
        }
        for (k, v) in &h.xattrs {
            if !xattr_allowed(k) {
                self.stats.filtered_xattrs += 1;
                continue;
            }
            match self.root.set_xattr(path, k, v) {
                Ok(()) => {}
                Err(e) if unsupported(&e) || (!self.is_root && refused(&e)) => {
                    self.stats.skipped_xattrs += 1
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// chown to the mapped host owner when possible, else record the container owner in
    /// the override xattr (only where the writer would otherwise get it wrong).
    fn mapped_owner(
        &mut self,
        h: &EntryHeader,
        map: &IdMapping,
        merged: bool,
    ) -> Result<(), Error> {
        let path = h.path.as_path();
        let owned = match map.host_owner(h.uid, h.gid) {
            (Some(u), Some(g)) if (u, g) == self.me && !merged => true, // created as ours
            (Some(u), Some(g)) => match self.root.chown(path, u, g) {
                Ok(()) => true,
                Err(e) if !self.is_root && refused(&e) => false,
                Err(e) => return Err(e.into()),
            },
            _ => false,
        };
        // What the writer derives without an override: the mapped owner on disk.
        let derived = if owned {
            (h.uid, h.gid)
        } else {
            map.container_owner(self.me.0, self.me.1)
        };
        // A merged directory may hold a lower layer's override: always restate it.
        if derived == (h.uid, h.gid) && !merged {
            return Ok(());
        }
        if !matches!(h.kind, EntryKind::Regular | EntryKind::Directory) {
            // Only regular files and directories can carry user.* xattrs.
            if derived != (h.uid, h.gid) {
                self.stats.skipped_owners += 1;
            }
            return Ok(());
        }
        let value = kiln_fs::idmap::format_owner(h.uid, h.gid);
        match self
            .root
            .set_xattr(path, OsStr::new(OWNER_XATTR), value.as_bytes())
        {
            Ok(()) => Ok(()),
            Err(e) if unsupported(&e) || refused(&e) => {
                if derived != (h.uid, h.gid) {
                    self.stats.skipped_owners += 1;
                }
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn whiteout(&mut self, parent: &Path, target: &OsStr) -> Result<(), Error> {
        let victim = parent.join(target);
        self.stats.whiteouts += 1;
        match self.opts.mode {
            ApplyMode::Merge => {
                if self.touched.contains(&victim) {
                    return Ok(());
                }
                match self.root.remove_all(&victim) {
                    Ok(()) => Ok(()),
                    // A whiteout for something absent (or under a non-directory) is a no-op.
                    Err(e) if e.is_not_found() => Ok(()),
                    Err(kiln_fs::Error::NotADirectory { .. }) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            ApplyMode::OverlayNative(_) => {
                self.root.mkdir_all(parent, 0o755)?;
                self.root.remove_all(&victim)?;
                self.root.mknod(&victim, FileKind::CharDevice, 0, 0, 0)?;
                Ok(())
            }
        }
    }

    fn opaque(&mut self, dir: &Path) -> Result<(), Error> {
        self.stats.opaques += 1;
        match self.opts.mode {
            ApplyMode::Merge => {
                let touched = &self.touched;
                match self.root.clear_dir(dir, &|p| touched.contains(p)) {
                    Ok(()) => Ok(()),
                    Err(e) if e.is_not_found() => Ok(()),
                    Err(kiln_fs::Error::NotADirectory { .. }) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            ApplyMode::OverlayNative(ns) => {
                self.root.mkdir_all(dir, 0o755)?;
                let key = match ns {
                    OverlayXattr::Trusted => "trusted.overlay.opaque",
                    OverlayXattr::User => "user.overlay.opaque",
                };
                self.root.set_xattr(dir, OsStr::new(key), b"y")?;
                Ok(())
            }
        }
    }
}

fn errno(e: &kiln_fs::Error) -> Option<Errno> {
    e.raw_os_error().map(Errno::from_raw_os_error)
}

fn refused(e: &kiln_fs::Error) -> bool {
    matches!(
        errno(e),
        Some(Errno::PERM) | Some(Errno::ACCESS) | Some(Errno::INVAL)
    )
}

fn unsupported(e: &kiln_fs::Error) -> bool {
    matches!(errno(e), Some(Errno::OPNOTSUPP))
}
