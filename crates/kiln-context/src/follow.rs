//! In-root symlink resolution that yields a *path*, not a descriptor: COPY needs the
//! real root-relative location of a followed source (to copy a directory's contents)
//! and of a destination parent (so the report names where bytes actually landed).
//! Every step is an `lstat`/`readlink` through [`SafeRoot`], so the walk can only ever
//! observe the root: absolute targets restart at the root and `..` stops there.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use kiln_fs::{FileKind, SafeRoot};

use crate::Error;

const MAX_LINKS: u32 = 40;

/// Resolve every component of `path` (also the last when `follow_last`). Components from
/// the first missing one on are appended lexically. Returns the resolved path and
/// whether it exists.
pub(crate) fn resolve(
    root: &SafeRoot,
    path: &Path,
    follow_last: bool,
) -> Result<(PathBuf, bool), Error> {
    let mut todo: Vec<PathBuf> = Vec::new(); // components still to visit, reversed
    push_components(&mut todo, path);
    let mut cur = PathBuf::new();
    let mut links = 0;
    while let Some(comp) = todo.pop() {
        if comp.as_os_str() == ".." {
            cur.pop();
            continue;
        }
        let cand = cur.join(&comp);
        let meta = match root.try_lstat(&cand)? {
            Some(m) => m,
            None => {
                let mut out = cand;
                while let Some(rest) = todo.pop() {
                    if rest.as_os_str() == ".." {
                        out.pop();
                    } else {
                        out.push(rest);
                    }
                }
                return Ok((out, false));
            }
        };
        let last = todo.is_empty();
        if meta.kind == FileKind::Symlink && (!last || follow_last) {
            links += 1;
            if links > MAX_LINKS {
                return Err(Error::SymlinkLoop {
                    path: path.display().to_string(),
                });
            }
            let target = root.read_link(&cand)?;
            let target = Path::new(&target);
            if target.is_absolute() {
                cur = PathBuf::new();
            }
            push_components(&mut todo, target);
            continue;
        }
        cur = cand;
    }
    Ok((cur, true))
}

fn push_components(todo: &mut Vec<PathBuf>, p: &Path) {
    let comps: Vec<PathBuf> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(PathBuf::from(n)),
            Component::ParentDir => Some(PathBuf::from("..")),
            _ => None,
        })
        .collect();
    todo.extend(comps.into_iter().rev());
}

/// Lexical clean that clamps `..` at the root (BuildKit's `filepath.Join("/", p)`):
/// COPY sources and destinations never error for climbing, they just cannot leave.
pub(crate) fn clamp(p: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in Path::new(OsStr::from_bytes(p.as_bytes())).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// `/`-separated display form of a root-relative path.
pub(crate) fn slash(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}
