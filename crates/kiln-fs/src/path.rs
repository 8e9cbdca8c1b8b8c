//! Lexical normalisation of untrusted names (tar entry names, COPY sources).
//!
//! In-root resolution already makes `..` harmless, but a name that climbs above the root
//! is almost always an attack or a broken archive, so it is reported as
//! [`Error::PathEscapes`] instead of being silently clamped.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::Error;

/// Normalise a name to a clean root-relative path: leading `/` and `./` stripped, `.`
/// dropped, `..` applied lexically. The empty path means the root itself.
pub fn normalize(path: &Path) -> Result<PathBuf, Error> {
    normalize_bytes(path.as_os_str().as_bytes())
}

/// [`normalize`] for raw bytes, as found in tar headers.
pub fn normalize_bytes(name: &[u8]) -> Result<PathBuf, Error> {
    let shown = || PathBuf::from(OsStr::from_bytes(name));
    if name.contains(&0) {
        return Err(Error::InvalidPath {
            path: shown(),
            reason: "contains a NUL byte",
        });
    }
    let mut out: Vec<&OsStr> = Vec::new();
    for c in Path::new(OsStr::from_bytes(name)).components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if out.pop().is_none() {
                    return Err(Error::PathEscapes { path: shown() });
                }
            }
            Component::Normal(n) => out.push(n),
        }
    }
    Ok(out.iter().collect())
}

/// Split a clean path into its parent and a single plain final name.
pub(crate) fn split(path: &Path) -> Result<(&Path, &OsStr), Error> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => Ok((parent, name)),
        _ => Err(Error::InvalidPath {
            path: path.to_path_buf(),
            reason: "needs a final name",
        }),
    }
}

/// The components of a clean path as owned strings (for the walking resolver).
pub(crate) fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_names() {
        assert_eq!(
            normalize_bytes(b"/a/./b//c/").unwrap(),
            PathBuf::from("a/b/c")
        );
        assert_eq!(normalize_bytes(b"./a/../b").unwrap(), PathBuf::from("b"));
        assert_eq!(normalize_bytes(b"./").unwrap(), PathBuf::from(""));
        assert!(matches!(
            normalize_bytes(b"a/../../b"),
            Err(Error::PathEscapes { .. })
        ));
        assert!(matches!(
            normalize_bytes(b"../x"),
            Err(Error::PathEscapes { .. })
        ));
        assert!(matches!(
            normalize_bytes(b"a\0b"),
            Err(Error::InvalidPath { .. })
        ));
    }
}
