//! Small shared pieces: flocks, unique names, atomic JSON writes, robust removal.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

use crate::{Error, Result};

/// Opens (creating) `path` and takes a blocking flock. Released when the file is closed,
/// which also happens when the process dies, so a crash never leaves a lock behind.
pub(crate) fn lock_file(path: &Path, exclusive: bool) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(Error::io("open lock", path))?;
    let op = if exclusive {
        FlockOperation::LockExclusive
    } else {
        FlockOperation::LockShared
    };
    loop {
        match flock(&file, op) {
            Ok(()) => return Ok(file),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(Error::io("flock", path)(e.into())),
        }
    }
}

/// Non-blocking exclusive flock on an open file: false when someone else holds a lock.
pub(crate) fn try_lock(file: &File) -> io::Result<bool> {
    loop {
        match flock(file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(true),
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(false),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

pub(crate) use kiln_fs::atomic::unique_name;

/// [`kiln_fs::atomic::write_file`], with the snapshot crate's error type.
pub(crate) fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<()> {
    kiln_fs::atomic::write_file(dest, bytes).map_err(Error::io("write", dest))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("fsync directory", dir))
}

/// Removes a tree kiln created (snapshots, active dirs). Overlay leaves `work/work` with
/// mode 000, and layers may hold read-only directories, which stop an unprivileged
/// `remove_dir_all`; on failure every directory is made writable and removal retried.
/// Paths below are never followed: `remove_dir_all` does not follow symlinks, and the
/// chmod pass uses `symlink_metadata`.
///
/// What is left after that (rootless: files owned by subordinate ids, in directories the
/// user does not own) is removed by `runner` inside the user namespace, when there is one.
pub(crate) fn remove_tree(path: &Path, runner: Option<&dyn crate::NamespaceRunner>) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    make_writable(path);
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => match runner {
            Some(r) => crate::userns::run(
                r,
                "remove",
                &crate::userns::Request::Remove {
                    // The helper runs in `/`.
                    path: std::path::absolute(path).map_err(Error::io("resolve", path))?,
                },
            ),
            _ => Err(Error::io("remove", path)(e)),
        },
    }
}

fn make_writable(path: &Path) {
    let Ok(m) = fs::symlink_metadata(path) else {
        return;
    };
    if !m.is_dir() {
        return;
    }
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
    if let Ok(rd) = fs::read_dir(path) {
        for e in rd.flatten() {
            make_writable(&e.path());
        }
    }
}

/// Size in bytes of a tree (regular files' lengths), for prune reports.
pub(crate) fn tree_size(path: &Path) -> u64 {
    let Ok(m) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| tree_size(&e.path())).sum())
        .unwrap_or(0)
}

/// RFC 3339 UTC timestamp for metadata.
pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
