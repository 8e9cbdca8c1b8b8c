//! Commit: an active upper dir becomes (a) a deterministic, compressed layer blob in the
//! store — tar, compress and both hashes in one streamed pass — and (b) the snapshot for
//! the next step, by renaming the very same directory into `snapshots/<chain id>`: the next
//! step stacks on it without unpacking anything.
//!
//! Owners: rootless, the upper dir holds host ids (container 0 is the user, container N
//! the subordinate id `start + N - 1`) and copy-ups carry the owner override xattr of the
//! snapshot they came from; the layer gets container ids through the store's
//! [`Snapshots::id_mapping`] (see `kiln_fs::idmap`). With a namespace runner the tar is
//! written inside the user namespace (a RUN may leave a 0700 directory of a subordinate
//! id, which the user cannot read) and streamed back; compression and hashing stay here.

use std::io::Write;
use std::path::{Path, PathBuf};

use kiln_archive::{Compression, LayerDigests, WriteOptions};
use kiln_fs::{FileKind, SafeRoot};
use kiln_oci::Sha256Writer;
use kiln_store::Lease;

use crate::layer_snapshot::{publish, write_meta, SnapshotMeta};
use crate::lookup::{self, is_opaque, is_whiteout};
use crate::util::now_rfc3339;
use crate::{next_chain_id, Active, Error, ParallelGzWriter, Result, SnapshotId, Snapshots};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    /// `parallel`: multi-member gzip over [`crate::DEFAULT_CHUNK`] chunks (see pgzip.rs);
    /// identical to single-stream gzip for layers up to one chunk.
    Gzip {
        level: Option<i32>,
        parallel: bool,
    },
    Zstd {
        level: Option<i32>,
    },
    /// Uncompressed tar (`application/vnd.oci.image.layer.v1.tar`).
    None,
}

impl Default for LayerCompression {
    fn default() -> Self {
        LayerCompression::Gzip {
            level: None,
            parallel: true,
        }
    }
}

