//! The operations a vertex can perform (BuildKit's LLB words: source, exec, file, merge).
//!
//! Every type here derives `Serialize`, and **that serialisation is the canonical key
//! encoding** (see [`crate::key`]): field order is declaration order, maps are `BTreeMap`,
//! and fields that must not reach a cache key are `#[serde(skip)]` (documented where they
//! are). Changing a field, its name or its order changes every digest: bump
//! [`crate::key::KEY_VERSION`] when you do.
//!
//! Inputs are referenced by position ([`InputIndex`]) in the vertex's input list, never by
//! vertex id, so the key depends on the inputs' digests (hashed in order) and not on where
//! they sit in a particular graph.

use kiln_oci::Reference;
use serde::{Serialize, Serializer};
use std::fmt;

/// Position of an input in [`crate::Vertex::inputs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct InputIndex(pub u32);

impl InputIndex {
    pub fn as_usize(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for InputIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "in{}", self.0)
    }
}

/// An OCI platform (`os/arch[/variant]`). kiln-graph's own copy so that the IR depends on
/// nothing but `kiln-oci`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Default)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: &str) -> Self {
        Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.to_string(),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

/// What a vertex does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Source(SourceOp),
    Exec(ExecOp),
    File(FileOp),
    /// Stack the inputs' layers in order (input 0 at the bottom). Used by `COPY --link`:
    /// the copy is made onto scratch and merged over the stage root, so its layer does not
    /// depend on (and is not invalidated by) what lies below it.
    Merge,
}

impl Op {
    /// Short kind name for dumps and progress: `source`, `exec`, `file`, `merge`.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Source(_) => "source",
            Op::Exec(_) => "exec",
            Op::File(_) => "file",
            Op::Merge => "merge",
        }
    }
}

fn ser_reference<S: Serializer>(r: &Reference, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&r.to_string())
}

/// A vertex with no inputs that produces a filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceOp {
    /// An image from the local store. The reference is normalised
    /// (`docker.io/library/busybox:latest`); the executor resolves it to a manifest for
    /// `platform`. When the reference carries no digest, the executor must add the resolved
    /// manifest digest to the cache key (a re-tagged image is a different input).
    Image {
        #[serde(serialize_with = "ser_reference")]
        reference: Reference,
        platform: Platform,
    },
    /// The build context (`name` = `context`) or a named context (`--build-context`).
    /// `include` lists the paths/patterns the consumer reads (only they reach the key, via
    /// their content digests computed at execution time); empty means everything.
    /// `exclude` are `COPY --exclude` patterns. `.dockerignore` is applied by the executor
    /// (kiln-context) for every context source.
    Context {
        name: String,
        include: Vec<String>,
        exclude: Vec<String>,
    },
    /// An empty filesystem (`FROM scratch`).
    Scratch,
}

/// `RUN --network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    #[default]
    Default,
    None,
    Host,
}

/// `RUN --security`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SecurityMode {
    #[default]
    Sandbox,
    Insecure,
}

/// `--mount=type=cache,sharing=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CacheSharing {
    #[default]
    Shared,
    Private,
    Locked,
}

/// A process run over the root input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecOp {
    /// The root filesystem (read-write; its changes are the vertex's output).
    pub root: InputIndex,
    /// argv, already wrapped in the shell for the shell form.
    pub args: Vec<String>,
    /// `KEY=value`: the image ENV plus the declared ARGs that have a value, in order.
    pub env: Vec<String>,
    /// Proxy build-args (`HTTP_PROXY=…`, …) the process also gets. **Not in the cache key,
    /// never in the image config or history** (BuildKit's `ProxyEnv`). See
    /// [`ExecOp::process_env`].
    #[serde(skip)]
    pub proxy_env: Vec<String>,
    /// Absolute working directory (created by the executor if missing).
    pub cwd: String,
    /// `USER` as written (`name`, `uid`, `name:group`, `uid:gid`); empty = root. Resolved
    /// by the executor against the root's `/etc/passwd` and `/etc/group`.
    pub user: String,
    pub network: NetworkMode,
    pub security: SecurityMode,
    pub mounts: Vec<ExecMount>,
}

impl ExecOp {
    /// Exactly the environment the process gets: `env`, then each proxy variable whose name
    /// `env` does not already set.
    pub fn process_env(&self) -> Vec<String> {
        let mut out = self.env.clone();
        for p in &self.proxy_env {
            let name = p.split_once('=').map_or(p.as_str(), |(k, _)| k);
            if !out
                .iter()
                .any(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == name)
            {
                out.push(p.clone());
            }
        }
        out
    }
}

/// A `RUN --mount`. uid/gid/mode are numbers already (the frontend parses them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecMount {
    /// Bind `source` (a path inside input `from`) at `target`. Read-only unless
    /// `readwrite` (writes are then discarded after the step).
    Bind {
        target: String,
        from: InputIndex,
        source: String,
        readwrite: bool,
    },
    /// A persistent cache directory shared between builds, keyed by `id`. Its contents are
    /// never part of any cache key. `from`/`source` seed it from an input when new.
    Cache {
        target: String,
        id: String,
        sharing: CacheSharing,
        from: Option<InputIndex>,
        source: String,
        uid: u32,
        gid: u32,
        mode: u32,
        readonly: bool,
    },
    /// A secret provided by the caller (`--secret id=…`), as a file at `target` and/or an
    /// environment variable `env`. Only the id is in the key, never the value.
    Secret {
        id: String,
        target: Option<String>,
        env: Option<String>,
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// An empty tmpfs; `size` in bytes (None = kernel default).
    Tmpfs { target: String, size: Option<u64> },
    /// An SSH agent socket forwarded from the caller (`--ssh id=…`).
    Ssh {
        id: String,
        target: String,
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

impl ExecMount {
    /// The mount point, when there is one (an env-only secret has none).
    pub fn target(&self) -> Option<&str> {
        match self {
            ExecMount::Bind { target, .. }
            | ExecMount::Cache { target, .. }
            | ExecMount::Tmpfs { target, .. }
            | ExecMount::Ssh { target, .. } => Some(target),
            ExecMount::Secret { target, .. } => target.as_deref(),
        }
    }
}

/// A sequence of file actions applied, in order, to a root (or to scratch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileOp {
    /// The filesystem to modify; `None` starts from an empty one.
    pub root: Option<InputIndex>,
    pub actions: Vec<FileAction>,
}

fn ser_data_digest<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&kiln_oci::Digest::of_bytes(data).to_string())
}

