//! RUN: an exec op over an overlay of the root's snapshots, in kiln's own sandbox; the
//! layer is the overlay upper directory.

use crate::cache::KeyComponents;
use crate::error::OpError;
use crate::executor::{fs_input, Executor, Probe, SecretSource};
use crate::state::Output;
use kiln_graph::{CacheSharing, ExecMount, ExecOp, NetworkMode, Vertex, VertexId};
use kiln_oci::Digest;
use kiln_sandbox::{Mount, Network, RootFs, Spec, Stdio};
use kiln_snapshot::{ActiveMount, CommitOptions};
use kiln_solver::{JobCtx, Stream};
use std::collections::VecDeque;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Lines of output kept for the error report of a failed step.
const TAIL_LINES: usize = 20;

impl Executor<'_> {
    pub(crate) fn exec(
        &self,
        ctx: &JobCtx<'_, Digest, VertexId>,
        vertex: &Vertex,
        op: &ExecOp,
        inputs: &[Arc<Output>],
    ) -> Result<Output, OpError> {
        let root = fs_input(inputs, op.root, "RUN")?;
        let mut components = KeyComponents::new();
        components.insert(
            "command".into(),
            kiln_graph::vertex_digest(&vertex.op, &[]).to_string(),
        );
        for (i, input) in inputs.iter().enumerate() {
            let label = if i == op.root.as_usize() {
                "base filesystem".to_string()
            } else {
                format!("mount input {i}")
            };
            components.insert(label, input.identity());
        }
        // A bind mount of the context reads files the vertex digest cannot know: their
        // content digest (as COPY computes it) enters the key, so editing them re-runs it.
        for m in &op.mounts {
            if let ExecMount::Bind { from, source, .. } = m {
                if let Some(Output::Context(c)) = inputs.get(from.as_usize()).map(|o| o.as_ref()) {
                    let pattern = match source.trim_start_matches('/') {
                        "" => ".".to_string(),
                        s => s.to_string(),
                    };
                    let d = c.digest_sources(
                        std::slice::from_ref(&pattern),
                        &[],
                        &kiln_context::DigestOpts::default(),
                    )?;
                    components.insert(format!("mounted files {source}"), d.digest.to_string());
                }
            }
        }
        let key = match self.probe(ctx, vertex, root, &components, &[])? {
            Probe::Hit(out) => return Ok(out),
            Probe::Miss(key) => key,
        };
        let mut active = self.snapshots.prepare_active(&root.lowers())?;
        let mount = active.mount()?;
        let users = crate::user::UserDb::read(&active)?;
        let user = users.resolve(&op.user)?;
        let rootfs = match &mount {
            ActiveMount::Overlay {
                lowers,
                upper,
                work,
            } => {
                if lowers.is_empty() {
                    RootFs::Dir(upper.clone())
                } else {
                    RootFs::Overlay {
                        lowers: lowers.clone(),
                        upper: upper.clone(),
                        work: work.clone(),
                    }
                }
            }
            ActiveMount::Dir(d) => RootFs::Dir(d.clone()),
        };
        let mut spec = Spec::new(rootfs, op.args.clone());
        spec.env = op.process_env();
        if !spec.env.iter().any(|e| e.starts_with("PATH=")) {
            spec.env
                .insert(0, format!("PATH={}", kiln_sandbox::DEFAULT_PATH));
        }
        // Like runc under BuildKit: HOME from the image's passwd for the step's user, unless
        // the step's env has one. Only the process sees it; the image config never does.
        if !spec.env.iter().any(|e| e.starts_with("HOME=")) {
            spec.env
                .push(format!("HOME={}", users.home(&op.user, user.0)));
        }
        spec.cwd = op.cwd.clone();
        spec.create_cwd = true;
        spec.user = user;
        spec.hostname = "kiln".into();
        spec.network = match op.network {
            NetworkMode::Default => self.opts.default_network,
            NetworkMode::None => Network::None,
            NetworkMode::Host => Network::Host,
        };
        spec.privileged = matches!(op.security, kiln_graph::SecurityMode::Insecure);
        let mut res = StepResources::default();
        for m in &op.mounts {
            spec.mounts.extend(self.exec_mount(
                m,
                inputs,
                active.dir(),
                &mut res,
                &mut spec.env,
            )?);
        }
        let started = Instant::now();
        let outcome = self.run_logged(ctx, &spec);
        let elapsed = started.elapsed();
        ctx.add_exec_time(elapsed);
        let (outcome, tail) = outcome?;
        let command = op.args.join(" ");
        let failure = match (outcome.status.code, outcome.status.signal) {
            (Some(0), _) => None,
            (Some(code), _) => Some(OpError::ExitCode {
                command,
                code,
                tail,
            }),
            (None, Some(signal)) => Some(OpError::Signal {
                command,
                signal,
                tail,
            }),
            (None, None) => Some(OpError::Internal("process ended without a status".into())),
        };
        if let Some(err) = failure {
            if self.keep_failed {
                let mut slot = self.failed.lock().unwrap_or_else(|p| p.into_inner());
                // The first failure is the one the build reports.
                if slot.is_none() {
                    *slot = Some(FailedStep {
                        spec,
                        sandbox: self.sandbox.clone(),
                        _active: active,
                        _resources: res,
                    });
                }
            }
            return Err(err);
        }
        drop(res);
        let commit = CommitOptions {
            exclude_mountpoints: outcome.created_mountpoints.clone(),
            ..self.opts.commit.clone()
        };
        let committed = self.snapshots.commit_active(active, &self.lease, &commit)?;
        self.finish(root, &key, &committed, elapsed.as_secs_f64())
    }

    /// Spawns the sandbox, streams its output to progress events and keeps the last lines.
    /// Cancellation kills the sandbox helper (its init then dies by parent-death signal).
    fn run_logged(
        &self,
        ctx: &JobCtx<'_, Digest, VertexId>,
        spec: &Spec,
    ) -> Result<(kiln_sandbox::RunOutcome, Vec<String>), OpError> {
        let mut child = self.sandbox.spawn(spec, Stdio::piped())?;
        let tail = Mutex::new(VecDeque::<String>::new());
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let pid = child.id();
        // Cancellation kills the helper at once; the hook is gone when this step returns.
        let _kill_on_cancel = ctx.cancel_token().on_cancel(move || {
            if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        });
        let outcome = std::thread::scope(|s| {
            let pump = |mut r: Box<dyn Read + Send>, stream: Stream| {
                let tail = &tail;
                move || {
                    let mut buf = [0u8; 16 * 1024];
                    let mut partial = Vec::new();
                    while let Ok(n) = r.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        ctx.log(stream, &buf[..n]);
                        partial.extend_from_slice(&buf[..n]);
                        while let Some(pos) = partial.iter().position(|b| *b == b'\n') {
                            let line: Vec<u8> = partial.drain(..=pos).collect();
                            push_tail(
                                tail,
                                String::from_utf8_lossy(&line[..line.len() - 1]).into_owned(),
                            );
                        }
                    }
                    if !partial.is_empty() {
                        push_tail(tail, String::from_utf8_lossy(&partial).into_owned());
                    }
                }
            };
            if let Some(o) = stdout {
                s.spawn(pump(Box::new(o), Stream::Stdout));
            }
            if let Some(e) = stderr {
                s.spawn(pump(Box::new(e), Stream::Stderr));
            }
            child.wait()
        });
        if ctx.is_cancelled() {
            return Err(OpError::Cancelled);
        }
        let tail = tail
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .into_iter()
            .collect();
        Ok((outcome?, tail))
    }

    /// Turns one `RUN --mount` into sandbox mounts (and env for env-secrets and ssh).
    /// Whatever must outlive the setup (locks, private copies, agent sockets, scratch
    /// directories) goes into `res`, which the caller keeps until the step has ended.
    fn exec_mount(
        &self,
        m: &ExecMount,
        inputs: &[Arc<Output>],
        step_dir: &Path,
        res: &mut StepResources,
        env: &mut Vec<String>,
    ) -> Result<Vec<Mount>, OpError> {
        match m {
            ExecMount::Tmpfs { target, size } => Ok(vec![Mount::Tmpfs {
                target: target.clone(),
                size: *size,
            }]),
            ExecMount::Cache {
                target,
                id,
                sharing,
                uid,
                gid,
                mode,
                readonly,
                from,
                source,
            } => {
                let base = self.cache_mounts_base();
                std::fs::create_dir_all(&base).map_err(OpError::io("create", &base))?;
                let hash = self.cache_mount_dir(id).0.hex().to_string();
                let name = match sharing {
                    CacheSharing::Shared => hash.clone(),
                    CacheSharing::Locked => {
                        res.locks
                            .push(lock_file(&base, &hash, true)?.ok_or_else(|| {
                                OpError::Internal("blocking lock returned busy".into())
                            })?);
                        hash.clone()
                    }
                    // BuildKit: a private cache is never shared with a concurrent step; a
                    // busy instance makes the step take (or create) the next one.
                    CacheSharing::Private => {
                        let mut n = 0u32;
                        loop {
                            let inst = if n == 0 {
                                hash.clone()
                            } else {
                                format!("{hash}-{n}")
                            };
                            if let Some(f) = lock_file(&base, &inst, false)? {
                                res.locks.push(f);
                                break inst;
                            }
                            n += 1;
                        }
                    }
                };
                let dir = base.join(&name);
                if !dir.exists() {
                    let tmp = tempfile::tempdir_in(&base).map_err(OpError::io("create", &base))?;
                    let p = tmp.keep();
                    let seeded = match from {
                        Some(from) => self.seed_cache(inputs, *from, source, &p),
                        None => self.chown_host(&p, *uid, *gid).and_then(|()| {
                            use std::os::unix::fs::PermissionsExt;
                            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))
                                .map_err(OpError::io("chmod", &p))
                        }),
                    };
                    if let Err(e) = seeded {
                        let _ = std::fs::remove_dir_all(&p);
                        return Err(e);
                    }
                    if std::fs::rename(&p, &dir).is_err() {
                        let _ = std::fs::remove_dir_all(&p); // another build created it first
                    }
                }
                Ok(vec![Mount::Bind {
                    source: dir,
                    target: target.clone(),
                    readonly: *readonly,
                }])
            }
            ExecMount::Secret {
                id,
                target,
                env: env_name,
                required,
                mode,
                uid,
                gid,
            } => {
                let Some(src) = self.secrets.get(id) else {
                    if *required {
                        return Err(OpError::MissingSecret { id: id.clone() });
                    }
                    return Ok(Vec::new());
                };
                let value: Vec<u8> = match src {
                    SecretSource::File(path) => {
                        std::fs::read(path).map_err(OpError::io("read secret", path))?
                    }
                    SecretSource::Env(var) => match std::env::var_os(var) {
                        Some(v) => v.into_encoded_bytes(),
                        // An unset variable is a secret not provided (BuildKit).
                        None if *required => {
                            return Err(OpError::MissingSecretEnv {
                                id: id.clone(),
                                var: var.clone(),
                            })
                        }
                        None => return Ok(Vec::new()),
                    },
                };
                let mut out = Vec::new();
                if let Some(name) = env_name {
                    let v = String::from_utf8_lossy(&value);
                    env.push(format!("{name}={}", v.trim_end_matches('\n')));
                }
                if let Some(t) = target {
                    // A private copy, so mode/uid/gid apply without touching the caller's
                    // file, and an env secret can be a file too. It lives in memory-backed
                    // /dev/shm when there is one (never on disk) and is removed after the step.
                    let dir = tempfile::Builder::new()
                        .prefix("kiln-secret")
                        .tempdir_in(private_tmp())
                        .map_err(OpError::io("create temp dir in", private_tmp()))?;
                    let file = dir.path().join("secret");
                    {
                        use std::io::Write;
                        use std::os::unix::fs::OpenOptionsExt;
                        let mut f = std::fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .mode(0o600)
                            .open(&file)
                            .map_err(OpError::io("create", &file))?;
                        f.write_all(&value).map_err(OpError::io("write", &file))?;
                    }
                    self.chown_host(&file, *uid, *gid)?;
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode))
                        .map_err(OpError::io("chmod", &file))?;
                    out.push(Mount::Bind {
                        source: file,
                        target: t.clone(),
                        readonly: true,
                    });
                    res.dirs.push(dir);
                }
                Ok(out)
            }
            ExecMount::Bind {
                target,
                from,
                source,
                readwrite,
            } => Ok(vec![self.bind_mount(
                inputs, *from, source, target, *readwrite, step_dir, res,
            )?]),
            ExecMount::Ssh {
                id,
                target,
                required,
                mode,
                uid,
                gid,
            } => {
                let Some(src) = self.ssh.get(id) else {
                    if *required {
                        return Err(OpError::MissingSsh { id: id.clone() });
                    }
                    return Ok(Vec::new());
                };
                let agent = crate::ssh::AgentSocket::start(src, &private_tmp())
                    .map_err(OpError::io("start ssh agent socket in", private_tmp()))?;
                let sock = agent.path().to_path_buf();
                self.chown_host(&sock, *uid, *gid)?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(*mode))
                    .map_err(OpError::io("chmod", &sock))?;
                res.agents.push(agent);
                // BuildKit points SSH_AUTH_SOCK at the first ssh mount unless the step set it.
                if !env.iter().any(|e| e.starts_with("SSH_AUTH_SOCK=")) {
                    env.push(format!("SSH_AUTH_SOCK={target}"));
                }
                Ok(vec![Mount::Bind {
                    source: sock,
                    target: target.clone(),
                    readonly: false,
                }])
            }
        }
    }

    /// Container owner → host owner (rootless: through the id map), then chown.
    fn chown_host(&self, path: &Path, uid: u32, gid: u32) -> Result<(), OpError> {
        let (hu, hg) = match self.snapshots.id_mapping() {
            Some(m) => {
                let (u, g) = m.host_owner(uid, gid);
                (u.unwrap_or(uid), g.unwrap_or(gid))
            }
            None => (uid, gid),
        };
        std::os::unix::fs::chown(path, Some(hu), Some(hg)).map_err(OpError::io("chown", path))
    }

    /// `from=`/`source=` of a new cache mount: copies the source tree into `dir`.
    fn seed_cache(
        &self,
        inputs: &[Arc<Output>],
        from: kiln_graph::InputIndex,
        source: &str,
        dir: &Path,
    ) -> Result<(), OpError> {
        let dst = kiln_fs::SafeRoot::open(dir)?;
        let opts = kiln_fs::CopyOptions {
            preserve_owner: kiln_fs::running_as_root(),
            xattrs: true,
            id_map: self.snapshots.id_mapping().cloned(),
            ..Default::default()
        };
        let copy = |src: &kiln_fs::SafeRoot| -> Result<(), OpError> {
            kiln_fs::copy(src, Path::new(source), &dst, Path::new("/"), &opts)?;
            Ok(())
        };
        match inputs.get(from.as_usize()).map(|o| o.as_ref()) {
            Some(Output::Context(c)) => copy(&kiln_fs::SafeRoot::open(c.dir())?),
            Some(Output::Fs(s)) => {
                let lowers: Vec<PathBuf> = s
                    .lowers()
                    .iter()
                    .map(|id| self.snapshots.snapshot_fs(id))
                    .collect();
                if lowers.len() > 1 && !kiln_fs::running_as_root() {
                    return Err(OpError::Unsupported {
                        what: "rootless RUN --mount=type=cache,from= a multi-layer stage or image"
                            .into(),
                    });
                }
                let scratch = tempfile::tempdir_in(self.snapshots.dir())
                    .map_err(OpError::io("create temp dir in", self.snapshots.dir()))?;
                crate::merged::with_readonly(&lowers, scratch.path(), copy)
            }
            None => Err(OpError::Internal(format!(
                "cache mount: missing input {from}"
            ))),
        }
    }

    /// A bind mount of `source` inside input `from`. Read-only binds of a directory tree
    /// (the context, a one-layer stage) go straight to the host path that `SafeRoot`
    /// resolves `source` to, symlinks followed inside that root. A layer stack, scratch,
    /// or any `rw` bind becomes an overlay the sandbox mounts in its own namespace (where
    /// it resolves `source` confined to the overlay the same way); `rw` writes go to a
    /// scratch upper under the step's directory and are thrown away with it.
    #[allow(clippy::too_many_arguments)]
    fn bind_mount(
        &self,
        inputs: &[Arc<Output>],
        from: kiln_graph::InputIndex,
        source: &str,
        target: &str,
        readwrite: bool,
        step_dir: &Path,
        res: &mut StepResources,
    ) -> Result<Mount, OpError> {
        let lowers: Vec<PathBuf> = match inputs.get(from.as_usize()).map(|o| o.as_ref()) {
            // The step must not see what `.dockerignore` keeps out of the build (BuildKit
            // never sends it): with an ignore file, the mount is a filtered copy.
            Some(Output::Context(c)) if c.ignore_file().is_some() => {
                return self.filtered_context(c, source, target, readwrite, step_dir, res)
            }
            Some(Output::Context(c)) => vec![c.dir().to_path_buf()],
            Some(Output::Fs(s)) => s
                .lowers()
                .iter()
                .map(|id| self.snapshots.snapshot_fs(id))
                .collect(),
            None => {
                return Err(OpError::Internal(format!(
                    "bind mount: missing input {from}"
                )))
            }
        };
        if let ([only], false) = (lowers.as_slice(), readwrite) {
            return Ok(Mount::Bind {
                source: resolve_in(only, source)?,
                target: target.to_string(),
                readonly: true,
            });
        }
        let scratch = tempfile::Builder::new()
            .prefix("bind")
            .tempdir_in(step_dir)
            .map_err(OpError::io("create temp dir in", step_dir))?;
        let mount = Mount::Overlay {
            lowers,
            scratch: scratch.path().to_path_buf(),
            source: source.to_string(),
            target: target.to_string(),
            readwrite,
        };
        res.dirs.push(scratch);
        Ok(mount)
    }
}

