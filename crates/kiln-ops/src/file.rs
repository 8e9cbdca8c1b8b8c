//! COPY / ADD / WORKDIR / heredoc files: file actions written into a fresh upper directory
//! over the root's snapshots; the layer is exactly what the actions wrote.

use crate::cache::KeyComponents;
use crate::error::OpError;
use crate::executor::{fs_input, Executor, Probe};
use crate::merged::{with_merged, with_readonly};
use crate::remote;
use crate::state::{FsState, Output};
use kiln_context::{Change, Chmod, CopyOpts, DigestOpts, SourceManifest};
use kiln_fs::SafeRoot;
use kiln_graph::{CopyAction, FileAction, FileOp, Op, SourceOp, Vertex, VertexId};
use kiln_oci::Digest;
use kiln_solver::JobCtx;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;

/// The upper directory to write a lone COPY from a context into directly, when its
/// destination is new in the image (see `Active::upper_for_new_path`).
fn direct_upper(
    op: &FileOp,
    inputs: &[Arc<Output>],
    active: &kiln_snapshot::Active,
) -> Result<Option<SafeRoot>, OpError> {
    let [FileAction::Copy(c)] = op.actions.as_slice() else {
        return Ok(None);
    };
    if !matches!(
        inputs.get(c.from.as_usize()).map(|o| o.as_ref()),
        Some(Output::Context(_))
    ) {
        return Ok(None);
    }
    Ok(active.upper_for_new_path(std::path::Path::new(&c.dest))?)
}

/// How a COPY from a context is digested: the same for the step and for the prefetch,
/// so the prefetched result is the one the step looks up.
fn copy_digest_opts(c: &CopyAction) -> DigestOpts {
    DigestOpts {
        follow_symlinks: c.follow_symlinks,
        include_owner: false,
        allow_empty_wildcard: c.allow_empty_wildcard,
        ..DigestOpts::default()
    }
}

