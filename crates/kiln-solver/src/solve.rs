//! The scheduler. One coordinator (the calling thread) owns all bookkeeping; a fixed
//! pool of worker threads only executes. Workers report completions on a channel, so the
//! coordinator starts a job the moment its last input finishes (no level barriers), and
//! no lock is held around user code.

use crate::cancel::CancelToken;
use crate::error::SolveError;
use crate::event::{Event, EventKind};
use crate::job::{Job, JobCtx, Worker};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt::Debug;
use std::hash::Hash;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// How to run a solve.
#[derive(Debug, Clone)]
pub struct Options {
    /// Most jobs running at once (`--jobs`); 0 is treated as 1.
    pub jobs: usize,
    /// Cancelling this stops the build (Ctrl-C); the solver never cancels it itself.
    pub cancel: CancelToken,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cancel: CancelToken::new(),
        }
    }
}

/// Counts over the jobs that ran (after deduplication, reachable from the targets).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub total: usize,
    pub executed: usize,
    pub cached: usize,
}

/// The results of a completed solve.
#[derive(Debug)]
pub struct Solution<K, R> {
    /// One result per requested target, in the order the targets were given.
    pub targets: Vec<Arc<R>>,
    /// The result of every job that ran, by key.
    pub results: HashMap<K, Arc<R>>,
    pub stats: Stats,
}

struct Node<K, P> {
    key: K,
    payload: P,
    deps: Vec<usize>,
    description: Arc<str>,
}

struct Task<R> {
    idx: usize,
    inputs: Vec<Arc<R>>,
}

enum Outcome<R, E> {
    Ok { value: Arc<R>, cached: bool },
    Failed(E),
    Panicked(String),
    Cancelled,
}

enum Msg<R, E> {
    Finished {
        idx: usize,
        outcome: Outcome<R, E>,
    },
    /// Sent by the cancel hook so a coordinator blocked in `recv` notices at once.
    Wake,
}

type Sink<'a, K> = &'a (dyn Fn(Event<K>) + Sync);

/// Runs every job reachable from `targets` and returns their results.
///
/// Events go to `sink`, called from the coordinator and from worker threads; it must be
/// quick (forward to a channel). On the first failure no further job starts, running
/// jobs are cancelled through their token, and the error is returned once they have all
/// returned. If `opts.cancel` is cancelled the same happens and the result is
/// [`SolveError::Cancelled`].
pub fn solve<K, P, W>(
    jobs: Vec<Job<K, P>>,
    targets: &[K],
    worker: &W,
    opts: &Options,
    sink: Sink<'_, K>,
) -> Result<Solution<K, W::Output>, SolveError<K, W::Error>>
where
    K: Eq + Hash + Clone + Debug + Send + Sync,
    P: Send + Sync,
    W: Worker<K, P>,
    W::Output: 'static,
{
    let epoch = Instant::now();
    let graph = Graph::build(jobs, targets, worker)?;
    let emit = |idx: usize, kind: EventKind| {
        let node = &graph.nodes[idx];
        sink(Event {
            time: SystemTime::now(),
            offset: epoch.elapsed(),
            key: node.key.clone(),
            description: node.description.clone(),
            kind,
        })
    };
    for &idx in &graph.order {
        emit(idx, EventKind::Queued);
    }

    let token = opts.cancel.child();
    let threads = opts.jobs.max(1).min(graph.order.len().max(1));
    let (done_tx, done_rx) = channel::<Msg<W::Output, W::Error>>();
    let _wake = {
        let tx = Mutex::new(done_tx.clone());
        token.on_cancel(move || {
            let _ = tx
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .send(Msg::Wake);
        })
    };

    let pool = Pool {
        nodes: &graph.nodes,
        worker,
        token: &token,
        sink,
        epoch,
    };
    let run = std::thread::scope(|s| {
        // Created inside the scope so that any early return drops the sender and lets
        // the pool threads exit before the scope joins them.
        let (task_tx, task_rx) = channel::<Task<W::Output>>();
        let task_rx = Arc::new(Mutex::new(task_rx));
        for i in 0..threads {
            let rx = Arc::clone(&task_rx);
            let tx = done_tx.clone();
            let pool = &pool;
            std::thread::Builder::new()
                .name(format!("kiln-solve-{i}"))
                .spawn_scoped(s, move || pool.run(&rx, &tx))
                .map_err(SolveError::Spawn)?;
        }
        coordinate(&graph, &token, opts, threads, &task_tx, &done_rx)
    })?;

    let results: HashMap<K, Arc<W::Output>> = graph
        .order
        .iter()
        .filter_map(|&i| Some((graph.nodes[i].key.clone(), run.results[i].clone()?)))
        .collect();
    let targets = graph
        .targets
        .iter()
        .map(|&i| {
            run.results[i]
                .clone()
                .expect("a completed solve has every target")
        })
        .collect();
    Ok(Solution {
        targets,
        results,
        stats: run.stats,
    })
}