impl Executor<'_> {
    /// A bind mount of `source` from a context with a `.dockerignore`: the included files
    /// are copied (as COPY would, owners 0:0) into a scratch directory of the step, which
    /// is mounted instead and thrown away with the step (so `rw` writes are discarded).
    fn filtered_context(
        &self,
        c: &kiln_context::Context,
        source: &str,
        target: &str,
        readwrite: bool,
        step_dir: &Path,
        res: &mut StepResources,
    ) -> Result<Mount, OpError> {
        let rel = kiln_fs::normalize(Path::new(source))?;
        let is_dir = rel.as_os_str().is_empty() || {
            let f = c.root().open_file(&rel, rustix::fs::OFlags::PATH, 0)?;
            f.metadata().map_err(OpError::io("stat", &rel))?.is_dir()
        };
        let scratch = tempfile::Builder::new()
            .prefix("ctx")
            .tempdir_in(step_dir)
            .map_err(OpError::io("create temp dir in", step_dir))?;
        let tree = scratch.path().join("tree");
        std::fs::create_dir(&tree).map_err(OpError::io("create", &tree))?;
        let dst = kiln_fs::SafeRoot::open(&tree)?;
        let pattern = if rel.as_os_str().is_empty() {
            ".".to_string()
        } else {
            rel.to_string_lossy().into_owned()
        };
        let dest = if is_dir { "/" } else { "/file" };
        let opts = kiln_context::CopyOpts {
            follow_symlinks: true,
            ..Default::default()
        };
        c.copy_into(std::slice::from_ref(&pattern), &dst, dest, "/", &opts)?;
        let mount = Mount::Bind {
            source: tree.join(dest.trim_start_matches('/')),
            target: target.to_string(),
            readonly: !readwrite,
        };
        res.dirs.push(scratch);
        Ok(mount)
    }
}

