//! Walking a source tree without following symlinks, with `.dockerignore` and
//! `--exclude` applied the way BuildKit applies them: an excluded directory is skipped
//! unless an exception pattern could re-include something inside it.

use std::path::Path;

use kiln_dockerfile::ignore::IgnoreMatcher;
use kiln_fs::{FileKind, Metadata, SafeRoot};

use crate::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WalkKind {
    File,
    Dir,
    Symlink,
    /// Device nodes, fifos, sockets.
    Other,
}

impl WalkKind {
    pub(crate) fn of(kind: FileKind) -> WalkKind {
        match kind {
            FileKind::Regular => WalkKind::File,
            FileKind::Directory => WalkKind::Dir,
            FileKind::Symlink => WalkKind::Symlink,
            _ => WalkKind::Other,
        }
    }
}

/// One included node; `path` is `/`-separated and relative to the walked root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkEntry {
    pub path: String,
    pub kind: WalkKind,
    pub meta: Metadata,
}

/// The two pattern sets a COPY filters with. `.dockerignore` patterns see paths relative
/// to the context root; `--exclude` patterns see paths relative to the copied source
/// (and, for the top-level match itself, its root-relative name).
#[derive(Default, Clone, Copy)]
pub(crate) struct Filter<'a> {
    pub ignore: Option<&'a IgnoreMatcher>,
    pub exclude: Option<&'a IgnoreMatcher>,
}

impl Filter<'_> {
    /// `root_rel`: path relative to the source root; `src_rel`: relative to the copied
    /// source (empty for the source itself).
    pub fn excluded(&self, root_rel: &str, src_rel: &str) -> bool {
        self.ignore.is_some_and(|m| m.is_excluded(root_rel))
            || self.exclude.is_some_and(|m| {
                (!src_rel.is_empty() && m.is_excluded(src_rel))
                    || (src_rel.is_empty() && m.is_excluded(root_rel))
            })
    }

    /// Whether an excluded directory still has to be entered.
    pub fn descend(&self, root_rel: &str, src_rel: &str) -> bool {
        let ig = self
            .ignore
            .is_none_or(|m| m.dir_may_contain_included(root_rel));
        let ex = self.exclude.is_none_or(|m| {
            if src_rel.is_empty() {
                m.dir_may_contain_included(root_rel)
            } else {
                m.dir_may_contain_included(src_rel)
            }
        });
        ig && ex
    }
}

pub(crate) fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}/{b}"),
    }
}

/// Collect the included descendants of the directory `start` (root-relative), sorted
/// depth-first by name. `src_base` is the part of `start` the source was named by, so
/// `--exclude` sees paths relative to it. Directories that are excluded but entered for
/// an exception are listed only when something below them is included.
pub(crate) fn walk_dir(
    root: &SafeRoot,
    start: &str,
    src_rel: &str,
    filter: &Filter<'_>,
    out: &mut Vec<WalkEntry>,
) -> Result<bool, Error> {
    let mut any = false;
    for name in root.read_dir(Path::new(start))? {
        let name = name.to_string_lossy().into_owned();
        let path = join(start, &name);
        let rel = join(src_rel, &name);
        let meta = root.lstat(Path::new(&path))?;
        let excluded = filter.excluded(&path, &rel);
        let kind = WalkKind::of(meta.kind);
        if kind == WalkKind::Dir {
            if excluded && !filter.descend(&path, &rel) {
                continue;
            }
            let at = out.len();
            out.push(WalkEntry {
                path: path.clone(),
                kind,
                meta,
            });
            let inner = walk_dir(root, &path, &rel, filter, out)?;
            if excluded && !inner {
                out.remove(at);
                continue;
            }
            any = true;
        } else if !excluded {
            out.push(WalkEntry { path, kind, meta });
            any = true;
        }
    }
    Ok(any)
}
