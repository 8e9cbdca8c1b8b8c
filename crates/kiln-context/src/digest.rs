//! Content digests of exactly what a COPY reads, for cache keys.
//!
//! Each node gets a [`FileDigest`] over (path, type, permission bits, optionally owner,
//! size, content sha256 or symlink target). Modification times are deliberately left
//! out: a `touch` or a fresh `git clone` must not invalidate the cache. The per-node
//! digests, sorted by path, are combined into one [`SourceDigest::digest`]; they are
//! also kept as a [`SourceManifest`] so a later miss can be explained by [`diff`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Mutex;

use kiln_dockerfile::ignore::IgnoreMatcher;
use kiln_fs::{FileKind, Metadata, SafeRoot};
use kiln_oci::Digest;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::copy::{resolve_sources, SourceSpec};
use crate::statcache::{cached_sha256, content_sha256, hex32_de, hex32_ser, StatCache};
use crate::walk::{walk_dir, Filter};
use crate::Error;

/// sha256 of one node's canonical description.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileDigest(
    #[serde(serialize_with = "hex32_ser", deserialize_with = "hex32_de")] pub [u8; 32],
);

impl fmt::Debug for FileDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileDigest({})", hex::encode(self.0))
    }
}

impl fmt::Display for FileDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

#[derive(Debug, Clone)]
pub struct DigestOpts {
    /// Follow a symlink named directly as a source (BuildKit COPY: yes, in-root).
    pub follow_symlinks: bool,
    /// Put uid/gid in the key: for COPY --from (owners are kept), not for the context
    /// (COPY resets them to 0:0 unless --chown).
    pub include_owner: bool,
    /// A wildcard matching nothing is not an error (BuildKit's Dockerfile frontend).
    pub allow_empty_wildcard: bool,
    /// Name of the source in errors ("build context /src").
    pub source_name: String,
}

impl Default for DigestOpts {
    fn default() -> Self {
        DigestOpts {
            follow_symlinks: true,
            include_owner: false,
            allow_empty_wildcard: true,
            source_name: "build context".to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceDigest {
    /// The combined digest: the cache-key input for the COPY's sources.
    pub digest: Digest,
    /// Per-node digests, sorted by path (source-relative names as the COPY sees them).
    pub files: Vec<(String, FileDigest)>,
}

impl SourceDigest {
    pub fn manifest(&self) -> SourceManifest {
        SourceManifest {
            files: self.files.iter().cloned().collect(),
        }
    }
}

/// Compact `path → digest` record, persisted next to cache records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceManifest {
    pub files: BTreeMap<String, FileDigest>,
}

impl SourceManifest {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("manifest serialises")
    }

    pub fn from_json(bytes: &[u8]) -> Result<SourceManifest, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Why two manifests differ, one entry per path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    Added(String),
    Removed(String),
    Modified(String),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Added(p) => write!(f, "new file {p}"),
            Change::Removed(p) => write!(f, "removed {p}"),
            Change::Modified(p) => write!(f, "{p} changed"),
        }
    }
}

/// Paths added, removed or changed from `old` to `new`, sorted by path.
pub fn diff(old: &SourceManifest, new: &SourceManifest) -> Vec<Change> {
    let mut out = Vec::new();
    for (p, d) in &new.files {
        match old.files.get(p) {
            None => out.push(Change::Added(p.clone())),
            Some(o) if o != d => out.push(Change::Modified(p.clone())),
            Some(_) => {}
        }
    }
    for p in old.files.keys() {
        if !new.files.contains_key(p) {
            out.push(Change::Removed(p.clone()));
        }
    }
    out.sort_by(|a, b| key(a).cmp(key(b)));
    out
}

fn key(c: &Change) -> &str {
    match c {
        Change::Added(p) | Change::Removed(p) | Change::Modified(p) => p,
    }
}

/// Below this many regular files (and bytes) one thread hashes: spawning costs more.
const PARALLEL_MIN_FILES: usize = 64;
const PARALLEL_MIN_BYTES: u64 = 8 << 20;
/// Hashing threads; more than a few only queue on the same disk.
const MAX_HASH_THREADS: usize = 4;

/// One node a COPY reads: its name as the COPY sees it, its path in the root, its stat.
struct Node {
    shown: String,
    real: String,
    meta: Metadata,
}

