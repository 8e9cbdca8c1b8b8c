//! The DAG: vertices in insertion order (which is a topological order, since a vertex can
//! only name inputs that already exist), deduplicated by canonical digest.

use crate::key::vertex_digest;
use crate::op::{ExecMount, FileAction, InputIndex, Op, SourceOp};
use kiln_oci::Digest;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fmt::Write as _;

/// Index of a vertex in its [`Graph`]. Only meaningful for the graph that returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VertexId(pub usize);

impl fmt::Display for VertexId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// Where in the Dockerfile a vertex came from. Byte offsets plus 1-based lines
/// (inclusive), so errors can be rendered with `kiln_dockerfile::diag` or printed as
/// `Dockerfile:3-5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SourceSpan {
    pub start: usize,
    pub end: usize,
    pub line_start: usize,
    pub line_end: usize,
}

/// The stage a vertex was lowered for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct StageRef {
    pub index: usize,
    /// `AS name` as written, if any.
    pub name: Option<String>,
}

/// Data about a vertex that is **not** part of its digest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VertexMeta {
    /// Progress label, e.g. `[build 3/5] RUN make`.
    pub description: String,
    pub stage: Option<StageRef>,
    pub span: Option<SourceSpan>,
    /// `--no-cache` / `--no-cache-filter`: execute even on a cache hit (the result still
    /// updates the cache).
    pub ignore_cache: bool,
}

/// One node of the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vertex {
    pub op: Op,
    /// Input vertices; ops refer to them by position ([`InputIndex`]).
    pub inputs: Vec<VertexId>,
    /// Canonical digest over `op` and the inputs' digests (see [`crate::key`]).
    pub digest: Digest,
    pub meta: VertexMeta,
}

/// Why a vertex could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("input {input} of a new {op} vertex does not exist (graph has {len} vertices)")]
    UnknownInput {
        op: &'static str,
        input: VertexId,
        len: usize,
    },
    #[error("{op} op refers to input {index} but the vertex has {inputs} inputs")]
    BadInputIndex {
        op: &'static str,
        index: InputIndex,
        inputs: usize,
    },
    #[error("a source op takes no inputs (got {0})")]
    SourceWithInputs(usize),
    #[error("a merge needs at least one input")]
    EmptyMerge,
}

/// The build graph.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    vertices: Vec<Vertex>,
    by_digest: HashMap<Digest, VertexId>,
}

fn op_input_indices(op: &Op) -> Vec<InputIndex> {
    let mut v = Vec::new();
    match op {
        Op::Source(_) | Op::Merge => {}
        Op::Exec(e) => {
            v.push(e.root);
            for m in &e.mounts {
                match m {
                    ExecMount::Bind { from, .. } => v.push(*from),
                    ExecMount::Cache { from: Some(f), .. } => v.push(*f),
                    _ => {}
                }
            }
        }
        Op::File(f) => {
            v.extend(f.root);
            for a in &f.actions {
                if let FileAction::Copy(c) = a {
                    v.push(c.from);
                }
            }
        }
    }
    v
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a vertex, or returns the existing one with the same digest (its metadata is
    /// kept: the first description wins, and `ignore_cache` is OR-ed in).
    pub fn add(
        &mut self,
        op: Op,
        inputs: Vec<VertexId>,
        meta: VertexMeta,
    ) -> Result<VertexId, GraphError> {
        for &i in &inputs {
            if i.0 >= self.vertices.len() {
                return Err(GraphError::UnknownInput {
                    op: op.kind(),
                    input: i,
                    len: self.vertices.len(),
                });
            }
        }
        match &op {
            Op::Source(_) if !inputs.is_empty() => {
                return Err(GraphError::SourceWithInputs(inputs.len()))
            }
            Op::Merge if inputs.is_empty() => return Err(GraphError::EmptyMerge),
            _ => {}
        }
        for idx in op_input_indices(&op) {
            if idx.as_usize() >= inputs.len() {
                return Err(GraphError::BadInputIndex {
                    op: op.kind(),
                    index: idx,
                    inputs: inputs.len(),
                });
            }
        }
        let digests: Vec<&Digest> = inputs.iter().map(|i| &self.vertices[i.0].digest).collect();
        let digest = vertex_digest(&op, &digests);
        if let Some(&id) = self.by_digest.get(&digest) {
            self.vertices[id.0].meta.ignore_cache |= meta.ignore_cache;
            return Ok(id);
        }
        let id = VertexId(self.vertices.len());
        self.by_digest.insert(digest.clone(), id);
        self.vertices.push(Vertex {
            op,
            inputs,
            digest,
            meta,
        });
        Ok(id)
    }

    pub fn vertex(&self, id: VertexId) -> Option<&Vertex> {
        self.vertices.get(id.0)
    }

    /// All vertices, in insertion (= topological) order; `VertexId(i)` is `vertices()[i]`.
    pub fn vertices(&self) -> &[Vertex] {
        &self.vertices
    }

    pub fn len(&self) -> usize {
        self.vertices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vertices.is_empty()
    }

    /// The vertex with this digest.
    pub fn find(&self, digest: &Digest) -> Option<VertexId> {
        self.by_digest.get(digest).copied()
    }

    /// Every vertex id, inputs before the vertices that use them.
    pub fn topological_order(&self) -> Vec<VertexId> {
        (0..self.vertices.len()).map(VertexId).collect()
    }

    /// The vertices `targets` depend on (themselves included), in topological order.
    /// Unknown ids are ignored.
    pub fn reachable_from(&self, targets: &[VertexId]) -> Vec<VertexId> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<VertexId> = targets
            .iter()
            .copied()
            .filter(|t| t.0 < self.vertices.len())
            .collect();
        while let Some(v) = stack.pop() {
            if seen.insert(v) {
                stack.extend(self.vertices[v.0].inputs.iter().copied());
            }
        }
        seen.into_iter().collect()
    }

    /// Readable, stable text of the whole graph (for golden tests and `--debug` output).
    pub fn dump(&self) -> String {
        self.dump_subset(&self.topological_order())
    }

    /// [`Graph::dump`] restricted to what `targets` need.
    pub fn dump_from(&self, targets: &[VertexId]) -> String {
        self.dump_subset(&self.reachable_from(targets))
    }

    fn dump_subset(&self, ids: &[VertexId]) -> String {
        let mut out = String::new();
        for &id in ids {
            let v = &self.vertices[id.0];
            dump_vertex(&mut out, id, v);
        }
        out
    }
}

