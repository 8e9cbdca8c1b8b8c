//! flock(2)-based locks.
//!
//! flock locks belong to an *open file description*, not to a process: every call here opens
//! the lock file anew, so two `Store` handles — or two threads sharing one — exclude each
//! other exactly like two processes do. The lock is released when the file is closed, which
//! also happens when a process dies, so a crashed kiln never leaves a lock behind.

use crate::error::{Result, StoreError};
use rustix::fs::{flock, FlockOperation};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// A held lock; dropping it closes the file and so releases the lock.
#[derive(Debug)]
pub(crate) struct LockGuard {
    _file: File,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Shared,
    Exclusive,
}

/// Blocks until `path` (created if missing) is locked in `mode`.
pub(crate) fn lock_path(path: &Path, mode: Mode) -> Result<LockGuard> {
    let lock_err = |source| StoreError::Lock {
        path: PathBuf::from(path),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(lock_err)?;
    let op = match mode {
        Mode::Shared => FlockOperation::LockShared,
        Mode::Exclusive => FlockOperation::LockExclusive,
    };
    loop {
        match flock(&file, op) {
            Ok(()) => return Ok(LockGuard { _file: file }),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(lock_err(e.into())),
        }
    }
}

/// Takes an exclusive lock on an already open file without blocking.
/// `Ok(false)` means someone else holds a lock on it (the file is in use).
pub(crate) fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    loop {
        match flock(file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(true),
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(false),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether the file at `path` is currently locked by a live holder. A file that vanished
/// meanwhile counts as not locked (its owner finished).
pub(crate) fn is_locked(path: &Path) -> io::Result<bool> {
    match File::open(path) {
        Ok(f) => Ok(!try_lock_exclusive(&f)?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}
