//! The metadata of one tar entry, as read and as written.

use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    Regular,
    Directory,
    Symlink,
    Hardlink,
    CharDevice,
    BlockDevice,
    Fifo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryHeader {
    /// Clean root-relative path (no leading `/`, no trailing `/`, no `.`/`..`); empty
    /// for the root directory itself.
    pub path: PathBuf,
    pub kind: EntryKind,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Content length (regular files only; 0 otherwise).
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// Symlink target (verbatim) or hardlink target (an archive path).
    pub link_name: Option<OsString>,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<(OsString, Vec<u8>)>,
}

impl EntryHeader {
    /// A header with neutral defaults, for callers that emit entries one by one.
    pub fn new(path: impl Into<PathBuf>, kind: EntryKind) -> EntryHeader {
        EntryHeader {
            path: path.into(),
            kind,
            mode: if kind == EntryKind::Directory {
                0o755
            } else {
                0o644
            },
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 0,
            mtime_nsec: 0,
            link_name: None,
            dev_major: 0,
            dev_minor: 0,
            xattrs: Vec::new(),
        }
    }
}
