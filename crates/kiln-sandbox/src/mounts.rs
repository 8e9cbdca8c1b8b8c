//! The sandbox's filesystem view: root (bind or overlay), `/proc`, `/etc`
//! files, extra mounts, `pivot_root`.
//!
//! The rootfs is untrusted: an image may make `/proc`, `/dev`, `/etc/hosts`
//! or a mount target a symlink to a host path, or `..` its way out. Every
//! target inside the root is therefore opened with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)` relative to an `O_PATH` fd of the root, and the
//! mount goes onto `/proc/self/fd/N` of that fd — never onto a path string
//! the kernel would re-resolve on the host. Sources (bind mounts, overlay
//! layers, `/etc` files) are host paths chosen by the caller and trusted.

use crate::error::StepError;
use crate::proto::ChildConfig;
use crate::spec::{Mount, RootFs};
use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

type R<T> = Result<T, StepError>;

/// The path through which the kernel reaches exactly the object behind `fd`.
pub(crate) fn fd_path(fd: impl AsFd) -> String {
    format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())
}

/// The opened root plus its host path (for error messages only).
pub(crate) struct Root {
    pub fd: OwnedFd,
    pub display: String,
    /// In-root paths of mountpoints we had to create: they are not part of
    /// the image and the caller may want them out of the layer diff.
    pub created: std::cell::RefCell<Vec<String>>,
}

impl Root {
    pub fn new(fd: OwnedFd, display: String) -> Self {
        Root {
            fd,
            display,
            created: Default::default(),
        }
    }

    fn record(&self, path: &str) {
        let mut clean = String::new();
        for c in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
            clean.push('/');
            clean.push_str(c);
        }
        self.created.borrow_mut().push(clean);
    }

    pub fn show(&self, inner: &str) -> String {
        format!(
            "{}/{}",
            self.display.trim_end_matches('/'),
            inner.trim_start_matches('/')
        )
    }
}

/// Opens `path` confined to `root`: `..` stops at the root, absolute symlinks
/// restart at the root, `/proc/self/fd/N`-style magic links are refused.
pub(crate) fn open_in_root(
    root: BorrowedFd<'_>,
    path: &str,
    flags: OFlags,
) -> rustix::io::Result<OwnedFd> {
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let mut tries = 0;
    loop {
        match openat2(root, rel, flags | OFlags::CLOEXEC, Mode::empty(), resolve) {
            // EAGAIN: a concurrent rename raced the walk; the kernel asks us to retry.
            Err(Errno::AGAIN) if tries < 16 => tries += 1,
            other => return other,
        }
    }
}

fn split_last(path: &str) -> (&str, &str) {
    let p = path.trim_end_matches('/');
    match p.rfind('/') {
        Some(i) => (&p[..i], &p[i + 1..]),
        None => ("", p),
    }
}

/// Symlinks followed while creating a missing mountpoint, like the kernel's 40.
const MAX_LINKS: u32 = 40;

/// When `name` in `parent_fd` is a symlink, the in-root path it points to
/// (relative targets joined to `parent`), so the caller creates the target —
/// still inside the root — instead of failing on a dangling link.
fn link_target(parent_fd: &OwnedFd, parent: &str, name: &str) -> Option<String> {
    let target = rustix::fs::readlinkat(parent_fd, name, Vec::new()).ok()?;
    let target = target.to_str().ok()?.to_owned();
    Some(if target.starts_with('/') {
        target
    } else {
        format!("{parent}/{target}")
    })
}

/// Opens directory `path` in the root (`O_PATH`), creating missing
/// components (0755) inside the root. A dangling symlink on the way is
/// followed — confined to the root — and its target created.
pub(crate) fn ensure_dir(root: &Root, path: &str) -> R<OwnedFd> {
    ensure_dir_n(root, path, 0)
}

