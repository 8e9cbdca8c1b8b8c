//! The errors of [`crate::solve`]: graph errors found before anything runs, and the
//! outcome of a run that did not complete.

use std::fmt::Debug;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum SolveError<K: Debug, E: std::error::Error + 'static> {
    /// The first job to fail; every other running job had returned before this was
    /// reported.
    #[error("{description}: {source}")]
    Job {
        key: K,
        description: Arc<str>,
        #[source]
        source: E,
    },
    /// A worker panicked; treated like a failure (the build stops), reported separately
    /// because there is no typed error to show.
    #[error("{description}: internal error (worker panicked: {message})")]
    Panicked {
        key: K,
        description: Arc<str>,
        message: String,
    },
    /// The caller's token was cancelled (Ctrl-C) before the build completed.
    #[error("build cancelled")]
    Cancelled,
    #[error("job {job:?} depends on {dep:?}, which is not in the graph")]
    MissingDependency { job: K, dep: K },
    #[error("target {0:?} is not in the graph")]
    UnknownTarget(K),
    #[error("the build graph has a dependency cycle through {0:?}")]
    Cycle(K),
    #[error("cannot start a worker thread")]
    Spawn(#[source] std::io::Error),
}

impl<K: Debug, E: std::error::Error + 'static> SolveError<K, E> {
    /// The key of the job that failed, when a job failed.
    pub fn failed_key(&self) -> Option<&K> {
        match self {
            SolveError::Job { key, .. } | SolveError::Panicked { key, .. } => Some(key),
            _ => None,
        }
    }
}
