//! What the caller hands the solver: jobs, and a [`Worker`] that executes one job given
//! its inputs' results, reporting through a [`JobCtx`].

use crate::cancel::CancelToken;
use crate::event::{Event, EventKind, Stream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// One vertex of the DAG. Jobs with equal keys are the same work (the key is the
/// vertex's content digest): the first one listed is kept, executed once, and its result
/// shared by every dependent.
#[derive(Debug, Clone)]
pub struct Job<K, P> {
    pub key: K,
    pub payload: P,
    /// Keys of the jobs whose results this job needs, in the order the worker receives
    /// them as `inputs`.
    pub deps: Vec<K>,
}

impl<K, P> Job<K, P> {
    pub fn new(key: K, payload: P, deps: Vec<K>) -> Self {
        Job { key, payload, deps }
    }
}

/// Executes jobs. Called concurrently from worker threads, hence `Sync`.
pub trait Worker<K, P>: Sync {
    type Output: Send + Sync;
    type Error: std::error::Error + Send + Sync + 'static;

    /// The one-line description shown for the job (`[build 2/4] RUN make`).
    fn describe(&self, key: &K, payload: &P) -> String;

    /// Runs one job. `inputs` are the results of `job.deps`, in that order. The worker
    /// decides itself whether the result is cached (and says so with
    /// [`JobCtx::cached`]); it must poll or wait on [`JobCtx::cancel_token`] during long
    /// work and, when cancelled, clean up its own temporary state and return an error.
    fn execute(
        &self,
        ctx: &JobCtx<'_, K, P>,
        inputs: &[Arc<Self::Output>],
    ) -> Result<Self::Output, Self::Error>;
}

/// The worker's view of its job and its reporting channel. `Sync`, so a worker may
/// hand it to threads that pump a child's stdout and stderr.
pub struct JobCtx<'a, K, P> {
    pub(crate) key: &'a K,
    pub(crate) payload: &'a P,
    pub(crate) description: Arc<str>,
    pub(crate) token: &'a CancelToken,
    pub(crate) sink: &'a (dyn Fn(Event<K>) + Sync),
    pub(crate) epoch: Instant,
    pub(crate) cached: AtomicBool,
    pub(crate) exec_time: Mutex<Option<Duration>>,
}

impl<K: Clone, P> JobCtx<'_, K, P> {
    pub fn key(&self) -> &K {
        self.key
    }

    pub fn payload(&self) -> &P {
        self.payload
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    /// Cancelled on the first failure anywhere in the build, or by the caller (Ctrl-C).
    pub fn cancel_token(&self) -> &CancelToken {
        self.token
    }

    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Reports that the result came from the cache. Reported once however often called.
    pub fn cached(&self, reason: Option<&str>) {
        if !self.cached.swap(true, Ordering::SeqCst) {
            self.emit(EventKind::Cached {
                reason: reason.map(str::to_string),
            });
        }
    }

    /// Whether [`JobCtx::cached`] was called.
    pub fn was_cached(&self) -> bool {
        self.cached.load(Ordering::SeqCst)
    }

    /// Forwards a chunk of the job's process output.
    pub fn log(&self, stream: Stream, data: &[u8]) {
        if !data.is_empty() {
            self.emit(EventKind::Log {
                stream,
                data: data.to_vec(),
            });
        }
    }

    pub fn status(&self, text: impl Into<String>) {
        self.emit(EventKind::Status { text: text.into() });
    }

    /// Adds time spent in the user's process (a job may run more than one); reported in
    /// `Done::exec_time` so kiln's own overhead can be computed.
    pub fn add_exec_time(&self, d: Duration) {
        let mut t = self
            .exec_time
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *t = Some(t.unwrap_or_default() + d);
    }

    pub(crate) fn exec_time(&self) -> Option<Duration> {
        *self
            .exec_time
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn emit(&self, kind: EventKind) {
        (self.sink)(Event {
            time: SystemTime::now(),
            offset: self.epoch.elapsed(),
            key: self.key.clone(),
            description: self.description.clone(),
            kind,
        });
    }
}
