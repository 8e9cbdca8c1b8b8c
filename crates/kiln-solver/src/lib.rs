//! Generic build scheduling: runs a DAG of jobs in parallel, at most `jobs` at a time,
//! each as soon as its inputs are done; deduplicates identical keys; stops cleanly on the
//! first failure or on cancellation; reports progress as serialisable [`Event`]s.
//!
//! This crate owns *when* work runs, never *what* it is: it must not know about
//! containers, files, images, stores or Dockerfiles (the [`Worker`] supplied by the
//! caller does), must not depend on any other kiln crate, and must not print (events go
//! to a caller-supplied sink; only `kiln-cli` renders them).
//!
//! Threads, not async: the RUN sandbox is started by re-executing the kiln binary through
//! `std::process::Command`, which is safe from plain threads and needs no runtime.

mod cancel;
mod error;
mod event;
mod job;
pub mod signal;
mod solve;

pub use cancel::{CancelHook, CancelToken};
pub use error::SolveError;
pub use event::{Event, EventKind, Stream};
pub use job::{Job, JobCtx, Worker};
pub use solve::{solve, Options, Solution, Stats};