/// The host path of `source` inside the tree `base`, resolved by [`kiln_fs::SafeRoot`]:
/// `..` and absolute or relative symlinks cannot leave `base`. The result names the very
/// object the kernel resolved (read back from `/proc/self/fd`); the trees are immutable
/// snapshots or the caller's own context, so it cannot be swapped before the mount.
fn resolve_in(base: &Path, source: &str) -> Result<PathBuf, OpError> {
    let root = kiln_fs::SafeRoot::open(base)?;
    let rel = kiln_fs::normalize(Path::new(source))?;
    let canon_base = std::fs::canonicalize(base).map_err(OpError::io("resolve", base))?;
    if rel.as_os_str().is_empty() || rel == Path::new(".") {
        return Ok(canon_base);
    }
    let fd = root.open_file(&rel, rustix::fs::OFlags::PATH, 0)?;
    use std::os::fd::AsRawFd;
    let proc = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    let real = std::fs::read_link(&proc).map_err(OpError::io("resolve", &proc))?;
    if !real.starts_with(&canon_base) {
        return Err(OpError::Internal(format!(
            "bind mount source {source:?} resolved outside {}",
            base.display()
        )));
    }
    Ok(real)
}

/// Opens (creating) `<base>/<name>.lock` and takes an exclusive lock: waiting when
/// `block`, otherwise None when another step holds it.
fn lock_file(base: &Path, name: &str, block: bool) -> Result<Option<std::fs::File>, OpError> {
    let lock_path = base.join(format!("{name}.lock"));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(OpError::io("open", &lock_path))?;
    let op = if block {
        rustix::fs::FlockOperation::LockExclusive
    } else {
        rustix::fs::FlockOperation::NonBlockingLockExclusive
    };
    match rustix::fs::flock(&f, op) {
        Ok(()) => Ok(Some(f)),
        Err(rustix::io::Errno::WOULDBLOCK) if !block => Ok(None),
        Err(e) => Err(OpError::io("lock", &lock_path)(e.into())),
    }
}