impl LayerCompression {
    pub fn compression(&self) -> Compression {
        match self {
            LayerCompression::Gzip { .. } => Compression::Gzip,
            LayerCompression::Zstd { .. } => Compression::Zstd,
            LayerCompression::None => Compression::None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    pub compression: LayerCompression,
    /// `SOURCE_DATE_EPOCH`: later mtimes are written as this.
    pub clamp_mtime: Option<i64>,
    /// In-root paths the sandbox created as mountpoints (`RunOutcome::created_mountpoints`,
    /// parents before children). Empty stubs among them are left out of the layer, and so
    /// are directories copied up only to hold them — BuildKit leaves no trace of them either.
    pub exclude_mountpoints: Vec<String>,
    /// Worker threads for parallel gzip; 0 = available cores (max 8).
    pub threads: usize,
}

/// The result of [`Snapshots::commit_active`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The layer, or None when the step changed nothing (then no blob and no new snapshot:
    /// the image keeps its previous top layer, as BuildKit does for a no-op RUN).
    pub layer: Option<LayerDigests>,
    /// Media type of the blob (`application/vnd.oci.image.layer.v1.tar+gzip`, …).
    pub media_type: Option<&'static str>,
    /// The snapshot on top of the stack after this step: the new one, or — for an empty
    /// change — the topmost lower. None only for an empty change on `scratch`.
    pub snapshot: Option<SnapshotId>,
    /// Whether a snapshot with this chain id already existed (another build made the same
    /// layer on the same stack); the existing one is used and ours discarded.
    pub reused: bool,
}

impl Committed {
    /// The manifest descriptor of the new layer blob.
    pub fn descriptor(&self) -> Option<kiln_oci::spec::Descriptor> {
        let l = self.layer.as_ref()?;
        Some(
            kiln_store::BlobInfo {
                digest: l.digest.clone(),
                size: l.size,
            }
            .descriptor(self.media_type?),
        )
    }
}

impl Snapshots {
    /// Turns `active`'s changes into a layer blob (recorded in `lease`) and a snapshot.
    /// The parent chain id is that of the top lower (a snapshot id *is* a chain id), so the
    /// new snapshot's chain id is `chainid(parent + " " + diff_id)`.
    pub fn commit_active(
        &self,
        mut active: Active,
        lease: &Lease,
        opts: &CommitOptions,
    ) -> Result<Committed> {
        if let Some(m) = active.copy.take() {
            // Slow path: find the changes by walking the materialised root.
            crate::fallback::diff_into_upper(
                &m,
                &active.upper,
                active.xattr,
                active.id_map.as_ref(),
            )?;
            crate::util::remove_tree(&m.root, active.runner.as_deref())?;
        }
        let upper = SafeRoot::open(&active.upper)?;
        remove_mountpoint_stubs(&upper, &active, &opts.exclude_mountpoints)?;
        let parent = active.lower_ids.last().cloned();
        if upper.read_dir(Path::new(""))?.is_empty() {
            return Ok(Committed {
                layer: None,
                media_type: None,
                snapshot: parent,
                reused: false,
            });
        }
        let layer = self.write_layer_blob(&upper, &active.upper, lease, opts)?;
        drop(upper);
        let chain = next_chain_id(parent.as_ref().map(|p| p.chain_id()), &layer.diff_id);
        let id = SnapshotId::from_chain_id(chain);
        let staging = active.dir.join("snap");
        std::fs::create_dir(&staging).map_err(Error::io("create directory", &staging))?;
        let fs_dir = staging.join("fs");
        std::fs::rename(&active.upper, &fs_dir).map_err(Error::io("rename", &fs_dir))?;
        write_meta(
            &staging.join("snapshot.json"),
            &SnapshotMeta {
                chain_id: id.chain_id().clone(),
                diff_id: layer.diff_id.clone(),
                parent: parent.map(|p| p.chain_id().clone()),
                size: layer.uncompressed_size,
                created: now_rfc3339(),
                origin: "commit".into(),
            },
        )?;
        let created = publish(&staging, &self.snapshot_dir(&id), self.runner.as_deref())?;
        let media_type = kiln_oci::media::oci_layer_type(layer.compression);
        drop(active); // removes work/ and the rest of the active dir
        Ok(Committed {
            layer: Some(layer),
            media_type: Some(media_type),
            snapshot: Some(id),
            reused: !created,
        })
    }

    /// Tar (overlay whiteouts → OCI), compress, hash both sides and stream into a blob —
    /// one pass, nothing buffered beyond compression chunks.
    /// The layer tar of an upper dir into `out`: rootless with subordinate ids inside the
    /// user namespace (a RUN may leave directories only a subordinate id can read), else
    /// here. Both give the same bytes.
    fn write_tree<W: Write>(
        &self,
        upper: &SafeRoot,
        upper_path: &Path,
        out: W,
        wopts: &WriteOptions,
    ) -> Result<W> {
        match &self.runner {
            Some(r) => crate::userns::write_tree_in_namespace(
                r.as_ref(),
                upper_path,
                wopts.clamp_mtime,
                out,
            ),
            None => Ok(kiln_archive::write_tree(upper, out, wopts)?),
        }
    }

