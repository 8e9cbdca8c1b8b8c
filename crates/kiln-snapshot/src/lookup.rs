//! Reading the merged view of a stack of overlay-native snapshots *without* mounting it:
//! what `kiln run -u` needs for `/etc/passwd`, and what commit needs to tell a copied-up
//! directory from a new one. Every lookup goes through `kiln_fs::SafeRoot` per layer.
//!
//! Rules (overlayfs's): the top-most layer holding a name wins; a 0/0 char device
//! (whiteout) hides the name in lower layers; an opaque directory hides lower contents of
//! that directory. Symlinks are resolved by kiln-fs *within one layer only*; a path whose
//! components are symlinks that cross layers is reported as not found (conservative).

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use kiln_fs::{FileKind, Metadata, SafeRoot};

use crate::{OverlayXattr, Result};

pub(crate) fn is_whiteout(m: &Metadata) -> bool {
    m.kind == FileKind::CharDevice && m.rdev_major == 0 && m.rdev_minor == 0
}

pub(crate) fn opaque_key(x: OverlayXattr) -> &'static str {
    match x {
        OverlayXattr::Trusted => "trusted.overlay.opaque",
        OverlayXattr::User => "user.overlay.opaque",
    }
}

pub(crate) fn is_opaque(root: &SafeRoot, path: &Path, x: OverlayXattr) -> Result<bool> {
    let key = opaque_key(x);
    Ok(root
        .list_xattrs(path)?
        .iter()
        .any(|(k, v)| k == OsStr::new(key) && v == b"y"))
}

/// Finds `path` in the merged view of `lowers` (bottom-most first): the layer index and its
/// metadata, or None when absent or whited out.
pub(crate) fn find(
    lowers: &[PathBuf],
    path: &Path,
    x: OverlayXattr,
) -> Result<Option<(usize, Metadata)>> {
    let rel: PathBuf = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    'layers: for (i, dir) in lowers.iter().enumerate().rev() {
        let root = SafeRoot::open(dir)?;
        // Walk the ancestors: a whiteout or non-directory hides everything below, an
        // opaque directory hides the layers underneath.
        let mut prefix = PathBuf::new();
        let comps: Vec<_> = rel.components().collect();
        let mut stop_after = false;
        for (n, c) in comps.iter().enumerate() {
            prefix.push(c);
            let Some(m) = root.try_lstat(&prefix)? else {
                if stop_after {
                    return Ok(None);
                }
                continue 'layers;
            };
            if is_whiteout(&m) {
                return Ok(None);
            }
            if n + 1 == comps.len() {
                return Ok(Some((i, m)));
            }
            if m.kind != FileKind::Directory {
                return Ok(None);
            }
            if is_opaque(&root, &prefix, x)? {
                stop_after = true;
            }
        }
        if rel.as_os_str().is_empty() {
            return Ok(Some((i, root.lstat(Path::new(""))?)));
        }
        if stop_after {
            return Ok(None);
        }
    }
    Ok(None)
}

/// Reads a regular file from the merged view, at most `limit` bytes (image content is
/// untrusted: a 10 GiB `/etc/passwd` must not exhaust memory).
pub(crate) fn read_file(
    lowers: &[PathBuf],
    path: &Path,
    x: OverlayXattr,
    limit: u64,
) -> Result<Option<Vec<u8>>> {
    let Some((i, m)) = find(lowers, path, x)? else {
        return Ok(None);
    };
    if m.kind != FileKind::Regular {
        return Ok(None);
    }
    let root = SafeRoot::open(&lowers[i])?;
    read_limited(&root, path, limit).map(Some)
}

pub(crate) fn read_limited(root: &SafeRoot, path: &Path, limit: u64) -> Result<Vec<u8>> {
    let f = root.open_file(path, kiln_fs::OFlags::RDONLY | kiln_fs::OFlags::NOFOLLOW, 0)?;
    let mut out = Vec::new();
    f.take(limit)
        .read_to_end(&mut out)
        .map_err(crate::Error::io("read", path))?;
    Ok(out)
}
