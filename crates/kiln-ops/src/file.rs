//! COPY / ADD / WORKDIR / heredoc files: file actions written into a fresh upper directory
//! over the root's snapshots; the layer is exactly what the actions wrote.

use crate::cache::KeyComponents;
use crate::error::OpError;
use crate::executor::{fs_input, Executor, Probe};
use crate::merged::{with_merged, with_readonly};
use crate::state::{FsState, Output};
use kiln_context::{Change, Chmod, CopyOpts, DigestOpts, SourceManifest};
use kiln_fs::SafeRoot;
use kiln_graph::{CopyAction, FileAction, FileOp, Vertex, VertexId};
use kiln_oci::Digest;
use kiln_solver::JobCtx;
use std::sync::Arc;

impl Executor<'_> {
    pub(crate) fn file(
        &self,
        ctx: &JobCtx<'_, Digest, VertexId>,
        vertex: &Vertex,
        op: &FileOp,
        inputs: &[Arc<Output>],
    ) -> Result<Output, OpError> {
        let root = match op.root {
            Some(i) => fs_input(inputs, i, "file operation")?.clone(),
            None => FsState::default(),
        };
        let mut components = KeyComponents::new();
        components.insert(
            "instruction".into(),
            kiln_graph::vertex_digest(&vertex.op, &[]).to_string(),
        );
        if op.root.is_some() {
            components.insert("base filesystem".into(), root.identity());
        }
        let mut file_changes = Vec::new();
        for action in &op.actions {
            if let FileAction::Copy(c) = action {
                file_changes.extend(self.copy_components(vertex, c, inputs, &mut components)?);
            }
        }
        let key = match self.probe(ctx, vertex, &root, &components, &file_changes)? {
            Probe::Hit(out) => return Ok(out),
            Probe::Miss(key) => key,
        };
        // Without root no private mount namespace can show the merged view, so the lowers
        // are materialised (the copy snapshotter): slower, but COPY then sees the image as
        // it is (a `/bin -> usr/bin` symlink in a lower layer is followed, not shadowed).
        let lowers = root.lowers();
        let mut active = if !kiln_fs::running_as_root() && !lowers.is_empty() {
            self.snapshots
                .prepare_active_with(&lowers, kiln_snapshot::Snapshotter::Copy)?
        } else {
            self.snapshots.prepare_active(&lowers)?
        };
        let mount = active.mount()?;
        let scratch = tempfile::tempdir_in(active.dir())
            .map_err(OpError::io("create temp dir in", active.dir()))?;
        let started = std::time::Instant::now();
        let users = crate::user::UserDb::read(&active)?;
        with_merged(&mount, scratch.path(), |dest| {
            for action in &op.actions {
                if ctx.is_cancelled() {
                    return Err(OpError::Cancelled);
                }
                self.apply_action(action, dest, &users, inputs, scratch.path())?;
            }
            Ok(())
        })?;
        drop(scratch);
        let committed = self
            .snapshots
            .commit_active(active, &self.lease, &self.opts.commit)?;
        self.finish(&root, &key, &committed, started.elapsed().as_secs_f64())
    }

    /// The content a COPY reads, as key components: for a context the digest of exactly
    /// the selected files; for a stage or image its content identity. For a context it also
    /// returns which files changed since this step's last build (from the per-file
    /// manifest kept beside the step memory), to explain a miss by file name.
    fn copy_components(
        &self,
        vertex: &Vertex,
        c: &CopyAction,
        inputs: &[Arc<Output>],
        out: &mut KeyComponents,
    ) -> Result<Vec<String>, OpError> {
        match inputs.get(c.from.as_usize()).map(|o| o.as_ref()) {
            Some(Output::Context(context)) => {
                let opts = DigestOpts {
                    follow_symlinks: c.follow_symlinks,
                    include_owner: false,
                    allow_empty_wildcard: c.allow_empty_wildcard,
                    ..DigestOpts::default()
                };
                let d = context.digest_sources(&c.sources, &c.exclude, &opts)?;
                out.insert(
                    format!("files {}", c.sources.join(" ")),
                    d.digest.to_string(),
                );
                let label = format!("{} {}", c.from, c.sources.join(" "));
                let manifest = d.manifest();
                let previous = self.cache.swap_manifest(
                    &self.step_identity(vertex),
                    &label,
                    &manifest.to_json(),
                );
                if let Some(old) = previous.and_then(|b| SourceManifest::from_json(&b).ok()) {
                    return Ok(kiln_context::diff(&old, &manifest)
                        .into_iter()
                        .map(|change| match change {
                            Change::Modified(p) => format!("file {p}"),
                            Change::Added(p) => format!("new file {p}"),
                            Change::Removed(p) => format!("removed file {p}"),
                        })
                        .collect());
                }
            }
            Some(Output::Fs(s)) => {
                out.insert(format!("copy source {}", c.from), s.identity());
            }
            None => return Err(OpError::Internal(format!("COPY: missing input {}", c.from))),
        }
        Ok(Vec::new())
    }

    fn apply_action(
        &self,
        action: &FileAction,
        dest: &SafeRoot,
        users: &crate::user::UserDb,
        inputs: &[Arc<Output>],
        scratch: &std::path::Path,
    ) -> Result<(), OpError> {
        let clamp = self.opts.commit.clamp_mtime;
        match action {
            FileAction::Copy(c) => {
                let chown = match &c.chown {
                    Some(spec) => {
                        let (u, g, _) = users.resolve(spec)?;
                        Some((u, g))
                    }
                    None => None,
                };
                let chmod = c.chmod.as_deref().map(Chmod::parse).transpose()?;
                let mut opts = CopyOpts {
                    chown,
                    chmod,
                    unpack_archives: c.unpack_archives,
                    follow_symlinks: c.follow_symlinks,
                    exclude: c.exclude.clone(),
                    parents: c.parents,
                    allow_empty_wildcard: c.allow_empty_wildcard,
                    clamp_mtime: clamp,
                    ..CopyOpts::default()
                };
                // A directory destination keeps its trailing slash: copy_into reads it.
                let dest_path = if c.dest_is_dir && !c.dest.ends_with('/') {
                    format!("{}/", c.dest)
                } else {
                    c.dest.clone()
                };
                match inputs.get(c.from.as_usize()).map(|o| o.as_ref()) {
                    Some(Output::Context(context)) => {
                        context.copy_into(&c.sources, dest, &dest_path, "/", &opts)?;
                    }
                    Some(Output::Fs(src)) => {
                        opts.preserve_owner = true;
                        opts.source_name = "stage or image".into();
                        if kiln_fs::running_as_root() || src.layers.len() <= 1 {
                            let lowers: Vec<_> = src
                                .lowers()
                                .iter()
                                .map(|id| self.snapshots.snapshot_fs(id))
                                .collect();
                            let inner = scratch.join(format!("src-{}", c.from));
                            std::fs::create_dir_all(&inner)
                                .map_err(OpError::io("create", &inner))?;
                            with_readonly(&lowers, &inner, |src_root| {
                                kiln_context::copy_into(
                                    src_root, &c.sources, dest, &dest_path, "/", &opts,
                                )?;
                                Ok(())
                            })?;
                        } else {
                            // Rootless: materialise the source stack once for this copy.
                            let mut view = self.snapshots.prepare_active_with(
                                &src.lowers(),
                                kiln_snapshot::Snapshotter::Copy,
                            )?;
                            let kiln_snapshot::ActiveMount::Dir(root) = view.mount()? else {
                                return Err(OpError::Internal(
                                    "copy snapshotter gave no directory".into(),
                                ));
                            };
                            let src_root = SafeRoot::open(&root)?;
                            kiln_context::copy_into(
                                &src_root, &c.sources, dest, &dest_path, "/", &opts,
                            )?;
                            drop(src_root);
                            view.remove()?;
                        }
                    }
                    None => {
                        return Err(OpError::Internal(format!("COPY: missing input {}", c.from)))
                    }
                }
            }
            FileAction::Mkfile {
                path,
                data,
                mode,
                chown,
            } => {
                let owner = match chown {
                    Some(spec) => {
                        let (u, g, _) = users.resolve(spec)?;
                        Some((u, g))
                    }
                    None => None,
                };
                kiln_context::write_heredoc_file(dest, path, data, *mode, owner, clamp)?;
            }
            FileAction::Mkdir {
                path,
                mode,
                make_parents,
                chown,
            } => {
                let (u, g) = match chown {
                    Some(spec) if !spec.is_empty() => {
                        let (u, g, _) = users.resolve(spec)?;
                        (u, g)
                    }
                    _ => (0, 0),
                };
                let rel = kiln_fs::normalize(std::path::Path::new(path))?;
                if dest.try_lstat(&rel)?.is_none() || !make_parents {
                    let created = kiln_context::mkdir_p_owned(dest, path, u, g)?;
                    if created.last().map(|p| p.as_path()) == Some(rel.as_path()) {
                        dest.chmod(&rel, *mode)?;
                    }
                }
            }
            FileAction::Rm {
                path,
                allow_not_found,
                ..
            } => {
                let rel = kiln_fs::normalize(std::path::Path::new(path))?;
                match dest.try_lstat(&rel)? {
                    Some(_) => dest.remove_all(&rel)?,
                    None if *allow_not_found => {}
                    None => {
                        return Err(OpError::Io {
                            what: "remove",
                            path: rel,
                            source: std::io::Error::from(std::io::ErrorKind::NotFound),
                        })
                    }
                }
            }
            FileAction::AddUrl { url, .. } => {
                return Err(OpError::Unsupported {
                    what: format!("ADD of a URL ({url})"),
                })
            }
            FileAction::AddGit { url, .. } => {
                return Err(OpError::Unsupported {
                    what: format!("ADD of a git repository ({url})"),
                })
            }
        }
        Ok(())
    }
}
