//! Confined path resolution: `openat2(RESOLVE_IN_ROOT)` or an equivalent manual walk.
//!
//! Both resolvers give the same answers: absolute symlink targets restart at the root,
//! `..` never climbs above it, and more than [`MAX_SYMLINKS`] links is `ELOOP`. The walk
//! exists for kernels without `openat2` (before 5.6, or seccomp filters returning ENOSYS)
//! and is also selectable so tests exercise both.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::path::components;

/// The kernel's own limit, kept for the walk so both resolvers agree.
pub const MAX_SYMLINKS: u32 = 40;

/// Which resolver a [`crate::SafeRoot`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    /// `openat2` when the kernel has it, else the walk.
    Auto,
    Openat2,
    Walk,
}

static OPENAT2: AtomicU8 = AtomicU8::new(0); // 0 unknown, 1 yes, 2 no

pub(crate) fn pick(root: BorrowedFd<'_>, want: Resolver) -> Resolver {
    match want {
        Resolver::Auto => match OPENAT2.load(Ordering::Relaxed) {
            1 => Resolver::Openat2,
            2 => Resolver::Walk,
            _ => {
                let ok = !matches!(
                    rfs::openat2(
                        root,
                        ".",
                        OFlags::PATH | OFlags::CLOEXEC,
                        Mode::empty(),
                        in_root()
                    ),
                    Err(Errno::NOSYS) | Err(Errno::PERM)
                );
                OPENAT2.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
                if ok {
                    Resolver::Openat2
                } else {
                    Resolver::Walk
                }
            }
        },
        other => other,
    }
}

fn in_root() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

/// Open `path` (clean, root-relative) with `flags`. The final component is followed
/// unless `flags` contains `O_NOFOLLOW`.
pub(crate) fn open(
    root: BorrowedFd<'_>,
    resolver: Resolver,
    path: &Path,
    flags: OFlags,
    mode: Mode,
) -> rustix::io::Result<OwnedFd> {
    let flags = flags | OFlags::CLOEXEC;
    let p: &OsStr = if path.as_os_str().is_empty() {
        OsStr::new(".")
    } else {
        path.as_os_str()
    };
    if resolver != Resolver::Walk {
        // EAGAIN means a concurrent rename raced the lookup; the kernel asks us to retry.
        for _ in 0..16 {
            match rfs::openat2(root, p, flags, mode, in_root()) {
                Err(Errno::AGAIN) => continue,
                r => return r,
            }
        }
        return Err(Errno::AGAIN);
    }
    let follow = !flags.contains(OFlags::NOFOLLOW);
    let (dir, name) = walk(root, path, follow)?;
    match name {
        // After the walk resolved every link the final name is not a symlink; O_NOFOLLOW
        // turns a concurrent swap into ELOOP instead of an escape.
        Some(name) => rfs::openat(&dir, &name, flags | OFlags::NOFOLLOW, mode),
        None => rfs::openat(&dir, ".", flags & !OFlags::NOFOLLOW, mode),
    }
}

/// Resolve all but the final component (and the final one too, through symlinks, when
/// `follow_final`). Returns the directory holding the final name and that name, or
/// `None` when the path resolves to a directory reached without a name (root, `..`).
pub(crate) fn walk(
    root: BorrowedFd<'_>,
    path: &Path,
    follow_final: bool,
) -> rustix::io::Result<(OwnedFd, Option<OsString>)> {
    let mut todo: VecDeque<OsString> = components(path).into();
    // Names of the directories below the root we stand in. Kept as names rather than
    // fds so a deep path does not hold thousands of descriptors; `..` reopens.
    let mut stack: Vec<OsString> = Vec::new();
    let mut cur = dup(root)?;
    let mut links = 0u32;
    while let Some(c) = todo.pop_front() {
        if c.is_empty() || c == "." {
            continue;
        }
        if c == ".." {
            if stack.pop().is_some() {
                cur = reopen(root, &stack)?;
            }
            continue;
        }
        let last = todo.iter().all(|c| c.is_empty() || c == ".");
        let st = match rfs::statat(&cur, &c, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) if last => return Ok((cur, Some(c))),
            Err(e) => return Err(e),
        };
        let ft = FileType::from_raw_mode(st.st_mode);
        if ft == FileType::Symlink && (!last || follow_final) {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(Errno::LOOP);
            }
            let target = rfs::readlinkat(&cur, &c, Vec::new())?;
            let target = OsStr::from_bytes(target.as_bytes());
            if target.is_empty() {
                return Err(Errno::NOENT);
            }
            if target.as_bytes().starts_with(b"/") {
                stack.clear();
                cur = dup(root)?;
            }
            for (i, t) in Path::new(target)
                .components()
                .filter_map(comp_name)
                .enumerate()
            {
                todo.insert(i, t);
            }
            continue;
        }
        if last {
            return Ok((cur, Some(c)));
        }
        if ft != FileType::Directory {
            return Err(Errno::NOTDIR);
        }
        cur = rfs::openat(&cur, &c, dir_flags(), Mode::empty())?;
        stack.push(c);
    }
    Ok((cur, None))
}

fn comp_name(c: std::path::Component<'_>) -> Option<OsString> {
    use std::path::Component::*;
    match c {
        Normal(n) => Some(n.to_os_string()),
        ParentDir => Some("..".into()),
        _ => None,
    }
}

fn dir_flags() -> OFlags {
    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

fn reopen(root: BorrowedFd<'_>, stack: &[OsString]) -> rustix::io::Result<OwnedFd> {
    let mut cur = dup(root)?;
    for name in stack {
        cur = rfs::openat(&cur, name, dir_flags(), Mode::empty())?;
    }
    Ok(cur)
}

pub(crate) fn dup(fd: impl AsFd) -> rustix::io::Result<OwnedFd> {
    rustix::io::fcntl_dupfd_cloexec(fd, 0)
}
