//! Rootless stores with subordinate ids: the snapshot operations that must create or
//! remove files owned by subordinate ids run inside a user namespace with the full
//! mapping (container 0 ↔ the user, 1..=N ↔ the `/etc/subuid` range) — base-layer unpacks
//! (so chown works and files get the host ids the RUN sandbox shows as the image's owners)
//! and removal of snapshot, active and temp trees a plain `rm` cannot remove (prune, GC,
//! dropping an active dir) — and the one that must *read* them: the tar of a RUN's upper
//! dir at commit (streamed back on the helper's stdout; compression, hashing and the blob
//! commit stay in the caller). Rootless podman and buildah do the same.
//!
//! This crate does not create the namespace (it must not run processes): the binary
//! registers a [`NamespaceRunner`] (kiln-ops wires kiln-sandbox's re-exec helper) with
//! [`set_namespace_runner`], and its helper's handler is [`serve_in_namespace`]. Requests
//! are JSON; paths in them are kiln's own store directories, never untrusted input (the
//! layer content is still applied through `kiln_fs::SafeRoot`).
//!
//! Without a runner (root, or no subordinate range: a single-id map, where only container
//! 0 can be real) unpacks keep owners in the `user.kiln.owner` override xattr as before.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use kiln_archive::DecodeLimits;
use kiln_fs::{IdMap, IdMapping, IdRange};
use kiln_oci::Digest;
use serde::{Deserialize, Serialize};

use crate::{Error, OverlayXattr, Result, SnapshotId, Snapshots};

/// Runs one request (JSON) as root of a user namespace with the store's full id mapping,
/// by handing it to [`serve_in_namespace`] there; returns its answer or error message.
pub trait NamespaceRunner: Send + Sync + fmt::Debug {
    fn run(&self, request: &str) -> std::result::Result<String, String>;
    /// [`NamespaceRunner::run`] for a request whose handler also writes a stream to its
    /// standard output, copied into `out`.
    fn run_streaming(
        &self,
        request: &str,
        out: &mut dyn std::io::Write,
    ) -> std::result::Result<String, String>;
}

static RUNNER: OnceLock<Arc<dyn NamespaceRunner>> = OnceLock::new();

/// Registers the process's runner (once; later calls are ignored). Every
/// [`Snapshots::open`] of a non-root process after this uses it.
pub fn set_namespace_runner(runner: Arc<dyn NamespaceRunner>) {
    let _ = RUNNER.set(runner);
}

pub(crate) fn registered_runner() -> Option<Arc<dyn NamespaceRunner>> {
    RUNNER.get().cloned()
}

/// [`DecodeLimits`] across the re-exec.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Limits {
    max_total_bytes: u64,
    max_ratio: u64,
    ratio_grace_bytes: u64,
    max_entries: u64,
    max_path_len: usize,
    max_xattr_bytes: usize,
}

impl From<&DecodeLimits> for Limits {
    fn from(l: &DecodeLimits) -> Self {
        Limits {
            max_total_bytes: l.max_total_bytes,
            max_ratio: l.max_ratio,
            ratio_grace_bytes: l.ratio_grace_bytes,
            max_entries: l.max_entries,
            max_path_len: l.max_path_len,
            max_xattr_bytes: l.max_xattr_bytes,
        }
    }
}