/// Digest the sources of one COPY in `root`. Regular files are hashed on several
/// threads when there are enough of them; the result does not depend on the order.
pub(crate) fn digest_sources(
    root: &SafeRoot,
    ignore: Option<&IgnoreMatcher>,
    cache: &Mutex<StatCache>,
    patterns: &[String],
    excludes: &[String],
    opts: &DigestOpts,
) -> Result<SourceDigest, Error> {
    let exclude = crate::copy::exclude_matcher(excludes)?;
    let spec = SourceSpec {
        follow_symlinks: opts.follow_symlinks,
        parents: false,
        allow_empty_wildcard: opts.allow_empty_wildcard,
        ignore,
        exclude: exclude.as_ref(),
        source_name: &opts.source_name,
    };
    let sources = resolve_sources(root, patterns, &spec)?;
    let filter = Filter {
        ignore,
        exclude: exclude.as_ref(),
    };
    let mut nodes = Vec::new();
    for s in &sources {
        let real = crate::follow::slash(&s.real);
        nodes.push(Node {
            shown: s.name.clone(),
            real: real.clone(),
            meta: s.meta.clone(),
        });
        if s.meta.kind != FileKind::Directory {
            continue;
        }
        let mut entries = Vec::new();
        walk_dir(root, &real, "", &filter, &mut entries)?;
        for e in entries {
            let below = e.path.strip_prefix(&real).unwrap_or(&e.path);
            let below = below.trim_start_matches('/');
            nodes.push(Node {
                shown: crate::walk::join(&s.name, below),
                real: e.path,
                meta: e.meta,
            });
        }
    }
    let digests = digest_nodes(root, cache, &nodes, opts)?;
    // A later node of the same name replaces an earlier one, as the COPY's own writes do.
    let files: BTreeMap<String, FileDigest> =
        nodes.into_iter().map(|n| n.shown).zip(digests).collect();
    let mut all = Sha256::new();
    all.update(b"kiln-context-sources-v1\0");
    for (p, d) in &files {
        all.update(p.as_bytes());
        all.update([0]);
        all.update(d.0);
    }
    Ok(SourceDigest {
        digest: Digest::from_sha256(all.finalize().into()),
        files: files.into_iter().collect(),
    })
}

/// The digest of every node, in order; on several threads when the work is large.
fn digest_nodes(
    root: &SafeRoot,
    cache: &Mutex<StatCache>,
    nodes: &[Node],
    opts: &DigestOpts,
) -> Result<Vec<FileDigest>, Error> {
    // Unchanged files are known from the walk's stat alone.
    let mut sums: Vec<Option<[u8; 32]>> = nodes
        .iter()
        .map(|n| match n.meta.kind {
            FileKind::Regular => cached_sha256(cache, &n.real, &n.meta),
            _ => None,
        })
        .collect();
    let to_hash: Vec<usize> = (0..nodes.len())
        .filter(|&i| nodes[i].meta.kind == FileKind::Regular && sums[i].is_none())
        .collect();
    let bytes: u64 = to_hash.iter().map(|&i| nodes[i].meta.size).sum();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_HASH_THREADS)
        .min(to_hash.len());
    if threads > 1 && (to_hash.len() >= PARALLEL_MIN_FILES || bytes >= PARALLEL_MIN_BYTES) {
        // Content sums of every regular file in parallel (largest first, so one big file
        // does not end up last on a busy thread); the ordered pass below only combines.
        let mut order = to_hash;
        order.sort_by_key(|&i| std::cmp::Reverse(nodes[i].meta.size));
        // A failure leaves the sums to the ordered pass, which meets it and reports it.
        let found = crate::parallel::try_map(&order, threads, |&i| {
            content_sha256(cache, root, &nodes[i].real).map_err(drop)
        });
        if let Ok(found) = found {
            for (i, sum) in order.into_iter().zip(found) {
                sums[i] = Some(sum);
            }
        }
    }
    nodes
        .iter()
        .zip(sums)
        .map(|(n, sum)| node_digest(root, cache, n, sum, opts))
        .collect()
}

/// One node's digest; `sum` is its content sum when already computed.
fn node_digest(
    root: &SafeRoot,
    cache: &Mutex<StatCache>,
    node: &Node,
    sum: Option<[u8; 32]>,
    opts: &DigestOpts,
) -> Result<FileDigest, Error> {
    let (shown, real, m) = (&node.shown, &node.real, &node.meta);
    let mut h = Sha256::new();
    h.update(b"kiln-node-v1\0");
    h.update(shown.as_bytes());
    h.update([0]);
    let kind = match m.kind {
        FileKind::Regular => b'f',
        FileKind::Directory => b'd',
        FileKind::Symlink => b'l',
        FileKind::CharDevice => b'c',
        FileKind::BlockDevice => b'b',
        FileKind::Fifo => b'p',
        FileKind::Socket => b's',
    };
    h.update([kind]);
    h.update(format!(" {:o}", m.mode & 0o7777).as_bytes());
    if opts.include_owner {
        h.update(format!(" {}:{}", m.uid, m.gid).as_bytes());
    }
    match m.kind {
        FileKind::Regular => {
            let sum = match sum {
                Some(s) => s,
                None => content_sha256(cache, root, real)?,
            };
            h.update(format!(" {} ", m.size).as_bytes());
            h.update(sum);
        }
        FileKind::Symlink => {
            let t = root.read_link(Path::new(real))?;
            h.update(b" ");
            h.update(t.as_encoded_bytes());
        }
        FileKind::CharDevice | FileKind::BlockDevice => {
            h.update(format!(" {},{}", m.rdev_major, m.rdev_minor).as_bytes());
        }
        _ => {}
    }
    Ok(FileDigest(h.finalize().into()))
}