/// The deduplicated, validated, reachable part of the input.
struct Graph<K, P> {
    nodes: Vec<Node<K, P>>,
    /// Indices of the targets, as requested.
    targets: Vec<usize>,
    /// Reachable nodes in a topological order (inputs first).
    order: Vec<usize>,
    /// Per node: how many distinct inputs it waits for (0 for unreachable nodes too).
    waiting: Vec<usize>,
    /// Per node: reachable nodes that use it, each once.
    dependents: Vec<Vec<usize>>,
}

impl<K: Eq + Hash + Clone + Debug, P> Graph<K, P> {
    fn build<W, E>(
        jobs: Vec<Job<K, P>>,
        targets: &[K],
        worker: &W,
    ) -> Result<Self, SolveError<K, E>>
    where
        W: Worker<K, P>,
        E: std::error::Error + 'static,
    {
        let mut index: HashMap<K, usize> = HashMap::with_capacity(jobs.len());
        let mut kept = Vec::with_capacity(jobs.len());
        for job in jobs {
            // Equal keys are equal work: the first occurrence stands for all.
            if !index.contains_key(&job.key) {
                index.insert(job.key.clone(), kept.len());
                kept.push(job);
            }
        }
        let lookup = |k: &K| index.get(k).copied();
        let mut target_idx = Vec::with_capacity(targets.len());
        for t in targets {
            target_idx.push(lookup(t).ok_or_else(|| SolveError::UnknownTarget(t.clone()))?);
        }

        // Reachability by an explicit stack: a 10 000-step chain must not recurse.
        let mut reachable = vec![false; kept.len()];
        let mut deps: Vec<Vec<usize>> = vec![Vec::new(); kept.len()];
        let mut stack = target_idx.clone();
        while let Some(i) = stack.pop() {
            if reachable[i] {
                continue;
            }
            reachable[i] = true;
            for d in &kept[i].deps {
                let di = lookup(d).ok_or_else(|| SolveError::MissingDependency {
                    job: kept[i].key.clone(),
                    dep: d.clone(),
                })?;
                deps[i].push(di);
                stack.push(di);
            }
        }

        let mut waiting = vec![0; kept.len()];
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); kept.len()];
        for i in (0..kept.len()).filter(|&i| reachable[i]) {
            let mut distinct = deps[i].clone();
            distinct.sort_unstable();
            distinct.dedup();
            waiting[i] = distinct.len();
            for d in distinct {
                dependents[d].push(i);
            }
        }

        // Kahn's algorithm gives the order of the `Queued` events and finds cycles.
        let mut left = waiting.clone();
        let mut ready: BinaryHeap<Reverse<usize>> = (0..kept.len())
            .filter(|&i| reachable[i] && waiting[i] == 0)
            .map(Reverse)
            .collect();
        let mut order = Vec::new();
        while let Some(Reverse(i)) = ready.pop() {
            order.push(i);
            for &d in &dependents[i] {
                left[d] -= 1;
                if left[d] == 0 {
                    ready.push(Reverse(d));
                }
            }
        }
        if let Some(i) = (0..kept.len()).find(|&i| reachable[i] && left[i] > 0) {
            return Err(SolveError::Cycle(kept[i].key.clone()));
        }

        let nodes = kept
            .into_iter()
            .zip(deps)
            .enumerate()
            .map(|(i, (job, deps))| Node {
                description: if reachable[i] {
                    worker.describe(&job.key, &job.payload).into()
                } else {
                    "".into()
                },
                key: job.key,
                payload: job.payload,
                deps,
            })
            .collect();
        Ok(Graph {
            nodes,
            targets: target_idx,
            order,
            waiting,
            dependents,
        })
    }
}

struct Run<R> {
    results: Vec<Option<Arc<R>>>,
    stats: Stats,
}