fn ensure_dir_n(root: &Root, path: &str, links: u32) -> R<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY;
    match open_in_root(root.fd.as_fd(), path, flags) {
        Ok(fd) => Ok(fd),
        Err(Errno::NOENT) => {
            let (parent, name) = split_last(path);
            if name.is_empty() || name == "." || name == ".." {
                return Err(StepError::os(
                    "resolve",
                    Some(&root.show(path)),
                    Errno::NOENT,
                ));
            }
            let pfd = ensure_dir_n(root, parent, links)?;
            match rustix::fs::mkdirat(&pfd, name, Mode::from_raw_mode(0o755)) {
                Ok(()) => root.record(path),
                Err(Errno::EXIST) => {
                    if let Some(target) = link_target(&pfd, parent, name) {
                        if links >= MAX_LINKS {
                            return Err(StepError::os(
                                "resolve",
                                Some(&root.show(path)),
                                Errno::LOOP,
                            ));
                        }
                        return ensure_dir_n(root, &target, links + 1);
                    }
                }
                Err(e) => return Err(StepError::os("mkdir", Some(&root.show(path)), e)),
            }
            open_in_root(root.fd.as_fd(), path, flags).map_err(|e| {
                let why = if e == Errno::NOENT {
                    " (dangling symlink?)"
                } else {
                    ""
                };
                StepError::msg(
                    "create directory",
                    Some(&root.show(path)),
                    format!("{}{why}", std::io::Error::from(e)),
                )
            })
        }
        Err(e) => Err(StepError::os("open directory", Some(&root.show(path)), e)),
    }
}

/// Opens non-directory `path` in the root (`O_PATH`), creating an empty file
/// (and parent directories) when it is missing.
pub(crate) fn ensure_file(root: &Root, path: &str) -> R<OwnedFd> {
    ensure_file_n(root, path, 0)
}

fn ensure_file_n(root: &Root, path: &str, links: u32) -> R<OwnedFd> {
    let found = match open_in_root(root.fd.as_fd(), path, OFlags::PATH) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => {
            let (parent, name) = split_last(path);
            if name.is_empty() || name == "." || name == ".." {
                return Err(StepError::os(
                    "resolve",
                    Some(&root.show(path)),
                    Errno::NOENT,
                ));
            }
            let pfd = ensure_dir(root, parent)?;
            let flags =
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match rustix::fs::openat(&pfd, name, flags, Mode::from_raw_mode(0o644)) {
                Ok(_) => root.record(path),
                Err(Errno::EXIST) => match link_target(&pfd, parent, name) {
                    Some(target) if links < MAX_LINKS => {
                        return ensure_file_n(root, &target, links + 1)
                    }
                    _ => {
                        return Err(StepError::msg(
                            "create file",
                            Some(&root.show(path)),
                            "unresolvable symlink",
                        ))
                    }
                },
                Err(e) => return Err(StepError::os("create file", Some(&root.show(path)), e)),
            }
            open_in_root(root.fd.as_fd(), path, OFlags::PATH)
                .map_err(|e| StepError::os("open", Some(&root.show(path)), e))?
        }
        Err(e) => return Err(StepError::os("open", Some(&root.show(path)), e)),
    };
    let st =
        rustix::fs::fstat(&found).map_err(|e| StepError::os("stat", Some(&root.show(path)), e))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory {
        return Err(StepError::msg(
            "mount file",
            Some(&root.show(path)),
            "is a directory",
        ));
    }
    Ok(found)
}

/// Makes the new mount namespace's mounts private (nothing we mount leaks
/// back to the host) and mounts the root; returns it opened.
pub(crate) fn mount_root(cfg: &ChildConfig) -> R<Root> {
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )
    .map_err(|e| StepError::os("make mounts private", Some("/"), e))?;
    let path = match &cfg.spec.rootfs {
        RootFs::Dir(dir) => {
            bind(dir, dir, "bind rootfs onto itself")?;
            dir.clone()
        }
        RootFs::Overlay {
            lowers,
            upper,
            work,
        } => mount_overlay(lowers, upper, work, cfg.userns)?,
    };
    let display = path.display().to_string();
    let fd = rustix::fs::open(
        &path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| StepError::os("open rootfs", Some(&display), e))?;
    Ok(Root::new(fd, display))
}

fn bind(source: &Path, target: impl AsRef<Path>, step: &str) -> R<()> {
    rustix::mount::mount_bind_recursive(source, target.as_ref())
        .map_err(|e| StepError::os(step, Some(&source.display().to_string()), e))
}

