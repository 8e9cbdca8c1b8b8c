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
        let key = match self.probe(ctx, vertex, root, &components, &[])? {
            Probe::Hit(out) => return Ok(out),
            Probe::Miss(key) => key,
        };
        let mut active = self.snapshots.prepare_active(&root.lowers())?;
        let mount = active.mount()?;
        let user = crate::user::UserDb::read(&active)?.resolve(&op.user)?;
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
        let mut locks = Vec::new();
        for m in &op.mounts {
            spec.mounts
                .extend(self.exec_mount(m, inputs, &mut locks, &mut spec.env)?);
        }
        let started = Instant::now();
        let outcome = self.run_logged(ctx, &spec);
        let elapsed = started.elapsed();
        ctx.add_exec_time(elapsed);
        drop(locks);
        let (outcome, tail) = outcome?;
        let command = op.args.join(" ");
        match (outcome.status.code, outcome.status.signal) {
            (Some(0), _) => {}
            (Some(code), _) => {
                return Err(OpError::ExitCode {
                    command,
                    code,
                    tail,
                })
            }
            (None, Some(signal)) => {
                return Err(OpError::Signal {
                    command,
                    signal,
                    tail,
                })
            }
            (None, None) => return Err(OpError::Internal("process ended without a status".into())),
        }
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

    /// Turns one `RUN --mount` into sandbox mounts (and env for env-secrets).
    fn exec_mount(
        &self,
        m: &ExecMount,
        inputs: &[Arc<Output>],
        locks: &mut Vec<std::fs::File>,
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
                ..
            } => {
                if from.is_some() {
                    return Err(OpError::Unsupported {
                        what: "RUN --mount=type=cache,from=… (seeding a cache mount)".into(),
                    });
                }
                // Named by a hash of the id, never the id itself: ids are user text.
                let hash = Digest::of_bytes(id.as_bytes());
                let base = self.store.root().join("kiln").join("cache-mounts");
                let dir = base.join(hash.hex());
                if !dir.exists() {
                    std::fs::create_dir_all(&base).map_err(OpError::io("create", &base))?;
                    let tmp = tempfile::tempdir_in(&base).map_err(OpError::io("create", &base))?;
                    let p = tmp.keep();
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))
                        .map_err(OpError::io("chmod", &p))?;
                    std::os::unix::fs::chown(&p, Some(*uid), Some(*gid))
                        .map_err(OpError::io("chown", &p))?;
                    if std::fs::rename(&p, &dir).is_err() {
                        let _ = std::fs::remove_dir(&p); // another build created it first
                    }
                }
                if matches!(sharing, CacheSharing::Locked | CacheSharing::Private) {
                    // Private is served as locked: one step at a time gets the directory.
                    let lock_path = base.join(format!("{}.lock", hash.hex()));
                    let f = std::fs::OpenOptions::new()
                        .create(true)
                        .truncate(false)
                        .write(true)
                        .open(&lock_path)
                        .map_err(OpError::io("open", &lock_path))?;
                    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
                        .map_err(|e| OpError::io("lock", &lock_path)(e.into()))?;
                    locks.push(f);
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
                ..
            } => {
                let Some(src) = self.secrets.get(id) else {
                    if *required {
                        return Err(OpError::MissingSecret { id: id.clone() });
                    }
                    return Ok(Vec::new());
                };
                let mut out = Vec::new();
                match src {
                    SecretSource::File(path) => {
                        if let Some(t) = target {
                            out.push(Mount::Bind {
                                source: path.clone(),
                                target: t.clone(),
                                readonly: true,
                            });
                        }
                        if let Some(name) = env_name {
                            let v = std::fs::read_to_string(path)
                                .map_err(OpError::io("read secret", path))?;
                            env.push(format!("{name}={}", v.trim_end_matches('\n')));
                        }
                    }
                    SecretSource::Env(var) => {
                        let v = std::env::var(var)
                            .map_err(|_| OpError::MissingSecret { id: id.clone() })?;
                        if let Some(name) = env_name {
                            env.push(format!("{name}={v}"));
                        }
                        if target.is_some() {
                            return Err(OpError::Unsupported {
                                what: format!(
                                    "secret {id:?} from an environment variable mounted as a file"
                                ),
                            });
                        }
                    }
                }
                Ok(out)
            }
            ExecMount::Bind {
                target,
                from,
                source,
                readwrite,
            } => {
                let dir = self.bind_source(inputs, *from, source)?;
                Ok(vec![Mount::Bind {
                    source: dir,
                    target: target.clone(),
                    readonly: !readwrite,
                }])
            }
            ExecMount::Ssh { .. } => Err(OpError::Unsupported {
                what: "RUN --mount=type=ssh".into(),
            }),
        }
    }

    /// A host path for a bind mount source, confined to its input.
    fn bind_source(
        &self,
        inputs: &[Arc<Output>],
        from: kiln_graph::InputIndex,
        source: &str,
    ) -> Result<PathBuf, OpError> {
        let (base, layers) = match inputs.get(from.as_usize()).map(|o| o.as_ref()) {
            Some(Output::Context(c)) => (c.dir().to_path_buf(), 0),
            Some(Output::Fs(s)) if s.layers.len() == 1 => {
                (self.snapshots.snapshot_fs(&s.layers[0].snapshot), 1)
            }
            Some(Output::Fs(s)) if s.layers.is_empty() => {
                return Err(OpError::Unsupported {
                    what: "RUN --mount=type=bind from an empty filesystem".into(),
                })
            }
            Some(Output::Fs(_)) => {
                return Err(OpError::Unsupported {
                    what: "RUN --mount=type=bind from a multi-layer stage or image".into(),
                })
            }
            None => {
                return Err(OpError::Internal(format!(
                    "bind mount: missing input {from}"
                )))
            }
        };
        let _ = layers;
        let root = kiln_fs::SafeRoot::open(&base)?;
        let rel = kiln_fs::normalize(Path::new(source))?;
        // The source must be reachable without symlinks: the sandbox mounts a host path.
        let mut walked = PathBuf::new();
        for c in rel.components() {
            walked.push(c);
            if let Some(m) = root.try_lstat(&walked)? {
                if m.kind == kiln_fs::FileKind::Symlink {
                    return Err(OpError::Unsupported {
                        what: format!("bind mount source {source:?} through a symlink"),
                    });
                }
            }
        }
        Ok(base.join(rel))
    }
}

fn push_tail(tail: &Mutex<VecDeque<String>>, line: String) {
    let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
    if t.len() == TAIL_LINES {
        t.pop_front();
    }
    t.push_back(line);
}
