//! kiln-fs: the safe root.
//!
//! Owns every path resolution inside an untrusted tree (layer contents, build contexts,
//! cache mounts, snapshots). Nothing else in kiln resolves untrusted paths: other crates
//! hand a [`SafeRoot`] and a root-relative path to this crate and get back file
//! descriptors or typed errors.
//!
//! How confinement works: paths are resolved with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)`, or, where the kernel lacks `openat2`, an equivalent
//! component walk (symlinks resolved against the root, `..` clamped at the root, at most
//! 40 links). Operations on a final component (create, unlink, symlink, chown, chmod,
//! times, xattrs) resolve only the *parent* inside the root and then act with an `*at`
//! call on a single plain name, so a symlink in final position is never followed.
//!
//! Also owns [`IdMapping`] (host ↔ container ids of a user namespace, as a value) and the
//! rootless owner-override xattr ([`OWNER_XATTR`]): the id arithmetic every crate that
//! reads or writes a rootless tree shares (see [`idmap`]).
//!
//! Must not: depend on the archive, store or sandbox crates, or print anything.

pub mod atomic;
mod copy;
mod error;
pub mod idmap;
mod path;
mod resolve;
mod root;
mod xattr;

pub use copy::{copy, CopyOptions, CopyStats};
pub use error::Error;
pub use idmap::{IdMap, IdMapping, IdRange, OVERFLOW_ID, OWNER_XATTR};
pub use path::{normalize, normalize_bytes};
pub use resolve::Resolver;
pub use root::{FileKind, Metadata, SafeRoot};

/// Open flags for [`SafeRoot::open_file`], re-exported so callers need not depend on rustix.
pub use rustix::fs::OFlags;

/// Whether the process has the privileges of root (euid 0) in its user namespace.
///
/// Callers use this to decide whether to expect `chown`/`mknod` to work; operations still
/// report `EPERM` faithfully when the guess is wrong (e.g. root in a user namespace).
pub fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}