/// Mounts the overlay on `<work>/merged`. Layers are passed as
/// `/proc/self/fd/N` so no path needs escaping and many layers fit the
/// one-page option limit.
fn mount_overlay(
    lowers: &[std::path::PathBuf],
    upper: &Path,
    work: &Path,
    userns: bool,
) -> R<std::path::PathBuf> {
    let open_dir = |p: &Path| {
        rustix::fs::open(
            p,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| StepError::os("open overlay layer", Some(&p.display().to_string()), e))
    };
    let target = work.join("merged");
    match rustix::fs::mkdir(&target, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => {
            return Err(StepError::os(
                "mkdir",
                Some(&target.display().to_string()),
                e,
            ))
        }
    }
    if lowers.is_empty() {
        // overlayfs needs a lower layer; with none the upper alone is the root.
        bind(upper, &target, "bind upper as rootfs")?;
        return Ok(target);
    }
    let lower_fds = lowers.iter().map(|p| open_dir(p)).collect::<R<Vec<_>>>()?;
    let upper_fd = open_dir(upper)?;
    let work_fd = open_dir(work)?;
    // overlayfs lists the top-most layer first; we take them bottom-most first.
    let lowerdir: Vec<String> = lower_fds.iter().rev().map(fd_path).collect();
    let mut opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowerdir.join(":"),
        fd_path(&upper_fd),
        fd_path(&work_fd)
    );
    if userns {
        // Unprivileged overlay (≥ 5.11) keeps its metadata in user.* xattrs.
        opts.push_str(",userxattr");
    }
    let opts = std::ffi::CString::new(opts).expect("fd paths contain no NUL");
    rustix::mount::mount(
        "overlay",
        &target,
        "overlay",
        MountFlags::empty(),
        opts.as_c_str(),
    )
    .map_err(|e| StepError::os("mount overlay", Some(&target.display().to_string()), e))?;
    Ok(target)
}

/// Host-wide knobs a root payload could otherwise write (without a user
/// namespace, root in the sandbox is host root): `/proc/sys/kernel/core_pattern`,
/// `/proc/sysrq-trigger`, ... Docker's lists.
const PROC_READONLY: [&str; 5] = ["bus", "fs", "irq", "sys", "sysrq-trigger"];
const PROC_MASKED: [&str; 8] = [
    "acpi",
    "asound",
    "kcore",
    "keys",
    "latency_stats",
    "sched_debug",
    "scsi",
    "timer_list",
];

