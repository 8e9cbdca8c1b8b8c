//! Extended attributes on a final component without following it.
//!
//! Linux has no `*xattrat` calls in rustix, so the node is named through the parent's
//! descriptor: `/proc/self/fd/<parent>/<name>` with the `l*` variants. The magic link
//! pins the exact parent directory (no re-walk of an untrusted path) and the `l*` call
//! does not follow a symlink in final position. Without `/proc`, regular files and
//! directories are opened `O_NOFOLLOW` and the `f*` variants are used.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use rustix::fs::{self as rfs, Mode, OFlags, XattrFlags};
use rustix::io::Errno;

/// Largest list / value the kernel allows (XATTR_LIST_MAX, XATTR_SIZE_MAX).
const XATTR_MAX: usize = 65536;

fn proc_path(dir: BorrowedFd<'_>, name: Option<&OsStr>) -> OsString {
    let mut p = format!("/proc/self/fd/{}", dir.as_raw_fd()).into_bytes();
    if let Some(n) = name {
        p.push(b'/');
        p.extend_from_slice(n.as_bytes());
    }
    OsString::from_vec(p)
}

fn proc_available() -> bool {
    rfs::access("/proc/self/fd", rfs::Access::EXISTS).is_ok()
}

fn open_plain(
    dir: BorrowedFd<'_>,
    name: Option<&OsStr>,
) -> rustix::io::Result<std::os::fd::OwnedFd> {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let st = match name {
        Some(n) => rfs::statat(dir, n, rfs::AtFlags::SYMLINK_NOFOLLOW)?,
        None => rfs::fstat(dir)?,
    };
    // Opening a device or fifo can have side effects; only plain nodes qualify.
    match rfs::FileType::from_raw_mode(st.st_mode) {
        rfs::FileType::RegularFile | rfs::FileType::Directory => {}
        _ => return Err(Errno::OPNOTSUPP),
    }
    rfs::openat(dir, name.unwrap_or(OsStr::new(".")), flags, Mode::empty())
}

pub(crate) fn list(
    dir: BorrowedFd<'_>,
    name: Option<&OsStr>,
) -> rustix::io::Result<Vec<(OsString, Vec<u8>)>> {
    let mut names = vec![0u8; XATTR_MAX];
    let mut out = Vec::new();
    if proc_available() {
        let p = proc_path(dir, name);
        let n = if name.is_some() {
            rfs::llistxattr(&p, &mut names[..])?
        } else {
            rfs::listxattr(&p, &mut names[..])?
        };
        for key in names[..n].split(|b| *b == 0).filter(|k| !k.is_empty()) {
            let mut val = vec![0u8; XATTR_MAX];
            let key = OsStr::from_bytes(key);
            let len = match if name.is_some() {
                rfs::lgetxattr(&p, key, &mut val[..])
            } else {
                rfs::getxattr(&p, key, &mut val[..])
            } {
                Ok(len) => len,
                Err(Errno::NODATA) => continue, // removed meanwhile
                Err(e) => return Err(e),
            };
            val.truncate(len);
            out.push((key.to_os_string(), val));
        }
    } else {
        let fd = match open_plain(dir, name) {
            Ok(fd) => fd,
            Err(Errno::OPNOTSUPP) => return Ok(out),
            Err(e) => return Err(e),
        };
        let n = rfs::flistxattr(&fd, &mut names[..])?;
        for key in names[..n].split(|b| *b == 0).filter(|k| !k.is_empty()) {
            let mut val = vec![0u8; XATTR_MAX];
            let key = OsStr::from_bytes(key);
            let len = rfs::fgetxattr(&fd, key, &mut val[..])?;
            val.truncate(len);
            out.push((key.to_os_string(), val));
        }
    }
    out.sort();
    Ok(out)
}

pub(crate) fn set(
    dir: BorrowedFd<'_>,
    name: Option<&OsStr>,
    key: &OsStr,
    value: &[u8],
) -> rustix::io::Result<()> {
    if proc_available() {
        let p = proc_path(dir, name);
        if name.is_some() {
            rfs::lsetxattr(&p, key, value, XattrFlags::empty())
        } else {
            rfs::setxattr(&p, key, value, XattrFlags::empty())
        }
    } else {
        let fd = open_plain(dir, name)?;
        rfs::fsetxattr(&fd, key, value, XattrFlags::empty())
    }
}

/// Run `f` on a path naming the final component's inode itself (following nothing but
/// the pinned magic link), for calls that have no safe `*at` form (`chmod`).
pub(crate) fn pinned_path(fd: BorrowedFd<'_>) -> Option<OsString> {
    proc_available().then(|| proc_path(fd, None))
}
