//! Writing a step's files straight into the upper directory, without mounting the
//! overlay. Every file created through overlayfs costs a lookup in each lower layer plus
//! the overlay's own inode and dentry; a COPY of many small files spends most of its time
//! there. When the destination is new in the merged view, writing into the upper
//! directory gives exactly the layer the overlay would have produced:
//!
//! * nothing below the destination exists in any lower, so no whiteout, opaque directory
//!   or copy-up of a file is ever needed below it;
//! * each ancestor that exists in the lowers is a plain directory (never a symlink: the
//!   overlay would follow it into another part of the tree) and is "copied up" here as
//!   overlayfs does it: same mode, owner, times and extended attributes, overlay-private
//!   attributes excepted, not opaque (it still merges with the lowers);
//! * ancestors missing from the lowers are created by the writer as they would have been
//!   through the overlay.
//!
//! Only for an empty upper directory and the overlay snapshotter as root: the copy
//! fallback and rootless id mapping keep their own paths.

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

use kiln_fs::{FileKind, SafeRoot};

use crate::lookup;
use crate::{Active, Result, Snapshotter};

impl Active {
    /// The upper directory as the root to write the new path `dest` (absolute in the
    /// image) into directly, with its existing ancestors copied up; None when the
    /// overlay mount is needed (see the module doc for when that is).
    pub fn upper_for_new_path(&self, dest: &Path) -> Result<Option<SafeRoot>> {
        if self.snapshotter != Snapshotter::Overlay
            || self.copy.is_some()
            || self.id_map.is_some()
            || self.runner.is_some()
            || !dest.is_absolute()
        {
            return Ok(None);
        }
        let mut parts = Vec::new();
        for c in dest.components() {
            match c {
                Component::RootDir => {}
                Component::Normal(n) => parts.push(n),
                // `.`/`..` would need the merged view to resolve.
                _ => return Ok(None),
            }
        }
        if parts.is_empty() {
            return Ok(None);
        }
        let upper = SafeRoot::open(&self.upper)?;
        if !upper.read_dir(Path::new(""))?.is_empty() {
            return Ok(None);
        }
        let full: PathBuf = parts.iter().collect();
        if lookup::find(&self.lowers, &full, self.xattr)?.is_some() {
            return Ok(None);
        }
        let mut copy_up = Vec::new();
        let mut prefix = PathBuf::new();
        for part in &parts[..parts.len() - 1] {
            prefix.push(part);
            match lookup::find(&self.lowers, &prefix, self.xattr)? {
                None => break,
                Some((layer, m)) if m.kind == FileKind::Directory => {
                    copy_up.push((layer, prefix.clone(), m))
                }
                Some(_) => return Ok(None),
            }
        }
        for (layer, dir, m) in copy_up {
            let lower = SafeRoot::open(&self.lowers[layer])?;
            upper.mkdir(&dir, 0o700)?;
            for (key, value) in lower.list_xattrs(&dir)? {
                if !is_overlay_private(&key) {
                    upper.set_xattr(&dir, &key, &value)?;
                }
            }
            upper.chown(&dir, m.uid, m.gid)?;
            upper.chmod(&dir, m.mode)?;
            upper.set_times(&dir, (m.mtime, m.mtime_nsec), (m.mtime, m.mtime_nsec))?;
        }
        Ok(Some(upper))
    }
}

/// Attributes overlayfs keeps for itself (opaque markers, origins, redirects).
fn is_overlay_private(key: &OsStr) -> bool {
    let k = key.as_encoded_bytes();
    k.starts_with(b"trusted.overlay.") || k.starts_with(b"user.overlay.")
}

#[cfg(test)]
mod tests {
    use super::is_overlay_private;
    use std::ffi::OsStr;

    #[test]
    fn overlay_attributes_are_not_copied_up() {
        assert!(is_overlay_private(OsStr::new("trusted.overlay.opaque")));
        assert!(is_overlay_private(OsStr::new("user.overlay.origin")));
        assert!(!is_overlay_private(OsStr::new("security.capability")));
        assert!(!is_overlay_private(OsStr::new("user.kiln.owner")));
    }
}