/// Mounts a fresh procfs (of the new pid namespace) on `/proc`, with
/// Docker's read-only and masked paths.
pub(crate) fn mount_proc(root: &Root) -> R<()> {
    let target = ensure_dir(root, "/proc")?;
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    rustix::mount::mount("proc", fd_path(&target), "proc", flags, None)
        .map_err(|e| StepError::os("mount proc", Some(&root.show("/proc")), e))?;
    // The new procfs is ours (not image content): plain *at lookups are fine.
    let proc = open_in_root(root.fd.as_fd(), "/proc", OFlags::PATH | OFlags::DIRECTORY)
        .map_err(|e| StepError::os("open", Some(&root.show("/proc")), e))?;
    let open = |name: &str| {
        rustix::fs::openat(
            &proc,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    for name in PROC_READONLY {
        let show = root.show(&format!("/proc/{name}"));
        let Ok(fd) = open(name) else { continue };
        rustix::mount::mount_bind(fd_path(&fd), fd_path(&fd))
            .map_err(|e| StepError::os("bind", Some(&show), e))?;
        let top = open(name).map_err(|e| StepError::os("open", Some(&show), e))?;
        remount_readonly(top.as_fd(), &show)?;
    }
    for name in PROC_MASKED {
        let show = root.show(&format!("/proc/{name}"));
        let Ok(fd) = open(name) else { continue };
        let is_dir = rustix::fs::fstat(&fd)
            .map(|st| {
                rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
            })
            .unwrap_or(false);
        let r = if is_dir {
            rustix::mount::mount("tmpfs", fd_path(&fd), "tmpfs", MountFlags::RDONLY, None)
        } else {
            rustix::mount::mount_bind("/dev/null", fd_path(&fd))
        };
        r.map_err(|e| StepError::os("mask", Some(&show), e))?;
    }
    Ok(())
}

/// Mount flags a read-only remount must repeat: in a user namespace the
/// kernel refuses to clear nosuid/nodev/noexec/atime flags inherited from a
/// more privileged mount.
fn locked_flags(fd: BorrowedFd<'_>) -> MountFlags {
    use rustix::fs::StatVfsMountFlags as S;
    let mut out = MountFlags::empty();
    if let Ok(st) = rustix::fs::fstatvfs(fd) {
        for (s, m) in [
            (S::NOSUID, MountFlags::NOSUID),
            (S::NODEV, MountFlags::NODEV),
            (S::NOEXEC, MountFlags::NOEXEC),
            (S::NOATIME, MountFlags::NOATIME),
            (S::NODIRATIME, MountFlags::NODIRATIME),
            (S::RELATIME, MountFlags::RELATIME),
        ] {
            if st.f_flag.contains(s) {
                out |= m;
            }
        }
    }
    out
}

/// Remounts the mount whose root `fd` is read-only.
pub(crate) fn remount_readonly(fd: BorrowedFd<'_>, what: &str) -> R<()> {
    let flags = MountFlags::BIND | MountFlags::RDONLY | locked_flags(fd);
    rustix::mount::mount_remount(fd_path(fd), flags, "")
        .map_err(|e| StepError::os("remount read-only", Some(what), e))
}

/// Bind-mounts host `source` onto `target` in the root (directory or file to
/// match), optionally read-only.
pub(crate) fn bind_into(root: &Root, source: &Path, target: &str, readonly: bool) -> R<()> {
    let src_display = source.display().to_string();
    let meta = std::fs::metadata(source)
        .map_err(|e| StepError::msg("stat bind source", Some(&src_display), e.to_string()))?;
    let tfd = if meta.is_dir() {
        ensure_dir(root, target)?
    } else {
        ensure_file(root, target)?
    };
    rustix::mount::mount_bind_recursive(source, fd_path(&tfd)).map_err(|e| {
        StepError::msg(
            "bind mount",
            Some(&root.show(target)),
            format!("from {src_display}: {}", std::io::Error::from(e)),
        )
    })?;
    if readonly {
        // The fd still names the covered mountpoint; re-resolve to reach the new mount.
        let top = open_in_root(root.fd.as_fd(), target, OFlags::PATH)
            .map_err(|e| StepError::os("open", Some(&root.show(target)), e))?;
        remount_readonly(top.as_fd(), &root.show(target))?;
    }
    Ok(())
}

/// The `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf` binds (read-only).
pub(crate) fn mount_etc_files(root: &Root, cfg: &ChildConfig) -> R<()> {
    for (target, source) in [
        ("/etc/hosts", &cfg.etc_hosts),
        ("/etc/hostname", &cfg.etc_hostname),
        ("/etc/resolv.conf", &cfg.etc_resolv_conf),
    ] {
        if let Some(source) = source {
            bind_into(root, source, target, true)?;
        }
    }
    Ok(())
}

pub(crate) fn mount_extra(root: &Root, mounts: &[Mount], userns: bool) -> R<()> {
    for m in mounts {
        match m {
            Mount::Bind {
                source,
                target,
                readonly,
            } => bind_into(root, source, target, *readonly)?,
            Mount::Tmpfs { target, size } => {
                let tfd = ensure_dir(root, target)?;
                let mut opts = "mode=755".to_string();
                if let Some(size) = size {
                    opts.push_str(&format!(",size={size}"));
                }
                let opts = std::ffi::CString::new(opts).expect("no NUL");
                rustix::mount::mount(
                    "tmpfs",
                    fd_path(&tfd),
                    "tmpfs",
                    MountFlags::NOSUID | MountFlags::NODEV,
                    opts.as_c_str(),
                )
                .map_err(|e| StepError::os("mount tmpfs", Some(&root.show(target)), e))?;
            }
            Mount::Overlay {
                lowers,
                scratch,
                source,
                target,
                readwrite,
            } => overlay_into(root, lowers, scratch, source, target, *readwrite, userns)?,
        }
    }
    Ok(())
}

/// [`Mount::Overlay`]: mount the layer stack on `<scratch>/merged`, open `source` in it
/// confined (`RESOLVE_IN_ROOT`: a symlink in the source tree cannot reach the host) and
/// bind exactly that object onto `target`.
fn overlay_into(
    root: &Root,
    lowers: &[std::path::PathBuf],
    scratch: &Path,
    source: &str,
    target: &str,
    readwrite: bool,
    userns: bool,
) -> R<()> {
    let merged = if lowers.is_empty() {
        // Scratch: nothing to stack, an empty directory is the whole filesystem.
        let empty = scratch.join("empty");
        mkdir_host(&empty)?;
        empty
    } else {
        let open_dir = |p: &Path| {
            rustix::fs::open(
                p,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| StepError::os("open overlay layer", Some(&p.display().to_string()), e))
        };
        let mut lower_dirs = lowers.to_vec();
        // Descriptors, not path strings: no escaping of `,` or `:` in host paths.
        let mut upper_work = Vec::new();
        if readwrite {
            for name in ["upper", "work"] {
                let d = scratch.join(name);
                mkdir_host(&d)?;
                upper_work.push(open_dir(&d)?);
            }
        } else if lower_dirs.len() == 1 {
            // A read-only overlay needs two lowers; an empty one at the bottom is neutral.
            let empty = scratch.join("empty");
            mkdir_host(&empty)?;
            lower_dirs.insert(0, empty);
        }
        let fds = lower_dirs
            .iter()
            .map(|p| open_dir(p))
            .collect::<R<Vec<_>>>()?;
        let lowerdir: Vec<String> = fds.iter().rev().map(fd_path).collect();
        let mut opts = format!("lowerdir={}", lowerdir.join(":"));
        if let [upper, work] = upper_work.as_slice() {
            opts.push_str(&format!(
                ",upperdir={},workdir={}",
                fd_path(upper),
                fd_path(work)
            ));
        }
        if userns {
            opts.push_str(",userxattr");
        }
        let merged = scratch.join("merged");
        mkdir_host(&merged)?;
        let copts = std::ffi::CString::new(opts).map_err(|_| {
            StepError::msg(
                "mount overlay",
                Some(&merged.display().to_string()),
                "NUL in path",
            )
        })?;
        let flags = if readwrite {
            MountFlags::empty()
        } else {
            MountFlags::RDONLY
        };
        rustix::mount::mount("overlay", &merged, "overlay", flags, copts.as_c_str())
            .map_err(|e| StepError::os("mount overlay", Some(&merged.display().to_string()), e))?;
        merged
    };
    let merged_fd = rustix::fs::open(
        &merged,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| StepError::os("open", Some(&merged.display().to_string()), e))?;
    let src = open_in_root(merged_fd.as_fd(), source, OFlags::PATH).map_err(|e| {
        StepError::os(
            "bind mount source",
            Some(&format!("{source} (inside the mount's source filesystem)")),
            e,
        )
    })?;
    let is_dir = rustix::fs::fstat(&src)
        .map(|st| {
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
        })
        .map_err(|e| StepError::os("stat", Some(source), e))?;
    let tfd = if is_dir {
        ensure_dir(root, target)?
    } else {
        ensure_file(root, target)?
    };
    rustix::mount::mount_bind_recursive(fd_path(&src), fd_path(&tfd))
        .map_err(|e| StepError::os("bind mount", Some(&root.show(target)), e))?;
    if !readwrite && lowers.is_empty() {
        let top = open_in_root(root.fd.as_fd(), target, OFlags::PATH)
            .map_err(|e| StepError::os("open", Some(&root.show(target)), e))?;
        remount_readonly(top.as_fd(), &root.show(target))?;
    }
    Ok(())
}

fn mkdir_host(p: &Path) -> R<()> {
    match rustix::fs::mkdir(p, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(Errno::EXIST) => Ok(()),
        Err(e) => Err(StepError::os("mkdir", Some(&p.display().to_string()), e)),
    }
}

/// `pivot_root` into the root and detach the old one, so no host path is
/// reachable afterwards; then optionally make `/` read-only.
pub(crate) fn pivot(root: &Root, readonly: bool) -> R<()> {
    let show = root.display.clone();
    rustix::process::fchdir(&root.fd).map_err(|e| StepError::os("chdir", Some(&show), e))?;
    // pivot_root(".", ".") stacks the old root on top of the new one; the
    // detach below removes it without needing a put_old directory.
    rustix::process::pivot_root(".", ".")
        .map_err(|e| StepError::os("pivot_root", Some(&show), e))?;
    rustix::mount::unmount(".", UnmountFlags::DETACH)
        .map_err(|e| StepError::os("detach old root", Some(&show), e))?;
    rustix::process::chdir("/").map_err(|e| StepError::os("chdir", Some("/"), e))?;
    if readonly {
        let fd = rustix::fs::open(
            "/",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| StepError::os("open", Some("/"), e))?;
        remount_readonly(fd.as_fd(), "/")?;
    }
    Ok(())
}