/// Where private per-step files (secret copies, agent sockets) live: memory-backed
/// `/dev/shm` when present, so a secret never reaches a disk, else the temp dir.
fn private_tmp() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Host-side things a RUN's mounts need until the step has ended.
#[derive(Default)]
pub(crate) struct StepResources {
    locks: Vec<std::fs::File>,
    dirs: Vec<tempfile::TempDir>,
    agents: Vec<crate::ssh::AgentSocket>,
}

/// A RUN that failed, kept (its writable layer, mounts and environment) for
/// `kiln build --on-error shell`.
pub struct FailedStep {
    pub(crate) spec: Spec,
    pub(crate) sandbox: kiln_sandbox::Sandbox,
    pub(crate) _active: kiln_snapshot::Active,
    pub(crate) _resources: StepResources,
}

impl FailedStep {
    /// The failed command, as the step ran it.
    pub fn command(&self) -> String {
        self.spec.args.join(" ")
    }

    /// Runs `/bin/sh` in the failed step's filesystem with its environment, working
    /// directory, user and mounts; stdin, stdout and stderr are the caller's (an
    /// interactive shell on a terminal, a script when stdin is piped). The step's
    /// writable layer is thrown away afterwards.
    pub fn shell(self) -> Result<kiln_sandbox::ExitStatus, OpError> {
        let mut spec = self.spec.clone();
        spec.args = vec!["/bin/sh".into()];
        Ok(self.sandbox.run(&spec, Stdio::inherit())?.status)
    }
}

fn push_tail(tail: &Mutex<VecDeque<String>>, line: String) {
    let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
    if t.len() == TAIL_LINES {
        t.pop_front();
    }
    t.push_back(line);
}
