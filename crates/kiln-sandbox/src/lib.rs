//! kiln-sandbox: runs one process (a RUN step, `kiln run`) in Linux
//! namespaces kiln creates itself — user (when not root), mount, pid, ipc,
//! uts, and net for `Network::None` — over an untrusted root filesystem.
//! No runc, no cgroups.
//!
//! Owns: namespaces, id maps, mounts (rootfs, overlay, /proc, /dev, /etc
//! files, bind/tmpfs mounts), pivot_root, pid 1 (reaping, signal
//! forwarding), the payload's ids, capabilities and exec.
//! Must not: parse Dockerfiles, talk to registries, or know about images.
//!
//! The id maps are decided by [`id_mapping`] (a pure [`IdMapping`] value, defined in
//! kiln-fs so that kiln-archive and kiln-snapshot can translate layer owners with the very
//! same arithmetic without depending on this crate); the sandbox only installs them.
//!
//! # How a sandbox starts
//!
//! kiln is multi-threaded (tokio), and forking such a process to run Rust
//! code is unsound. [`Sandbox::spawn`] therefore re-executes the kiln binary
//! with [`INIT_ARG`]; the kiln binary's `main` must call [`init_main`] when it
//! sees it, before starting any thread:
//!
//! ```no_run
//! // First lines of kiln's (synchronous) `fn main()`, before the tokio runtime:
//! if std::env::args_os().nth(1).as_deref() == Some(kiln_sandbox::INIT_ARG.as_ref()) {
//!     kiln_sandbox::init_main();
//! }
//! ```
//!
//! The spec travels as JSON over an inherited socket (not argv). The helper
//! unshares the user namespace, the parent writes its id maps (directly, or
//! with `newuidmap`/`newgidmap` and `/etc/subuid` ranges when rootless), the
//! helper unshares the rest and forks pid 1, which sets up the filesystem,
//! `pivot_root`s, forks the payload (pid 2) and then reaps and forwards
//! signals until the payload exits. Setup errors come back typed
//! ([`Error::Setup`]) before [`Sandbox::spawn`] returns.
//!
//! # Namespace helper
//!
//! [`NamespaceHelper`] re-executes the kiln binary the same way ([`USERNS_HELPER_ARG`],
//! dispatched to [`namespace_helper_main`]) to run one request of kiln's own code as uid 0
//! of a user namespace with the full subordinate mapping and no other namespace: rootless
//! kiln unpacks base layers and removes snapshot trees there, so files get (and lose) real
//! subordinate owners.
//!
//! # Security notes
//!
//! - Mount targets inside the rootfs are resolved with `openat2`
//!   `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS` and mounted through
//!   `/proc/self/fd/N`; the working directory likewise.
//! - The helper and pid 1 are non-dumpable, so the payload cannot open
//!   `/proc/1/exe` (the host kiln binary) or pid 1's descriptors.
//! - The bounding set is Docker's default unless [`Spec::privileged`].
//! - `PR_SET_NO_NEW_PRIVS` is *not* set: setuid binaries (`su`, `sudo`)
//!   work as under Docker.
//! - Not done (yet): seccomp, masking of `/proc` paths (`/proc/kcore`,
//!   `/proc/sys` read-only), `/sys`, cgroup limits.

mod child;
mod dev;
mod error;
mod exec;
mod idmap;
mod init;
mod mounts;
mod net;
mod parent;
mod proto;
mod spec;
mod sys;
mod user;
mod userns;

pub use error::{Error, StepError};
pub use idmap::id_mapping;
pub use kiln_fs::{IdMap, IdMapping, IdRange};
pub use parent::{Child, Output, RunOutcome, Sandbox, Stdio};
pub use spec::{EtcFile, EtcFiles, IdMapPolicy, Mount, Network, RootFs, Spec, DEFAULT_PATH};
pub use user::{resolve_user, UserError};
pub use userns::{namespace_helper_main, NamespaceHelper, USERNS_HELPER_ARG};

use serde::{Deserialize, Serialize};

/// The hidden first argument that makes the kiln binary act as the sandbox
/// helper (see [`init_main`]).
pub const INIT_ARG: &str = "__kiln-sandbox-init";

/// How the payload ended: `code` when it exited, `signal` when killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// The helper's entry point: call it first thing in `main` when
/// `argv[1] == INIT_ARG` (before any thread exists). Never returns; exits
/// with the payload's exit code (128 + n when killed by signal n).
pub fn init_main() -> ! {
    child::main()
}