    fn write_layer_blob(
        &self,
        upper: &SafeRoot,
        upper_path: &Path,
        lease: &Lease,
        opts: &CommitOptions,
    ) -> Result<LayerDigests> {
        let wopts = WriteOptions {
            clamp_mtime: opts.clamp_mtime,
            overlay_upper: true,
            xattrs: true,
            id_map: self.id_map.clone(),
        };
        let bw = self.store.blob_writer(Some(lease))?;
        let io = |e: std::io::Error| Error::io("compress layer", upper_display())(e);
        let digests = match opts.compression {
            LayerCompression::Gzip {
                level,
                parallel: true,
            } => {
                // Three stages on their own threads: this one walks, tars and hashes the
                // tar (diff id); the pool compresses; the sink writes the blob, which
                // hashes what it stores (the blob digest). A large layer then costs about
                // its slowest stage instead of the sum.
                std::thread::scope(|scope| -> Result<LayerDigests> {
                    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(SINK_QUEUE);
                    let sink = scope.spawn(move || -> std::io::Result<kiln_store::BlobWriter> {
                        let mut bw = bw;
                        for block in rx {
                            bw.write_all(&block)?;
                        }
                        Ok(bw)
                    });
                    let enc = ParallelGzWriter::new(
                        ChannelWriter(tx),
                        level,
                        crate::DEFAULT_CHUNK,
                        opts.threads,
                    );
                    let tar = self.write_tree(upper, upper_path, Sha256Writer::new(enc), &wopts)?;
                    let (enc, diff_id, uncompressed_size) = tar.finish();
                    drop(enc.finish().map_err(io)?); // closes the channel: the sink ends
                    let bw = sink
                        .join()
                        .map_err(|_| io(std::io::Error::other("blob writer thread panicked")))?
                        .map_err(io)?;
                    let blob = bw.commit(None)?;
                    Ok(LayerDigests {
                        digest: blob.digest,
                        size: blob.size,
                        diff_id,
                        uncompressed_size,
                        compression: Compression::Gzip,
                    })
                })?
            }
            other => {
                let level = match other {
                    LayerCompression::Gzip { level, .. } | LayerCompression::Zstd { level } => {
                        level
                    }
                    LayerCompression::None => None,
                };
                let lw =
                    kiln_archive::LayerWriter::new(bw, other.compression(), level).map_err(io)?;
                let lw = self.write_tree(upper, upper_path, lw, &wopts)?;
                let (bw, digests) = lw.finish().map_err(io)?;
                bw.commit(Some((&digests.digest, digests.size)))?;
                digests
            }
        };
        Ok(digests)
    }
}

/// Compressed blocks queued for the blob writer: bounds memory to a few gzip members.
const SINK_QUEUE: usize = 4;

/// Hands each write to the blob writer thread.
struct ChannelWriter(std::sync::mpsc::SyncSender<Vec<u8>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .send(buf.to_vec())
            .map_err(|_| std::io::Error::other("layer blob writer stopped"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn upper_display() -> PathBuf {
    PathBuf::from("<upper dir>")
}

/// Removes the sandbox's mountpoint stubs from the upper dir: each listed path that is an
/// empty regular file or an empty directory, then every ancestor that became empty and is
/// only a copy-up (not opaque, and present as a directory with the same mode and owner in
/// the lowers). Children before parents.
fn remove_mountpoint_stubs(upper: &SafeRoot, active: &Active, stubs: &[String]) -> Result<()> {
    for stub in stubs.iter().rev() {
        let rel = PathBuf::from(stub.trim_start_matches('/'));
        if rel.as_os_str().is_empty() {
            continue;
        }
        let Some(m) = upper.try_lstat(&rel)? else {
            continue;
        };
        let empty = match m.kind {
            FileKind::Regular => m.size == 0,
            FileKind::Directory => {
                upper.read_dir(&rel)?.is_empty() && !is_opaque(upper, &rel, active.xattr)?
            }
            _ => false,
        };
        if !empty || is_whiteout(&m) {
            continue;
        }
        upper.remove(&rel)?;
        let mut dir = rel.parent().map(Path::to_path_buf);
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            if !removable_copy_up(upper, active, &d)? {
                break;
            }
            upper.remove(&d)?;
            dir = d.parent().map(Path::to_path_buf);
        }
    }
    Ok(())
}

fn removable_copy_up(upper: &SafeRoot, active: &Active, dir: &Path) -> Result<bool> {
    let Some(m) = upper.try_lstat(dir)? else {
        return Ok(false);
    };
    if m.kind != FileKind::Directory
        || !upper.read_dir(dir)?.is_empty()
        || is_opaque(upper, dir, active.xattr)?
    {
        return Ok(false);
    }
    Ok(match lookup::find(&active.lowers, dir, active.xattr)? {
        Some((_, l)) => {
            l.kind == FileKind::Directory && l.mode == m.mode && l.uid == m.uid && l.gid == m.gid
        }
        None => false,
    })
}
