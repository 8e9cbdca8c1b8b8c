//! [`SafeRoot`]: a directory handle plus confined operations on paths below it.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

use crate::path::{normalize, split};
use crate::resolve::{self, dup, Resolver};
use crate::{xattr, Error};

/// The kind of a filesystem node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    Regular,
    Directory,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

impl FileKind {
    fn from_mode(mode: u32) -> FileKind {
        match FileType::from_raw_mode(mode) {
            FileType::Directory => FileKind::Directory,
            FileType::Symlink => FileKind::Symlink,
            FileType::CharacterDevice => FileKind::CharDevice,
            FileType::BlockDevice => FileKind::BlockDevice,
            FileType::Fifo => FileKind::Fifo,
            FileType::Socket => FileKind::Socket,
            _ => FileKind::Regular,
        }
    }
}

/// What `lstat` reports, in the units archives use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub kind: FileKind,
    /// Permission bits including setuid/setgid/sticky (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// Status change time: moves on every write and cannot be set, so caches keyed by
    /// stat data include it.
    pub ctime: i64,
    pub ctime_nsec: u32,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    /// Device numbers of a char/block device node.
    pub rdev_major: u32,
    pub rdev_minor: u32,
}

impl Metadata {
    fn from_stat(st: &rfs::Stat) -> Metadata {
        let rdev = st.st_rdev;
        Metadata {
            kind: FileKind::from_mode(st.st_mode),
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size as u64,
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec as u32,
            ctime: st.st_ctime,
            ctime_nsec: st.st_ctime_nsec as u32,
            dev: st.st_dev,
            ino: st.st_ino,
            nlink: st.st_nlink,
            rdev_major: rfs::major(rdev),
            rdev_minor: rfs::minor(rdev),
        }
    }
}

/// A directory that untrusted paths are confined to.
#[derive(Debug)]
pub struct SafeRoot {
    fd: OwnedFd,
    resolver: Resolver,
}

/// The directory holding a final component, and that component (`None` for the root).
struct At {
    path: PathBuf,
    dir: OwnedFd,
    name: Option<OsString>,
}

impl At {
    fn name(&self) -> &OsStr {
        self.name.as_deref().unwrap_or(OsStr::new(""))
    }
}

impl SafeRoot {
    /// Open a trusted host directory as a root.
    pub fn open(dir: impl AsRef<Path>) -> Result<SafeRoot, Error> {
        SafeRoot::open_with(dir, Resolver::Auto)
    }