fn short(d: &Digest) -> String {
    let s = d.to_string();
    s.chars().take(7 + 16).collect()
}

fn q(s: &str) -> String {
    format!("{s:?}")
}

fn opt(s: &Option<String>) -> String {
    s.as_ref().map_or_else(|| "-".to_string(), |s| q(s))
}

fn dump_vertex(out: &mut String, id: VertexId, v: &Vertex) {
    let inputs: Vec<String> = v.inputs.iter().map(|i| i.to_string()).collect();
    let _ = writeln!(
        out,
        "{id} {} {} inputs=[{}]",
        short(&v.digest),
        v.op.kind(),
        inputs.join(",")
    );
    let mut loc = String::new();
    if let Some(s) = &v.meta.stage {
        let _ = write!(
            loc,
            " stage={}{}",
            s.index,
            s.name.as_ref().map_or(String::new(), |n| format!("({n})"))
        );
    }
    if let Some(s) = &v.meta.span {
        let _ = write!(loc, " lines={}-{}", s.line_start, s.line_end);
    }
    if v.meta.ignore_cache {
        loc.push_str(" no-cache");
    }
    let _ = writeln!(out, "  desc {}{loc}", q(&v.meta.description));
    match &v.op {
        Op::Source(SourceOp::Image {
            reference,
            platform,
        }) => {
            let _ = writeln!(out, "  image {reference} platform={platform}");
        }
        Op::Source(SourceOp::Context {
            name,
            include,
            exclude,
        }) => {
            let _ = writeln!(
                out,
                "  context {} include={include:?} exclude={exclude:?}",
                q(name)
            );
        }
        Op::Source(SourceOp::Scratch) => {
            let _ = writeln!(out, "  scratch");
        }
        Op::Merge => {}
        Op::Exec(e) => {
            let _ = writeln!(out, "  root={} args={:?}", e.root, e.args);
            let _ = writeln!(out, "  env={:?}", e.env);
            if !e.proxy_env.is_empty() {
                let _ = writeln!(out, "  proxy_env(unkeyed)={:?}", e.proxy_env);
            }
            let _ = writeln!(
                out,
                "  cwd={} user={} network={:?} security={:?}",
                q(&e.cwd),
                q(&e.user),
                e.network,
                e.security
            );
            for m in &e.mounts {
                let line = match m {
                    ExecMount::Bind {
                        target,
                        from,
                        source,
                        readwrite,
                    } => format!(
                        "bind target={} from={from} source={} rw={readwrite}",
                        q(target),
                        q(source)
                    ),
                    ExecMount::Cache {
                        target,
                        id,
                        sharing,
                        from,
                        source,
                        uid,
                        gid,
                        mode,
                        readonly,
                    } => format!(
                        "cache target={} id={} sharing={sharing:?} from={} source={} uid={uid} gid={gid} mode={mode:o} ro={readonly}",
                        q(target),
                        q(id),
                        from.map_or("-".to_string(), |f| f.to_string()),
                        q(source)
                    ),
                    ExecMount::Secret {
                        id,
                        target,
                        env,
                        required,
                        mode,
                        uid,
                        gid,
                    } => format!(
                        "secret id={} target={} env={} required={required} mode={mode:o} uid={uid} gid={gid}",
                        q(id),
                        opt(target),
                        opt(env)
                    ),
                    ExecMount::Tmpfs { target, size } => format!(
                        "tmpfs target={} size={}",
                        q(target),
                        size.map_or("-".to_string(), |s| s.to_string())
                    ),
                    ExecMount::Ssh {
                        id,
                        target,
                        required,
                        mode,
                        uid,
                        gid,
                    } => format!(
                        "ssh id={} target={} required={required} mode={mode:o} uid={uid} gid={gid}",
                        q(id),
                        q(target)
                    ),
                };
                let _ = writeln!(out, "  mount {line}");
            }
        }
        Op::File(f) => {
            let _ = writeln!(
                out,
                "  root={}",
                f.root.map_or("scratch".to_string(), |r| r.to_string())
            );
            let excludes = |e: &Vec<String>| {
                if e.is_empty() {
                    String::new()
                } else {
                    format!(" exclude={e:?}")
                }
            };
            for a in &f.actions {
                let line = match a {
                    FileAction::Copy(c) => {
                        let mut flags = Vec::new();
                        for (on, name) in [
                            (c.dest_is_dir, "dest-dir"),
                            (c.follow_symlinks, "follow"),
                            (c.dir_contents_only, "contents"),
                            (c.allow_wildcard, "wildcard"),
                            (c.allow_empty_wildcard, "empty-wildcard"),
                            (c.create_dest_path, "mkdest"),
                            (c.unpack_archives, "unpack"),
                            (c.parents, "parents"),
                        ] {
                            if on {
                                flags.push(name);
                            }
                        }
                        let mut s = format!(
                            "copy from={} {:?} -> {} [{}]",
                            c.from,
                            c.sources,
                            q(&c.dest),
                            flags.join(",")
                        );
                        if c.chown.is_some() {
                            let _ = write!(s, " chown={}", opt(&c.chown));
                        }
                        if c.chmod.is_some() {
                            let _ = write!(s, " chmod={}", opt(&c.chmod));
                        }
                        if !c.exclude.is_empty() {
                            let _ = write!(s, " exclude={:?}", c.exclude);
                        }
                        s
                    }
                    FileAction::Mkfile {
                        path,
                        data,
                        mode,
                        chown,
                    } => format!(
                        "mkfile {} mode={mode:o} chown={} data={:?}",
                        q(path),
                        opt(chown),
                        String::from_utf8_lossy(data)
                    ),
                    FileAction::Mkdir {
                        path,
                        mode,
                        make_parents,
                        chown,
                    } => format!(
                        "mkdir {} mode={mode:o} parents={make_parents} chown={}",
                        q(path),
                        opt(chown)
                    ),
                    FileAction::Rm {
                        path,
                        allow_not_found,
                        allow_wildcard,
                    } => format!(
                        "rm {} allow_not_found={allow_not_found} wildcard={allow_wildcard}",
                        q(path)
                    ),
                    FileAction::AddUrl {
                        url,
                        dest,
                        checksum,
                        chown,
                        chmod,
                        unpack,
                        exclude,
                    } => format!(
                        "add-url {} -> {} checksum={} chown={} chmod={}{}{}",
                        q(url),
                        q(dest),
                        opt(checksum),
                        opt(chown),
                        opt(chmod),
                        if *unpack { " unpack=true" } else { "" },
                        excludes(exclude)
                    ),
                    FileAction::AddGit {
                        url,
                        reference,
                        dest,
                        keep_git_dir,
                        checksum,
                        chown,
                        chmod,
                        exclude,
                    } => format!(
                        "add-git {} ref={} -> {} keep_git_dir={keep_git_dir} checksum={} chown={} chmod={}{}",
                        q(url),
                        opt(reference),
                        q(dest),
                        opt(checksum),
                        opt(chown),
                        opt(chmod),
                        excludes(exclude)
                    ),
                };
                let _ = writeln!(out, "  {line}");
            }
        }
    }
}
