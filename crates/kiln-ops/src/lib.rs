//! kiln-ops: the worker that executes build-graph vertices.
//!
//! Owns: executing each op (source, exec, file, merge) with the store, snapshots, sandbox,
//! context and archive crates; the build cache records and the "why was this rebuilt"
//! memory; hits from imported shared caches (kiln-cache) and the records exported to them.
//!
//! Must not: schedule (the solver does), parse Dockerfiles (the frontend does), print.

pub mod cache;
mod error;
mod exec;
mod executor;
mod file;
mod merged;
mod remote;
mod shared;
pub mod ssh;
mod state;
mod user;

pub use error::OpError;
pub use exec::FailedStep;
pub use executor::{ExecOptions, Executor, SecretSource};
pub use remote::DEFAULT_MAX_DOWNLOAD_SIZE;
pub use shared::{CacheImport, CacheMode, FetchedBlob, KEY_SCHEME};
pub use ssh::{SshError, SshSource};
pub use state::{FsState, LayerRef, Output};
