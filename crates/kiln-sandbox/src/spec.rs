//! What to run and how to confine it. Plain data: it crosses the re-exec as
//! JSON, so everything here is (de)serialisable and holds no file descriptors.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One process to run in fresh namespaces over a root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// The container's root filesystem (untrusted content).
    pub rootfs: RootFs,
    /// `argv`; `args[0]` is looked up in the `PATH` of [`Spec::env`] when it
    /// has no `/`.
    pub args: Vec<String>,
    /// The payload's complete environment (`KEY=value`); nothing of the host
    /// environment leaks in.
    pub env: Vec<String>,
    /// Working directory inside the container, resolved confined to the root.
    pub cwd: String,
    /// Create `cwd` (as container root, mode 0755) when it does not exist.
    pub create_cwd: bool,
    /// Numeric uid, gid and supplementary gids inside the container (see
    /// [`crate::resolve_user`] for names).
    pub user: (u32, u32, Vec<u32>),
    /// UTS hostname; also written to the generated `/etc/hostname` and `/etc/hosts`.
    pub hostname: String,
    pub network: Network,
    /// Extra mounts, applied in order after `/proc`, `/dev` and `/etc` files.
    pub mounts: Vec<Mount>,
    /// Remount the root read-only after all mounts are in place.
    pub readonly_rootfs: bool,
    pub id_map: IdMapPolicy,
    pub etc_files: EtcFiles,
    /// Keep every capability in the bounding set. By default the bounding set
    /// is cut to Docker's default set (so a root payload cannot e.g. mount or
    /// ptrace), like `docker run` without `--privileged`.
    pub privileged: bool,
}

impl Spec {
    /// A spec with Docker-like defaults: root user, cwd `/`, host network,
    /// automatic id mapping, generated `/etc` files.
    pub fn new(rootfs: RootFs, args: Vec<String>) -> Self {
        Spec {
            rootfs,
            args,
            env: vec![format!("PATH={DEFAULT_PATH}")],
            cwd: "/".into(),
            create_cwd: false,
            user: (0, 0, Vec::new()),
            hostname: "kiln".into(),
            network: Network::Host,
            mounts: Vec::new(),
            readonly_rootfs: false,
            id_map: IdMapPolicy::Auto,
            etc_files: EtcFiles::default(),
            privileged: false,
        }
    }
}

/// Docker's default `PATH`, used for the lookup of `args[0]` when the spec's
/// environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where the root filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RootFs {
    /// An existing directory (for example an overlay the caller mounted);
    /// bind-mounted onto itself inside the sandbox's mount namespace.
    Dir(PathBuf),
    /// An overlay the sandbox mounts inside its own mount namespace (so it
    /// vanishes with the sandbox). `lowers` are in image-layer order,
    /// bottom-most first. Rootless this needs kernel ≥ 5.11 (`userxattr`).
    /// The overlay is mounted on `<work>/merged`, created if needed.
    Overlay {
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Network {
    /// Share the host's network namespace (package managers work).
    #[default]
    Host,
    /// A fresh network namespace with only `lo`, brought up.
    None,
}

/// Additional mounts (cache, secret, bind) placed inside the root. Targets are
/// container paths, resolved confined to the root; sources are host paths the
/// caller trusts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mount {
    Bind {
        source: PathBuf,
        target: String,
        readonly: bool,
    },
    Tmpfs {
        target: String,
        /// Size limit in bytes; `None` is the kernel default (half of RAM).
        size: Option<u64>,
    },
    /// `source` (a path inside the overlay of `lowers`, bottom-most first) at `target`.
    /// The overlay is mounted on `<scratch>/merged` inside the sandbox's own mount
    /// namespace; `source` is resolved confined to it (symlinks stay inside), so a layer
    /// stack needs no copy. Writable only with `readwrite`, and then the writes land in
    /// `<scratch>/upper` (the caller throws it away): lowers are never modified.
    Overlay {
        lowers: Vec<PathBuf>,
        scratch: PathBuf,
        source: String,
        target: String,
        readwrite: bool,
    },
}

/// How container ids map to host ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum IdMapPolicy {
    /// As root: no user namespace, ids are the host's. Otherwise a user
    /// namespace mapping container 0 to the caller and 1..=n to the caller's
    /// subordinate range (via `newuidmap`/`newgidmap`), or, when those are
    /// unavailable, only container 0 (with a warning in [`crate::RunOutcome`]).
    #[default]
    Auto,
    /// Always a user namespace with the single mapping container 0 → caller.
    Single,
}

/// The three `/etc` files the sandbox bind-mounts read-only over the image's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcFiles {
    pub hosts: EtcFile,
    pub hostname: EtcFile,
    pub resolv_conf: EtcFile,
}

impl Default for EtcFiles {
    fn default() -> Self {
        EtcFiles {
            hosts: EtcFile::Generate,
            hostname: EtcFile::Generate,
            resolv_conf: EtcFile::Generate,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EtcFile {
    /// `hosts`: localhost + hostname; `hostname`: the spec's hostname;
    /// `resolv.conf`: a copy of the host's `/etc/resolv.conf`.
    Generate,
    /// Bind-mount this host file.
    Path(PathBuf),
    /// Leave the image's file alone.
    Keep,
}
