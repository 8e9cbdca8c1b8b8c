//! OCI whiteout names (image-spec layer.md) and their classification.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// `.wh.<name>` deletes `<name>` from lower layers.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// `.wh..wh..opq` hides all lower contents of its directory.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// What a file name means to the layer model.
pub(crate) enum Name<'a> {
    Plain,
    Opaque,
    Whiteout(&'a OsStr),
    /// Other `.wh..wh.*` names (AUFS hardlink bookkeeping): meaningless here, skipped.
    Meta,
}

pub(crate) fn classify(name: &OsStr) -> Name<'_> {
    let b = name.as_bytes();
    if b == OPAQUE_MARKER.as_bytes() {
        Name::Opaque
    } else if b.starts_with(b".wh..wh.") {
        Name::Meta
    } else if let Some(rest) = b.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
        if rest.is_empty() || rest == b"." || rest == b".." {
            Name::Meta
        } else {
            Name::Whiteout(OsStr::from_bytes(rest))
        }
    } else {
        Name::Plain
    }
}

/// Xattrs an untrusted layer may not set: overlayfs control attributes (an attacker
/// could forge opaque dirs or redirects in a snapshot), kiln's owner override
/// (`user.kiln.owner`), SELinux labels and ACLs that belong to the host, and anything outside the
/// namespaces images use.
pub(crate) fn xattr_allowed(key: &OsStr) -> bool {
    let k = key.as_bytes();
    if k.starts_with(b"trusted.overlay.") || k.starts_with(b"user.overlay.") {
        return false;
    }
    // kiln's own rootless bookkeeping (the owner override): a layer must not forge it.
    if k == kiln_fs::OWNER_XATTR.as_bytes() {
        return false;
    }
    k.starts_with(b"user.") || k.starts_with(b"trusted.") || k == b"security.capability"
}