impl Executor<'_> {
    /// Starts hashing, in the background, what every COPY from a local context among
    /// `vertices` will read, in graph order: the context is read while base images
    /// are prepared and earlier steps run, and each COPY step then only looks its digest
    /// up. Call [`Executor::stop_prefetch`] when the build ends.
    pub fn prefetch_context_digests(&self, vertices: &[VertexId]) {
        let mut ids = vertices.to_vec();
        ids.sort();
        let mut requests: HashMap<&str, Vec<kiln_context::DigestRequest>> = HashMap::new();
        for id in ids {
            let Some(v) = self.graph.vertex(id) else {
                continue;
            };
            let Op::File(op) = &v.op else { continue };
            for action in &op.actions {
                let FileAction::Copy(c) = action else {
                    continue;
                };
                let Some(source) = v
                    .inputs
                    .get(c.from.as_usize())
                    .and_then(|i| self.graph.vertex(*i))
                else {
                    continue;
                };
                if let Op::Source(SourceOp::Context { name, .. }) = &source.op {
                    requests
                        .entry(name.as_str())
                        .or_default()
                        .push(kiln_context::DigestRequest {
                            patterns: c.sources.clone(),
                            excludes: c.exclude.clone(),
                            opts: copy_digest_opts(c),
                        });
                }
            }
        }
        for (name, list) in requests {
            if let Some(context) = self.contexts.get(name) {
                context.prefetch(list);
            }
        }
    }

    /// Stops the background hashing of [`Executor::prefetch_context_digests`].
    pub fn stop_prefetch(&self) {
        for context in self.contexts.values() {
            context.stop_prefetch();
        }
    }

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
        let mut fetched = Fetched::default();
        let keyed = std::time::Instant::now();
        for (i, action) in op.actions.iter().enumerate() {
            match action {
                FileAction::Copy(c) => {
                    file_changes.extend(self.copy_components(vertex, c, inputs, &mut components)?)
                }
                FileAction::AddUrl { url, checksum, .. } => {
                    let value = match checksum {
                        // Keyed by what the Dockerfile promises: a hit needs no download.
                        Some(c) => remote::parse_checksum(url, c)?.to_string(),
                        // Re-checked on every build: with the ETag of the last download
                        // a 304 answer keys the step by the digest recorded with it.
                        None => {
                            let store_root = self.store.root();
                            let memo = remote::HttpMemo::load(store_root, url);
                            ctx.status(format!("checking {url}"));
                            let got = remote::fetch(
                                url,
                                self.opts.max_download_size,
                                memo.as_ref().map(|m| m.etag.as_str()),
                                &|| ctx.is_cancelled(),
                            )?;
                            match (got, memo) {
                                (remote::Fetch::NotModified, Some(m)) => {
                                    fetched.expected.insert(i, m.digest.clone());
                                    m.digest.to_string()
                                }
                                (remote::Fetch::NotModified, None) => {
                                    return Err(OpError::Internal(format!(
                                        "ADD {url}: 304 without a conditional request"
                                    )))
                                }
                                (remote::Fetch::Downloaded(d), _) => {
                                    match &d.etag {
                                        Some(etag) => remote::HttpMemo {
                                            url: url.clone(),
                                            etag: etag.clone(),
                                            digest: d.digest.clone(),
                                        }
                                        .save(store_root),
                                        None => remote::HttpMemo::forget(store_root, url),
                                    }
                                    let digest = d.digest.to_string();
                                    fetched.downloads.insert(i, d);
                                    digest
                                }
                            }
                        }
                    };
                    components.insert(format!("url {url}"), value);
                }
                FileAction::AddGit {
                    url,
                    reference,
                    checksum,
                    ..
                } => {
                    let (r, _) = remote::parse_git_fragment(reference.as_deref());
                    let commit = remote::resolve_git_ref(url, &r)?;
                    if let Some(want) = checksum {
                        if !commit.starts_with(&want.to_ascii_lowercase()) || want.len() < 7 {
                            return Err(OpError::ChecksumMismatch {
                                url: format!("{url}#{r}"),
                                expected: want.clone(),
                                actual: commit,
                            });
                        }
                    }
                    components.insert(format!("git {url}#{r}"), commit.clone());
                    fetched.commits.insert(i, (r, commit));
                }
                _ => {}
            }
        }
        let probed = std::time::Instant::now();
        let key = match self.probe(ctx, vertex, &root, &components, &file_changes)? {
            Probe::Hit(out) => return Ok(out),
            Probe::Miss(key) => key,
        };
        // Everything remote is fetched and verified before the layer is begun, so a bad
        // checksum or a failed clone leaves nothing behind.
        self.fetch_remote(ctx, op, &mut fetched)?;
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
        let scratch = tempfile::tempdir_in(active.dir())
            .map_err(OpError::io("create temp dir in", active.dir()))?;
        let started = std::time::Instant::now();
        let users = crate::user::UserDb::read(&active)?;
        match direct_upper(op, inputs, &active)? {
            // The common `COPY src /new/path`: no overlay mount, no per-file lookups in
            // every lower layer (kiln-snapshot's direct.rs says when this is the same).
            Some(upper) => {
                self.apply_action(&op.actions[0], &upper, &users, inputs, scratch.path())?
            }
            None => {
                let mount = active.mount()?;
                with_merged(&mount, scratch.path(), |dest| {
                    for (i, action) in op.actions.iter().enumerate() {
                        if ctx.is_cancelled() {
                            return Err(OpError::Cancelled);
                        }
                        self.apply_action(action, dest, &users, inputs, scratch.path())?;
                        self.apply_remote(i, action, dest, &users, &fetched)?;
                    }
                    Ok(())
                })?
            }
        }
        drop(scratch);
        let written = std::time::Instant::now();
        let committed = self
            .snapshots
            .commit_active(active, &self.lease, &self.opts.commit)?;
        // Where a file step's time goes, for `--log-level kiln_ops=debug`.
        tracing::debug!(
            step = %vertex.meta.description,
            key_s = (probed - keyed).as_secs_f64(),
            probe_s = (started - probed).as_secs_f64(),
            write_s = (written - started).as_secs_f64(),
            commit_s = written.elapsed().as_secs_f64(),
            "file step timings"
        );
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
                let d = context.digest_sources(&c.sources, &c.exclude, &copy_digest_opts(c))?;
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
            // Fetched before the layer began; written by `apply_remote`.
            FileAction::AddUrl { .. } | FileAction::AddGit { .. } => {}
        }
        Ok(())
    }

    /// Downloads what the key did not need (URLs pinned by `--checksum`), verifies every
    /// checksum, and checks out every git source.
    fn fetch_remote(
        &self,
        ctx: &JobCtx<'_, Digest, VertexId>,
        op: &FileOp,
        fetched: &mut Fetched,
    ) -> Result<(), OpError> {
        for (i, action) in op.actions.iter().enumerate() {
            match action {
                FileAction::AddUrl { url, checksum, .. } => {
                    if let Entry::Vacant(slot) = fetched.downloads.entry(i) {
                        ctx.status(format!("downloading {url}"));
                        slot.insert(remote::download(url, self.opts.max_download_size, &|| {
                            ctx.is_cancelled()
                        })?);
                    }
                    // The step was keyed by the digest a 304 vouched for: the bytes
                    // fetched now must be those, or the cache would hold a lie.
                    if let (Some(want), Some(d)) =
                        (fetched.expected.get(&i), fetched.downloads.get(&i))
                    {
                        if *want != d.digest {
                            remote::HttpMemo::forget(self.store.root(), url);
                            return Err(OpError::Remote {
                                url: url.clone(),
                                message: format!(
                                    "the content changed during the build (its ETag named {want}, the download is {}); build again",
                                    d.digest
                                ),
                            });
                        }
                    }
                    if let (Some(want), Some(d)) = (checksum, fetched.downloads.get(&i)) {
                        let want = remote::parse_checksum(url, want)?;
                        if want != d.digest {
                            return Err(OpError::ChecksumMismatch {
                                url: url.clone(),
                                expected: want.to_string(),
                                actual: d.digest.to_string(),
                            });
                        }
                    }
                }
                FileAction::AddGit {
                    url, keep_git_dir, ..
                } => {
                    let Some((r, commit)) = fetched.commits.get(&i) else {
                        return Err(OpError::Internal(format!("ADD {url}: ref not resolved")));
                    };
                    ctx.status(format!("fetching {url}#{r} ({commit})"));
                    let co = remote::checkout(url, r, commit, *keep_git_dir)?;
                    let size = remote::tree_size(&co.tree());
                    if size > self.opts.max_download_size {
                        return Err(OpError::Git {
                            url: url.clone(),
                            message: format!(
                                "the checkout holds {size} bytes, more than the download limit of {} bytes (raise it with --max-download-size)",
                                self.opts.max_download_size
                            ),
                        });
                    }
                    fetched.checkouts.insert(i, co);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Writes a fetched remote source into the layer with COPY's rules: the download or
    /// checkout is a source root like a context, read only through a `SafeRoot`.
    fn apply_remote(
        &self,
        i: usize,
        action: &FileAction,
        dest: &SafeRoot,
        users: &crate::user::UserDb,
        fetched: &Fetched,
    ) -> Result<(), OpError> {
        let clamp = self.opts.commit.clamp_mtime;
        let owner = |spec: &Option<String>| -> Result<Option<(u32, u32)>, OpError> {
            spec.as_ref()
                .map(|s| users.resolve(s).map(|(u, g, _)| (u, g)))
                .transpose()
        };
        match action {
            FileAction::AddUrl {
                url,
                dest: to,
                chown,
                chmod,
                unpack,
                exclude,
                ..
            } => {
                let d = fetched
                    .downloads
                    .get(&i)
                    .ok_or_else(|| OpError::Internal(format!("ADD {url}: not downloaded")))?;
                let opts = CopyOpts {
                    chown: owner(chown)?,
                    chmod: chmod.as_deref().map(Chmod::parse).transpose()?,
                    unpack_archives: *unpack,
                    exclude: exclude.clone(),
                    clamp_mtime: clamp,
                    allow_empty_wildcard: false,
                    source_name: format!("download {url}"),
                    ..CopyOpts::default()
                };
                let src = SafeRoot::open(d.dir.path())?;
                kiln_context::copy_into(&src, std::slice::from_ref(&d.name), dest, to, "/", &opts)?;
            }
            FileAction::AddGit {
                url,
                reference,
                dest: to,
                chown,
                chmod,
                exclude,
                ..
            } => {
                let co = fetched
                    .checkouts
                    .get(&i)
                    .ok_or_else(|| OpError::Internal(format!("ADD {url}: not checked out")))?;
                let (_, subdir) = remote::parse_git_fragment(reference.as_deref());
                // Checked-out files are newer than their commit: clamping to the commit
                // time gives every file that time, so the layer depends only on the commit
                // (BuildKit's `git.mtime=commit`, its default under SOURCE_DATE_EPOCH).
                let mtime = clamp.map_or(co.commit_time, |c| c.min(co.commit_time));
                let opts = CopyOpts {
                    chown: owner(chown)?,
                    chmod: chmod.as_deref().map(Chmod::parse).transpose()?,
                    exclude: exclude.clone(),
                    clamp_mtime: Some(mtime),
                    allow_empty_wildcard: false,
                    source_name: format!("git repository {url}"),
                    ..CopyOpts::default()
                };
                let src = SafeRoot::open(co.tree())?;
                // A git source always lands as a directory's contents.
                let to = if to.ends_with('/') {
                    to.clone()
                } else {
                    format!("{to}/")
                };
                kiln_context::copy_into(
                    &src,
                    &[remote::subdir_source(subdir.as_deref())],
                    dest,
                    &to,
                    "/",
                    &opts,
                )?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Remote sources of one file op, by action index.
#[derive(Default)]
struct Fetched {
    downloads: HashMap<usize, remote::Download>,
    /// Digests a 304 answer vouched for (the key holds them; a later download must match).
    expected: HashMap<usize, Digest>,
    /// (ref as written, resolved commit)
    commits: HashMap<usize, (String, String)>,
    checkouts: HashMap<usize, remote::Checkout>,
}
