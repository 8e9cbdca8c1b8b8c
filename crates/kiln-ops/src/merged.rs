//! A merged (overlay) view of a step's root for file operations, without a helper process.
//!
//! COPY must see the destination image as it is (a `/app` that is a symlink in a lower
//! layer, `/etc/passwd` for `--chown` names) while writing only into the step's upper
//! directory. As root, a dedicated thread leaves the process's mount namespace
//! (`unshare(CLONE_FS | CLONE_NEWNS)` affects only the calling thread, which is why this is
//! safe in a multi-threaded process), mounts the overlay privately, runs the closure and
//! unmounts; nothing is visible to other threads or processes, and the namespace dies with
//! the thread. Without root the closure gets the upper directory itself (the copy
//! snapshotter's materialised root is a real merged view already).

use crate::error::OpError;
use kiln_fs::SafeRoot;
use kiln_snapshot::ActiveMount;
use rustix::fs::{Mode, OFlags};
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Runs `f` with a safe root over the merged view of `mount` (writes land in the upper).
/// `scratch` is an empty directory the overlay is mounted on.
pub fn with_merged<T: Send>(
    mount: &ActiveMount,
    scratch: &Path,
    f: impl FnOnce(&SafeRoot) -> Result<T, OpError> + Send,
) -> Result<T, OpError> {
    match mount {
        ActiveMount::Dir(root) => f(&SafeRoot::open(root)?),
        ActiveMount::Overlay { lowers, upper, .. }
            if lowers.is_empty() || !kiln_fs::running_as_root() =>
        {
            f(&SafeRoot::open(upper)?)
        }
        ActiveMount::Overlay {
            lowers,
            upper,
            work,
        } => std::thread::scope(|s| {
            s.spawn(|| in_private_namespace(lowers, upper, work, scratch, f))
                .join()
                .unwrap_or_else(|_| Err(OpError::Internal("file operation thread panicked".into())))
        }),
    }
}

/// Runs `f` with a read-only merged view of `lowers` (for `COPY --from` a stage or image).
pub fn with_readonly<T: Send>(
    lowers: &[PathBuf],
    scratch: &Path,
    f: impl FnOnce(&SafeRoot) -> Result<T, OpError> + Send,
) -> Result<T, OpError> {
    match lowers {
        [] => {
            let empty = scratch.join("empty");
            std::fs::create_dir_all(&empty).map_err(OpError::io("create", &empty))?;
            f(&SafeRoot::open(&empty)?)
        }
        // One snapshot alone may still hold overlay whiteouts of nothing below; as a plain
        // directory those are just stray device nodes a COPY would never select by name.
        [only] if !kiln_fs::running_as_root() => f(&SafeRoot::open(only)?),
        // The caller materialises multi-layer sources itself when it is not root.
        _ if !kiln_fs::running_as_root() => Err(OpError::Internal(
            "read-only overlay view needs root".into(),
        )),
        _ => std::thread::scope(|s| {
            s.spawn(|| in_private_namespace_ro(lowers, scratch, f))
                .join()
                .unwrap_or_else(|_| Err(OpError::Internal("file operation thread panicked".into())))
        }),
    }
}

fn open_path(p: &Path) -> Result<std::os::fd::OwnedFd, OpError> {
    rustix::fs::open(
        p,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| OpError::io("open", p)(e.into()))
}

fn enter_private_namespace() -> Result<(), OpError> {
    // SAFETY: CLONE_FS|CLONE_NEWNS only detaches this thread's filesystem context and mount
    // namespace; no memory or descriptor sharing with other threads changes.
    unsafe {
        rustix::thread::unshare_unsafe(
            rustix::thread::UnshareFlags::FS | rustix::thread::UnshareFlags::NEWNS,
        )
    }
    .map_err(|e| OpError::io("unshare mount namespace for", "file operation")(e.into()))?;
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )
    .map_err(|e| OpError::io("make mounts private at", "/")(e.into()))
}

fn lowerdir(fds: &[std::os::fd::OwnedFd]) -> String {
    // overlayfs lists lowers top-most first; ours are bottom-most first.
    fds.iter()
        .rev()
        .map(|fd| format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .collect::<Vec<_>>()
        .join(":")
}

fn in_private_namespace<T>(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    scratch: &Path,
    f: impl FnOnce(&SafeRoot) -> Result<T, OpError>,
) -> Result<T, OpError> {
    enter_private_namespace()?;
    let fds = lowers
        .iter()
        .map(|p| open_path(p))
        .collect::<Result<Vec<_>, _>>()?;
    let upper_fd = open_path(upper)?;
    let work_fd = open_path(work)?;
    let data = format!(
        "lowerdir={},upperdir=/proc/self/fd/{},workdir=/proc/self/fd/{}",
        lowerdir(&fds),
        upper_fd.as_raw_fd(),
        work_fd.as_raw_fd()
    );
    mount_and_run(&scratch.join("merged"), &data, MountFlags::empty(), f)
}

fn in_private_namespace_ro<T>(
    lowers: &[PathBuf],
    scratch: &Path,
    f: impl FnOnce(&SafeRoot) -> Result<T, OpError>,
) -> Result<T, OpError> {
    enter_private_namespace()?;
    let empty = scratch.join("empty-lower");
    std::fs::create_dir_all(&empty).map_err(OpError::io("create", &empty))?;
    // A read-only overlay needs two lowers at least; an empty one at the bottom is neutral.
    let mut fds = vec![open_path(&empty)?];
    for p in lowers {
        fds.push(open_path(p)?);
    }
    let data = format!("lowerdir={}", lowerdir(&fds));
    mount_and_run(&scratch.join("ro-merged"), &data, MountFlags::RDONLY, f)
}

/// Mounts an overlay with `options` at `target` (in the thread's private namespace), runs
/// `f` on it and detaches it again.
fn mount_and_run<T>(
    target: &Path,
    options: &str,
    flags: MountFlags,
    f: impl FnOnce(&SafeRoot) -> Result<T, OpError>,
) -> Result<T, OpError> {
    std::fs::create_dir_all(target).map_err(OpError::io("create", target))?;
    let data = std::ffi::CString::new(options)
        .map_err(|_| OpError::Internal("NUL in overlay options".into()))?;
    rustix::mount::mount("overlay", target, "overlay", flags, Some(data.as_c_str()))
        .map_err(|e| OpError::io("mount overlay at", target)(e.into()))?;
    let result = SafeRoot::open(target)
        .map_err(OpError::from)
        .and_then(|r| f(&r));
    let _ = rustix::mount::unmount(target, UnmountFlags::DETACH);
    result
}