impl From<Limits> for DecodeLimits {
    fn from(l: Limits) -> Self {
        DecodeLimits {
            max_total_bytes: l.max_total_bytes,
            max_ratio: l.max_ratio,
            ratio_grace_bytes: l.ratio_grace_bytes,
            max_entries: l.max_entries,
            max_path_len: l.max_path_len,
            max_xattr_bytes: l.max_xattr_bytes,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// `Snapshots::unpack_into` of the store at `store`, into `tmp`, published as `id`.
    Unpack {
        store: PathBuf,
        tmp: PathBuf,
        id: SnapshotId,
        parent: Option<Digest>,
        diff_id: Digest,
        blob: Digest,
        size: u64,
        limits: Limits,
    },
    /// Remove a tree kiln created.
    Remove { path: PathBuf },
    /// Write the layer tar (container ids, overlay whiteouts → OCI) of an upper dir to
    /// standard output: an upper dir may hold directories only subordinate ids can read.
    WriteTree {
        upper: PathBuf,
        clamp_mtime: Option<i64>,
    },
}

pub(crate) fn run(runner: &dyn NamespaceRunner, op: &'static str, req: &Request) -> Result<()> {
    let json = serde_json::to_string(req).expect("requests serialise");
    runner
        .run(&json)
        .map(drop)
        .map_err(|detail| Error::Namespace { op, detail })
}

/// Streams the layer tar of `upper` (written inside the namespace) into `out`.
pub(crate) fn write_tree_in_namespace<W: std::io::Write>(
    runner: &dyn NamespaceRunner,
    upper: &Path,
    clamp_mtime: Option<i64>,
    mut out: W,
) -> Result<W> {
    let req = Request::WriteTree {
        upper: std::path::absolute(upper).map_err(Error::io("resolve", upper))?,
        clamp_mtime,
    };
    let json = serde_json::to_string(&req).expect("requests serialise");
    runner
        .run_streaming(&json, &mut out)
        .map_err(|detail| Error::Namespace {
            op: "write layer",
            detail,
        })?;
    Ok(out)
}

impl Snapshots {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn unpack_in_namespace(
        &self,
        runner: &dyn NamespaceRunner,
        tmp: &Path,
        id: &SnapshotId,
        parent: Option<Digest>,
        diff_id: &Digest,
        blob: &Digest,
        size: u64,
        limits: &DecodeLimits,
    ) -> Result<()> {
        // The helper runs in `/`: relative paths would mean something else there.
        let abs = |p: &Path| std::path::absolute(p).map_err(Error::io("resolve", p));
        let req = Request::Unpack {
            store: abs(self.store.root())?,
            tmp: abs(tmp)?,
            id: id.clone(),
            parent,
            diff_id: diff_id.clone(),
            blob: blob.clone(),
            size,
            limits: limits.into(),
        };
        run(runner, "unpack layer", &req)
    }
}

/// The handler of the namespace helper: runs one request of [`NamespaceRunner::run`]
/// inside the namespace (as its uid 0). Call it from the binary's helper entry point.
pub fn serve_in_namespace(request: &str) -> std::result::Result<String, String> {
    let req: Request =
        serde_json::from_str(request).map_err(|e| format!("bad namespace request: {e}"))?;
    match req {
        Request::Remove { path } => {
            if !path.is_absolute() {
                return Err(format!(
                    "refusing to remove relative path {}",
                    path.display()
                ));
            }
            crate::util::remove_tree(&path, None).map_err(|e| e.to_string())?;
        }
        Request::WriteTree { upper, clamp_mtime } => {
            use std::io::Write;
            let root = kiln_fs::SafeRoot::open(&upper).map_err(|e| e.to_string())?;
            let wopts = kiln_archive::WriteOptions {
                clamp_mtime,
                overlay_upper: true,
                xattrs: true,
                // Container ids are this namespace's ids; the owner override xattr still
                // counts where a node is owned by container 0 (an unprivileged COPY).
                id_map: Some(namespace_view().map_err(|e| format!("read id map: {e}"))?),
            };
            let out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            let mut out =
                kiln_archive::write_tree(&root, out, &wopts).map_err(|e| e.to_string())?;
            out.flush().map_err(|e| format!("write layer: {e}"))?;
        }
        Request::Unpack {
            store,
            tmp,
            id,
            parent,
            diff_id,
            blob,
            size,
            limits,
        } => {
            let store = kiln_store::Store::open(&store).map_err(|e| e.to_string())?;
            let snaps = Snapshots {
                dir: store.root().join("kiln").join("snapshots"),
                store,
                // The caller is not root: its overlays mount with `userxattr`.
                xattr: OverlayXattr::User,
                // Container ids are this namespace's ids; ids outside its ranges cannot
                // be set and keep the owner override xattr, as without a namespace.
                id_map: Some(namespace_view().map_err(|e| format!("read id map: {e}"))?),
                runner: None,
                in_namespace: true,
            };
            let res = snaps.unpack_into(
                &tmp,
                &id,
                parent,
                &diff_id,
                &blob,
                size,
                &DecodeLimits::from(limits),
            );
            res.map_err(|e| e.to_string())?;
        }
    }
    Ok(String::new())
}

/// The mapping as seen from inside the namespace: each mapped container range is itself.
fn namespace_view() -> std::io::Result<IdMapping> {
    let read = |f: &str| -> std::io::Result<IdMap> {
        let s = std::fs::read_to_string(f)?;
        Ok(IdMap::new(parse_map(&s)))
    };
    Ok(IdMapping {
        uid: read("/proc/self/uid_map")?,
        gid: read("/proc/self/gid_map")?,
    })
}

/// `/proc/self/{uid,gid}_map` lines ("inside outside count") → ranges of the inside ids,
/// each mapped to itself.
fn parse_map(s: &str) -> Vec<IdRange> {
    s.lines()
        .filter_map(|l| {
            let f: Vec<u32> = l
                .split_whitespace()
                .map(|w| w.parse().ok())
                .collect::<Option<_>>()?;
            match f.as_slice() {
                [inside, _, len] => Some(IdRange {
                    container: *inside,
                    host: *inside,
                    len: *len,
                }),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_view_is_the_inside_ids() {
        let ranges =
            parse_map("         0       1001          1\n         1     100000      65536\n");
        let m = IdMap::new(ranges);
        assert_eq!(m.to_host(0), Some(0));
        assert_eq!(m.to_host(4321), Some(4321));
        assert_eq!(m.to_host(65536), Some(65536));
        assert_eq!(m.to_host(65537), None);
        assert_eq!(m.to_container(100000), None);
    }

    #[test]
    fn requests_round_trip() {
        let d = Digest::of_bytes(b"x");
        let req = Request::Unpack {
            store: "/s".into(),
            tmp: "/s/t".into(),
            id: SnapshotId::from_chain_id(d.clone()),
            parent: None,
            diff_id: d.clone(),
            blob: d,
            size: 3,
            limits: (&DecodeLimits::default()).into(),
        };
        let json = serde_json::to_string(&req).unwrap();
        let back: Request = serde_json::from_str(&json).unwrap();
        assert!(matches!(back, Request::Unpack { size: 3, .. }));
        assert_eq!(
            DecodeLimits::from(Limits::from(&DecodeLimits::default())),
            DecodeLimits::default()
        );
        let err = serve_in_namespace(r#"{"Remove":{"path":"relative"}}"#).unwrap_err();
        assert!(err.contains("relative"), "{err}");
    }

    /// A runner that fails: its message comes back as a typed error naming the operation.
    #[test]
    fn runner_errors_name_the_operation() {
        #[derive(Debug)]
        struct Failing;
        impl NamespaceRunner for Failing {
            fn run(&self, _: &str) -> std::result::Result<String, String> {
                Err("no newuidmap".into())
            }
            fn run_streaming(
                &self,
                _: &str,
                _: &mut dyn std::io::Write,
            ) -> std::result::Result<String, String> {
                Err("no newuidmap".into())
            }
        }
        let e = run(&Failing, "remove", &Request::Remove { path: "/x".into() }).unwrap_err();
        assert_eq!(
            e.to_string(),
            "remove in the user namespace helper: no newuidmap"
        );
    }
}