/// One file action. Paths are absolute in the destination (the frontend has joined them
/// with WORKDIR); a trailing `/` on `dest` is kept because it means "into this directory".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileAction {
    Copy(CopyAction),
    /// Create a file with `data` (COPY heredocs, RUN heredoc scripts). The key holds the
    /// sha256 of `data`, not the bytes.
    Mkfile {
        path: String,
        #[serde(serialize_with = "ser_data_digest")]
        data: Vec<u8>,
        mode: u32,
        chown: Option<String>,
    },
    /// Create a directory (WORKDIR). With `make_parents` an existing directory is left as
    /// it is (owner and mode unchanged), like `mkdir -p`.
    Mkdir {
        path: String,
        mode: u32,
        make_parents: bool,
        /// Owner for directories this action creates (`USER` as written; None = root).
        chown: Option<String>,
    },
    Rm {
        path: String,
        allow_not_found: bool,
        allow_wildcard: bool,
    },
    /// `ADD <url> <dest>`: download. `checksum` (`sha256:…`) is verified when given; the
    /// executor must add the downloaded content digest (or, with a checksum, the checksum)
    /// to the key. `unpack` (`ADD --unpack=true`) extracts an archive; without it a
    /// downloaded archive is copied as a file, unlike a local one.
    AddUrl {
        url: String,
        dest: String,
        checksum: Option<String>,
        chown: Option<String>,
        chmod: Option<String>,
        unpack: bool,
        /// `ADD --exclude`: only meaningful when `unpack` extracts a tree.
        exclude: Vec<String>,
    },
    /// `ADD <git url> <dest>`. `reference` is the `#ref[:subdir]` fragment; `checksum` is
    /// the expected commit. The executor adds the resolved commit to the key.
    AddGit {
        url: String,
        reference: Option<String>,
        dest: String,
        keep_git_dir: bool,
        checksum: Option<String>,
        chown: Option<String>,
        chmod: Option<String>,
        /// `ADD --exclude` patterns, relative to the checked-out tree (or subdir).
        exclude: Vec<String>,
    },
}

impl FileAction {
    pub fn kind(&self) -> &'static str {
        match self {
            FileAction::Copy(_) => "copy",
            FileAction::Mkfile { .. } => "mkfile",
            FileAction::Mkdir { .. } => "mkdir",
            FileAction::Rm { .. } => "rm",
            FileAction::AddUrl { .. } => "add-url",
            FileAction::AddGit { .. } => "add-git",
        }
    }
}

/// COPY / ADD of paths from another input.
///
/// Semantics the executor implements (BuildKit's `FileActionCopy`):
/// * `sources` are paths or patterns relative to the root of input `from` (`/` and `..`
///   cannot leave it). With `allow_wildcard`, `*`, `?`, `[..]` match; a pattern that
///   matches nothing is an error unless `allow_empty_wildcard`.
/// * `dest` is absolute. When `dest_is_dir` (it ends in `/`, or there are several sources
///   or a wildcard), each source lands *inside* `dest`; otherwise a single file source is
///   copied *to* `dest`.
/// * `dir_contents_only`: a directory source copies its contents, not itself (Docker).
/// * `create_dest_path`: missing parents of `dest` are created (root-owned, 0755).
/// * `chown`: `user[:group]` resolved in the *destination* root's passwd/group;
///   None keeps the source ownership for `from` = image/stage and 0:0 for contexts.
/// * `chmod`: octal (`0755`) or symbolic (`u+x`) as written.
/// * `unpack_archives`: ADD of a local tar archive extracts it instead of copying.
/// * `exclude`: patterns (relative to `from`) not copied.
/// * `parents`: keep the source's directory structure below `dest` (`COPY --parents`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyAction {
    pub from: InputIndex,
    pub sources: Vec<String>,
    pub dest: String,
    pub dest_is_dir: bool,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub follow_symlinks: bool,
    pub dir_contents_only: bool,
    pub allow_wildcard: bool,
    pub allow_empty_wildcard: bool,
    pub create_dest_path: bool,
    pub unpack_archives: bool,
    pub exclude: Vec<String>,
    pub parents: bool,
}

impl CopyAction {
    /// A COPY with Docker's defaults for `sources` → `dest` from input `from`.
    pub fn new(from: InputIndex, sources: Vec<String>, dest: String) -> Self {
        let dest_is_dir = dest.ends_with('/') || sources.len() > 1;
        CopyAction {
            from,
            sources,
            dest,
            dest_is_dir,
            chown: None,
            chmod: None,
            follow_symlinks: true,
            dir_contents_only: true,
            allow_wildcard: true,
            allow_empty_wildcard: false,
            create_dest_path: true,
            unpack_archives: false,
            exclude: Vec::new(),
            parents: false,
        }
    }
}