    pub fn open_with(dir: impl AsRef<Path>, resolver: Resolver) -> Result<SafeRoot, Error> {
        let dir = dir.as_ref();
        let fd = rfs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("open root", dir, e))?;
        Ok(SafeRoot::from_fd(fd, resolver))
    }

    /// Adopt a directory descriptor (any open mode) as a root.
    pub fn from_fd(fd: OwnedFd, resolver: Resolver) -> SafeRoot {
        let resolver = resolve::pick(fd.as_fd(), resolver);
        SafeRoot { fd, resolver }
    }

    /// The resolver actually in use (never `Auto`).
    pub fn resolver(&self) -> Resolver {
        self.resolver
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn clean(&self, path: &Path) -> Result<PathBuf, Error> {
        normalize(path)
    }

    fn raw_open(&self, clean: &Path, flags: OFlags, mode: u32) -> rustix::io::Result<OwnedFd> {
        resolve::open(
            self.fd.as_fd(),
            self.resolver,
            clean,
            flags,
            Mode::from_raw_mode(mode),
        )
    }

    /// Resolve the parent in-root; the final name is returned unresolved.
    fn at(&self, path: &Path, op: &'static str) -> Result<At, Error> {
        let path = self.clean(path)?;
        if path.as_os_str().is_empty() {
            let dir = dup(&self.fd).map_err(|e| Error::io(op, &path, e))?;
            return Ok(At {
                path,
                dir,
                name: None,
            });
        }
        let (parent, name) = split(&path)?;
        let dir = self
            .raw_open(parent, OFlags::PATH | OFlags::DIRECTORY, 0)
            .map_err(|e| Error::io(op, parent, e))?;
        let name = Some(name.to_os_string());
        Ok(At { path, dir, name })
    }

    /// Like [`Self::at`] but refuses the root itself, for create/remove operations.
    fn at_named(&self, path: &Path, op: &'static str) -> Result<At, Error> {
        let at = self.at(path, op)?;
        if at.name.is_none() {
            return Err(Error::InvalidPath {
                path: at.path,
                reason: "the root itself cannot be the target",
            });
        }
        Ok(at)
    }

    /// Open a file, following symlinks inside the root (unless `flags` has `O_NOFOLLOW`).
    pub fn open_file(&self, path: &Path, flags: OFlags, mode: u32) -> Result<File, Error> {
        let clean = self.clean(path)?;
        let fd = self
            .raw_open(&clean, flags, mode)
            .map_err(|e| Error::io("open", &clean, e))?;
        Ok(File::from(fd))
    }

    /// Open a directory for reading (following symlinks inside the root).
    pub fn open_dir(&self, path: &Path) -> Result<OwnedFd, Error> {
        let clean = self.clean(path)?;
        self.raw_open(&clean, OFlags::RDONLY | OFlags::DIRECTORY, 0)
            .map_err(|e| Error::io("open directory", &clean, e))
    }

    /// Create a new regular file; fails if anything (even a dangling symlink) is there.
    pub fn create_file_excl(&self, path: &Path, mode: u32) -> Result<File, Error> {
        self.create(path, mode, OFlags::EXCL)
    }

    /// Create or truncate a regular file; a symlink in final position is an error, never
    /// followed.
    pub fn create_or_truncate(&self, path: &Path, mode: u32) -> Result<File, Error> {
        self.create(path, mode, OFlags::TRUNC)
    }

    fn create(&self, path: &Path, mode: u32, extra: OFlags) -> Result<File, Error> {
        let at = self.at_named(path, "create")?;
        let flags = OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | extra;
        let fd = rfs::openat(&at.dir, at.name(), flags, Mode::from_raw_mode(mode))
            .map_err(|e| Error::io("create", &at.path, e))?;
        Ok(File::from(fd))
    }

    /// Create one directory (the parent must exist).
    pub fn mkdir(&self, path: &Path, mode: u32) -> Result<(), Error> {
        let at = self.at_named(path, "mkdir")?;
        rfs::mkdirat(&at.dir, at.name(), Mode::from_raw_mode(mode))
            .map_err(|e| Error::io("mkdir", &at.path, e))
    }

    /// Create a directory and its missing parents. Existing symlinks along the way are
    /// followed inside the root (merged-/usr layouts rely on that); a dangling one is an
    /// error rather than a reason to create its target.
    pub fn mkdir_all(&self, path: &Path, mode: u32) -> Result<(), Error> {
        let clean = self.clean(path)?;
        let dirflags = OFlags::PATH | OFlags::DIRECTORY;
        if self.raw_open(&clean, dirflags, 0).is_ok() {
            return Ok(());
        }
        let mut prefix = PathBuf::new();
        for comp in clean.components() {
            prefix.push(comp);
            match self.raw_open(&prefix, dirflags, 0) {
                Ok(_) => continue,
                Err(Errno::NOENT) => {}
                Err(e) => return Err(Error::io("mkdir", &prefix, e)),
            }
            let at = self.at_named(&prefix, "mkdir")?;
            match rfs::mkdirat(&at.dir, at.name(), Mode::from_raw_mode(mode)) {
                Ok(()) => {}
                Err(Errno::EXIST) => {
                    // Something appeared there: a directory is fine, a dangling symlink
                    // is reported by the re-open below.
                }
                Err(e) => return Err(Error::io("mkdir", &prefix, e)),
            }
            self.raw_open(&prefix, dirflags, 0)
                .map_err(|e| Error::io("mkdir", &prefix, e))?;
        }
        Ok(())
    }

    /// Create a symlink whose target is stored verbatim and never resolved here.
    pub fn symlink(&self, target: &OsStr, linkpath: &Path) -> Result<(), Error> {
        let at = self.at_named(linkpath, "symlink")?;
        if target.as_bytes().contains(&0) {
            return Err(Error::InvalidPath {
                path: at.path,
                reason: "symlink target contains a NUL byte",
            });
        }
        rfs::symlinkat(target, &at.dir, at.name()).map_err(|e| Error::io("symlink", &at.path, e))
    }

    /// Hardlink `new` to `existing`; both are resolved in the root and the source must be
    /// a regular file (never a directory, symlink or something outside).
    pub fn hardlink(&self, existing: &Path, new: &Path) -> Result<(), Error> {
        let dst = self.at_named(new, "hardlink")?;
        let src = match self.at_named(existing, "hardlink") {
            Ok(src) => src,
            // A source whose directory does not exist in the root (typically an absolute
            // host path) is the same refusal as a missing source.
            Err(e) if e.is_not_found() || matches!(e, Error::NotADirectory { .. }) => {
                return Err(Error::HardlinkSource {
                    link: dst.path,
                    source_path: normalize(existing)?,
                });
            }
            Err(e) => return Err(e),
        };
        let refuse = || Error::HardlinkSource {
            link: dst.path.clone(),
            source_path: src.path.clone(),
        };
        let st =
            rfs::statat(&src.dir, src.name(), AtFlags::SYMLINK_NOFOLLOW).map_err(|e| match e {
                Errno::NOENT => refuse(),
                e => Error::io("hardlink", &src.path, e),
            })?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(refuse());
        }
        rfs::linkat(&src.dir, src.name(), &dst.dir, dst.name(), AtFlags::empty())
            .map_err(|e| Error::io("hardlink", &dst.path, e))
    }

    /// Create a device node, fifo or socket node. Char/block devices need root or
    /// CAP_MKNOD (except the 0/0 char device overlayfs uses as a whiteout).
    pub fn mknod(
        &self,
        path: &Path,
        kind: FileKind,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), Error> {
        let at = self.at_named(path, "mknod")?;
        let ft = match kind {
            FileKind::CharDevice => FileType::CharacterDevice,
            FileKind::BlockDevice => FileType::BlockDevice,
            FileKind::Fifo => FileType::Fifo,
            FileKind::Socket => FileType::Socket,
            _ => {
                return Err(Error::InvalidPath {
                    path: at.path,
                    reason: "mknod of a non-special file",
                })
            }
        };
        let dev = rfs::makedev(major, minor);
        match rfs::mknodat(
            &at.dir,
            at.name(),
            ft,
            Mode::from_raw_mode(mode & 0o7777),
            dev,
        ) {
            Ok(()) => Ok(()),
            Err(Errno::PERM) if matches!(kind, FileKind::CharDevice | FileKind::BlockDevice) => {
                Err(Error::DeviceNodeNotPermitted { path: at.path })
            }
            Err(e) => Err(Error::io("mknod", &at.path, e)),
        }
    }

    /// Remove one node (file, symlink or empty directory). Missing is not an error.
    pub fn remove(&self, path: &Path) -> Result<(), Error> {
        let at = self.at_named(path, "remove")?;
        let st = match rfs::statat(&at.dir, at.name(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(Error::io("remove", &at.path, e)),
        };
        let flags = if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        rfs::unlinkat(&at.dir, at.name(), flags).map_err(|e| Error::io("remove", &at.path, e))
    }

    /// Remove a node and, for a directory, everything below it. A symlink in final
    /// position is removed itself, never followed. Missing is not an error.
    pub fn remove_all(&self, path: &Path) -> Result<(), Error> {
        let at = self.at_named(path, "remove")?;
        remove_at(at.dir.as_fd(), at.name(), &at.path)
    }

    /// Remove everything below the directory `path` for which `keep` is false. For kept
    /// directories the rule is applied to their children in turn. `keep` sees paths as
    /// `path.join(child)`. Used for opaque whiteouts that must spare entries of the
    /// layer being applied.
    pub fn clear_dir(&self, path: &Path, keep: &dyn Fn(&Path) -> bool) -> Result<(), Error> {
        let clean = self.clean(path)?;
        let fd = self.open_dir(&clean)?;
        clear_at(fd.as_fd(), &clean, keep)
    }

    pub fn rename(&self, from: &Path, to: &Path) -> Result<(), Error> {
        let a = self.at_named(from, "rename")?;
        let b = self.at_named(to, "rename")?;
        rfs::renameat(&a.dir, a.name(), &b.dir, b.name())
            .map_err(|e| Error::io("rename", &a.path, e))
    }

    /// `lsetxattr` semantics: a symlink in final position gets the attribute itself.
    pub fn set_xattr(&self, path: &Path, key: &OsStr, value: &[u8]) -> Result<(), Error> {
        let at = self.at(path, "setxattr")?;
        xattr::set(at.dir.as_fd(), at.name.as_deref(), key, value)
            .map_err(|e| Error::io("setxattr", &at.path, e))
    }

    /// Alias of [`Self::set_xattr`] for readers expecting the libc name.
    pub fn lsetxattr(&self, path: &Path, key: &OsStr, value: &[u8]) -> Result<(), Error> {
        self.set_xattr(path, key, value)
    }

    /// All extended attributes of a node (not following a final symlink), sorted by name.
    pub fn list_xattrs(&self, path: &Path) -> Result<Vec<(OsString, Vec<u8>)>, Error> {
        let at = self.at(path, "listxattr")?;
        match xattr::list(at.dir.as_fd(), at.name.as_deref()) {
            Ok(v) => Ok(v),
            Err(Errno::OPNOTSUPP) => Ok(Vec::new()),
            Err(e) => Err(Error::io("listxattr", &at.path, e)),
        }
    }

    /// `lchown` semantics: never follows a final symlink.
    pub fn chown(&self, path: &Path, uid: u32, gid: u32) -> Result<(), Error> {
        let at = self.at(path, "chown")?;
        let flags = if at.name.is_some() {
            AtFlags::SYMLINK_NOFOLLOW
        } else {
            AtFlags::EMPTY_PATH
        };
        let (u, g) = (rfs::Uid::from_raw(uid), rfs::Gid::from_raw(gid));
        rfs::chownat(&at.dir, at.name(), Some(u), Some(g), flags)
            .map_err(|e| Error::io("chown", &at.path, e))
    }

    /// Change permission bits; a symlink in final position is left alone (Linux ignores
    /// symlink modes, and following it could reach another file).
    pub fn chmod(&self, path: &Path, mode: u32) -> Result<(), Error> {
        let at = self.at(path, "chmod")?;
        let err = |e| Error::io("chmod", &at.path, e);
        let mode = Mode::from_raw_mode(mode & 0o7777);
        let node = rfs::openat(
            &at.dir,
            name_or_dot(&at),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(err)?;
        let st = rfs::fstat(&node).map_err(err)?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
            return Ok(());
        }
        match xattr::pinned_path(node.as_fd()) {
            // The magic link names exactly the inode checked above.
            Some(p) => rfs::chmod(&p, mode).map_err(err),
            None => rfs::chmodat(&at.dir, name_or_dot(&at), mode, AtFlags::empty()).map_err(err),
        }
    }

    /// Set access and modification times without following a final symlink.
    pub fn set_times(
        &self,
        path: &Path,
        atime: (i64, u32),
        mtime: (i64, u32),
    ) -> Result<(), Error> {
        let at = self.at(path, "utimensat")?;
        let ts = Timestamps {
            last_access: Timespec {
                tv_sec: atime.0,
                tv_nsec: atime.1 as _,
            },
            last_modification: Timespec {
                tv_sec: mtime.0,
                tv_nsec: mtime.1 as _,
            },
        };
        let r = match &at.name {
            Some(n) => rfs::utimensat(&at.dir, n, &ts, AtFlags::SYMLINK_NOFOLLOW),
            None => {
                let dir = self.open_dir(Path::new(""))?;
                rfs::futimens(&dir, &ts)
            }
        };
        r.map_err(|e| Error::io("utimensat", &at.path, e))
    }

    /// Metadata of a node, not following a final symlink.
    pub fn lstat(&self, path: &Path) -> Result<Metadata, Error> {
        let at = self.at(path, "lstat")?;
        let st = match &at.name {
            Some(n) => rfs::statat(&at.dir, n, AtFlags::SYMLINK_NOFOLLOW),
            None => rfs::fstat(&at.dir),
        };
        st.map(|s| Metadata::from_stat(&s))
            .map_err(|e| Error::io("lstat", &at.path, e))
    }

    /// [`Self::lstat`] that maps "does not exist" (including a missing parent) to `None`.
    pub fn try_lstat(&self, path: &Path) -> Result<Option<Metadata>, Error> {
        match self.lstat(path) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(Error::NotADirectory { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn read_link(&self, path: &Path) -> Result<OsString, Error> {
        let at = self.at_named(path, "readlink")?;
        let t = rfs::readlinkat(&at.dir, at.name(), Vec::new())
            .map_err(|e| Error::io("readlink", &at.path, e))?;
        Ok(OsStr::from_bytes(t.as_bytes()).to_os_string())
    }

    /// Names in a directory (following symlinks inside the root), sorted by bytes so
    /// walks are deterministic.
    pub fn read_dir(&self, path: &Path) -> Result<Vec<OsString>, Error> {
        let fd = self.open_dir(path)?;
        let clean = self.clean(path)?;
        list_dir(fd, &clean)
    }
}

fn name_or_dot(at: &At) -> &OsStr {
    at.name.as_deref().unwrap_or(OsStr::new("."))
}

pub(crate) fn list_dir(fd: OwnedFd, shown: &Path) -> Result<Vec<OsString>, Error> {
    let mut dir = rfs::Dir::new(fd).map_err(|e| Error::io("readdir", shown, e))?;
    let mut names = Vec::new();
    while let Some(ent) = dir.read() {
        let ent = ent.map_err(|e| Error::io("readdir", shown, e))?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

fn remove_at(dir: BorrowedFd<'_>, name: &OsStr, shown: &Path) -> Result<(), Error> {
    let st = match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(Error::io("remove", shown, e)),
    };
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        let fd = rfs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("remove", shown, e))?;
        let sub = resolve::dup(&fd).map_err(|e| Error::io("remove", shown, e))?;
        for child in list_dir(fd, shown)? {
            remove_at(sub.as_fd(), &child, &shown.join(&child))?;
        }
        match rfs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(Error::io("remove", shown, e)),
        }
    } else {
        match rfs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(Error::io("remove", shown, e)),
        }
    }
}

fn clear_at(dir: BorrowedFd<'_>, shown: &Path, keep: &dyn Fn(&Path) -> bool) -> Result<(), Error> {
    let listing = resolve::dup(dir).map_err(|e| Error::io("readdir", shown, e))?;
    // Re-open for reading: the caller's descriptor may be O_PATH.
    let listing = rfs::openat(
        &listing,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("readdir", shown, e))?;
    for child in list_dir(listing, shown)? {
        let child_path = shown.join(&child);
        if !keep(&child_path) {
            remove_at(dir, &child, &child_path)?;
            continue;
        }
        let st = rfs::statat(dir, &child, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| Error::io("lstat", &child_path, e))?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            let fd = rfs::openat(
                dir,
                &child,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| Error::io("open directory", &child_path, e))?;
            clear_at(fd.as_fd(), &child_path, keep)?;
        }
    }
    Ok(())
}
