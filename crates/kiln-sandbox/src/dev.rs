//! A minimal `/dev` on a fresh tmpfs. Device nodes are bind mounts of the
//! host's (mknod is not allowed in a user namespace, and binds work the same
//! as root); a private devpts instance gives the sandbox its own ptys.

use crate::error::StepError;
use crate::mounts::{ensure_dir, fd_path, open_in_root, Root};
use rustix::fs::{Mode, OFlags};
use rustix::mount::MountFlags;
use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};

const NODES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

const LINKS: [(&str, &str); 5] = [
    ("ptmx", "pts/ptmx"),
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

fn mount_fs(
    fs: &str,
    target: &OwnedFd,
    flags: MountFlags,
    opts: &str,
    show: &str,
) -> Result<(), StepError> {
    let opts = CString::new(opts).expect("no NUL");
    rustix::mount::mount(fs, fd_path(target), fs, flags, opts.as_c_str())
        .map_err(|e| StepError::os(format!("mount {fs}"), Some(show), e))
}

/// `full_id_range`: gid 5 (tty) exists in the namespace, so devpts can use it.
pub(crate) fn mount_dev(root: &Root, full_id_range: bool) -> Result<(), StepError> {
    let target = ensure_dir(root, "/dev")?;
    mount_fs(
        "tmpfs",
        &target,
        MountFlags::NOSUID | MountFlags::STRICTATIME,
        "mode=755,size=65536k",
        &root.show("/dev"),
    )?;
    // Re-resolve: `target` names the covered directory, not the new tmpfs.
    let dev = open_in_root(root.fd.as_fd(), "/dev", OFlags::PATH | OFlags::DIRECTORY)
        .map_err(|e| StepError::os("open", Some(&root.show("/dev")), e))?;
    // From here on we only touch our own fresh tmpfs, so plain *at calls are safe.
    for name in NODES {
        let show = root.show(&format!("/dev/{name}"));
        let stub = rustix::fs::openat(
            &dev,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        )
        .map_err(|e| StepError::os("create device stub", Some(&show), e))?;
        rustix::mount::mount_bind(format!("/dev/{name}"), fd_path(&stub))
            .map_err(|e| StepError::os(format!("bind /dev/{name}"), Some(&show), e))?;
    }
    for (name, mode) in [("pts", 0o755), ("shm", 0o1777)] {
        rustix::fs::mkdirat(&dev, name, Mode::from_raw_mode(mode))
            .map_err(|e| StepError::os("mkdir", Some(&root.show(&format!("/dev/{name}"))), e))?;
    }
    let open_sub = |name: &str| {
        rustix::fs::openat(
            &dev,
            name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| StepError::os("open", Some(&root.show(&format!("/dev/{name}"))), e))
    };
    let mut pts_opts = "newinstance,ptmxmode=0666,mode=0620".to_string();
    if full_id_range {
        pts_opts.push_str(",gid=5");
    }
    mount_fs(
        "devpts",
        &open_sub("pts")?,
        MountFlags::NOSUID | MountFlags::NOEXEC,
        &pts_opts,
        &root.show("/dev/pts"),
    )?;
    mount_fs(
        "tmpfs",
        &open_sub("shm")?,
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        "mode=1777,size=65536k",
        &root.show("/dev/shm"),
    )?;
    for (name, to) in LINKS {
        rustix::fs::symlinkat(to, &dev, name)
            .map_err(|e| StepError::os("symlink", Some(&root.show(&format!("/dev/{name}"))), e))?;
    }
    Ok(())
}