/// The coordinator loop: start ready jobs while there is room, record completions,
/// stop starting on the first failure or cancellation, return once nothing runs.
fn coordinate<K, P, R, E>(
    graph: &Graph<K, P>,
    token: &CancelToken,
    opts: &Options,
    threads: usize,
    task_tx: &Sender<Task<R>>,
    done_rx: &Receiver<Msg<R, E>>,
) -> Result<Run<R>, SolveError<K, E>>
where
    K: Clone + Debug,
    E: std::error::Error + 'static,
{
    let n = graph.nodes.len();
    let mut waiting = graph.waiting.clone();
    // Lowest index first: the caller's job order decides ties, which keeps runs (and
    // therefore logs) as repeatable as parallelism allows.
    let mut ready: BinaryHeap<Reverse<usize>> = graph
        .order
        .iter()
        .copied()
        .filter(|&i| waiting[i] == 0)
        .map(Reverse)
        .collect();
    let mut results: Vec<Option<Arc<R>>> = (0..n).map(|_| None).collect();
    let mut remaining = graph.order.len();
    let mut running = 0;
    let mut first_err: Option<SolveError<K, E>> = None;
    let mut stats = Stats {
        total: graph.order.len(),
        ..Stats::default()
    };

    loop {
        if !token.is_cancelled() {
            while running < threads {
                let Some(Reverse(idx)) = ready.pop() else {
                    break;
                };
                let inputs = graph.nodes[idx]
                    .deps
                    .iter()
                    .map(|&d| {
                        results[d]
                            .clone()
                            .expect("inputs finish before dependents start")
                    })
                    .collect();
                if task_tx.send(Task { idx, inputs }).is_err() {
                    break; // every pool thread is gone; handled by `running == 0` below
                }
                running += 1;
            }
        }
        if running == 0 {
            break;
        }
        let Ok(msg) = done_rx.recv() else { break };
        let Msg::Finished { idx, outcome } = msg else {
            continue;
        };
        running -= 1;
        let node = &graph.nodes[idx];
        match outcome {
            Outcome::Ok { value, cached } => {
                results[idx] = Some(value);
                remaining -= 1;
                if cached {
                    stats.cached += 1;
                } else {
                    stats.executed += 1;
                }
                for &d in &graph.dependents[idx] {
                    waiting[d] -= 1;
                    if waiting[d] == 0 {
                        ready.push(Reverse(d));
                    }
                }
            }
            Outcome::Failed(source) => {
                // A failure after the user cancelled is a consequence, not a cause.
                if first_err.is_none() && !opts.cancel.is_cancelled() {
                    first_err = Some(SolveError::Job {
                        key: node.key.clone(),
                        description: node.description.clone(),
                        source,
                    });
                }
                token.cancel();
            }
            Outcome::Panicked(message) => {
                if first_err.is_none() && !opts.cancel.is_cancelled() {
                    first_err = Some(SolveError::Panicked {
                        key: node.key.clone(),
                        description: node.description.clone(),
                        message,
                    });
                }
                token.cancel();
            }
            Outcome::Cancelled => {}
        }
    }

    if let Some(e) = first_err {
        return Err(e);
    }
    if remaining > 0 {
        return Err(SolveError::Cancelled);
    }
    Ok(Run { results, stats })
}

/// What every pool thread shares.
struct Pool<'a, K, P, W> {
    nodes: &'a [Node<K, P>],
    worker: &'a W,
    token: &'a CancelToken,
    sink: Sink<'a, K>,
    epoch: Instant,
}

impl<K, P, W> Pool<'_, K, P, W>
where
    K: Clone + Sync,
    P: Sync,
    W: Worker<K, P>,
{
    fn run(&self, rx: &Mutex<Receiver<Task<W::Output>>>, tx: &Sender<Msg<W::Output, W::Error>>) {
        loop {
            // The lock is held only while waiting for the next task, never while working.
            let task = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
            let Ok(task) = task else { return };
            let outcome = self.execute(task);
            if tx.send(outcome).is_err() {
                return;
            }
        }
    }

    fn execute(&self, task: Task<W::Output>) -> Msg<W::Output, W::Error> {
        let node = &self.nodes[task.idx];
        let ctx = JobCtx {
            key: &node.key,
            payload: &node.payload,
            description: node.description.clone(),
            token: self.token,
            sink: self.sink,
            epoch: self.epoch,
            cached: AtomicBool::new(false),
            exec_time: Mutex::new(None),
        };
        ctx.emit(EventKind::Started);
        let start = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| self.worker.execute(&ctx, &task.inputs)));
        let duration: Duration = start.elapsed();
        drop(task.inputs); // let inputs go before reporting, not when the pool idles
        let outcome = match result {
            Ok(Ok(value)) => {
                ctx.emit(EventKind::Done {
                    duration,
                    exec_time: ctx.exec_time(),
                });
                Outcome::Ok {
                    value: Arc::new(value),
                    cached: ctx.was_cached(),
                }
            }
            // After cancellation an error is the worker honouring it.
            Ok(Err(_)) if self.token.is_cancelled() => {
                ctx.emit(EventKind::Cancelled);
                Outcome::Cancelled
            }
            Ok(Err(e)) => {
                ctx.emit(EventKind::Failed {
                    error: error_chain(&e),
                });
                Outcome::Failed(e)
            }
            Err(panic) => {
                let message = panic_message(panic.as_ref());
                ctx.emit(EventKind::Failed {
                    error: format!("internal error (worker panicked: {message})"),
                });
                Outcome::Panicked(message)
            }
        };
        Msg::Finished {
            idx: task.idx,
            outcome,
        }
    }
}

/// `outer: cause: root cause` — an event carries text, so the chain is flattened here.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        // Errors that embed their source's text would repeat it.
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_string())
}
